"""Ray metrics of the evaluation (names are what dashboards/ query; keep them stable).

Created lazily per process: `ray.util.metrics` objects must be made after Ray is initialised.
"""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=None)
def _metric(kind: str, name: str, description: str, tags: tuple[str, ...]):
    from ray.util import metrics

    return getattr(metrics, kind)(name, description=description, tag_keys=tags)


def episodes_done():
    return _metric("Counter", "videopolicy_eval_episodes_done", "Evaluation episodes finished (done records)",
                   ("suite", "task", "policy"))


def success_rate():
    return _metric("Gauge", "videopolicy_eval_success_rate", "Success rate so far, per task",
                   ("suite", "task", "policy"))


def steps_per_second():
    return _metric("Gauge", "videopolicy_eval_steps_per_second", "Simulator steps per second of a worker's last episode",
                   ("suite", "task"))


def policy_queue_depth():
    return _metric("Gauge", "videopolicy_policy_queue_depth", "Observations waiting in a policy server",
                   ("policy",))
