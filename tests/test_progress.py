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
