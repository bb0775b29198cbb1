"""Training checkpoints: self-contained, so a resumed run (or the policy server) needs nothing else.

Layout of one checkpoint directory (what rank 0 hands to ``ray.train.report``)::

    policy/             model.save_pretrained(): config.json, model.safetensors (EMA weights when EMA
                        is on), text_cache.pt (the text-embedding cache), encoders of random-init
                        presets, extra.json {normalizer, cameras, clips, stage, step}
    trainer_state.pt    optimizer, raw (non-EMA) trainable weights, EMA state, step, RNG state
    train.json          step, stage, method, MLflow run id, the resolved platform config

Ray Train registers a checkpoint only once it is fully persisted to storage, so a crash while one is
being written leaves the previous one as "latest".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from videopolicy.models.config import ModelConfig, from_dict

POLICY_DIR = "policy"
STATE_FILE = "trainer_state.pt"
INFO_FILE = "train.json"


class TrainSetupError(ValueError):
    """A training run cannot start (missing or incompatible input); raised before any worker starts."""


@dataclass
class CheckpointInfo:
    step: int
    stage: str
    method: str
    mlflow_run_id: Optional[str]
    platform_config: dict

    @classmethod
    def read(cls, ckpt_dir: str | Path) -> "CheckpointInfo":
        d = json.loads((Path(ckpt_dir) / INFO_FILE).read_text())
        return cls(d["step"], d["stage"], d["method"], d.get("mlflow_run_id"), d.get("platform_config", {}))


def write_checkpoint(ckpt_dir: Path, model, info: CheckpointInfo, extra: dict, trainer_state: dict,
                     ema_state: Optional[dict[str, torch.Tensor]] = None) -> Path:
    """Write one checkpoint into `ckpt_dir` (a fresh temporary directory of rank 0)."""
    ckpt_dir = Path(ckpt_dir)
    policy = ckpt_dir / POLICY_DIR
    if ema_state:  # the policy ships the EMA weights; the raw ones live in trainer_state for resume
        raw = {k: v.detach().clone() for k, v in model.state_dict().items() if k in ema_state}
        model.load_state_dict(ema_state, strict=False)
        model.save_pretrained(policy, extra=extra)
        model.load_state_dict(raw, strict=False)
    else:
        model.save_pretrained(policy, extra=extra)
    torch.save(trainer_state, ckpt_dir / STATE_FILE)
    (ckpt_dir / INFO_FILE).write_text(json.dumps(info.__dict__, indent=1, default=str))
    return ckpt_dir


def read_trainer_state(ckpt_dir: str | Path) -> dict[str, Any]:
    return torch.load(Path(ckpt_dir) / STATE_FILE, map_location="cpu", weights_only=False)


def local_checkpoints(storage_path: str, name: str) -> list[tuple[int, Path]]:
    """(step, dir) of run `name`'s checkpoints in local storage, newest first ([] for s3:// storage).

    Includes checkpoints Ray Train never registered: a worker persists its checkpoint inside
    ``ray.train.report``, but the controller records it only when it next polls the workers, so a
    group that dies in between restarts without it (seen under load: a restart from step 0).
    """
    if "://" in storage_path and not storage_path.startswith("file://"):
        return []
    run_dir = Path(storage_path.removeprefix("file://")).expanduser() / name
    found = []
    for d in run_dir.glob("checkpoint_*"):
        try:
            found.append((int(json.loads((d / INFO_FILE).read_text())["step"]), d))
        except (OSError, ValueError, KeyError):
            continue  # being copied, or not ours
    return sorted(found, key=lambda x: x[0], reverse=True)


def policy_model_config(policy_dir: str | Path) -> ModelConfig:
    path = Path(policy_dir) / "config.json"
    if not path.exists():
        raise TrainSetupError(f"{policy_dir}: no config.json: not a saved policy (expected the 'policy/' "
                              f"directory of a finished stage-1 run). Fix: run stage1 first or point at its output")
    return from_dict(ModelConfig, json.loads(path.read_text()))


def check_init_checkpoint(policy_dir: str | Path, want: ModelConfig, cameras: list[str]) -> None:
    """Refuse a stage-1 checkpoint that cannot initialise this run, naming the path and every mismatch."""
    policy_dir = Path(policy_dir)
    if not policy_dir.exists():
        raise TrainSetupError(f"{policy_dir}: stage-1 checkpoint not found. Fix: run stage1 first "
                              f"(jobs/train_stage.py --stage stage1) or pass the right --init-from")
    if not (policy_dir / "model.safetensors").exists():
        raise TrainSetupError(f"{policy_dir}: no model.safetensors (an unfinished or foreign checkpoint)")
    have = policy_model_config(policy_dir)
    problems = []
    for name in ("preset", "kind", "num_cameras", "frames_per_camera", "pad_camera", "image_size"):
        if getattr(have, name) != getattr(want, name):
            problems.append(f"{name}: checkpoint has {getattr(have, name)!r}, this run needs {getattr(want, name)!r}")
    extra = json.loads((policy_dir / "extra.json").read_text()) if (policy_dir / "extra.json").exists() else {}
    if extra.get("cameras") and list(extra["cameras"]) != list(cameras):
        problems.append(f"cameras: checkpoint was trained on {extra['cameras']}, the clips have {cameras}")
    if problems:
        raise TrainSetupError(f"{policy_dir}: incompatible stage-1 checkpoint:\n  - " + "\n  - ".join(problems))
