"""A local Ray head for `ray job submit`, started and stopped by PID (never by process name).

    python jobs/local_cluster.py submit -- python jobs/sweep_ablations.py --sweep sweeps/smoke.yaml
    python jobs/local_cluster.py start | stop | status

`submit` starts the head if needed, submits the entrypoint with this checkout as working dir, follows
the logs, stops the head it started, and exits with the job's status.

The head listens on 127.0.0.1 only and requires the store's token (`<store>/ray/auth_token`, 0600;
made on first start). To use it from another shell, e.g. with `ray job submit`:

    export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=$PWD/.vp_store/ray/auth_token   # what `start` prints
"""

import argparse
import os
import sys
from pathlib import Path

from videopolicy.local_cluster import LocalHead, submitter_env

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["start", "stop", "status", "submit"])
    p.add_argument("--num-cpus", type=int, default=0,
                   help="logical CPUs of the head (0: max(4, cores): oversubscribed on purpose)")
    p.add_argument("--keep", action="store_true", help="submit: leave the head running afterwards")
    p.add_argument("--store", default=os.environ.get("STORE") or str(ROOT / ".vp_store"),
                   help="store whose Ray auth token a new head uses (default: $STORE or ./.vp_store)")
    p.add_argument("entrypoint", nargs=argparse.REMAINDER, help="submit: -- command to run as the job")
    args = p.parse_args(argv)
    if args.action == "submit":
        args.entrypoint = [a for a in args.entrypoint if a != "--"] if args.entrypoint[:1] == ["--"] \
            else args.entrypoint
        if not args.entrypoint:
            p.error("submit needs an entrypoint after --")
    return args


def main(argv=None):
    args = parse_args(argv)
    head = LocalHead.for_checkout(ROOT, num_cpus=args.num_cpus, store=args.store)
    if args.action == "status":
        return status(head)
    if args.action == "start":
        head.start()
        print(f"Ray head at {head.address} (127.0.0.1 only, token auth); stop it with: python jobs/local_cluster.py "
              f"stop\nto submit from another shell: export {' '.join(f'{k}={v}' for k, v in head.job_env().items())}")
        return 0
    if args.action == "stop":
        left = head.stop()
        print("stopped" if not left else f"could not stop pids {left}")
        return 1 if left else 0
    return submit(head, args.entrypoint, keep=args.keep)


def status(head: LocalHead) -> int:
    if head.attach():
        exposed = head.exposed_sockets()
        print(f"head running at {head.address} (temp dir {head.temp_dir}); token {head.token_path}; "
              + (f"EXPOSED beyond loopback: {exposed}" if exposed else "every socket on loopback"))
        return 1 if exposed else 0
    print(f"head not running (temp dir {head.temp_dir})")
    return 0


def submit(head: LocalHead, entry: list[str], keep: bool) -> int:
    """Start the head if needed, run `entry` as a job with this checkout as working dir, stop what it started."""
    if entry[0] == "python":  # the job runs with the head's PATH: use this environment's interpreter
        entry = [sys.executable, *entry[1:]]
    started = not head.attach()
    if started:
        head.start()
    print(f"Ray head at {head.address} (dashboard); submitting: {' '.join(entry)}", flush=True)
    try:
        return head.submit(entry, working_dir=str(ROOT), env_vars=submitter_env())
    finally:
        if started and not keep:
            head.stop()


if __name__ == "__main__":
    sys.exit(main())
