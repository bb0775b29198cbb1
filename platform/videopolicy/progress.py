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
