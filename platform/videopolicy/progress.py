"""The one-line progress reports of long jobs (stdout, flushed): training steps and evaluation episodes.

    stage1 step 20/100  loss 0.1234  samples/s 12.3  ETA 01:23
    eval 3f2a9c1d0e4b5a67: episodes 7/12, success so far 5/7

The sweep executor prints where the sweep is (``stage i/m: ...``); these say where a stage is.
"""

from __future__ import annotations

import math


def clock(seconds: float) -> str:
    """mm:ss, or h:mm:ss from an hour; '--:--' when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "--:--"
    s = int(round(seconds))
    h, m = divmod(s // 60, 60)
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m:02d}:{s % 60:02d}"


def training_line(stage: str, step: int, steps: int, metrics: dict) -> str:
    """A training report: the ETA is the remaining steps at the window's mean step time."""
    eta = (steps - step) * metrics["step_time_s"] if "step_time_s" in metrics else None
    val = "".join(f"  {k} {v:.4g}" for k, v in metrics.items() if k.startswith("val_"))  # train/validate.py
    return (f"{stage} step {step}/{steps}  loss {metrics.get('loss', float('nan')):.4g}  "
            f"samples/s {metrics.get('samples_per_s', float('nan')):.3g}  ETA {clock(eta)}{val}")


def episodes_line(label: str, done: int, total: int, successes: int) -> str:
    """An evaluation report, when an episode is counted."""
    return f"eval {label}: episodes {done}/{total}, success so far {successes}/{done}"


def read_curve(progress_dir, rank: int = 0):
    """A training run's learning curve from its progress file (train/loop.py writes one line per report):
    a DataFrame with one row per reported step (``step``, ``loss``, ``val_loss``, ``lr``, ...), in step order.

    A run resumed from a checkpoint reports the steps after it again; the later report of a step wins (it
    belongs to the attempt that went on). Lines written before reports carried metrics are left out; an
    empty frame when there is no file or no metrics."""
    import json
    from pathlib import Path

    import pandas as pd

    path = Path(progress_dir) / f"rank{rank}.jsonl"
    by_step: dict[int, dict] = {}
    if path.exists():
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:  # a line cut by a crash mid-write: the last one only
                raise ValueError(f"{path}:{n}: not JSON ({e.msg}); a run killed mid-write leaves at most its "
                                 f"last line cut: delete that line") from e
            if isinstance(record.get("metrics"), dict):
                by_step[int(record["step"])] = {**record["metrics"], "step": int(record["step"])}
    if not by_step:
        return pd.DataFrame(columns=["step"])
    curve = pd.DataFrame([by_step[s] for s in sorted(by_step)])
    return curve[["step"] + [c for c in curve.columns if c != "step"]]
