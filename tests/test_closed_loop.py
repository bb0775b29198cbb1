"""Closed loop: policies trained through the platform's own stages succeed in the simulator.

scripted Lift demos -> clips (Ray Data) -> training (Ray Train TorchTrainer) -> exported policy ->
evaluation through the platform's simulator workers and batched policy server, on the demos' own
scenes (the scenes the replay sanity policy resets to). A table of zeros could hide a misalignment
between clips and workers (camera order, frame offset, normaliser, chunk indexing, orientation); this
test cannot: the trained policy must succeed on most of its training scenes, and the same checkpoint
fed its cameras in the wrong order must succeed clearly less often.

Budgets are steps, not seconds. Colour jitter is off here: the test asks whether the pipeline can fit
4 demos closed loop in a CPU budget, not how well a policy generalises (the CPU study measures that).
"""

from __future__ import annotations

import json
import shutil

from videopolicy.config import config_from_dict
from videopolicy.data.clips import build_clips, demo_sources
from videopolicy.evaluate import PolicySpec, evaluate
from videopolicy.train.launch import TrainSpec, export_policy, run_training

CAMERAS = ["agentview", "robot0_eye_in_hand"]
DEMOS = 4


def _cfg(store, method: str, stage2: dict, stage1: dict | None = None, model: dict | None = None, **train):
    return config_from_dict({
        "name": f"closed-loop-{method}",
        "store": str(store),
        "demos": {"tasks": ["Lift"], "demos_per_task": DEMOS, "cameras": CAMERAS, "image_size": 64,
                  "render": {"preset": "fast", "gl": "egl"}, "shard_size": DEMOS},
        "clips": {"video_horizon": 8, "frame_stride": 4, "action_horizon": 32, "image_size": 64,
                  "val_fraction": 0.0},
        "model": {"preset": "tiny", **(model or {})},
        "train": {"method": method, "workers": 1, "cpus_per_worker": 1.0, "color_jitter": [0, 0, 0, 0],
                  "stage1": stage1 or {"steps": 1}, "stage2": stage2, **train},
        "eval": {"tasks": ["Lift"], "workers": 2, "episodes_per_task": DEMOS, "video_episodes": 0,
                 "sampler_steps": 10},
    })


def _swap_cameras(policy_dir, out):
    """The same weights, told its cameras came in the other order: every view goes to the wrong encoder."""
    shutil.copytree(policy_dir, out)
    extra = json.loads((out / "extra.json").read_text())
    extra["cameras"] = extra["cameras"][::-1]
    (out / "extra.json").write_text(json.dumps(extra))
    return out


def _train(cfg, store, tmp_path, stage: str, name: str, init_from=None):
    clips = build_clips(cfg, str(store))
    result = run_training(TrainSpec(stage, cfg, clips.path, name=name, storage_path=str(tmp_path / "runs"),
                                    init_from=None if init_from is None else str(init_from)))
    assert result.step == (cfg.train.stage2.steps if stage == "stage2" else cfg.train.stage1.steps)
    return export_policy(result, tmp_path / name)


def _evaluate(cfg, store, policy_dir, out):
    demos = {s.task: s.path for s in demo_sources(cfg, str(store))}
    df = evaluate(cfg, PolicySpec.parse(str(policy_dir)), out, demo_scenes=demos)
    assert len(df) == DEMOS and (df.status == "done").all()
    assert sorted(df.episode_key) == [f"robosuite/Lift/demo/{i}" for i in range(DEMOS)]
    return int(df.success.sum()), df


def _assert_succeeds_unless_cameras_swapped(cfg, store, policy, tmp_path, name: str) -> None:
    """>= 3 of the 4 demo scenes; and the check can fail: the same checkpoint with its cameras swapped
    must succeed at least 2 scenes less often."""
    wins, df = _evaluate(cfg, store, policy, tmp_path / "eval")
    print(df[["episode_key", "success", "steps", "failure_reason"]])
    assert wins >= 3, f"{name} trained on {DEMOS} Lift demos succeeded on {wins}/{DEMOS} of their scenes"
    swapped, df2 = _evaluate(cfg, store, _swap_cameras(policy, tmp_path / "swapped"), tmp_path / "eval_swapped")
    print(df2[["episode_key", "success", "steps", "failure_reason"]])
    assert swapped <= wins - 2, f"swapping the cameras changed little: {wins} -> {swapped} of {DEMOS}"


def test_dp_resnet_trained_by_the_platform_succeeds_closed_loop(ray_cluster, tmp_path):
    """5000 x 16 steps. At 3000 the policy won 2-3 of the 4 scenes depending on its sampling noise (8/12 over
    policy seeds 0-2; which requests share a server batch moves that noise, so CI drew 2/4 once); at 5000 it
    won 12/12 (loss 0.039 against 0.065). lr 1e-3 at 3000 won 1/12."""
    store = tmp_path / "store"
    cfg = _cfg(store, "dp_resnet", cpus_per_worker=2.0,
               stage2={"steps": 5000, "batch_size": 16, "lr": 2e-4, "lr_schedule": "cosine", "warmup_steps": 50,
                       "ema_decay": 0.995, "checkpoint_every": 1000, "log_every": 250})
    policy = _train(cfg, store, tmp_path, "stage2", "dp")
    _assert_succeeds_unless_cameras_swapped(cfg, store, policy, tmp_path, "DP-ResNet")


# The video policy: the `cpu` preset's recipe (models/config.py RECIPES, the one sweeps/cpu_paper.yaml uses):
# decoupled stage 2 (features at sigma 700 from a zero video, computed once per clip), the fast sampler, a VAE
# fitted to the demos' frames, no condition dropout in stage 2, an adapter whose bottlenecks start as their
# shortcuts and a 128-wide output; here at the tiny U-Net's widths, with the trunk cut to this clip's 2 frames
# (one temporal stage, no refine stages). What each setting is for: README, "Learning is tested".
VIDEO_MODEL = {"preset": "cpu", "unet": {"block_out_channels": [32, 64, 64, 64], "num_attention_heads": [2, 4, 4, 4]},
               "adapter": {"temporal_stages": 1, "refine_stages": 0}}


def test_video_policy_trained_by_the_platform_succeeds_closed_loop(ray_cluster, tmp_path):
    """VAE fit 150 x 16, stage 1 200 x 16, stage 2 1500 x 64 on cached features. The lr is 2e-4: three runs
    at 1e-3 (1000-2000 x 64) reached as low a loss and lifted the cube in only 2 of 4 scenes each time."""
    store = tmp_path / "store"
    cfg = _cfg(store, "two_stage", model=VIDEO_MODEL, latent_cache=True, feature_cache=True, cpus_per_worker=2.0,
               stage1={"steps": 200, "batch_size": 16, "lr": 1e-3, "checkpoint_every": 1000, "log_every": 50},
               stage2={"steps": 1500, "batch_size": 64, "lr": 2e-4, "lr_schedule": "cosine", "warmup_steps": 50,
                       "ema_decay": 0.995, "checkpoint_every": 1000, "log_every": 100})
    stage1 = _train(cfg, store, tmp_path, "stage1", "vp_stage1")
    policy = _train(cfg, store, tmp_path, "stage2", "vp_stage2", init_from=stage1)
    _assert_succeeds_unless_cameras_swapped(cfg, store, policy, tmp_path, "the video policy")
