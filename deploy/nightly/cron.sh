#!/usr/bin/env bash
# Nightly regression run from cron against a LONG-LIVED Ray cluster (`ray up cluster.yaml`, or a KubeRay
# RayCluster behind a `kubectl port-forward`). A thin wrapper: all the logic is in jobs/nightly.py, which
# submits sweeps/nightly.yaml as a Ray job (submission id nightly-<UTC date>-<HHMMSS>), waits up to
# --timeout-s and STOPS the job through the Jobs API when it runs over (killing this script would not),
# then compares with the last good night in MLflow and tags the sweep run videopolicy.nightly_status.
#
# crontab line (`crontab -e` as the checkout's owner; cron reads the host clock, the run id is UTC):
#   30 1 * * *  /opt/videopolicy/deploy/nightly/cron.sh >/dev/null 2>&1
# Output goes to the dated log below, not to cron mail; alert on the exit status instead (e.g. wrap it in
# your monitor's check-in command).
#
# Where this runs: on the cluster-launcher head itself (the dashboard binds 127.0.0.1:8265 there, see
# cluster.yaml), or on any box with a tunnel to it, `ray dashboard cluster.yaml` (forwards 127.0.0.1:8265
# over SSH). The dashboard is never exposed publicly.
#
# Configuration (environment, or the env file below; keep it chmod 600, it is sourced as shell):
#   NIGHTLY_ENV_FILE       default ~/.config/videopolicy/nightly.env
#   RAY_DASHBOARD_ADDRESS  default http://127.0.0.1:8265
#   MLFLOW_TRACKING_URI    required: the shared MLflow server both the job and the comparison use
#   RAY_AUTH_MODE          default token (must match the cluster's)
#   RAY_AUTH_TOKEN         else read from RAY_AUTH_TOKEN_FILE (default ~/.ray/videopolicy_auth_token, the
#                          file cluster.yaml mounts on every node)
#   NIGHTLY_TIMEOUT_S      default 21600 (6 h, jobs/nightly.py's default)
#   NIGHTLY_STORE          optional stage-store root on the cluster; the run uses $NIGHTLY_STORE/<date>.
#                          Unset: jobs/nightly.py's default, <base.store>/nightly/<date>, with ~ expanded
#                          HERE, so set it when this host's home differs from the cluster nodes'.
#   NIGHTLY_LOG_DIR        default ~/.local/state/videopolicy/nightly (outside the checkout)
#   VIDEOPOLICY_CHECKOUT   default: the checkout holding this script
#
# Exit status (propagated from jobs/nightly.py):
#   0  good night (tagged good: the next baseline)
#   1  failed job or row, regression, or config error (tagged regressed when the sweep run exists)
#   2  timeout: the job ran past NIGHTLY_TIMEOUT_S and was stopped with the Jobs API (`ray job stop`).
#      jobs/nightly.py documents 2 but currently exits 1 on a timeout (sys.exit with a message); this
#      script maps that case to 2 from its log line "timed out after".
#   3  not run: missing configuration, no venv, or the previous night still running (lock held)
set -uo pipefail

checkout="${VIDEOPOLICY_CHECKOUT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
cd "$checkout" || exit 3

env_file="${NIGHTLY_ENV_FILE:-$HOME/.config/videopolicy/nightly.env}"
if [[ -f "$env_file" ]]; then
  set -a
  # shellcheck disable=SC1090
  source "$env_file"
  set +a
fi

export RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}"
if [[ "$RAY_AUTH_MODE" == token && -z "${RAY_AUTH_TOKEN:-}" ]]; then
  token_file="${RAY_AUTH_TOKEN_FILE:-$HOME/.ray/videopolicy_auth_token}"
  if [[ ! -r "$token_file" ]]; then
    echo "nightly: RAY_AUTH_MODE=token but no RAY_AUTH_TOKEN and no readable $token_file" >&2
    exit 3
  fi
  RAY_AUTH_TOKEN="$(tr -d '[:space:]' <"$token_file")"
  export RAY_AUTH_TOKEN
fi
if [[ -z "${MLFLOW_TRACKING_URI:-}" ]]; then
  echo "nightly: MLFLOW_TRACKING_URI is not set (the cluster job and the comparison must share a server)" >&2
  exit 3
fi
export MLFLOW_TRACKING_URI
export RAY_DASHBOARD_ADDRESS="${RAY_DASHBOARD_ADDRESS:-http://127.0.0.1:8265}"
timeout_s="${NIGHTLY_TIMEOUT_S:-21600}"
python=".venv/bin/python"
if [[ ! -x "$python" ]]; then
  echo "nightly: $checkout/$python missing; run 'make install' in the checkout" >&2
  exit 3
fi

date_utc="$(date -u +%Y%m%d)"  # one date for the run id, the store and the log name
log_dir="${NIGHTLY_LOG_DIR:-$HOME/.local/state/videopolicy/nightly}"
mkdir -p "$log_dir" || exit 3
log="$log_dir/nightly-$date_utc.log"

# One night at a time: a run still going when the next one fires is left alone, not doubled.
if command -v flock >/dev/null; then
  exec 9>"$log_dir/.lock"
  if ! flock -n 9; then
    echo "$(date -u +%FT%TZ) nightly: previous run still holds $log_dir/.lock; not starting" | tee -a "$log" >&2
    exit 3
  fi
fi

args=(jobs/nightly.py --sweep sweeps/nightly.yaml --address "$RAY_DASHBOARD_ADDRESS" --timeout-s "$timeout_s"
      --date "$date_utc")
if [[ -n "${NIGHTLY_STORE:-}" ]]; then
  args+=(--store "${NIGHTLY_STORE%/}/$date_utc")
fi

{
  echo "=== $(date -u +%FT%TZ) nightly $date_utc: $checkout @ $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "=== address $RAY_DASHBOARD_ADDRESS, timeout ${timeout_s}s, auth $RAY_AUTH_MODE"
} >>"$log"
"$python" "${args[@]}" >>"$log" 2>&1
rc=$?
if [[ $rc -eq 1 ]] && tail -n 5 "$log" | grep -q "timed out after"; then
  rc=2
fi
echo "=== $(date -u +%FT%TZ) nightly $date_utc: exit $rc" >>"$log"
exit "$rc"
