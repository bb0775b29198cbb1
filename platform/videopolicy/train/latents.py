"""Cached VAE latents (``train.latent_cache``): every frame of a clip stage encoded once, not every step.

A video-policy training step otherwise spends most of its CPU time in the frozen VAE: each clip of
V cameras x T frames is re-encoded at every visit, although every frame belongs to ~T clips and every
clip is visited many times. With the cache, each demo shard's frames are encoded once per VAE:

    mean, std  (V, N, C, h, w) float32   the posterior of every frame (targets: mean + std * eps, drawn
                                         anew every step with the trainer's generator, as without cache)
    cond       (V, N, C, h, w) float32   the posterior mode of the frame plus cond_aug pixel noise (the
                                         concat conditioning); that noise is drawn once per frame here,
                                         not once per step: the one difference from the uncached path

stored under ``<store>/latents/<key>/<shard>.npz`` (written atomically; a second trainer encoding the
same shard writes the same bytes), where the key hashes the VAE's weights, ``cond_aug``, the cameras
and the image size. Colour jitter acts on pixels before the VAE, so the config refuses it with the cache.
"""

from __future__ import annotations

import hashlib
import io
import logging
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from ray.data.collate_fn import NumpyBatchCollateFn

from videopolicy.data.clips import ClipDataset, read_demo_shard, window_actions, window_frames
from videopolicy.models.vae import encode_pixels, to_pixels
from videopolicy.store import stable_hash
from videopolicy.util import write_atomic

log = logging.getLogger(__name__)

LATENT_VERSION = 1


def vae_digest(vae) -> str:
    """Content identity of a VAE's weights (its encoder is all the cache depends on)."""
    h = hashlib.sha256()
    for name, t in sorted(vae.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@torch.no_grad()
def encode_frames(vae, frames: np.ndarray, cond_aug: float, chunk: int,
                  generator: Optional[torch.Generator] = None) -> dict[str, np.ndarray]:
    """uint8 frames (N, H, W, 3) of one camera -> {mean, std, cond}: each (N, C, h, w) float32."""
    param = next(vae.parameters())
    pixels = to_pixels(torch.from_numpy(np.array(frames))).to(param)
    mean, std = [], []
    for i in range(0, len(pixels), chunk):
        dist = vae.encode(pixels[i:i + chunk]).latent_dist
        mean.append(dist.mean.float())
        std.append(dist.std.float())
    noise = torch.randn(pixels.shape, generator=generator, device=pixels.device)
    cond = encode_pixels(vae, pixels + cond_aug * noise, chunk)
    return {"mean": torch.cat(mean).cpu().numpy(), "std": torch.cat(std).cpu().numpy(), "cond": cond.cpu().numpy()}


class LatentCache(NumpyBatchCollateFn):
    """The cached latents of one clip stage for one VAE; calling it turns clip references into batches.

    It is the trainer's ``collate_fn`` (a NumpyBatchCollateFn, as Ray Data >= 2.47 wants): index rows
    (shard, start, language) -> ``latent_mean``, ``latent_std`` (B, V, T', C, h, w), ``cond_latents``
    (B, V, C, h, w), ``actions`` (B, A_h, A), ``action_mask`` and ``language`` (list), all on the CPU.
    """

    def __init__(self, ds: ClipDataset, vae, cond_aug: float, chunk: int = 16, seed: int = 0):
        self.ds, self.clips, self.normalizer = ds, ds.clips, ds.normalizer
        self.root = ds.path.parents[1]  # the store: shard paths in the index are relative to it
        key = stable_hash("latents", LATENT_VERSION, vae_digest(vae), cond_aug, ds.cameras, self.clips.image_size, seed)
        self.dir = self.root / "latents" / key
        self.shards: dict[str, tuple[dict[str, np.ndarray], np.ndarray]] = {}
        self.dir.mkdir(parents=True, exist_ok=True)
        encoded = 0
        for i, rel in enumerate(sorted(ds.index().shard.unique())):
            path = self.dir / (Path(rel).name.removesuffix(".arrow") + f"-{stable_hash(rel, length=8)}.npz")
            frames, actions = read_demo_shard(str(self.root / rel), ds.cameras, self.clips.image_size)
            if not path.exists():
                g = torch.Generator(device=next(vae.parameters()).device).manual_seed(seed * 100003 + i)
                per_cam = [encode_frames(vae, f, cond_aug, chunk, g) for f in frames]
                arrays = {k: np.stack([c[k] for c in per_cam]) for k in ("mean", "std", "cond")}
                buf = io.BytesIO()
                np.savez(buf, **arrays)
                write_atomic(path, buf.getvalue())
                encoded += 1
            with np.load(path) as z:
                self.shards[rel] = ({k: z[k] for k in ("mean", "std", "cond")}, np.array(actions))
        log.info("latent cache %s: %d demo shards (%d encoded now)", self.dir, len(self.shards), encoded)

    def __call__(self, batch: dict) -> dict:
        shards, starts = np.asarray(batch["shard"]), np.asarray(batch["start"], dtype=np.int64)
        out: dict[str, np.ndarray] = {}
        for rel in np.unique(shards):
            rows = np.nonzero(shards == rel)[0]
            lat, actions = self.shards[str(rel)]
            n = len(actions)
            part = {"latent_mean": window_frames(list(lat["mean"]), starts[rows], n, self.clips),
                    "latent_std": window_frames(list(lat["std"]), starts[rows], n, self.clips),
                    "cond_latents": lat["cond"][:, starts[rows]].swapaxes(0, 1),
                    **window_actions(actions, starts[rows], self.clips, self.normalizer)}
            for k, v in part.items():
                if k not in out:
                    out[k] = np.empty((len(starts),) + v.shape[1:], dtype=v.dtype)
                out[k][rows] = v
        result = {k: torch.from_numpy(v) for k, v in out.items()}
        result["language"] = [str(x) for x in batch["language"]]
        result["clip_key"] = [f"{sh}@{st}" for sh, st in zip(shards, starts)]  # train.feature_cache's key
        return result


class FeatureCache:
    """Stage 2's frozen U-Net pass per clip (``train.feature_cache``), in this trainer's memory.

    With ``edm.feature_noise: false``, no stage-2 condition dropout and the latent cache, the U-Net's
    input in stage 2 is a function of the clip alone and its weights are frozen, so its denoised video
    and taps are too: ``frozen`` runs it once per clip (``VideoPolicyModel.frozen_stage2``) and hands the
    stored copies back afterwards. The loss and its gradients equal the uncached path's to float rounding
    (tests/train/test_feature_cache.py). Memory: the taps of every clip the shard holds (tiny preset,
    2 cameras x 2 frames at 64 px: ~70 KB a clip; svd-xt at the paper's size: far too much, keep it off).
    """

    def __init__(self):
        self.clips: dict[str, tuple[torch.Tensor, list[torch.Tensor]]] = {}
        self.computed = 0  # clips whose U-Net pass ran here (the rest were hits)

    def frozen(self, model, inputs: dict, keys: list[str]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The batch's (denoised video (B, F, ...), taps [(B, F, ...)]) on the CPU, computing missing clips."""
        missing = [i for i, k in enumerate(keys) if k not in self.clips]
        if missing:
            idx = torch.tensor(missing)
            sub = {k: v[idx] if isinstance(v, torch.Tensor) else [v[i] for i in missing]
                   for k, v in inputs.items() if k != "frozen"}
            d_video, taps = model.frozen_stage2(sub)
            for j, i in enumerate(missing):
                self.clips[keys[i]] = (d_video[j].cpu(), [t[j].cpu() for t in taps])
            self.computed += len(missing)
        rows = [self.clips[k] for k in keys]
        return torch.stack([r[0] for r in rows]), [torch.stack([r[1][n] for r in rows]) for n in range(len(rows[0][1]))]


def sample_latents(batch: dict, generator: Optional[torch.Generator], device) -> torch.Tensor:
    """A cached batch's video targets: a posterior sample of every frame (B, V, T', C, h, w)."""
    mean, std = batch["latent_mean"].to(device), batch["latent_std"].to(device)
    return mean + std * torch.randn(mean.shape, generator=generator, device=device)
