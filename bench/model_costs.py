"""Model costs: training steps (tiny, measured on this CPU) and inference per action chunk (both presets).

1. Per-step time and peak memory of stage-1, stage-2 and joint steps for the tiny preset on CPU
   (batch of 2 clips, 3 cameras x 8 frames + pad = 25 frames, 128 px = 16x16 latents, cached latents
   and text embeddings; Adam). Each mode runs in its own process so peak RSS is its own.
2. Per action chunk: U-Net sample-passes (counted by running the real samplers on the tiny model) and
   FLOPs (per-pass FLOPs counted under FakeTensorMode, so svd-xt costs no memory and no compute) for
   the faithful joint sampler (30 steps, CFG 2), fewer steps, no CFG, and the fast decoupled mode.
   Tiny chunks are also timed.

Prints tables with ratios against the faithful sampler and writes the raw figures as JSON.

    python bench/model_costs.py [--out bench/results/model_costs.json] [--steps 3] [--skip-train]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from videopolicy.models.config import EDMConfig, ModelConfig, SamplerConfig
from videopolicy.models.costs import count_flops, fake_tensors, forward_flops
from videopolicy.models.model import VideoPolicyModel
from videopolicy.models.sampler import sample
from videopolicy.models.vae import build_vae

BATCH = 2
TINY = dict(preset="tiny", image_size=128, frames_per_camera=8)
FULL = dict(preset="svd-xt", image_size=256, frames_per_camera=8)  # the paper: 256 px, 3 x 8 frames

SAMPLERS = {
    "faithful (joint, 30 steps, CFG 2)": SamplerConfig(),
    "joint, 10 steps, CFG 2": SamplerConfig(steps=10),
    "joint, 30 steps, no CFG": SamplerConfig(guidance=1.0),
    "fast (1 pass, 10 head steps, CFG 2)": SamplerConfig(mode="fast", feature_passes=1, head_steps=10),
    "fast (3 passes, 10 head steps, CFG 2)": SamplerConfig(mode="fast", feature_passes=3, feature_sigma=1.0,
                                                          head_steps=10),
}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# -- 1. training steps ---------------------------------------------------------------------------------

#: stage 2 with train.feature_cache: the frozen U-Net's pass per clip made before the timed steps (the
#: decoupled settings it needs; the U-Net's cost does not depend on them)
CACHED = "stage2, feature_cache"
DECOUPLED = EDMConfig(action_sigma="independent", feature_sigma=700.0, feature_noise=False, stage2_cond_dropout=0.0)


def train_child(mode: str, steps: int) -> dict:
    """One mode in this process: build, warm up one step, time `steps` steps."""
    torch.manual_seed(0)
    cached, label = mode == CACHED, mode
    cfg = ModelConfig(**TINY, **({"edm": DECOUPLED, "sampler": SamplerConfig(mode="fast")} if cached else {}))
    mode = "stage2" if cached else mode
    model = VideoPolicyModel(cfg).set_mode(mode).train()
    lat = cfg.latent_size
    g = torch.Generator().manual_seed(0)
    batch = {"latents": torch.randn(BATCH, cfg.num_cameras, max(cfg.frames_per_camera, 1), 4, lat, lat, generator=g),
             "cond_latents": torch.randn(BATCH, cfg.num_cameras, 4, lat, lat, generator=g),
             "text_emb": torch.randn(BATCH, 64, generator=g),
             "actions": torch.rand(BATCH, 32, 7, generator=g) * 2 - 1}
    if cached:
        batch["frozen"] = model.frozen_stage2(batch)
    opt = torch.optim.Adam([p for group in model.param_groups(mode) for p in group["params"]], lr=1e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        model(batch, mode, g).loss.backward()
        opt.step()

    rss_model = _rss_mb()
    step()
    wall, cpu = [], []
    for _ in range(steps):
        w, c = time.perf_counter(), time.process_time()
        step()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return {"mode": label, "threads": torch.get_num_threads(), "steps": steps,
            "wall_s_median": statistics.median(wall), "wall_s_min": min(wall), "cpu_s_median": statistics.median(cpu),
            "rss_before_step_mb": rss_model, "peak_rss_mb": _rss_mb(), "step_peak_over_model_mb": _rss_mb() - rss_model,
            "trainable_params": sum(p.numel() for g_ in model.param_groups(mode) for p in g_["params"])}


def training_steps(steps: int) -> list[dict]:
    out = []
    for mode in ("stage1", "stage2", CACHED, "joint"):
        proc = subprocess.run([sys.executable, __file__, "--child", mode, "--steps", str(steps)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{mode} step benchmark failed:\n{proc.stderr[-2000:]}")
        out.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return out


# -- 2. inference per chunk ----------------------------------------------------------------------------

def calls_per_chunk() -> dict[str, dict]:
    """Samples through each network per action chunk, counted on the real (tiny) samplers."""
    cfg = ModelConfig(preset="tiny", image_size=64, frames_per_camera=8)
    model = VideoPolicyModel(cfg).eval()
    cond, text = torch.randn(1, 3, 4, 8, 8), torch.randn(1, 64)
    out = {}
    for name, sampler in SAMPLERS.items():
        model.calls.clear()
        sample(model, cond, text, sampler, torch.Generator().manual_seed(0))
        out[name] = dict(model.calls)
    return out


def per_sample_flops(kwargs: dict) -> dict[str, float]:
    """FLOPs of one sample through the U-Net (with taps), the adapter, the head, VAE encode/decode."""
    cfg = ModelConfig(**kwargs).resolve()
    out = forward_flops(cfg)  # the planner's estimate counts the same way
    lat, f = cfg.latent_size, cfg.num_video_frames
    with fake_tensors():
        vae = build_vae(cfg)
        out["vae_decode_video"] = count_flops(lambda: vae.decode(torch.randn(f, 4, lat, lat), num_frames=f))
    return out


def chunk_costs(calls: dict, flops: dict) -> dict[str, dict]:
    out = {}
    for name, c in calls.items():
        total = c.get("unet", 0) * flops["unet_pass"] + c.get("adapter", 0) * flops["adapter"] \
            + c.get("head", 0) * flops["head"] + flops["vae_encode_current_frames"]
        out[name] = {"unet_passes": c.get("unet", 0), "adapter_calls": c.get("adapter", 0),
                     "head_calls": c.get("head", 0), "flops": total,
                     "flops_with_video_decode": total + (flops["vae_decode_video"]
                                                         if SAMPLERS[name].mode == "joint" else 0)}
    return out


def time_tiny_chunks(reps: int) -> dict[str, float]:
    """Wall seconds per chunk for the tiny preset (128 px, 25 frames), VAE encode of the current frames included."""
    cfg = ModelConfig(**TINY)
    model = VideoPolicyModel(cfg).attach_encoders(vae=build_vae(cfg)).eval()
    model.text_cache.embeddings["task"] = torch.randn(64)
    frames = torch.randint(0, 255, (1, 3, cfg.image_size, cfg.image_size, 3), dtype=torch.uint8)
    out = {}
    for name, sampler in SAMPLERS.items():
        times = []
        for r in range(reps):
            t = time.perf_counter()
            model.sample_actions(frames, ["task"], sampler, torch.Generator().manual_seed(r))
            times.append(time.perf_counter() - t)
        out[name] = min(times)
    return out


# -- report ------------------------------------------------------------------------------------------

def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="bench/results/model_costs.json")
    ap.add_argument("--steps", type=int, default=3, help="timed training steps per mode (after one warm-up)")
    ap.add_argument("--chunk-reps", type=int, default=1, help="timed tiny chunks per sampler (min is reported)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(train_child(args.child, args.steps)))
        return

    result = {"machine": {"cpu_count": os.cpu_count(), "threads": args.threads, "torch": torch.__version__,
                          "python": platform.python_version(), "loadavg_start": os.getloadavg()},
              "setup": {"batch": BATCH, "tiny": TINY, "svd_xt": FULL}}
    if not args.skip_train:
        result["training_steps_tiny"] = training_steps(args.steps)
        rows = [["tiny step (B=2, 25x16x16)", "wall s (median)", "CPU s", "peak RSS MB", "step peak MB",
                 "trainable", "vs stage1"]]
        base = result["training_steps_tiny"][0]["wall_s_median"]
        for r in result["training_steps_tiny"]:
            rows.append([r["mode"], f"{r['wall_s_median']:.2f}", f"{r['cpu_s_median']:.2f}",
                         f"{r['peak_rss_mb']:.0f}", f"{r['step_peak_over_model_mb']:.0f}",
                         f"{r['trainable_params'] / 1e6:.2f}M", f"{r['wall_s_median'] / base:.2f}x"])
        print(_table(rows), "\n")

    calls = calls_per_chunk()
    result["calls_per_chunk"] = calls
    for key, kwargs in (("tiny", TINY), ("svd_xt", FULL)):
        flops = per_sample_flops(kwargs)
        result[f"flops_per_sample_{key}"] = flops
        result[f"chunk_{key}"] = chunk_costs(calls, flops)
    result["chunk_wall_s_tiny"] = time_tiny_chunks(args.chunk_reps)

    rows = [["per action chunk", "U-Net passes", "head calls", "tiny GFLOP", "svd-xt TFLOP", "FLOP ratio",
             "tiny wall s", "wall ratio"]]
    faithful = next(iter(SAMPLERS))
    for name in SAMPLERS:
        tiny, full = result["chunk_tiny"][name], result["chunk_svd_xt"][name]
        wall = result["chunk_wall_s_tiny"][name]
        rows.append([name, str(tiny["unet_passes"]), str(tiny["head_calls"]), f"{tiny['flops'] / 1e9:.1f}",
                     f"{full['flops'] / 1e12:.1f}", f"{result['chunk_svd_xt'][faithful]['flops'] / full['flops']:.1f}x",
                     f"{wall:.2f}", f"{result['chunk_wall_s_tiny'][faithful] / wall:.1f}x"])
    print(_table(rows))
    f = result["flops_per_sample_svd_xt"]
    print(f"\nsvd-xt per sample: U-Net pass {f['unet_pass'] / 1e12:.2f} TFLOP, adapter {f['adapter'] / 1e9:.1f} GFLOP, "
          f"head {f['head'] / 1e9:.2f} GFLOP, VAE encode (3 frames) {f['vae_encode_current_frames'] / 1e12:.2f} TFLOP, "
          f"VAE decode (25 frames, logging only) {f['vae_decode_video'] / 1e12:.1f} TFLOP")
    print("FLOP ratio: faithful / row (svd-xt); wall ratio: faithful / row (tiny, this CPU, "
          f"{args.threads} thread(s), load {os.getloadavg()[0]:.1f})")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"raw figures: {out}")


if __name__ == "__main__":
    main()
