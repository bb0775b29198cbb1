"""The sweep's HTML report: one self-contained file (inline CSS and SVG, no scripts, no network).

Sections: the ablation table; success per row and task; the horizon curve (rows that differ only
in clips.video_horizon, like the paper's Figure 3); seen vs unseen tasks of half_tasks rows (like
Figure 4); paired deltas against the reference row with their intervals; the rows' axes; the training
stages' learning curves (when the sweep passes them: sweep/report.py).
"""

from __future__ import annotations

import html
import math
import time
from pathlib import Path

import pandas as pd

from videopolicy.evaluate.stats import PAIRED_INTERVAL_LABEL, mean_over_tasks, success_table
from videopolicy.report.rows import AXES, RowInfo
from videopolicy.report.svg import Interval, curves, forest, grouped_bars, line_chart
from videopolicy.report.table import TABLE_CSS, AblationTable, ablation_table

PAGE_CSS = ("body{font:14px system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}"
            "h1{font-size:22px}h2{font-size:17px;margin-top:32px}p.note{color:#666}"
            "section{overflow-x:auto}table.axes td,table.axes th{border:1px solid #ccc;padding:3px 8px}"
            "table.axes{border-collapse:collapse;font-size:13px}")


def horizon_rows(rows: list[RowInfo], reference_row: str | None) -> list[RowInfo]:
    """One row per video horizon among rows whose other axes are equal (the paper's Figure 3).

    Picks the group holding the reference row when it spans two or more horizons, else the group
    spanning the most horizons; within a horizon the reference row, else the first, is kept.
    """
    groups: dict[tuple, list[RowInfo]] = {}
    for r in rows:
        if r.video_horizon is None:
            continue
        key = tuple(sorted((k, str(v)) for k, v in r.axes.items() if k != "video_horizon"))
        groups.setdefault(key, []).append(r)
    spans = [g for g in groups.values() if len({r.video_horizon for r in g}) >= 2]
    if not spans:
        return []
    with_ref = [g for g in spans if any(r.name == reference_row for r in g)]
    group = with_ref[0] if with_ref else max(spans, key=lambda g: len({r.video_horizon for r in g}))
    chosen: dict[int, RowInfo] = {}
    for r in sorted(group, key=lambda r: r.name != reference_row):  # the reference row first
        chosen.setdefault(r.video_horizon, r)
    return [chosen[h] for h in sorted(chosen)]


def _mean(results: pd.DataFrame, row: str, tasks: list[str] | None = None) -> Interval | None:
    part = results[results["row"] == row]
    if tasks is not None:
        part = part[part["task"].isin(tasks)]
    if part.empty:
        return None
    m = mean_over_tasks(success_table(part))
    return None if math.isnan(m.mean) else Interval(m.mean, m.lo, m.hi)


def _section(sec_id: str, title: str, body: str, note: str = "") -> str:
    note_html = f'<p class="note">{html.escape(note)}</p>' if note else ""
    return f'<section id="{sec_id}"><h2>{html.escape(title)}</h2>{note_html}{body}</section>'


def success_section(results: pd.DataFrame, table: AblationTable) -> str:
    per_task = success_table(results)
    values = {(r.row, r.task): Interval(r.rate, r.lo, r.hi) for r in per_task.itertuples() if r.n > 0}
    for row in table.rows:
        iv = _mean(results, row)
        if iv is not None:
            values[(row, "average")] = iv
    svg = grouped_bars("fig-success", "Success per row and task", table.tasks + ["average"], table.rows, values)
    return _section("success", "Success per row and task", svg,
                    "Bars: success rate per task (average: mean over tasks); whiskers: Wilson 95% intervals.")


def horizon_section(results: pd.DataFrame, rows: list[RowInfo], reference_row: str | None) -> str:
    chosen = horizon_rows(rows, reference_row)
    points = [(float(r.video_horizon), iv, r.name) for r in chosen if (iv := _mean(results, r.name))]
    if len(points) < 2:
        return _section("horizon", "Video horizon", '<p class="empty">No rows differ only in video_horizon.</p>')
    svg = line_chart("fig-horizon", "Mean success vs video horizon", points, "video horizon (control steps)")
    return _section("horizon", "Video horizon (paper Figure 3)", svg,
                    "Rows that differ only in clips.video_horizon: " + ", ".join(p[2] for p in points)
                    + ". Points: mean success over tasks with 95% intervals.")


def transfer_section(results: pd.DataFrame, rows: list[RowInfo], tasks: list[str]) -> str:
    half = [r for r in rows if r.is_half_tasks(tasks)]
    if not half:
        return _section("transfer", "Seen vs unseen tasks", '<p class="empty">No half_tasks rows in this sweep.</p>')
    values: dict[tuple[str, str], Interval] = {}
    for r in half:
        seen = [t for t in tasks if t in r.train_tasks]
        unseen = [t for t in tasks if t not in r.train_tasks]
        for group, subset in (("seen", seen), ("unseen", unseen)):
            if (iv := _mean(results, r.name, subset)) is not None:
                values[(r.name, group)] = iv
    svg = grouped_bars("fig-transfer", "Seen vs unseen tasks", ["seen", "unseen"], [r.name for r in half], values,
                       y_label="mean success rate")
    return _section("transfer", "Seen vs unseen tasks (paper Figure 4)", svg,
                    "Rows whose action head was trained on a subset of the evaluated tasks: mean success over the "
                    "tasks it saw actions for, and over the others, with 95% intervals.")


def delta_section(table: AblationTable) -> str:
    if table.reference_row is None:
        return _section("deltas", "Paired deltas", '<p class="empty">No reference row.</p>')
    items = [(row, Interval(d.delta, d.lo, d.hi), f"p={d.mcnemar_p:.2g}, n={d.n_pairs}")
             for row, d in table.deltas.items() if not math.isnan(d.delta)]
    skipped = [row for row in table.rows if row != table.reference_row and row not in table.deltas]
    note = (f"Each row minus {table.reference_row} on the same episodes: {PAIRED_INTERVAL_LABEL}, "
            "exact McNemar p.")
    if skipped:
        note += " Not comparable (different episodes): " + ", ".join(skipped) + "."
    if not items:
        return _section("deltas", f"Paired deltas vs {table.reference_row}", '<p class="empty">No paired rows.</p>', note)
    svg = forest("fig-deltas", f"Paired deltas vs {table.reference_row}", items, f"success - {table.reference_row}")
    return _section("deltas", f"Paired deltas vs {table.reference_row}", svg, note)


def axes_section(rows: list[RowInfo]) -> str:
    head = "".join(f"<th>{a}</th>" for a in ("row",) + AXES + ("train tasks",))
    body = "".join(
        f'<tr data-row="{html.escape(r.name)}"><th>{html.escape(r.name)}</th>'
        + "".join(f"<td>{html.escape(str(r.axes.get(a, '')))}</td>" for a in AXES)
        + f"<td>{html.escape(', '.join(r.train_tasks) or 'all')}</td></tr>" for r in rows)
    return _section("rows", "Rows", f'<table class="axes"><tr>{head}</tr>{body}</table>')


CURVE_SERIES = ("loss", "val_loss", "val_action_mse", "val_action_mse_mean")  # train/validate.py


def curves_section(learning: pd.DataFrame | None) -> str:
    """One chart per training stage: its loss and validation metrics vs step (rows of `learning`: stage,
    label, rows, step and the reported metrics; sweep/report.py's curves.csv)."""
    if learning is None or learning.empty:
        return _section("curves", "Learning curves", '<p class="empty">No training stage reported metrics.</p>')
    charts = []
    for i, (stage, c) in enumerate(learning.groupby("stage", sort=False)):
        series = {k: list(zip(c["step"].astype(float), c[k].astype(float))) for k in CURVE_SERIES if k in c}
        head = c.iloc[0]
        charts.append(f'<figure data-stage="{html.escape(stage)}">'
                      + curves(f"fig-curve-{i}", f"{head['label']} ({stage}; rows {head['rows']})", series,
                               "training step", "value")
                      + f"<figcaption>{html.escape(str(head['label']))}: {html.escape(stage)}, rows "
                        f"{html.escape(str(head['rows']))}</figcaption></figure>")
    return _section("curves", "Learning curves", "".join(charts),
                    "loss: the training loss, averaged over each report's steps. val_loss: the same loss on held-out "
                    "demos' clips. val_action_mse: sampled action chunks vs the held-out demos' (normalised units); "
                    "val_action_mse_mean: the held-out clips' own mean chunk, the bar a policy must get below. "
                    "Validation uses the weights the checkpoint exports (the EMA's).")


def build_report(results: pd.DataFrame, rows: list[RowInfo], out_dir: str | Path, reference_row: str | None = None,
                 title: str = "Video Policy ablation", adaptive=None,
                 episode_hours: dict[str, float] | None = None, notice: str = "",
                 learning: pd.DataFrame | None = None) -> dict[str, Path]:
    """Write report.html and the ablation table (ablation.csv / .md / .html) into out_dir.

    results: per-episode records of every row (harness schema + `row`); rows: the sweep's rows in
    table order (RowInfo: name, axes, train_tasks); learning: the training stages' curves (curves_section),
    if any. Returns {"report", "csv", "md", "html"} paths.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = [r.name for r in rows] or list(pd.unique(results["row"]))
    missing = [n for n in names if n not in set(results["row"])]
    if missing:
        raise ValueError(f"build_report: no results for row(s) {missing}")
    rows = rows or [RowInfo(n) for n in names]
    table = ablation_table(results, reference_row=reference_row, rows=names, adaptive=adaptive,
                           episode_hours=episode_hours, notice=notice)  # adaptive: eval.adaptive (episodes run, anytime-valid delta)
    paths = table.save(out)
    done = int((results["status"] == "done").sum())
    infra = int((results["status"] == "infra_error").sum())
    header = (f"<h1>{html.escape(title)}</h1><p class=\"meta\">{len(names)} rows, {len(table.tasks)} tasks, "
              f"{done} episodes ({infra} infrastructure errors excluded); reference row: "
              f"{html.escape(reference_row or '-')}; generated {time.strftime('%Y-%m-%d %H:%M:%S')}</p>")
    body = "".join([
        header,
        _section("table", "Ablation table", table.to_html(),
                 "Success rate [Wilson 95% interval] per task; average over tasks; paired delta vs the reference row "
                 f"[{PAIRED_INTERVAL_LABEL}]."),
        success_section(results, table),
        horizon_section(results, rows, reference_row),
        transfer_section(results, rows, table.tasks),
        delta_section(table),
        axes_section(rows),
        curves_section(learning),
    ])
    page = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{PAGE_CSS}{TABLE_CSS}</style></head><body>{body}</body></html>\n")
    paths["report"] = out / "report.html"
    paths["report"].write_text(page)
    return paths
