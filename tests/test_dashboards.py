"""The Grafana dashboard queries only metrics that exist: Ray 2.60's (as its own dashboards query
them) and the platform's (declared in metric_names, exported by a real Ray node under those names)."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from pathlib import Path

import pytest
from videopolicy.tracking.metric_names import PLATFORM_METRICS

DASHBOARD = Path(__file__).resolve().parents[1] / "dashboards" / "grafana" / "videopolicy.json"
EVAL_METRICS = Path(__file__).resolve().parents[1] / "platform" / "videopolicy" / "evaluate" / "metrics.py"


def ray_dashboard_metrics() -> set[str]:
    """Series names that Ray's own Grafana dashboards (shipped in the installed ray package) query."""
    import ray

    panels = Path(ray.__file__).parent / "dashboard" / "modules" / "metrics" / "dashboards"
    names: set[str] = set()
    for src in panels.glob("*_panels.py"):
        names |= set(re.findall(r"\b(ray_[a-z0-9_]+)\{", src.read_text()))
    assert len(names) > 50, f"found only {len(names)} metric names under {panels}"
    return names


def queried_metrics(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers before a selector, and ray_* identifiers
    outside label lists (`by (...)`) and selectors."""
    names = set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\{", expr))
    bare = re.sub(r"\{[^}]*\}", "", re.sub(r"\b(by|without)\s*\([^)]*\)", "", expr))
    names |= set(re.findall(r"\b(ray_[a-zA-Z0-9_]+)\b", bare))
    return names


def all_exprs(dash: dict) -> list[str]:
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    for var in dash["templating"]["list"]:
        if isinstance(var.get("query"), dict):
            exprs.append(re.sub(r"label_values\((\w+),.*", r"\1{}", var["query"]["query"]))
    return exprs


def test_dashboard_queries_only_known_metrics():
    dash = json.loads(DASHBOARD.read_text())
    known = ray_dashboard_metrics() | {m.prometheus_name for m in PLATFORM_METRICS}
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    used: set[str] = set()
    for p in dash["panels"]:
        assert {"h", "w", "x", "y"} <= set(p["gridPos"]) and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
        if p["type"] == "row":
            continue
        assert p["targets"], f"panel {p['title']!r} has no query"
        for t in p["targets"]:
            names = queried_metrics(t["expr"])
            assert names, f"panel {p['title']!r}: no metric in {t['expr']!r}"
            unknown = names - known
            assert not unknown, f"panel {p['title']!r} queries unknown metrics {unknown}"
            used |= names
    for expr in all_exprs(dash):
        assert queried_metrics(expr) <= known
    missing = {m.prometheus_name for m in PLATFORM_METRICS} - used
    assert not missing, f"platform metrics without a panel: {missing}"
    assert used & ray_dashboard_metrics(), "no Ray cluster panels"


def test_query_parser_catches_unknown_names():
    assert queried_metrics('sum by (State) (ray_tasks{Source="gcs"})') == {"ray_tasks"}
    assert queried_metrics("rate(ray_videopolicy_eval_episodes_done[1m])") == {"ray_videopolicy_eval_episodes_done"}
    assert "ray_videopolicy_eval_episodes_done" not in {m.prometheus_name for m in PLATFORM_METRICS}  # needs _total


def test_evaluation_code_emits_the_declared_metrics():
    if not EVAL_METRICS.exists():
        pytest.skip("videopolicy/evaluate/metrics.py not written yet")
    found = re.findall(r'_metric\(\s*"(Counter|Gauge|Histogram)",\s*"([a-z0-9_]+)"', EVAL_METRICS.read_text())
    emitted = {name: kind for kind, name in found}
    assert emitted, "no metrics found in evaluate/metrics.py: has its _metric(kind, name, ...) shape changed?"
    declared = {m.name: m.kind for m in PLATFORM_METRICS}
    for name, kind in emitted.items():
        assert declared.get(name) == kind, f"evaluate/metrics.py emits {kind} {name}; metric_names declares {declared.get(name)}"


def test_platform_metrics_appear_under_their_names_on_a_live_ray_node(ray_cluster):
    ray = ray_cluster

    @ray.remote(num_cpus=0)
    def emit() -> None:
        from ray.util import metrics

        for m in PLATFORM_METRICS:
            metric = getattr(metrics, m.kind)(m.name, description=m.description, tag_keys=m.tags)
            tags = {k: "probe" for k in m.tags}
            metric.inc(1, tags=tags) if m.kind == "Counter" else metric.set(1.0, tags=tags)
        time.sleep(12)  # stay alive across an export interval (metrics are flushed every ~10 s)

    ref = emit.remote()
    port = ray.nodes()[0]["MetricsExportPort"]
    wanted = {m.prometheus_name for m in PLATFORM_METRICS}
    seen: set[str] = set()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not wanted <= seen:
        time.sleep(2)
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        seen = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line.startswith("ray_videopolicy")}
    ray.get(ref)
    assert wanted <= seen, f"not exported under the expected names: {wanted - seen}; seen {sorted(seen)}"
