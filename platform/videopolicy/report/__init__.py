"""Results people look at: the paper-style ablation table and the self-contained HTML report.

    table = ablation_table(results, reference_row="two_stage", rows=[...]); print(table); table.save(out)
    paths = build_report(results, [RowInfo.from_config(name, cfg, train_tasks) ...], out, "two_stage")
"""

from videopolicy.report.html import build_report, horizon_rows
from videopolicy.report.rows import AXES, RowInfo, row_axes
from videopolicy.report.table import AblationTable, ablation_table

__all__ = ["AXES", "AblationTable", "RowInfo", "ablation_table", "build_report", "horizon_rows", "row_axes"]
