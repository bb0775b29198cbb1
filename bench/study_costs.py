"""Training cost of a sweep's stages, measured side by side on this machine before the sweep runs.

For every training stage of the sweep's plan (stage 1, and each stage-2 run: two-stage head, joint,
DP-ResNet, ...), one process builds that stage's model exactly as the row configures it (clip-shaped
fields from `clips`), feeds it a batch of its configured size with the shapes its clips have (cached
latents for the video model, uint8 frames for DP-ResNet, the frozen U-Net pass precomputed when
`train.feature_cache` is on), and times optimizer steps with `train.cpus_per_worker` threads. Data
loading and Ray are not in the figure (bench/train_overhead.py measures those).

Prints samples/s per stage, the ratio to DP-ResNet's (when the sweep has that row), whether the stage
meets a samples/s goal, and the stage's training time at that rate (steps x step time), so a study's
budget can be checked in minutes instead of hours. `--precision fp32,bf16` times every stage under each
(bf16: `torch.autocast("cpu", torch.bfloat16)`, the parameters and optimizer in fp32), one process
per stage and precision, back to back for each stage, and prints each precision's samples/s and the ratio to the first.

    python bench/study_costs.py [--sweep sweeps/cpu_paper.yaml] [--steps 3] [--goal 20] [--precision fp32,bf16]
        [--out bench/results/study_costs.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from model_costs import _table  # bench/ is sys.path[0] when run as a script
from videopolicy.config import load_sweep
from videopolicy.models.build import build_model
from videopolicy.models.config import ModelConfig, from_dict
from videopolicy.sweep.plan import build_plan

ROOT = Path(__file__).resolve().parents[1]


def training_stages(sweep_path: str) -> list[dict]:
    """The plan's training stages: id, rows, the model's mode, batch, steps, threads, cached, model config."""
    with tempfile.TemporaryDirectory(prefix="study_costs_") as store:  # planning reads the store, writes nothing
        plan = build_plan(load_sweep(sweep_path, check_files=False), store)
    out = []
    for node in plan.nodes.values():
        if node.kind not in ("stage1", "stage2"):
            continue
        cfg, kind = node.cfg, node.cfg.train.kind
        run = cfg.train.stage1 if node.kind == "stage1" else cfg.train.stage2
        mode = "stage1" if node.kind == "stage1" else kind.train_mode
        out.append({"stage": node.id, "rows": list(node.rows), "method": cfg.train.method, "mode": mode,
                    "batch": run.batch_size, "steps": run.steps, "threads": max(1, int(cfg.train.cpus_per_worker)),
                    "cached_features": bool(cfg.train.feature_cache and mode == "stage2"
                                            and kind.model_kind == "video_policy"),
                    "model": dataclasses.asdict(cfg.model_config())})
    return out


def _batch(cfg: ModelConfig, b: int, g: torch.Generator) -> dict:
    """One batch with the shapes the trainer feeds this model (video: cached latents; DP: frames)."""
    lat, v, f = cfg.latent_size, cfg.num_cameras, max(cfg.frames_per_camera, 1)
    batch = {"text_emb": torch.randn(b, cfg.text.projection_dim, generator=g),
             "actions": torch.rand(b, cfg.action_head.horizon, cfg.action_head.action_dim, generator=g) * 2 - 1}
    if cfg.kind == "dp_resnet":
        batch["frames"] = torch.randint(0, 256, (b, v, 1, cfg.image_size, cfg.image_size, 3), dtype=torch.uint8,
                                        generator=g)
    else:
        batch["latents"] = torch.randn(b, v, f, cfg.vae.latent_channels, lat, lat, generator=g)
        batch["cond_latents"] = torch.randn(b, v, cfg.vae.latent_channels, lat, lat, generator=g)
    return batch


def time_stage(spec: dict, steps: int, precision: str = "fp32") -> dict:
    """In this process: build the stage's model, one warm-up step, then `steps` timed steps."""
    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    cfg = from_dict(ModelConfig, spec["model"]).resolve()
    model = build_model(cfg, with_encoders=False).set_mode(spec["mode"]).train()
    g = torch.Generator().manual_seed(0)
    batch = _batch(cfg, spec["batch"], g)
    if spec["cached_features"]:
        with torch.no_grad():
            batch["frozen"] = model.frozen_stage2(batch)
    params = [p for group in model.param_groups(spec["mode"]) for p in group["params"]]
    opt = torch.optim.Adam(params, lr=1e-4)

    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast:
            loss = model(batch, spec["mode"], g).loss
        loss.backward()
        opt.step()

    step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    s_per_step = (time.perf_counter() - t) / steps
    return {"s_per_step": s_per_step, "samples_per_s": spec["batch"] / s_per_step,
            "trainable_params": sum(p.numel() for p in params)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sweep", default=str(ROOT / "sweeps/cpu_paper.yaml"))
    ap.add_argument("--steps", type=int, default=3, help="timed steps per stage (after one warm-up step)")
    ap.add_argument("--goal", type=float, default=20.0, help="samples/s every training stage should reach")
    ap.add_argument("--precision", default="fp32",
                    help="comma-separated: fp32, bf16 (CPU autocast); the first is the one the table is about")
    ap.add_argument("--out", default=str(ROOT / "bench/results/study_costs.json"))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    precisions = args.precision.split(",")
    if not precisions or set(precisions) - {"fp32", "bf16"}:
        ap.error(f"--precision {args.precision!r}: expected fp32, bf16 or both, comma-separated")
    if args.child:
        print(json.dumps(time_stage(json.loads(args.child), args.steps, precisions[0])))
        return

    stages = training_stages(args.sweep)
    print(f"{len(stages)} training stages of {args.sweep}; {args.steps} timed steps each, one process per stage "
          f"and precision ({', '.join(precisions)})")
    for spec in stages:  # one at a time: each process has the machine to itself
        for prec in precisions:  # side by side: the same stage under each precision, back to back
            proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec), "--steps",
                                   str(args.steps), "--precision", prec], capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"{spec['stage']} ({spec['method']}, {spec['mode']}, {prec}) failed:\n"
                                   f"{proc.stderr[-3000:]}")
            spec.setdefault("by_precision", {})[prec] = json.loads(proc.stdout.strip().splitlines()[-1])
        spec.update(spec["by_precision"][precisions[0]])
    dp = next((s["samples_per_s"] for s in stages if s["method"] == "dp_resnet"), None)
    rows = [["stage", "rows", "mode", "batch x steps", "threads", "s/step", "samples/s", "vs dp_resnet",
             f">= {args.goal:g}/s", "est. minutes"]]
    for s in stages:
        s["minutes"] = s["steps"] * s["s_per_step"] / 60
        rows.append([s["stage"], ",".join(s["rows"]), s["mode"] + (" (cached)" if s["cached_features"] else ""),
                     f"{s['batch']} x {s['steps']}", str(s["threads"]), f"{s['s_per_step']:.2f}",
                     f"{s['samples_per_s']:.1f}", "-" if dp is None else f"{s['samples_per_s'] / dp:.2f}x",
                     "yes" if s["samples_per_s"] >= args.goal else "NO", f"{s['minutes']:.0f}"])
    print(_table(rows))
    if len(precisions) > 1:
        rows = [["stage", "rows", "mode"] + [f"{p} samples/s" for p in precisions]
                + [f"{p} / {precisions[0]}" for p in precisions[1:]]]
        for s in stages:
            rates = [s["by_precision"][p]["samples_per_s"] for p in precisions]
            rows.append([s["stage"], ",".join(s["rows"]), s["mode"] + (" (cached)" if s["cached_features"] else "")]
                        + [f"{r:.1f}" for r in rates] + [f"{r / rates[0]:.2f}x" for r in rates[1:]])
        print("\n" + _table(rows))
    total = sum(s["minutes"] for s in stages)
    print(f"\ntraining steps alone, one stage at a time: {total / 60:.1f} h (no start-up, data, VAE fit, "
          f"caches or evaluation)")
    result = {"sweep": args.sweep, "steps": args.steps, "goal": args.goal, "precisions": precisions, "stages": stages,
              "machine": {"cpu_count": os.cpu_count(), "torch": torch.__version__,
                          "python": platform.python_version(), "loadavg": os.getloadavg()}}
    for s in result["stages"]:
        s.pop("model")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
