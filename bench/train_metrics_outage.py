"""Does the training step wait for the tracking server? One run, the server up for the first half, down for
the second.

A TorchTrainer (tiny preset, 1 worker) reports at every step (log_every 1, the worst case for logging).
Its metrics go through rank 0's queue (tracking/train_metrics.py) to the store's lean MLflow server.
When rank 0 has reported step warmup + N, the server is stopped by PID and stays down until the end. The
step time is the interval between consecutive reports (rank 0's progress file), so it includes the
report and the logging. It is compared over the N steps before the stop and the N steps after it.
Afterwards the server is restarted, the queue is flushed, and every step must then be in MLflow exactly once.

For comparison, `--old-call` times what the previous code did on each report while the server was down:
one `MlflowClient.log_batch` with MLflow's default retries (what a Ray Train worker had).

    python bench/train_metrics_outage.py [--steps 20] [--warmup 4] [--old-call] [--out bench/results/train_metrics_outage.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path

from videopolicy.config import RayConfig, config_from_dict
from videopolicy.data.clips import build_clips
from videopolicy.data.synthetic import write_moving_block_demos
from videopolicy.runtime import init_ray
from videopolicy.tracking import Tracker
from videopolicy.tracking.server import TrackingServer
from videopolicy.train.launch import TrainSpec, run_training

CAMS = ("agentview", "robot0_eye_in_hand")

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--warmup", type=int, default=4, help="steps before the measured window")
parser.add_argument("--steps", type=int, default=20, help="measured steps with the server up, then as many down")
parser.add_argument("--old-call", action="store_true", help="also time one default-retry log_batch to the down server")
parser.add_argument("--out", default="bench/results/train_metrics_outage.json")
args = parser.parse_args()
os.environ.pop("MLFLOW_TRACKING_URI", None)
work = Path(tempfile.mkdtemp(prefix="vp_bench_outage_"))
store = work / "store"
total = args.warmup + 2 * args.steps
files = [{"path": write_moving_block_demos(work / f"{t}.hdf5", t, 6, 48, i, CAMS, 64), "task": t}
         for i, t in enumerate(["Lift", "Stack"])]
cfg = config_from_dict({
    "name": "bench-outage", "store": str(store),
    "demos": {"source": "files", "cameras": list(CAMS), "files": files},
    "clips": {"video_horizon": 8, "frame_stride": 4, "action_horizon": 16, "image_size": 64, "val_fraction": 0.2},
    "model": {"preset": "tiny"},
    "train": {"workers": 1, "cpus_per_worker": 1, "stage1": {"steps": total, "batch_size": 2, "log_every": 1,
                                                             "checkpoint_every": total}},
})
init_ray(RayConfig(num_cpus=4), store)
clips = build_clips(cfg, str(store))
tracker = Tracker(store, sweep="bench-outage", experiment="bench-outage")  # starts the store's lean server
server = TrackingServer.for_store(store)
server.attach()
stage = tracker.stage_run("two_stage", "stage1:bench")
for ref in (tracker.sweep_run(), tracker.row_run("two_stage"), stage):
    tracker.start(ref)
progress = work / "progress"
stopped: dict = {}


def stop_server_half_way():
    path = progress / "rank0.jsonl"
    while not stopped:
        lines = path.read_text().splitlines() if path.exists() else []
        if lines and json.loads(lines[-1])["step"] >= args.warmup + args.steps:
            step = json.loads(lines[-1])["step"]
            server.stop()
            stopped["step"] = step
        time.sleep(0.05)


threading.Thread(target=stop_server_half_way, daemon=True).start()
spec = TrainSpec("stage1", cfg, clips.path, name="bench-outage", storage_path=str(work / "runs"),
                 tracking_uri=tracker.uri, mlflow_run_id=tracker.run_id(stage), mlflow_ref=asdict(stage),
                 mlflow_experiment=tracker.experiment, tracking_managed=True, store=str(store),
                 progress_dir=str(progress))
result = run_training(spec)
reports = [json.loads(line) for line in (progress / "rank0.jsonl").read_text().splitlines()]
times = {r["step"]: r["time"] for r in reports}
step_s = {s: times[s] - times[s - 1] for s in times if s - 1 in times}
cut = stopped["step"]
up = [step_s[s] for s in step_s if args.warmup < s <= cut]
down = [step_s[s] for s in step_s if s > cut + 1]  # from the first step that starts with the server down

old_call_s = None
if args.old_call:  # the previous code: MlflowClient.log_batch from the worker, MLflow's default retries
    code = ("import sys, time\nfrom mlflow import MlflowClient\nfrom mlflow.entities import Metric\nt = time.time()\n"
            "try:\n    MlflowClient(sys.argv[1]).log_batch(sys.argv[2], metrics=[Metric('stage1/loss', 1.0, 0, 1)])\n"
            "except Exception:\n    pass\nprint(time.time() - t)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_HTTP_REQUEST")}
    out = subprocess.run([sys.executable, "-c", code, tracker.uri, spec.mlflow_run_id or "0" * 32], env=env,
                         capture_output=True, text=True, timeout=900)
    old_call_s = float(out.stdout.strip().splitlines()[-1])

queued = sum(1 for _ in (store / "mlflow" / "train_outbox").glob("*/*.json"))
t0 = time.monotonic()
flushed = tracker.flush(restart_server=True)
flush_s = time.monotonic() - t0
history = [m.step for m in tracker.client.get_metric_history(tracker.run_id(stage), "stage1/loss")]
TrackingServer.for_store(store).stop()
res = {
    "host": platform.node(), "cpus": os.cpu_count(), "steps_each_phase": args.steps, "report_every": 1,
    "step_s_server_up": {"mean": statistics.mean(up), "median": statistics.median(up), "n": len(up)},
    "step_s_server_down": {"mean": statistics.mean(down), "median": statistics.median(down), "n": len(down)},
    "down_over_up_mean": statistics.mean(down) / statistics.mean(up),
    "down_over_up_median": statistics.median(down) / statistics.median(up),
    "server_stopped_at_step": cut, "reports_queued_at_end": queued,
    "flush_after_restart_s": flush_s, "all_steps_once_in_mlflow": sorted(history) == list(range(1, total + 1)),
    "old_code_one_report_while_down_s": old_call_s,
}
print(json.dumps(res, indent=2))
Path(args.out).parent.mkdir(parents=True, exist_ok=True)
Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
sys.exit(0 if res["all_steps_once_in_mlflow"] and flushed.complete else 1)
