"""The platform's Prometheus metrics: the contract between the code that emits them
(`ray.util.metrics`) and `dashboards/grafana/videopolicy.json`, which queries them.

Ray exports a `ray.util.metrics` metric named `x` as `ray_x` (a Counter as `ray_x_total`),
verified against Ray 2.60's metrics endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PlatformMetric:
    name: str  # as passed to ray.util.metrics
    kind: str  # "Counter" | "Gauge" | "Histogram"
    description: str
    tags: tuple[str, ...]

    @property
    def prometheus_name(self) -> str:
        """The series name Prometheus (and Grafana) sees."""
        return prometheus_name(self.name, self.kind)


def prometheus_name(name: str, kind: str) -> str:
    return f"ray_{name}_total" if kind == "Counter" else f"ray_{name}"


PLATFORM_METRICS: tuple[PlatformMetric, ...] = (
    PlatformMetric("videopolicy_eval_episodes_done", "Counter", "Evaluation episodes finished (done records)",
                   ("suite", "task", "policy")),
    PlatformMetric("videopolicy_eval_success_rate", "Gauge", "Success rate so far, per task",
                   ("suite", "task", "policy")),
    PlatformMetric("videopolicy_eval_steps_per_second", "Gauge", "Simulator steps per second (rollout speed)",
                   ("suite", "task")),
    PlatformMetric("videopolicy_policy_queue_depth", "Gauge", "Observations waiting in a policy server",
                   ("policy",)),
    PlatformMetric("videopolicy_train_samples_per_second", "Gauge", "Training clips per second (all workers)",
                   ("stage",)),
)
