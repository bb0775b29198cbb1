"""Errors a user meets before anything runs (issue 12): each names the file, the place and the fix.

- a YAML syntax error in a sweep file names the file, line and column (not "<unicode string>");
- `rows: []` is refused; a file without `rows` runs its base as row 'base', and the driver says so;
- `--plan` marks the demo files that are missing on this machine;
- jobs/build_clips.py validates given demo files before it starts Ray.
No Ray is started by these tests (the last one checks that the job never reaches Ray).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from videopolicy.config import ConfigError, load_sweep
from videopolicy.data.synthetic import write_moving_block_demos

ROOT = Path(__file__).resolve().parents[1]
CAMS = ["agentview", "robot0_eye_in_hand"]


def test_yaml_syntax_error_names_file_line_and_column(tmp_path):
    bad = tmp_path / "sweep.yaml"
    bad.write_text("name: x\nbase:\n  demos:\n    tasks: [Lift\n  clips: {}\n")  # unclosed list
    with pytest.raises(ConfigError) as e:
        load_sweep(bad)
    msg = str(e.value)
    assert "<unicode string>" not in msg
    assert f"{bad}, line 5, column 8: not valid YAML: expected ',' or ']'" in msg, msg
    assert "that starts at line 4" in msg and "  clips: {}\n" in msg  # where it began, the line itself

    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="the top level must be a mapping"):
        load_sweep(bad)


def _plan(sweep: Path, store: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "jobs/sweep_ablations.py", "--sweep", str(sweep), "--plan",
                           "--store", str(store)], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_empty_rows_are_refused_and_a_file_without_rows_says_what_runs(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("name: x\nbase: {}\nrows: []\n")
    with pytest.raises(ConfigError) as e:
        load_sweep(empty)
    assert "rows: empty: a sweep needs at least one row" in str(e.value) and "delete the `rows` key" in str(e.value)

    plain = tmp_path / "plain.yaml"
    plain.write_text("name: x\nbase: {}\n")
    sweep = load_sweep(plain)
    assert [n for n, _ in sweep.rows] == ["base"] and sweep.implicit_base_row
    out = _plan(plain, tmp_path / "store")
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"{plain}: no `rows` in the file: its base config runs as one row named 'base'" in out.stdout


def test_plan_marks_demo_files_missing_here(tmp_path):
    present = write_moving_block_demos(tmp_path / "Lift.hdf5", "Lift", 2, 20, 0, tuple(CAMS), 64)
    missing = tmp_path / "gone" / "Stack.hdf5"
    sweep = tmp_path / "files.yaml"
    sweep.write_text(json.dumps({"name": "files", "base": {"demos": {"source": "files", "cameras": CAMS, "files": [
        {"path": present, "task": "Lift"}, {"path": str(missing), "task": "Stack"}]}, "clips": {"image_size": 64}},
        "rows": [{"name": "a", "overrides": {}}, {"name": "b", "overrides": {"clips": {"video_horizon": 16}}}]}))
    out = _plan(sweep, tmp_path / "store")
    assert out.returncode == 0, out.stderr[-2000:]  # a plan may be made away from the data
    assert "MISSING 1 demo file(s) on this machine: a run here stops at once" in out.stdout, out.stdout[-2000:]
    assert f"demos.files[1].path: no such file '{missing}' (all rows)" in out.stdout
    assert present not in out.stdout.split("MISSING", 1)[1]


def test_build_clips_validates_demo_files_before_starting_ray(tmp_path):
    good = write_moving_block_demos(tmp_path / "Lift.hdf5", "Lift", 2, 20, 0, tuple(CAMS), 64)
    bad = write_moving_block_demos(tmp_path / "Stack.hdf5", "Stack", 2, 20, 1, tuple(CAMS), 64)
    with h5py.File(bad, "a") as f:
        f["data/demo_1/actions"][3, 2] = np.nan
    store = tmp_path / "store"
    sweep = tmp_path / "files.yaml"
    sweep.write_text(json.dumps({"name": "files", "base": {"store": str(store), "demos": {"source": "files", "files": [
        {"path": good, "task": "Lift"}, {"path": bad, "task": "Stack"}]}, "clips": {"image_size": 64}}}))
    # No auth mode in the environment: had the job reached Ray, init_ray would have made <store>/ray/auth_token.
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH")}
    out = subprocess.run([sys.executable, "jobs/build_clips.py", "--sweep", str(sweep), "--store", str(store)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert f"{bad}:demo_1/actions: " in out.stderr and "NaN/inf" in out.stderr, out.stderr[-3000:]
    assert "nothing was started" in out.stderr
    assert not (store / "ray" / "auth_token").exists(), "build_clips started Ray before validating the demos"
    assert not (store / "clips").exists() and not (store / "frames").exists()
