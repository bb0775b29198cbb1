#!/usr/bin/env bash
# Build the isolated MimicGen environment used by the `mimicgen` suite (see deploy/sim/README.md).
#
#   deploy/sim/install_mimicgen.sh [VENV]      # default: $VIDEOPOLICY_MIMICGEN_VENV or <repo>/.venv-mimicgen
#
# NOT RUN on the machine this script was written on (no GitHub access there). It follows MimicGen's
# documented install: robosuite 1.4.1 (MimicGen "does not support robosuite v1.5+"), robomimic from
# git at the commit MimicGen's docs name (after v0.3.0, not on PyPI), mimicgen from git, and
# mujoco 2.3.2 ("2.3.7 changes the dynamics of the robot arm significantly").
# WITH_TASK_ZOO=1 also installs robosuite-task-zoo (HammerCleanup_*, Kitchen_*), with its
# install_requires stripped (they pull mujoco-py).
# Datasets (for training, not needed to evaluate) come from the HF Hub: amandlek/mimicgen_datasets,
# e.g. `$VENV/bin/python -m mimicgen.scripts.download_datasets --dataset_type core --tasks stack_d0`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${1:-${VIDEOPOLICY_MIMICGEN_VENV:-$ROOT/.venv-mimicgen}}"
PYTHON="${PYTHON:-python3.10}"
ROBOSUITE_SPEC="${ROBOSUITE_SPEC:-robosuite==1.4.1}"
MUJOCO_SPEC="${MUJOCO_SPEC:-mujoco==2.3.2}"
ROBOMIMIC_URL="${ROBOMIMIC_URL:-https://github.com/ARISE-Initiative/robomimic.git}"
ROBOMIMIC_REF="${ROBOMIMIC_REF:-d0b37cf}"
MIMICGEN_URL="${MIMICGEN_URL:-https://github.com/NVlabs/mimicgen.git}"
MIMICGEN_REF="${MIMICGEN_REF:-HEAD}"   # default branch head; pin a commit for reproducible numbers
TASK_ZOO_URL="${TASK_ZOO_URL:-https://github.com/ARISE-Initiative/robosuite-task-zoo.git}"
TASK_ZOO_REF="${TASK_ZOO_REF:-HEAD}"
SRC="${SRC:-$VENV/src}"
STAMP="$VENV/.videopolicy-sim-mimicgen"

if [[ -f "$STAMP" && "${FORCE:-0}" != "1" ]]; then
    echo "MimicGen environment already built: $VENV ($(cat "$STAMP")); FORCE=1 to rebuild"
    exit 0
fi
command -v git >/dev/null || { echo "git is required" >&2; exit 1; }
command -v "$PYTHON" >/dev/null || { echo "$PYTHON not found (set PYTHON=...; MimicGen documents Python 3.8-3.10)" >&2; exit 1; }

echo "building MimicGen environment in $VENV ($ROBOSUITE_SPEC, $MUJOCO_SPEC, robomimic@$ROBOMIMIC_REF, mimicgen@$MIMICGEN_REF)"
test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip)
"${PIP[@]}" install -q -U pip wheel setuptools
mkdir -p "$SRC"

fetch() {  # fetch <url> <ref> <dir>
    if [[ ! -d "$3/.git" ]]; then git clone --quiet "$1" "$3"; fi
    git -C "$3" fetch --quiet --tags origin
    git -C "$3" checkout --quiet "$2"
    git -C "$3" rev-parse HEAD
}
"${PIP[@]}" install -q "$ROBOSUITE_SPEC" "$MUJOCO_SPEC"
RM_SHA=$(fetch "$ROBOMIMIC_URL" "$ROBOMIMIC_REF" "$SRC/robomimic")
MG_SHA=$(fetch "$MIMICGEN_URL" "$MIMICGEN_REF" "$SRC/mimicgen")
"${PIP[@]}" install -q -e "$SRC/robomimic"
"${PIP[@]}" install -q -e "$SRC/mimicgen"
ZOO=""
if [[ "${WITH_TASK_ZOO:-0}" == "1" ]]; then
    ZOO_SHA=$(fetch "$TASK_ZOO_URL" "$TASK_ZOO_REF" "$SRC/robosuite-task-zoo")
    "${PIP[@]}" install -q --no-deps -e "$SRC/robosuite-task-zoo"
    ZOO=" robosuite-task-zoo@$ZOO_SHA"
fi
# robomimic / mimicgen may have pulled another mujoco: re-pin the documented one
"${PIP[@]}" install -q "$MUJOCO_SPEC"

export MUJOCO_GL="${MUJOCO_GL:-egl}" PYOPENGL_PLATFORM="${PYOPENGL_PLATFORM:-${MUJOCO_GL:-egl}}"
PYTHONPATH="$ROOT/platform" "$VENV/bin/python" - <<'PY'
from videopolicy.sim.bridge.server import backend_info
info = backend_info("mimicgen")
missing = [t for t in ("Stack_D0", "Stack_D1", "Coffee_D0", "Threading_D0") if t not in info["registered"]]
assert not missing, f"not registered: {missing}"
print("MimicGen ok:", info["versions"])
PY
"$VENV/bin/python" -m pip freeze > "$VENV/requirements.lock"
echo "$ROBOSUITE_SPEC $MUJOCO_SPEC robomimic@$RM_SHA mimicgen@$MG_SHA$ZOO built $(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$STAMP"
du -sh "$VENV"
