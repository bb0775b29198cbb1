"""The ablation table, like the paper's: rows x tasks (success with a Wilson 95% interval), the
average over tasks with its interval, and the paired delta of every row against a reference row
(Newcombe's hybrid score 95% interval for paired proportions, exact McNemar p).

Saved as CSV (numbers), Markdown and HTML (formatted cells); `str(table)` is what the sweep prints.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from videopolicy.evaluate.sequential import AV_INTERVAL_LABEL, compare_rows
from videopolicy.evaluate.stats import (
    PAIRED_INTERVAL_LABEL,
    EpisodeMismatchError,
    PairedDifference,
    paired_difference,
    row_summary,
    success_table,
)


def fmt_rate(rate: float, lo: float, hi: float) -> str:
    return "-" if math.isnan(rate) else f"{rate:.2f} [{lo:.2f}, {hi:.2f}]"


def fmt_delta(d: PairedDifference | None, is_reference: bool, note: str = "") -> str:
    if is_reference:
        return "reference"
    if d is None or math.isnan(d.delta):
        return f"n/a ({note})" if note else "n/a"
    return f"{d.delta:+.2f} [{d.lo:+.2f}, {d.hi:+.2f}] p={d.mcnemar_p:.2g}"


@dataclass
class AblationTable:
    """The numbers (`numeric`, one line per row) and their formatted cells (`cells`)."""

    rows: list[str]
    tasks: list[str]
    reference_row: str | None
    numeric: pd.DataFrame  # row, <task>, <task>_lo, <task>_hi, ..., average(_lo/_hi), delta(_lo/_hi), ...
    cells: pd.DataFrame  # row, <task>..., average, delta vs <reference>: strings
    deltas: dict[str, PairedDifference] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)  # row -> why it has no paired delta
    adaptive: object = None  # the eval.adaptive config when the sweep ran adaptively (adds its columns)
    notice: str = ""  # printed above the table wherever it goes (a pipeline check's "not results" label)

    @property
    def delta_column(self) -> str:
        return f"delta vs {self.reference_row}" if self.reference_row else "delta"

    @property
    def caption(self) -> str:
        """What the cells mean, printed under the table (the intervals are named, not implied)."""
        text = "Success rate [Wilson 95% interval] per task and for the average over tasks."
        if self.reference_row:
            text += (f" {self.delta_column}: paired difference on the same episodes "
                     f"[{PAIRED_INTERVAL_LABEL}], exact McNemar p.")
        if self.adaptive is not None:
            a = self.adaptive
            text += (f" Adaptive evaluation (decision {a.decision!r}, alpha {a.alpha}): episodes run of the fixed "
                     f"budget; where each row stopped and why; 'anytime-valid delta': the {AV_INTERVAL_LABEL} "
                     f"(one-sided for 'better'/'worse'), beside the fixed-sample interval above, which is not valid "
                     f"after early stopping; saved: episodes not run and their estimated GPU-hours.")
        return text

    def to_markdown(self) -> str:
        cols = list(self.cells.columns)
        lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
        for rec in self.cells.itertuples(index=False):
            lines.append("| " + " | ".join(str(v).replace("|", "\\|") for v in rec) + " |")
        head = f"> **{self.notice}**\n\n" if self.notice else ""
        return head + "\n".join(lines) + "\n\n" + self.caption + "\n"

    def to_html(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.cells.columns)
        body = []
        for rec in self.cells.itertuples(index=False):
            row = rec[0]
            cls = ' class="reference"' if row == self.reference_row else ""
            tds = "".join(f"<td>{html.escape(str(v))}</td>" for v in rec[1:])
            body.append(f'<tr data-row="{html.escape(row)}"{cls}><th scope="row">{html.escape(row)}</th>{tds}</tr>')
        notice = f'<p class="notice"><strong>{html.escape(self.notice)}</strong></p>' if self.notice else ""
        return (f'{notice}<table class="ablation"><caption>{html.escape(self.caption)}</caption><thead><tr>{head}</tr></thead>'
                f'<tbody>{"".join(body)}</tbody></table>')

    def __str__(self) -> str:
        return self.to_markdown()

    def save(self, out_dir: str | Path, stem: str = "ablation") -> dict[str, Path]:
        """`<stem>.csv` (numbers), `<stem>.md`, `<stem>.html` (formatted). Returns the paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"csv": out / f"{stem}.csv", "md": out / f"{stem}.md", "html": out / f"{stem}.html"}
        self.numeric.to_csv(paths["csv"], index=False)
        paths["md"].write_text(self.to_markdown())
        paths["html"].write_text("<!doctype html><meta charset=\"utf-8\"><title>Ablation table</title>"
                                 f"<style>{TABLE_CSS}</style>{self.to_html()}\n")
        return paths


TABLE_CSS = ("table.ablation{border-collapse:collapse;font:13px system-ui,sans-serif}"
             "table.ablation th,table.ablation td{border:1px solid #ccc;padding:4px 8px;text-align:right}"
             "table.ablation th[scope=row]{text-align:left}table.ablation tr.reference{background:#f3f6fb}"
             "table.ablation caption{caption-side:bottom;text-align:left;color:#555;padding-top:4px}"
             "p.notice{background:#fff3cd;border:1px solid #e0c36a;padding:6px 10px;font:14px system-ui,sans-serif}")


def ablation_table(results: pd.DataFrame, reference_row: str | None = None, rows: list[str] | None = None,
                   tasks: list[str] | None = None, adaptive=None,
                   episode_hours: dict[str, float] | None = None, notice: str = "") -> AblationTable:
    """The paper-style table from the per-episode frame (all rows, harness schema plus `row`).

    notice: a label printed above the table in every format (a pipeline check's "not results").

    rows / tasks: their order (default: order of appearance). A row that was not evaluated on the
    reference row's episodes gets no delta (noted), rather than a meaningless unpaired one.
    """
    rows = rows or list(pd.unique(results["row"]))
    tasks = tasks or list(pd.unique(results["task"]))
    if reference_row is not None and reference_row not in rows:
        raise ValueError(f"reference row {reference_row!r} is not among the rows {rows}")
    per_task = success_table(results).set_index(["row", "task"])
    summary = row_summary(results).set_index("row")
    deltas: dict[str, PairedDifference] = {}
    notes: dict[str, str] = {}
    numeric, cells = [], []
    for row in rows:
        num: dict = {"row": row}
        cell: dict = {"row": row}
        for task in tasks:
            if (row, task) in per_task.index:
                t = per_task.loc[(row, task)]
                num.update({task: t["rate"], f"{task}_lo": t["lo"], f"{task}_hi": t["hi"]})
                cell[task] = fmt_rate(t["rate"], t["lo"], t["hi"])
            else:
                num.update({task: math.nan, f"{task}_lo": math.nan, f"{task}_hi": math.nan})
                cell[task] = "-"
        s = summary.loc[row] if row in summary.index else None
        mean, lo, hi = (s["mean"], s["lo"], s["hi"]) if s is not None else (math.nan, 0.0, 1.0)
        num.update({"average": mean, "average_lo": lo, "average_hi": hi,
                    "n_episodes": int(s["n_episodes"]) if s is not None else 0,
                    "infra_errors": int(s["infra_errors"]) if s is not None else 0})
        cell["average"] = fmt_rate(mean, lo, hi)
        d = None
        if reference_row is not None and row != reference_row:
            try:
                d = deltas[row] = paired_difference(results, row, reference_row)
            except EpisodeMismatchError as e:
                notes[row] = "different episodes"
                notes[f"{row}:error"] = str(e)
        num.update({"delta": d.delta if d else math.nan, "delta_lo": d.lo if d else math.nan,
                    "delta_hi": d.hi if d else math.nan, "delta_interval": d.method if d else "",
                    "mcnemar_p": d.mcnemar_p if d else math.nan,
                    "n_pairs": d.n_pairs if d else 0})
        cell["delta"] = fmt_delta(d, row == reference_row, notes.get(row, ""))
        if adaptive is not None:
            _adaptive_columns(results, row, reference_row, adaptive, (episode_hours or {}).get(row), num, cell)
        numeric.append(num)
        cells.append(cell)
    table = AblationTable(rows, tasks, reference_row, pd.DataFrame(numeric), pd.DataFrame(cells), deltas, notes,
                          adaptive, notice)
    table.cells = table.cells.rename(columns={"delta": table.delta_column})
    return table


def _adaptive_columns(results: pd.DataFrame, row: str, reference_row: str | None, adaptive, hours: float | None,
                      num: dict, cell: dict) -> None:
    """Episodes run, where and why the row stopped, the anytime-valid interval, what was saved."""
    part = results[results["row"] == row]
    run = int(part["status"].isin(["done", "infra_error"]).sum())
    not_run = int((part["status"] == "not_run").sum())
    res = None
    if reference_row is not None and row != reference_row:
        res = compare_rows(results, row, reference_row, adaptive.alpha, adaptive.decision)
    verdict = f"decided {res.direction}" if res is not None and res.decided else "undecided"
    why = ("reference" if res is None else
           f"early: {verdict}" if not_run else f"ran to max ({verdict})")
    saved_h = not_run * hours if hours is not None else math.nan
    num.update({"episodes_run": run, "episodes_not_run": not_run, "stopped_early": bool(not_run),
                "stop_reason": why, "av_lo": res.lo if res else math.nan, "av_hi": res.hi if res else math.nan,
                "av_e_value": res.e_value if res else math.nan, "av_decided": bool(res and res.decided),
                "gpu_h_saved": saved_h})
    cell["episodes run"] = f"{run}/{run + not_run}"
    cell["stopped"] = why
    cell["anytime-valid delta"] = "reference" if res is None else f"{res.delta:+.2f} [{res.lo:+.2f}, {res.hi:+.2f}]"
    cell["saved"] = f"{not_run} ep" + (f", {saved_h:.2f} GPU-h" if hours is not None else "")
