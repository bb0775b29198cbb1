"""Compute estimates of stages, from the models' FLOP counts (no GPU, no weights needed).

A100-hours = FLOPs / (312 TFLOP/s bf16 peak x utilisation). The stage classes (stages.py) turn these
counts into a stage's FLOPs; estimate.py sums them over a plan. Counting a model's FLOPs traces it
under torch's fake tensors (2-3 s per model config on a small CPU, plus torch's import), so counts are
cached in memory and on disk, per machine, in ``$XDG_CACHE_HOME/videopolicy/flops`` (default
~/.cache), keyed by the resolved model config, the torch and diffusers versions and the source of
videopolicy.models (any edit there counts again); torch is imported only when a count is missing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from functools import lru_cache
from pathlib import Path

from videopolicy.config import PlatformConfig
from videopolicy.store import stable_hash, write_json_atomic

log = logging.getLogger(__name__)

A100_BF16_FLOPS = 312e12
UTILISATION = 0.4  # what we aim for; the paper's run implies ~0.15 (issue 4)
DEFAULT_STEPS_PER_EPISODE = 500  # when the suite is not installed here
DEFAULT_TASKS = 24  # when the suite's task list is not known here (RoboCasa's 24)

_counts: dict[str, dict] = {}


def a100_hours(flops: float, utilisation: float = UTILISATION) -> float:
    return flops / (A100_BF16_FLOPS * utilisation) / 3600


def model_flops(cfg: PlatformConfig) -> dict:
    """Forward FLOPs of the video networks of `cfg`'s model (whatever the row kind): unet_pass, adapter,
    head, vae_encode_clip, vae_encode_current_frames (models.costs.forward_flops)."""
    model_json = json.dumps(dataclasses.asdict(cfg.model_config()), sort_keys=True)
    if model_json in _counts:
        return _counts[model_json]
    path = _cache_dir() / f"{stable_hash(model_json, _counter_version())}.json"
    try:
        _counts[model_json] = json.loads(path.read_text())
        return _counts[model_json]
    except (OSError, ValueError):
        pass  # not counted on this machine yet
    from videopolicy.models.config import ModelConfig, from_dict
    from videopolicy.models.costs import forward_flops

    counts = forward_flops(from_dict(ModelConfig, json.loads(model_json)))
    _counts[model_json] = counts
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, counts)
    except OSError as e:  # a read-only home still gets its estimate
        log.debug("not caching FLOP counts in %s: %s", path, e)
    return counts


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "videopolicy" / "flops"


@lru_cache(maxsize=1)
def _counter_version() -> tuple:
    """What a count depends on besides the model config: torch, diffusers and the models' source."""
    from importlib.metadata import PackageNotFoundError, version
    from importlib.util import find_spec

    versions = []
    for package in ("torch", "diffusers"):
        try:
            versions.append(version(package))
        except PackageNotFoundError:
            versions.append(None)
    source = hashlib.sha256()
    for f in sorted(Path(find_spec("videopolicy.models").origin).parent.glob("*.py")):
        source.update(f.name.encode() + f.read_bytes())
    return tuple(versions), source.hexdigest()


def eval_steps(cfg: PlatformConfig, n_tasks: int) -> int:
    """Simulator steps of an evaluation at most: every episode of every task to its step limit."""
    e = cfg.eval
    if e.max_steps:
        per_task = e.max_steps
    else:
        try:
            from videopolicy.sim.suites import get_suite

            per_task = get_suite(e.suite, cfg).protocol().max_steps
        except Exception:  # noqa: BLE001 - an uninstalled suite still gets an estimate
            per_task = DEFAULT_STEPS_PER_EPISODE
    return per_task * (n_tasks or DEFAULT_TASKS) * e.episodes_per_task
