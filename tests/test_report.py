"""The ablation table and the HTML report, on synthetic results with KNOWN outcomes; the report is
rendered in real headless Chromium (screenshot + the rendered DOM with measured geometry).

Needs /usr/bin/chromium (`apt-get install -y chromium`); without it the render test FAILS with that
instruction: a report nobody checked in a browser is not a tested report.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from videopolicy.evaluate.stats import wilson
from videopolicy.report import RowInfo, ablation_table, build_report, horizon_rows

ROOT = Path(__file__).resolve().parents[1]
TASKS = ["Lift", "Stack", "PickPlaceCan", "Door"]
N = 20  # episodes per task
RATES = {  # success rate per task, a multiple of 1/N: the outcomes are known exactly
    "two_stage": [0.90, 0.70, 0.60, 0.80],
    "joint": [0.80, 0.60, 0.50, 0.60],
    "no_video_tuning": [0.10, 0.00, 0.10, 0.20],
    "half_tasks": [0.90, 0.60, 0.30, 0.20],
    "horizon_0": [0.40, 0.30, 0.20, 0.30],
    "horizon_16": [0.70, 0.50, 0.40, 0.60],
}
BASE = dict(train_mode="two_stage", video_tuning="stage1", task_subset="all", video_horizon=32, demos_per_task=50,
            suite="robosuite")
ROWS = [
    RowInfo("two_stage", BASE),
    RowInfo("joint", {**BASE, "train_mode": "joint", "video_tuning": "joint"}),
    RowInfo("no_video_tuning", {**BASE, "train_mode": "no_video_tuning", "video_tuning": "none"}),
    RowInfo("half_tasks", {**BASE, "task_subset": "half"}, ("Lift", "Stack")),
    RowInfo("horizon_0", {**BASE, "video_horizon": 0}),
    RowInfo("horizon_16", {**BASE, "video_horizon": 16}),
]


def results(rates: dict[str, list[float]] = RATES) -> pd.DataFrame:
    recs = []
    for row, per_task in rates.items():
        for task, rate in zip(TASKS, per_task):
            wins = round(rate * N)
            for i in range(N):
                recs.append(dict(row=row, suite="robosuite", task=task, scene="default", index=i, seed=i,
                                 episode_key=f"robosuite/{task}/default/{i}", policy_id=row, policy_seed=0,
                                 protocol_hash="h", status="done", success=i < wins, steps=100, failure_reason=None,
                                 video_path=None, attempts=1, wall_s=1.0))
    return pd.DataFrame(recs)


def learning() -> pd.DataFrame:
    """Two training stages' curves as sweep/report.py collects them: a stage-1 loss falling over two decades
    (a log axis) and a stage 2 with validation every 100 steps (NaN between)."""
    s1 = pd.DataFrame({"step": [50, 100, 150, 200], "loss": [1.0, 0.1, 0.03, 0.01]})
    s2 = pd.DataFrame({"step": [50, 100, 150, 200], "loss": [0.5, 0.4, 0.35, 0.3],
                       "val_action_mse": [math.nan, 0.2, math.nan, 0.1], "val_action_mse_mean": [math.nan, 0.14,
                                                                                                 math.nan, 0.14]})
    return pd.concat([s1.assign(stage="stage1/aaa", kind="stage1", label="video U-Net", rows="two_stage"),
                      s2.assign(stage="stage2/bbb", kind="stage2", label="two_stage", rows="two_stage")],
                     ignore_index=True)


def mean(row: str, tasks: list[str] = TASKS) -> float:
    return sum(RATES[row][TASKS.index(t)] for t in tasks) / len(tasks)


# ------------------------------------------------------------------------------------------ the table


def test_ablation_table_numbers_and_files(tmp_path):
    table = ablation_table(results(), reference_row="two_stage", rows=[r.name for r in ROWS])
    num = table.numeric.set_index("row")
    assert list(num.index) == [r.name for r in ROWS]
    assert num.loc["joint", "Lift"] == pytest.approx(0.8)
    assert (num.loc["joint", "Lift_lo"], num.loc["joint", "Lift_hi"]) == pytest.approx(wilson(16, 20))
    assert num.loc["two_stage", "average"] == pytest.approx(0.75)
    assert num.loc["joint", "delta"] == pytest.approx(mean("joint") - mean("two_stage"))
    assert num.loc["no_video_tuning", "delta_hi"] < 0 and num.loc["no_video_tuning", "mcnemar_p"] < 1e-6
    assert math.isnan(num.loc["two_stage", "delta"])
    cells = table.cells.set_index("row")
    assert cells.loc["two_stage", "delta vs two_stage"] == "reference"
    assert cells.loc["joint", "Lift"] == "0.80 [0.58, 0.92]"
    assert cells.loc["joint", "delta vs two_stage"].startswith("-0.12 [")

    paths = table.save(tmp_path)
    csv = pd.read_csv(paths["csv"]).set_index("row")
    assert csv.loc["horizon_16", "Door"] == pytest.approx(0.6) and csv.loc["joint", "n_pairs"] == 80
    md = paths["md"].read_text().splitlines()
    assert md[0] == "| row | Lift | Stack | PickPlaceCan | Door | average | delta vs two_stage |"
    assert len(md) == 2 + len(ROWS) + 2 and md[2].startswith("| two_stage | 0.90 [0.70, 0.97] |")
    assert md[-2] == "" and "delta vs two_stage: paired difference" in md[-1] and "Newcombe" in md[-1]  # named
    assert "Newcombe" in paths["html"].read_text().split("<caption>")[1].split("</caption>")[0]
    assert set(csv["delta_interval"].dropna()) == {"newcombe_hybrid_score"}
    assert paths["html"].read_text().count("<tr data-row=") == len(ROWS)
    assert str(table) == paths["md"].read_text()


def test_a_notice_labels_the_table_in_every_format(tmp_path):
    plain = ablation_table(results(), reference_row="two_stage")
    labelled = ablation_table(results(), reference_row="two_stage", notice="PIPELINE CHECK, not results")
    assert "PIPELINE CHECK" not in str(plain) + plain.to_html()
    assert str(labelled).startswith("> **PIPELINE CHECK, not results**\n\n| row |")
    assert str(labelled).split("\n", 2)[2] == str(plain)  # the label is added, nothing else changes
    assert labelled.to_html().startswith('<p class="notice"><strong>PIPELINE CHECK')
    paths = labelled.save(tmp_path)
    assert paths["md"].read_text().startswith("> **PIPELINE CHECK") and "PIPELINE CHECK" in paths["html"].read_text()


def test_rows_on_other_episodes_get_no_delta():
    df = results({"two_stage": RATES["two_stage"], "joint": RATES["joint"]})
    other = df[df["row"] == "joint"].assign(row="libero", episode_key=lambda d: "libero10/" + d["episode_key"])
    table = ablation_table(pd.concat([df, other]), reference_row="two_stage")
    assert set(table.deltas) == {"joint"} and table.notes["libero"] == "different episodes"
    assert table.cells.set_index("row").loc["libero", "delta vs two_stage"] == "n/a (different episodes)"


def test_horizon_rows_are_those_differing_only_in_video_horizon():
    chosen = horizon_rows(ROWS, "two_stage")
    assert [(r.name, r.video_horizon) for r in chosen] == [("horizon_0", 0), ("horizon_16", 16), ("two_stage", 32)]
    assert horizon_rows(ROWS[:3], "two_stage") == []  # no row differs only in horizon


# ------------------------------------------------------------------------------------------ the browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars"]

# Appended to a copy of the report: measures what the browser laid out and writes it into the DOM.
PROBE = """<script>
const box = e => { const r = e.getBoundingClientRect(); return {x: r.x, y: r.y, w: r.width, h: r.height}; };
const out = {charts: {}, tableRows: [...document.querySelectorAll('table.ablation tbody tr')].map(t => t.dataset.row),
             external: [...document.querySelectorAll('[src],link[href],script[src]')].length};
for (const svg of document.querySelectorAll('svg.chart')) {
  out.charts[svg.id] = {box: box(svg), marks: [...svg.querySelectorAll('.mark')].map(m =>
      ({cls: m.getAttribute('class'), data: {...m.dataset}, box: box(m)})),
    zero: [...svg.querySelectorAll('.zero')].map(box)};
}
document.body.setAttribute('data-probe', JSON.stringify(out));
</script>"""


def chromium() -> str:
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        pytest.fail("headless Chromium is needed to check the HTML report: run `apt-get install -y chromium` "
                    "(Debian/Ubuntu, ~45 s; see README 'make test'), then re-run this test", pytrace=False)
    return CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")


def render(page: Path, tmp: Path, *args: str, width: int = 1280, height: int = 2600) -> subprocess.CompletedProcess:
    return subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp / 'profile'}",
                           f"--window-size={width},{height}", *args, page.as_uri()],
                          capture_output=True, text=True, timeout=120, check=True)


def test_report_renders_in_headless_chromium(tmp_path):
    from PIL import Image

    paths = build_report(results(), ROWS, tmp_path / "report", reference_row="two_stage", title="Smoke ablation",
                         learning=learning())
    page = paths["report"]
    text = page.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?https?:""", text) and "<script" not in text  # self-contained

    probed = tmp_path / "probed.html"
    probed.write_text(text.replace("</body>", PROBE + "</body>"))
    dom = render(probed, tmp_path, "--dump-dom", "--virtual-time-budget=5000").stdout
    probe = json.loads(re.search(r'data-probe="([^"]*)"', dom).group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert probe["external"] == 0
    assert probe["tableRows"] == [r.name for r in ROWS]
    for r in ROWS:
        assert f">{r.name}<" in dom
    charts = probe["charts"]
    assert set(charts) == {"fig-success", "fig-horizon", "fig-transfer", "fig-deltas", "fig-curve-0", "fig-curve-1"}
    for c in charts.values():
        assert c["box"]["w"] > 200 and c["box"]["h"] > 100  # laid out, not collapsed

    # success per row and task: one bar per (row, task) plus the per-row average, heights ~ rates
    bars = charts["fig-success"]["marks"]
    assert len(bars) == len(ROWS) * (len(TASKS) + 1)
    expected = {(r, t): RATES[r][i] for r in RATES for i, t in enumerate(TASKS)} | {(r, "average"): mean(r) for r in RATES}
    assert {(b["data"]["series"], b["data"]["group"]): float(b["data"]["value"]) for b in bars} == pytest.approx(expected)
    full = max(b["box"]["h"] / float(b["data"]["value"]) for b in bars if float(b["data"]["value"]) > 0)
    for b in bars:  # the rendered height is the rate times the axis height
        assert b["box"]["h"] == pytest.approx(float(b["data"]["value"]) * full, abs=1.0)

    # horizon curve: 0 / 16 / 32 steps, left to right, higher success drawn higher
    points = charts["fig-horizon"]["marks"]
    assert [(float(p["data"]["x"]), p["data"]["label"]) for p in points] == [(0, "horizon_0"), (16, "horizon_16"),
                                                                             (32, "two_stage")]
    assert [float(p["data"]["value"]) for p in points] == pytest.approx([mean("horizon_0"), mean("horizon_16"), 0.75])
    xs, ys = [p["box"]["x"] for p in points], [p["box"]["y"] for p in points]
    assert xs == sorted(xs) and ys == sorted(ys, reverse=True)

    # seen vs unseen tasks of the half_tasks row
    transfer = {b["data"]["group"]: float(b["data"]["value"]) for b in charts["fig-transfer"]["marks"]}
    assert transfer == pytest.approx({"seen": mean("half_tasks", ["Lift", "Stack"]),
                                      "unseen": mean("half_tasks", ["PickPlaceCan", "Door"])})

    # paired deltas: every other row, all worse than two_stage here, drawn left of the zero line
    deltas = charts["fig-deltas"]["marks"]
    assert {d["data"]["label"]: float(d["data"]["value"]) for d in deltas} == pytest.approx(
        {r: mean(r) - mean("two_stage") for r in RATES if r != "two_stage"})
    zero_x = charts["fig-deltas"]["zero"][0]["x"]
    for d in deltas:
        assert float(d["data"]["lo"]) <= float(d["data"]["value"]) <= float(d["data"]["hi"])
        assert d["box"]["x"] + d["box"]["w"] / 2 < zero_x

    # learning curves: one chart per training stage, a point per reported value (NaN draws none); stage 1's
    # loss spans two decades, so its axis is logarithmic: equal ratios are equal heights
    s1, s2 = charts["fig-curve-0"]["marks"], charts["fig-curve-1"]["marks"]
    assert [(float(m["data"]["x"]), float(m["data"]["value"])) for m in s1] == [(50, 1.0), (100, 0.1), (150, 0.03),
                                                                                 (200, 0.01)]
    ys = [m["box"]["y"] for m in s1]
    assert ys == sorted(ys) and ys[1] - ys[0] == pytest.approx(ys[3] - ys[1], abs=1.5)  # 1 -> 0.1 -> 0.01
    assert sorted((m["data"]["series"], float(m["data"]["x"])) for m in s2) == sorted(
        [("loss", x) for x in (50, 100, 150, 200)] + [(k, x) for k in ("val_action_mse", "val_action_mse_mean")
                                                      for x in (100, 200)])
    assert "(log)" not in text.split('id="fig-curve-1"')[1].split("</svg>")[0]

    # the screenshot: the page painted, with the first row's bar color on it
    shot = tmp_path / "report.png"
    render(page, tmp_path, f"--screenshot={shot}", width=1280, height=2600)
    img = Image.open(shot).convert("RGB")
    assert img.size == (1280, 2600)
    colors = img.getcolors(maxcolors=1 << 20)
    blue = sum(n for n, rgb in colors if rgb == (0x1F, 0x77, 0xB4))
    white = sum(n for n, rgb in colors if rgb == (255, 255, 255))
    assert blue > 2000 and white < 0.98 * 1280 * 2600
    if os.environ.get("VP_REPORT_SCREENSHOT"):
        shutil.copy(shot, os.environ["VP_REPORT_SCREENSHOT"])


def _results_dir(out: Path, episodes: pd.DataFrame, rows: list[RowInfo] = ROWS) -> Path:
    """What `sweep_ablations.py --results` writes, from synthetic episodes (the checker's input)."""
    episodes = episodes[episodes.row.isin([r.name for r in rows])]
    build_report(episodes, rows, out, reference_row="two_stage", title="t")
    episodes.to_parquet(out / "episodes.parquet", index=False)
    (out / "stages.json").write_text(json.dumps({"stages": [
        {"stage": "stage1/abc", "kind": "stage1", "status": "reused", "ran_seconds": 12.0, "rows": ["two_stage"]}]
        + [{"stage": f"eval/{r.name}", "kind": "eval", "status": "done", "ran_seconds": 3.0, "rows": [r.name]}
           for r in rows]}))
    (out / "provenance.json").write_text(json.dumps({
        "command": "python jobs/sweep_ablations.py --sweep s.yaml", "rows": [r.name for r in rows],
        "reference_row": "two_stage", "name": "t",
        "eval": {"episodes_per_task": N, "adaptive": None},
        "tags": {"videopolicy.git.sha": "0" * 40, **{f"videopolicy.version.{p}": "1.0" for p in
                                                    ("torch", "diffusers", "ray", "mujoco", "robosuite", "mlflow")}}}))
    return out


def test_results_check_recomputes_the_table_from_the_episodes(tmp_path):
    """check_results passes a consistent directory and names each kind of inconsistency."""
    from videopolicy.report.results import check_results

    good = _results_dir(tmp_path / "good", results())
    assert check_results(good) == []

    tampered = _results_dir(tmp_path / "tampered", results())
    csv = pd.read_csv(tampered / "ablation.csv")
    csv.loc[csv.row == "joint", "Lift_hi"] += 0.01  # an interval that the episodes do not give
    csv.loc[csv.row == "horizon_0", "delta"] = 0.5
    csv.to_csv(tampered / "ablation.csv", index=False)
    problems = check_results(tampered)
    assert any("row joint, Lift_hi" in p for p in problems) and any("row horizon_0: delta" in p for p in problems)

    eps = results()
    dropped = eps.drop(eps[(eps.row == "joint") & (eps.task == "Door")].index[:3])
    short = _results_dir(tmp_path / "short", dropped)
    problems = check_results(short)
    assert any("row joint: its episodes differ" in p for p in problems)
    assert any("row joint, Door: 17 episodes" in p for p in problems)

    curves = learning()[lambda c: c.stage == "stage1/aaa"].assign(stage="stage1/abc")  # stages.json's stage
    curves.to_csv(good / "curves.csv", index=False)
    assert check_results(good) == []
    curves.loc[3, "step"] = 100  # a step reported twice
    curves.loc[2, "loss"] = math.inf
    pd.concat([curves, learning()[lambda c: c.stage == "stage2/bbb"]]).to_csv(good / "curves.csv", index=False)
    problems = check_results(good)
    assert any("stage stage1/abc: steps" in p for p in problems), problems
    assert any("stage stage1/abc: non-finite training loss" in p for p in problems)
    assert any("stage stage2/bbb is not a training stage" in p for p in problems)
    (good / "curves.csv").unlink()

    prov = json.loads((good / "provenance.json").read_text())
    prov["tags"]["videopolicy.git.sha"] = "unknown"
    prov["rows"] = prov["rows"][:-1]
    (good / "provenance.json").write_text(json.dumps(prov))
    (good / "report.html").unlink()
    assert "missing ['report.html']" in check_results(good)[0]
    build_report(results(), ROWS, good, reference_row="two_stage", title="t")
    problems = check_results(good)
    assert any("git SHA 'unknown'" in p for p in problems) and any("provenance.json rows" in p for p in problems)


def test_assembled_results_equal_one_sweeps_and_refuse_unpaired_parts(tmp_path):
    """Rows from two parts (two_stage in both) make the same table as one sweep of every row; a part whose
    episodes differ, whose copy of a shared row disagrees, or whose row ran other stages than the sweep
    plans, is refused with what differs and where."""
    from videopolicy.report.assemble import AssemblyError, assemble_results
    from videopolicy.report.results import check_results

    tags = {"videopolicy.git.sha": "1" * 40, **{f"videopolicy.version.{p}": "1.0" for p in
                                                ("torch", "diffusers", "ray", "mujoco", "robosuite", "mlflow")}}
    whole = _results_dir(tmp_path / "whole", results())
    a = _results_dir(tmp_path / "a", results(), ROWS[:3])
    b = _results_dir(tmp_path / "b", results(), [ROWS[0]] + ROWS[3:])
    out = assemble_results([a, b], tmp_path / "out", ROWS, "two_stage", "python jobs/assemble_results.py", tags)
    assert check_results(out) == []
    assert pd.read_csv(out / "ablation.csv").equals(pd.read_csv(whole / "ablation.csv"))
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["rows_from"] == {"two_stage": str(a), "joint": str(a), "no_video_tuning": str(a),
                                 "half_tasks": str(b), "horizon_0": str(b), "horizon_16": str(b)}
    assert {s["stage"] for s in json.loads((out / "stages.json").read_text())["stages"]} == {
        "stage1/abc", *(f"eval/{r.name}" for r in ROWS)}

    eps = results()
    eps.loc[(eps.row == "two_stage") & (eps.task == "Door") & (eps["index"] == 19), "success"] = True  # was False
    other = _results_dir(tmp_path / "other", eps, [ROWS[0]] + ROWS[3:])
    with pytest.raises(AssemblyError, match=r"row 'two_stage': .* hold different outcomes"):
        assemble_results([a, other], tmp_path / "x", ROWS, "two_stage", "c", tags)
    eps = results()
    eps.loc[eps.row.isin(["half_tasks", "horizon_0", "horizon_16"]), "protocol_hash"] = "h2"  # another protocol
    moved = _results_dir(tmp_path / "moved", eps, [ROWS[0]] + ROWS[3:])
    with pytest.raises(AssemblyError, match=r"different protocol hash or seed across rows \['half_tasks'"):
        assemble_results([a, moved], tmp_path / "y", ROWS, "two_stage", "c", tags)

    # with the sweep's plan: each row's part must have run the planned stages (ids name their configs)
    planned = {r.name: {"eval": (f"eval/{r.name}", "")} for r in ROWS}
    planned["two_stage"]["stage1"] = ("stage1/abc", "video U-Net, 200 steps")
    assert check_results(assemble_results([a, b], tmp_path / "p", ROWS, "two_stage", "c", tags, planned)) == []
    planned["two_stage"]["stage1"] = ("stage1/def", "video U-Net, 2000 steps")  # the sweep file's budget moved
    with pytest.raises(AssemblyError, match=r"row 'two_stage' in .*a: its stage1 is stage1/abc, the sweep plans "
                                            r"stage1/def \('video U-Net, 2000 steps'\): that part ran another"):
        assemble_results([a, b], tmp_path / "q", ROWS, "two_stage", "c", tags, planned)
    planned["two_stage"].pop("stage1")  # a plan without the stage the part ran
    with pytest.raises(AssemblyError, match=r"its stage1 is stage1/abc, the sweep plans none"):
        assemble_results([a, b], tmp_path / "r", ROWS, "two_stage", "c", tags, planned)


def test_compare_results_pairs_rows_of_two_directories_as_one_table_would(tmp_path):
    """Two rows from two results directories, even under one row name: the same per-task rates and paired
    delta as one table holding both; other episodes, a missing row or the row against itself are refused."""
    import importlib.util

    from videopolicy.report.assemble import AssemblyError, compare_results

    whole = _results_dir(tmp_path / "whole", results())
    a = _results_dir(tmp_path / "a", results(), ROWS[:1])
    b = _results_dir(tmp_path / "b", results(), [ROWS[0], ROWS[1]])
    c = compare_results((a, "two_stage"), (b, "joint"))
    table = pd.read_csv(whole / "ablation.csv").set_index("row")
    assert c["tasks"] == TASKS
    for label, row in ((c["a"], "two_stage"), (c["b"], "joint")):
        for t in [*TASKS, "average"]:
            assert c["rates"][label][t] == pytest.approx(tuple(table.loc[row, [t, f"{t}_lo", f"{t}_hi"]]))
    d = c["paired"]["average"]  # the table's delta is joint minus two_stage
    assert (d.delta, d.lo, d.hi) == pytest.approx((-table.loc["joint", "delta"], -table.loc["joint", "delta_hi"],
                                                   -table.loc["joint", "delta_lo"]))
    assert d.delta == pytest.approx(mean("two_stage") - mean("joint")) and (d.a_only, d.b_only) == (10, 0)
    assert c["paired"]["Door"].delta == pytest.approx(0.2) and c["paired"]["Door"].n_pairs == N

    eps = results()  # the same row name in another study: Door's last two episodes now won
    eps.loc[(eps.row == "two_stage") & (eps.task == "Door") & (eps["index"] >= 18), "success"] = True
    later = _results_dir(tmp_path / "later", eps, ROWS[:1])
    d = compare_results((later, "two_stage"), (a, "two_stage"))["paired"]
    assert (d["Door"].a_only, d["Door"].b_only, d["Lift"].delta) == (2, 0, 0.0)
    assert d["average"].delta == pytest.approx(2 / N / len(TASKS))

    eps = results()
    eps.loc[eps.row == "joint", "seed"] += 1  # other scenes under the same keys
    moved = _results_dir(tmp_path / "moved", eps, [ROWS[0], ROWS[1]])
    with pytest.raises(AssemblyError, match=r"different protocol hash or seed .*moved"):
        compare_results((a, "two_stage"), (moved, "joint"))
    other = _results_dir(tmp_path / "other", results().assign(protocol_hash="h2"), [ROWS[0], ROWS[1]])
    with pytest.raises(AssemblyError, match=r"different protocol hash or seed"):  # same tasks, other protocol
        compare_results((a, "two_stage"), (other, "joint"))
    with pytest.raises(AssemblyError, match=r"no row 'jiont' \(rows there: \['joint', 'two_stage'\]\)"):
        compare_results((a, "two_stage"), (b, "jiont"))
    with pytest.raises(AssemblyError, match="compared with itself"):
        compare_results((a, "two_stage"), (a, "two_stage"))

    eps = results()  # a run of Lift only: its protocol hash differs (it covers the task list), seeds match
    lift = _results_dir(tmp_path / "lift", eps[eps.task == "Lift"].assign(protocol_hash="h-lift"), ROWS[:2])
    prov = json.loads((lift / "provenance.json").read_text())
    for d, tasks in ((lift, ["Lift"]), (b, TASKS)):
        p = json.loads((d / "provenance.json").read_text())
        (d / "provenance.json").write_text(json.dumps({**p, "eval": {**p["eval"], "tasks": tasks}}))
    c = compare_results((b, "two_stage"), (lift, "joint"))
    assert c["tasks"] == ["Lift"] and "seed matches" in c["caveat"]
    assert c["paired"]["average"].delta == pytest.approx(0.1) and c["paired"]["average"].n_pairs == N
    assert compare_results((a, "two_stage"), (whole, "joint"))["caveat"] is None  # the same task lists
    short = eps[(eps.task == "Lift") & (eps["index"] < N - 2)].assign(protocol_hash="h-lift")
    prov["eval"]["episodes_per_task"] = N - 2
    fewer = _results_dir(tmp_path / "fewer", short, ROWS[:2])
    (fewer / "provenance.json").write_text(json.dumps({**prov, "eval": {**prov["eval"], "tasks": ["Lift"]}}))
    with pytest.raises(AssemblyError, match=r"not evaluated on the same episodes: 2 episode\(s\) only in"):
        compare_results((b, "two_stage"), (fewer, "joint"))

    spec = importlib.util.spec_from_file_location("job_compare_results", ROOT / "jobs" / "compare_results.py")
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    assert job.main([f"{a}:two_stage", f"{b}:joint"]) == 0
    assert job.main([f"{a}:two_stage", f"{moved}:joint"]).startswith("error: episode robosuite/")
    with pytest.raises(SystemExit):
        job.main([str(a), f"{b}:joint"])  # no :ROW
