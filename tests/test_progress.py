"""The progress lines long jobs print (training steps, evaluation episodes)."""

from videopolicy.progress import clock, episodes_line, training_line


def test_progress_lines():
    assert clock(83) == "01:23" and clock(3725) == "1:02:05" and clock(float("nan")) == "--:--"
    line = training_line("stage1", 20, 100, {"loss": 0.12345, "samples_per_s": 12.34, "step_time_s": 0.5})
    assert line == "stage1 step 20/100  loss 0.1235  samples/s 12.3  ETA 00:40"
    line = training_line("stage2", 20, 100, {"loss": 0.5, "samples_per_s": 10.0, "val_action_mse": 0.0541,
                                             "val_action_mse_mean": 0.14})
    assert line == "stage2 step 20/100  loss 0.5  samples/s 10  ETA --:--  val_action_mse 0.0541  val_action_mse_mean 0.14"
    assert episodes_line("abc", 7, 12, 5) == "eval abc: episodes 7/12, success so far 5/7"


def test_read_curve_keeps_the_resumed_attempts_report_of_each_step(tmp_path):
    """A run resumed from its step-4 checkpoint reports step 6 again: the later report wins, steps stay in
    order, and lines without metrics (older progress files) are left out."""
    import json

    import pytest
    from videopolicy.progress import read_curve

    lines = [{"pid": 1, "step": 2, "time": 0},  # before reports carried metrics
             {"pid": 1, "step": 4, "time": 1, "metrics": {"loss": 0.9, "lr": 1e-3}},
             {"pid": 1, "step": 6, "time": 2, "metrics": {"loss": 0.8, "lr": 1e-3}},
             {"pid": 2, "step": 6, "time": 3, "metrics": {"loss": 0.7, "lr": 1e-3, "val_loss": 0.75}},
             {"pid": 2, "step": 8, "time": 4, "metrics": {"loss": 0.6, "lr": 5e-4}}]
    (tmp_path / "rank0.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    curve = read_curve(tmp_path)
    assert list(curve["step"]) == [4, 6, 8] and list(curve.columns)[0] == "step"
    assert list(curve["loss"]) == [0.9, 0.7, 0.6]
    assert curve["val_loss"].isna().tolist() == [True, False, True]
    assert read_curve(tmp_path / "missing").empty
    (tmp_path / "rank0.jsonl").write_text('{"pid": 1, "step": 4, "metrics": {"loss"')
    with pytest.raises(ValueError, match=r"rank0.jsonl:1: not JSON"):
        read_curve(tmp_path)
