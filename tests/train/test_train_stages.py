"""Ray Train stages on CPU with the tiny preset: real TorchTrainer, real Ray Data shards, real MLflow
(sqlite backend), fault injection by killing a worker process. Step budgets, never wall-clock ones.

Two workers run at 0.5 CPU each: at 1 CPU each, Ray Data starves beside them on a 2-core box.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from videopolicy.data.clips import ClipCutter
from videopolicy.models import PolicyModel, SamplerConfig, VideoPolicy, build_model
from videopolicy.train.checkpoint import TrainSetupError
from videopolicy.train.launch import TrainSpec, run_training


def _spec(stage, cfg, clips, tmp_path, name, **kw) -> TrainSpec:
    return TrainSpec(stage, cfg, clips.path, name=name, storage_path=str(tmp_path / "runs"),
                     tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", **kw)


def _fixed_batch(clips, n=4) -> dict:
    rows = clips.index("train").iloc[:: max(1, len(clips.index("train")) // n)][:n]
    cut = ClipCutter(clips)({k: rows[k].to_numpy() for k in ["demo_uid", "task", "language", "shard", "start"]})
    return {"frames": torch.from_numpy(np.array(cut["frames"])), "actions": torch.from_numpy(np.array(cut["actions"])),
            "text": list(cut["language"])}


def _eval_loss(model, batch, mode) -> float:
    """Mean loss over 6 fixed (sigma, noise) draws, no condition dropout."""
    model.eval()
    with torch.no_grad():
        return float(np.mean([model(batch, mode, torch.Generator().manual_seed(100 + k)).loss.item() for k in range(6)]))


def _unet(policy_dir) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_file(str(Path(policy_dir) / "model.safetensors")).items() if k.startswith("unet.")}


def _progress(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_two_stage_learns_and_stage2_keeps_the_unet_bit_identical(make_cfg, clips, tmp_path):
    stages = {"stage1": {"steps": 16, "batch_size": 4, "lr": 1e-3, "checkpoint_every": 8, "log_every": 4},
              "stage2": {"steps": 6, "batch_size": 4, "lr": 1e-3, "checkpoint_every": 6, "log_every": 3}}
    cfg = make_cfg(workers=2, **stages)
    batch = _fixed_batch(clips)
    base = build_model(cfg.model_config()).set_mode("stage1")
    before = _eval_loss(base, batch, "stage1")

    s1 = run_training(_spec("stage1", cfg, clips, tmp_path, "s1"))
    assert s1.step == 16
    after = _eval_loss(PolicyModel.from_pretrained(s1.policy_dir), batch, "stage1")
    assert after <= 0.8 * before, f"stage-1 video loss did not go down: {before:.4f} -> {after:.4f}"

    # stage 2's own settings take effect over the stage-1 checkpoint's (it carries the U-Net, not the head's)
    cfg2 = make_cfg(model={"adapter": {"zero_init_residual": True}}, workers=2, stage1=stages["stage1"],
                    stage2={**stages["stage2"], "val_every": 6})
    s2 = run_training(_spec("stage2", cfg2, clips, tmp_path, "s2", init_from=str(s1.policy_dir)))
    assert s2.step == 6
    assert json.loads((s2.policy_dir / "config.json").read_text())["adapter"]["zero_init_residual"] is True
    u1, u2 = _unet(s1.policy_dir), _unet(s2.policy_dir)
    assert u1.keys() == u2.keys() and all(torch.equal(u1[k], u2[k]) for k in u1), "stage 2 changed the U-Net"
    w1, w2 = load_file(str(s1.policy_dir / "model.safetensors")), load_file(str(s2.policy_dir / "model.safetensors"))
    assert any(not torch.equal(w1[k], w2[k]) for k in w1 if k.startswith("action_head.")), "the head did not train"

    # The checkpoint is self-contained: normaliser, cameras, text cache, MLflow run id, config.
    extra = json.loads((s2.policy_dir / "extra.json").read_text())
    assert extra["cameras"] == clips.cameras and extra["normalizer"] == clips.normalizer.to_dict()
    info = json.loads((s2.checkpoint_dir / "train.json").read_text())
    assert info["mlflow_run_id"] and info["platform_config"]["train"]["method"] == "two_stage"
    policy = VideoPolicy.from_pretrained(s2.policy_dir, sampler=SamplerConfig(steps=2))
    assert all(text in policy.model.text_cache for text in set(clips.index("train")["language"]))
    obs = np.zeros((len(clips.cameras), 64, 64, 3), np.uint8)
    chunk = policy.act(obs, "move the block (Lift)")
    assert chunk.shape == (16, 7) and np.isfinite(chunk).all()

    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    history = client.get_metric_history(info["mlflow_run_id"], "stage2/loss")
    assert [m.step for m in history] == [3, 6]
    for key in ("val_loss", "val_action_mse", "val_action_mse_mean"):  # validated at step 6 only
        (m,) = client.get_metric_history(info["mlflow_run_id"], f"stage2/{key}")
        assert m.step == 6 and np.isfinite(m.value) and m.value > 0
    assert not client.get_metric_history(info["mlflow_run_id"], "stage1/val_loss")
    s1_run = json.loads((s1.checkpoint_dir / "train.json").read_text())["mlflow_run_id"]
    assert [m.step for m in client.get_metric_history(s1_run, "stage1/data_wait_fraction")] == [4, 8, 12, 16]


def test_killed_worker_restarts_from_the_last_checkpoint(make_cfg, clips, tmp_path):
    """SIGKILL one of two workers mid-run: Ray Train restarts the group from the latest checkpoint and the
    step count continues from there (not from 0); the run finishes its budget in the same MLflow run."""
    cfg = make_cfg(workers=2, max_failures=2,
                   stage1={"steps": 12, "batch_size": 2, "checkpoint_every": 4, "log_every": 2})
    progress = tmp_path / "progress"
    killed: dict = {}

    def kill_rank1_at_step_6():
        while not killed:
            lines = _progress(progress / "rank1.jsonl")
            if lines and lines[-1]["step"] >= 6:
                killed.update(lines[-1])
                os.kill(lines[-1]["pid"], signal.SIGKILL)
                return
            time.sleep(0.2)

    watcher = threading.Thread(target=kill_rank1_at_step_6, daemon=True)
    watcher.start()
    result = run_training(_spec("stage1", cfg, clips, tmp_path, "killed", progress_dir=str(progress)))
    watcher.join(timeout=1)
    assert killed, "the worker was never killed (the run ended before step 6?)"
    assert result.step == 12

    lines = _progress(progress / "rank0.jsonl")
    pids = list(dict.fromkeys(line["pid"] for line in lines))
    assert len(pids) >= 2, f"rank 0 was never restarted: {lines}"
    first_after = next(line["step"] for line in lines if line["pid"] == pids[1])
    resumed_from = first_after - 2  # log_every 2: the first report after a restart is 2 steps on
    last_ckpt = max(s for s in (4, 8) if s <= killed["step"])
    # from the newest checkpoint at the kill: rank 1 may finish a step or two (and rank 0 checkpoint 8)
    # between the watcher reading its progress and the signal landing
    assert resumed_from in (4, 8) and last_ckpt <= resumed_from <= killed["step"] + 2, (
        f"restart began at step {first_after}: expected a resume from checkpoint {last_ckpt} (or 8), killed at "
        f"step {killed['step']}")
    runs = {json.loads(p.read_text())["mlflow_run_id"] for p in (tmp_path / "runs" / "killed").glob("checkpoint_*/train.json")}
    assert len(runs) == 1
    # Steps repeated after the restart are not logged twice (train_metrics.py's high-water mark), none lost.
    from mlflow import MlflowClient

    reported = [line["step"] for line in lines]
    history = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").get_metric_history(runs.pop(), "stage1/loss")
    assert sorted(m.step for m in history) == sorted(set(reported)), (
        f"logged steps {sorted(m.step for m in history)}, reported {reported}")


def test_second_launch_with_the_same_name_resumes_in_the_same_mlflow_run(make_cfg, clips, tmp_path):
    progress = tmp_path / "progress"
    first = run_training(_spec("stage1", make_cfg(stage1={"steps": 4, "batch_size": 2, "checkpoint_every": 2,
                                                          "log_every": 2}),
                               clips, tmp_path, "again", progress_dir=str(progress)))
    run_id = json.loads((first.checkpoint_dir / "train.json").read_text())["mlflow_run_id"]
    second = run_training(_spec("stage1", make_cfg(stage1={"steps": 8, "batch_size": 2, "checkpoint_every": 2,
                                                           "log_every": 2}),
                                clips, tmp_path, "again", progress_dir=str(progress)))
    assert second.step == 8
    steps = [line["step"] for line in _progress(progress / "rank0.jsonl")]
    assert steps == [2, 4, 6, 8], f"second launch did not continue from step 4: {steps}"
    assert json.loads((second.checkpoint_dir / "train.json").read_text())["mlflow_run_id"] == run_id

    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("train-test").experiment_id],
                              filter_string="tags.`videopolicy.train_run` = 'again'")
    assert len(runs) == 1
    history = client.get_metric_history(run_id, "stage1/loss")
    assert [m.step for m in history] == [2, 4, 6, 8]
    # the learning curve the sweep's results carry (videopolicy.progress.read_curve) is what MLflow got
    from videopolicy.progress import read_curve

    curve = read_curve(progress)
    assert list(curve["step"]) == [2, 4, 6, 8]
    assert list(curve["loss"]) == pytest.approx([m.value for m in sorted(history, key=lambda m: m.step)], rel=1e-6)


    # A checkpoint Ray Train never registered (its group died before the controller polled) still counts:
    # the same files under a run name Ray has no record of resume from step 8, not from 0.
    moved = tmp_path / "runs" / "unregistered" / "checkpoint_copied"
    shutil.copytree(second.checkpoint_dir, moved)
    progress2 = tmp_path / "progress2"
    third = run_training(_spec("stage1", make_cfg(stage1={"steps": 10, "batch_size": 2, "checkpoint_every": 2,
                                                          "log_every": 2}),
                               clips, tmp_path, "unregistered", progress_dir=str(progress2)))
    assert third.step == 10
    assert [line["step"] for line in _progress(progress2 / "rank0.jsonl")] == [10]


@pytest.mark.parametrize("method", ["joint", "no_video_tuning", "dp_resnet"])
def test_single_run_methods(method, make_cfg, clips, tmp_path):
    cfg = make_cfg(method=method, stage2={"steps": 3, "batch_size": 2, "checkpoint_every": 3, "log_every": 3})
    result = run_training(_spec("stage2", cfg, clips, tmp_path, method))
    assert result.step == 3
    trained = load_file(str(result.policy_dir / "model.safetensors"))
    base = build_model(cfg.model_config()).state_dict()
    changed = {k.split(".")[0] for k in trained if not torch.equal(trained[k], base[k])}
    expected = {"joint": {"unet", "adapter", "action_head"}, "no_video_tuning": {"adapter", "action_head"},
                "dp_resnet": {"encoders", "pools", "action_head"}}[method]
    assert changed == expected, f"{method} trained {sorted(changed)}"
    policy = VideoPolicy.from_pretrained(result.policy_dir, sampler=SamplerConfig(steps=2))
    chunk = policy.act(np.zeros((2, len(clips.cameras), 64, 64, 3), np.uint8), "move the block (Stack)")
    assert chunk.shape == (2, 16, 7)


def test_bad_inputs_fail_before_any_worker_starts(make_cfg, clips, tmp_path):
    cfg = make_cfg()
    runs = tmp_path / "runs"
    with pytest.raises(TrainSetupError, match="not found"):
        run_training(_spec("stage2", cfg, clips, tmp_path, "x", init_from=str(tmp_path / "nowhere")))
    with pytest.raises(TrainSetupError, match="no stage 1"):
        run_training(_spec("stage1", make_cfg(method="joint"), clips, tmp_path, "x"))
    with pytest.raises(TrainSetupError, match="needs the stage-1 checkpoint"):
        run_training(_spec("stage2", cfg, clips, tmp_path, "x"))
    with pytest.raises(TrainSetupError, match="build the clips first"):
        run_training(TrainSpec("stage1", cfg, tmp_path / "no_clips", "x", str(runs)))

    # a stage-1 checkpoint of another shape: 3 cameras x 8 frames at 128 px
    other = build_model(cfg.model_config().__class__(preset="tiny"))
    other.save_pretrained(tmp_path / "other", extra={"cameras": ["a", "b", "c"]})
    with pytest.raises(TrainSetupError) as e:
        run_training(_spec("stage2", cfg, clips, tmp_path, "x", init_from=str(tmp_path / "other")))
    msg = str(e.value)
    assert str(tmp_path / "other") in msg and "num_cameras" in msg and "frames_per_camera" in msg and "cameras:" in msg
    assert not runs.exists(), "a run directory was created before the inputs were checked"


def test_validator_scores_drawn_chunks_on_the_held_out_demos(make_cfg, clips):
    """train/validate.py without Ray: only val-split clips; fixed draws (same numbers twice); the chunk error
    is the sampled chunks' (a policy that draws the demo's chunk scores 0) beside the mean chunk's;
    the model's train/eval flag and its weights come back as they were."""
    from videopolicy.data.clips import ClipCollate
    from videopolicy.models.base import SampleOutput
    from videopolicy.train.validate import Validator, exported_weights

    model = build_model(make_cfg().model_config()).set_mode("stage2").train()
    v = Validator(clips, ClipCollate(clips), cached=False, clips=6)
    val = clips.index("val")
    assert 0 < len(v.batch["demo_uid"]) <= 6 and set(v.batch["demo_uid"]) <= set(val.demo_uid)
    first, second = v(model, "stage2"), v(model, "stage2")
    assert first == second and set(first) == {"val_loss", "val_action_mse", "val_action_mse_mean"}
    assert model.training
    target, mask = v.batch["actions"].float(), v.batch["action_mask"].float()[..., None].expand_as(v.batch["actions"])
    mean = (target * mask).sum(0) / mask.sum(0)
    assert first["val_action_mse_mean"] == pytest.approx(float(((target - mean) ** 2 * mask).sum() / mask.sum()), rel=1e-5)

    model.sample_actions = lambda *a, **k: SampleOutput(target.clone(), None, None)  # an oracle policy
    assert v(model, "stage2")["val_action_mse"] == 0.0

    params = {n: p for n, p in model.named_parameters() if n.startswith("action_head.")}
    before = {n: p.detach().clone() for n, p in params.items()}
    with exported_weights(params, {n: torch.zeros_like(p) for n, p in params.items()}):
        assert all(float(p.abs().max()) == 0 for p in params.values())
    assert all(torch.equal(before[n], p) for n, p in params.items())
