#!/usr/bin/env bash
# Build the isolated RoboCasa environment used by the `robocasa` suite (see deploy/sim/README.md).
#
#   deploy/sim/install_robocasa.sh [VENV]      # default: $VIDEOPOLICY_ROBOCASA_VENV or <repo>/.venv-robocasa
#
# NOT RUN on the machine this script was written on (no GitHub / Box access there). It follows
# RoboCasa's documented install: robosuite from git (the README insists on its master branch), then
# robocasa from git, `setup_macros`, and `download_kitchen_assets` (~5 GB for v0.2, ~10 GB for v1.x,
# from utexas.box.com). Needs network access to github.com and utexas.box.com.
#
# Versions: the platform's protocol (task names, per-task horizons, 5 scenes, split "B") is RoboCasa
# v0.1/v0.2's, which the Video Policy paper used. v0.2 pins numba 0.56.4 / numpy 1.23.3, which need
# Python 3.10. Pin the robosuite commit you validated with ROBOSUITE_REF for reproducible numbers.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${1:-${VIDEOPOLICY_ROBOCASA_VENV:-$ROOT/.venv-robocasa}}"
PYTHON="${PYTHON:-python3.10}"
ROBOSUITE_URL="${ROBOSUITE_URL:-https://github.com/ARISE-Initiative/robosuite.git}"
ROBOSUITE_REF="${ROBOSUITE_REF:-master}"
ROBOCASA_URL="${ROBOCASA_URL:-https://github.com/robocasa/robocasa.git}"
ROBOCASA_REF="${ROBOCASA_REF:-v0.2}"
SRC="${SRC:-$VENV/src}"
ASSETS="${ASSETS:-default}"   # "default" = download_kitchen_assets' default set; "skip" = already present
STAMP="$VENV/.videopolicy-sim-robocasa"

if [[ -f "$STAMP" && "${FORCE:-0}" != "1" ]]; then
    echo "RoboCasa environment already built: $VENV ($(cat "$STAMP")); FORCE=1 to rebuild"
    exit 0
fi
command -v git >/dev/null || { echo "git is required" >&2; exit 1; }
command -v "$PYTHON" >/dev/null || { echo "$PYTHON not found (RoboCasa $ROBOCASA_REF wants Python 3.10; set PYTHON=...)" >&2; exit 1; }

echo "building RoboCasa environment in $VENV (robosuite@$ROBOSUITE_REF, robocasa@$ROBOCASA_REF)"
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
RS_SHA=$(fetch "$ROBOSUITE_URL" "$ROBOSUITE_REF" "$SRC/robosuite")
RC_SHA=$(fetch "$ROBOCASA_URL" "$ROBOCASA_REF" "$SRC/robocasa")
"${PIP[@]}" install -q -e "$SRC/robosuite"
"${PIP[@]}" install -q -e "$SRC/robocasa"

export MUJOCO_GL="${MUJOCO_GL:-egl}" PYOPENGL_PLATFORM="${PYOPENGL_PLATFORM:-${MUJOCO_GL:-egl}}"
# robosuite / robocasa private macro files (non-interactive)
"$VENV/bin/python" -m robocasa.scripts.setup_macros || true
if [[ "$ASSETS" != "skip" ]]; then
    # the script asks once "Proceed? (y/n)"
    echo y | "$VENV/bin/python" -m robocasa.scripts.download_kitchen_assets
fi

# Smoke check through the platform's bridge server: the 24 atomic tasks are registered.
PYTHONPATH="$ROOT/platform" "$VENV/bin/python" - <<'PY'
from videopolicy.sim.bridge.server import backend_info
info = backend_info("robocasa")
tasks = ["PnPCounterToCab", "OpenDrawer", "TurnOnStove", "CoffeePressButton", "TurnOffMicrowave"]
missing = [t for t in tasks if t not in info["registered"]]
assert not missing, f"not registered: {missing}"
print("RoboCasa ok:", info["versions"])
PY
"$VENV/bin/python" -m pip freeze > "$VENV/requirements.lock"
echo "robosuite@$RS_SHA robocasa@$RC_SHA built $(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$STAMP"
du -sh "$VENV"
