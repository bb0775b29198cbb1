"""Nightly regression run: submit sweeps/nightly.yaml as a Ray job, wait with a timeout, compare with the
last good night in MLflow, exit non-zero on a failed row, a regression or a timeout.

    python jobs/nightly.py --address http://127.0.0.1:8265          # a long-lived cluster (cron, CI runner)
    python jobs/nightly.py                                          # starts a local head, stops it after

Exit codes: 0 good night (tagged as the next baseline), 1 failed job / row or regression, 2 timeout (the
job is stopped with the Jobs API: killing this client would not stop it).
The job logs to MLFLOW_TRACKING_URI when set (use a shared server on a cluster), else to the lean local
server in the store, which this script then reads.
"""

import datetime
import os
import sys
from pathlib import Path

from videopolicy import cli

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv):
    p = cli.parser(__doc__)
    cli.add_config_args(p, sweep="sweeps/nightly.yaml", row=False, store=False)
    p.add_argument("--address", default=os.environ.get("RAY_DASHBOARD_ADDRESS"),
                   help="Ray dashboard address of the cluster (default: start a local head)")
    p.add_argument("--date", default=datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d"))
    p.add_argument("--store", default=None, help="default: <base.store>/nightly/<date> (a fresh pipeline each night)")
    p.add_argument("--timeout-s", type=float, default=6 * 3600)
    p.add_argument("--entrypoint", default=None, help="override the job command (tests of the timeout path)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)

    # 1. Validate before submitting anything; the job gets the same file and the same --set overrides.
    sweep = cli.load_sweep_args(args)
    run_id = f"{sweep.name}-{args.date}"
    store = args.store or f"{Path(sweep.base.store).expanduser()}/nightly/{args.date}"
    entry = (args.entrypoint.split() if args.entrypoint else
             ["python", "jobs/sweep_ablations.py", "--sweep", args.sweep, "--store", store, "--run-id", run_id]
             + [f"--set={s}" for s in args.sets])

    # 2. Submit with a dated submission id and wait, stopping the job if it runs over.
    status, submission = submit(args, sweep, entry, store, run_id)
    if status == "TIMEOUT":
        print(f"nightly {run_id}: timed out after {args.timeout_s:.0f}s; job {submission} stopped", file=sys.stderr)
        return 2
    if args.entrypoint:
        return 0 if status == "SUCCEEDED" else 1

    # 3. Compare with the last good night (paired: the nightly sweep's episodes never change).
    return compare_nights(sweep, store, run_id, status)


def submit(args, sweep, entry: list[str], store: str, run_id: str) -> tuple[str, str]:
    """Submit `entry` to the given cluster, or to a local head started (and stopped) here; wait for it.
    Returns the job's final status (or "TIMEOUT": the job was stopped) and its submission id."""
    from videopolicy.local_cluster import LocalHead, submit_and_wait, submitter_env

    env_vars = submitter_env()
    if os.environ.get("MLFLOW_TRACKING_URI"):
        env_vars["MLFLOW_TRACKING_URI"] = os.environ["MLFLOW_TRACKING_URI"]
    head = None  # a local head this script started (and so stops)
    auth = {}  # a local head's auth (its token, loopback); a given cluster's comes from this environment
    address = args.address
    if not address:
        local = LocalHead.for_checkout(ROOT, store=store)
        if not local.attach():
            local.start()
            head = local
        address = local.address
        env_vars.update(local.job_env())
        auth = {"headers": local.auth_headers(), "client_env": local.client_env()}
        entry = [sys.executable if entry[0] == "python" else entry[0], *entry[1:]]
    else:
        env_vars["RAY_AUTH_MODE"] = os.environ.setdefault("RAY_AUTH_MODE", sweep.base.ray.auth_mode)
    submission = f"{run_id}-{datetime.datetime.now(datetime.timezone.utc).strftime('%H%M%S')}"
    try:
        return submit_and_wait(address, entry, {"working_dir": str(ROOT), "env_vars": env_vars}, submission,
                               args.timeout_s, **auth), submission
    finally:
        if head is not None:
            head.stop()


def compare_nights(sweep, store: str, run_id: str, status: str):
    """Tonight's rows against the last good night's; tags tonight good (the next baseline) or regressed."""
    from mlflow import MlflowClient

    from videopolicy.sweep.nightly import STATUS_TAG, compare, last_good_night, sweep_episodes
    from videopolicy.tracking import ensure_tracking

    client = MlflowClient(os.environ.get("MLFLOW_TRACKING_URI") or ensure_tracking(store))
    exp = client.get_experiment_by_name(sweep.name)
    found = client.search_runs([exp.experiment_id], filter_string=f"tags.`videopolicy.sweep` = '{run_id}' and "
                               "tags.`videopolicy.level` = 'sweep'") if exp else []
    if not found:
        return f"nightly {run_id}: job {status.lower()} but no sweep run {run_id!r} in MLflow"
    tonight_id = found[0].info.run_id
    baseline_id = last_good_night(client, sweep.name, run_id)
    verdicts = compare(sweep_episodes(client, tonight_id),
                       sweep_episodes(client, baseline_id) if baseline_id else None,
                       kinds={name: cfg.train.method for name, cfg in sweep.rows})
    print(f"\nnightly {run_id} vs {'run ' + baseline_id if baseline_id else 'no earlier good night'}:")
    for v in verdicts:
        base = "" if v.delta is None else \
            f"  baseline {v.baseline_rate:.2f}  delta {v.delta:+.2f} [{v.lo:+.2f}, {v.hi:+.2f}]"
        print(f"  {v.row:<16} {v.rate:.2f}{base}  {v.problem or 'ok'}")
    bad = status != "SUCCEEDED" or any(v.problem for v in verdicts)
    client.set_tag(tonight_id, STATUS_TAG, "regressed" if bad else "good")
    if bad:
        return f"nightly {run_id}: {'job ' + status.lower() if status != 'SUCCEEDED' else 'regression'}"
    return 0


if __name__ == "__main__":
    sys.exit(main())
