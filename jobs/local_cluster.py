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

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("action", choices=["start", "stop", "status", "submit"])
parser.add_argument("--num-cpus", type=int, default=0, help="logical CPUs of the head (0: max(4, cores): oversubscribed on purpose)")
parser.add_argument("--keep", action="store_true", help="submit: leave the head running afterwards")
parser.add_argument("--store", default=os.environ.get("STORE") or str(ROOT / ".vp_store"),
                    help="store whose Ray auth token a new head uses (default: $STORE or ./.vp_store)")
parser.add_argument("entrypoint", nargs=argparse.REMAINDER, help="submit: -- command to run as the job")
args = parser.parse_args()

head = LocalHead.for_checkout(ROOT, num_cpus=args.num_cpus, store=args.store)
if args.action == "status":
    if head.attach():
        exposed = head.exposed_sockets()
        print(f"head running at {head.address} (temp dir {head.temp_dir}); token {head.token_path}; "
              + (f"EXPOSED beyond loopback: {exposed}" if exposed else "every socket on loopback"))
        sys.exit(1 if exposed else 0)
    print(f"head not running (temp dir {head.temp_dir})")
elif args.action == "start":
    head.start()
    print(f"Ray head at {head.address} (127.0.0.1 only, token auth); stop it with: python jobs/local_cluster.py stop\n"
          f"to submit from another shell: export {' '.join(f'{k}={v}' for k, v in head.job_env().items())}")
elif args.action == "stop":
    left = head.stop()
    print("stopped" if not left else f"could not stop pids {left}")
    sys.exit(1 if left else 0)
else:
    entry = [a for a in args.entrypoint if a != "--"] if args.entrypoint[:1] == ["--"] else args.entrypoint
    if not entry:
        parser.error("submit needs an entrypoint after --")
    if entry[0] == "python":  # the job runs with the head's PATH: use this environment's interpreter
        entry[0] = sys.executable
    started = not head.attach()
    if started:
        head.start()
    print(f"Ray head at {head.address} (dashboard); submitting: {' '.join(entry)}", flush=True)
    try:
        rc = head.submit(entry, working_dir=str(ROOT), env_vars=submitter_env())
    finally:
        if started and not args.keep:
            head.stop()
    sys.exit(rc)
