"""SVD's VAE (``AutoencoderKLTemporalDecoder``): frames <-> latents, kept apart so latents can be cached.

Conventions (SVD, as the authors use them): video targets are a *sample* of the VAE posterior (sgm's
``DiagonalGaussianRegularizer``); the conditioning (current-frame) latents are the posterior *mode* of
the frame plus ``cond_aug`` pixel noise and stay **unscaled**; video targets are multiplied by
``scaling_factor`` (0.18215) by the model, not here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from diffusers import AutoencoderKLTemporalDecoder

from videopolicy.models import edm
from videopolicy.models.config import ModelConfig


def build_vae(cfg: ModelConfig) -> AutoencoderKLTemporalDecoder:
    """Random init (tiny) or ``from_pretrained`` (an SVD pipeline dir/hub id with subfolder ``vae``). Frozen."""
    cfg = cfg.resolve()
    v = cfg.vae
    if v.pretrained:
        from videopolicy.models.pretrained import from_pretrained_args

        path, kwargs = from_pretrained_args(v.pretrained, v.pretrained_subfolder, "vae")
        vae = AutoencoderKLTemporalDecoder.from_pretrained(path, **kwargs)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.init_seed + 2)
            n = len(v.block_out_channels)
            vae = AutoencoderKLTemporalDecoder(
                down_block_types=("DownEncoderBlock2D",) * n, block_out_channels=tuple(v.block_out_channels),
                layers_per_block=v.layers_per_block, latent_channels=v.latent_channels,
                scaling_factor=v.scaling_factor)
            if v.latent_std and not v.fit_steps:  # a fitted VAE is scaled after its fit (fit_vae)
                calibrate_latent_std(vae, v.latent_std, cfg.image_size)
    return vae.eval().requires_grad_(False)


@torch.no_grad()
def calibrate_latent_std(vae: AutoencoderKLTemporalDecoder, target: float, image_size: int,
                         posterior_std: float = 0.02) -> float:
    """Make a random encoder's posterior look like a trained one's; returns the gain k on its mean.

    Mean: scaled so the latents have std `target`, measured on a fixed batch of uniform-noise images
    (the encoder's last GroupNorm makes the output scale a property of the weights, not of the images:
    measured on Lift frames, 5.52 for a target of 5.49). Posterior std: a random encoder's log-variance
    is init noise (std ~1, as large as the image content), so sampled targets would be mostly noise; it
    is set to a constant `posterior_std` x `target` instead, narrow as a trained VAE's. The decoder's
    first conv compensates the gain (``scale_latents``), so `decode_video` (logging) decodes as before.
    """
    from torch._subclasses.fake_tensor import is_fake

    if is_fake(vae.quant_conv.weight):  # a shape-only model (FLOP counts): no values to calibrate
        return 1.0
    pixels = torch.rand(8, 3, image_size, image_size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    k = target / float(vae.encode(pixels).latent_dist.mean.std())
    scale_latents(vae, k)
    conv, c = vae.quant_conv, vae.quant_conv.out_channels // 2  # output rows: C means, then C log-variances
    conv.weight[c:] = 0.0
    conv.bias[c:] = 2 * math.log(posterior_std * target)
    return k


KL_WEIGHT = 1e-6  # the fit's KL term: enough to keep the posterior finite, small next to reconstruction


def fit_vae(vae: AutoencoderKLTemporalDecoder, pixels: Callable[[torch.Generator], torch.Tensor], steps: int,
            lr: float, latent_std: float, generator: torch.Generator, log_every: int = 100) -> list[float]:
    """Train a random-init VAE as an autoencoder, then scale its latents to std `latent_std`.

    pixels(generator) -> a batch (N, 3, H, W) in [-1, 1]. Loss: MSE of the decoded posterior sample
    plus KL_WEIGHT x KL; then ``scale_latents``. Returns the reconstruction MSE every `log_every` steps
    (and at the last).
    """
    vae.train().requires_grad_(True)
    opt = torch.optim.Adam(vae.parameters(), lr=lr)
    curve = []
    for step in range(steps):
        x = pixels(generator)
        dist = vae.encode(x).latent_dist
        z = dist.mean + dist.std * torch.randn(dist.mean.shape, generator=generator, device=x.device)
        mse = (vae.decode(z, num_frames=1).sample - x).pow(2).mean()
        kl = 0.5 * (dist.mean.pow(2) + dist.var - 1 - dist.logvar).sum((1, 2, 3)).mean()
        opt.zero_grad(set_to_none=True)
        (mse + KL_WEIGHT * kl).backward()
        opt.step()
        if step % log_every == 0 or step == steps - 1:
            curve.append(float(mse.detach()))
    vae.eval().requires_grad_(False)
    if latent_std:
        with torch.no_grad():
            scale_latents(vae, latent_std / float(vae.encode(pixels(generator)).latent_dist.mean.std()))
    return curve


@torch.no_grad()
def scale_latents(vae: AutoencoderKLTemporalDecoder, k: float) -> None:
    """Latents x k, reconstructions unchanged: the encoder's mean rows of ``quant_conv`` times k, its
    log-variance + 2 log k (the posterior keeps its relative width), the decoder's first conv / k."""
    conv, c = vae.quant_conv, vae.quant_conv.out_channels // 2  # rows: C means, then C log-variances
    conv.weight[:c] *= k
    conv.bias[:c] *= k
    conv.bias[c:] += 2 * math.log(k)
    vae.decoder.conv_in.weight /= k


def to_pixels(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float (..., 3, H, W) in [-1, 1]."""
    frames = torch.as_tensor(frames)
    return frames.movedim(-1, -3).float() / 127.5 - 1.0


@dataclass
class ClipLatents:
    """VAE latents of a clip batch (cacheable).

    latents: (B, V, T, C, h, w) unscaled posterior samples of every frame (frame 0 = the current frame).
    cond: (B, V, C, h, w) unscaled latents of the noise-augmented first frames (the concat conditioning).
    """

    latents: torch.Tensor
    cond: torch.Tensor


@torch.no_grad()
def encode_pixels(vae: AutoencoderKLTemporalDecoder, pixels: torch.Tensor, chunk: int, sample: bool = False,
                  generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """(N, 3, H, W) in [-1, 1] -> unscaled latents (N, C, H/8, W/8): posterior modes, or samples if
    `sample`; `chunk` images per call."""
    param = next(vae.parameters())
    out = []
    for i in range(0, len(pixels), chunk):
        dist = vae.encode(pixels[i:i + chunk].to(param)).latent_dist
        if not sample:
            out.append(dist.mode())
        else:  # drawn here (not dist.sample) so the generator's device matches the latents'
            eps = torch.randn(dist.mean.shape, generator=generator, device=dist.mean.device, dtype=dist.mean.dtype)
            out.append(dist.mean + dist.std * eps)
    return torch.cat(out).float()


@torch.no_grad()
def encode_clip(vae: AutoencoderKLTemporalDecoder, frames: torch.Tensor, cfg: ModelConfig,
                generator: Optional[torch.Generator] = None) -> ClipLatents:
    """uint8 frames (B, V, T, H, W, 3) -> ClipLatents (targets: posterior samples, as the authors)."""
    cfg = cfg.resolve()
    pixels = to_pixels(frames)
    b, v, t1 = pixels.shape[:3]
    cond = encode_condition(vae, pixels[:, :, 0], cfg, generator)
    latents = encode_pixels(vae, pixels.flatten(0, 2), cfg.vae.encode_chunk, sample=True, generator=generator)
    return ClipLatents(latents.reshape(b, v, t1, *latents.shape[1:]), cond)


@torch.no_grad()
def encode_condition(vae: AutoencoderKLTemporalDecoder, pixels: torch.Tensor, cfg: ModelConfig,
                     generator: edm.Noise = None) -> torch.Tensor:
    """Current frames (B, V, 3, H, W) in [-1, 1] -> concat-conditioning latents (B, V, C, h, w), unscaled."""
    noise = edm.randn(pixels.shape, generator, pixels.device, pixels.dtype)
    cond = encode_pixels(vae, (pixels + cfg.vae.cond_aug * noise).flatten(0, 1), cfg.vae.encode_chunk)
    return cond.reshape(*pixels.shape[:2], *cond.shape[1:])


@torch.no_grad()
def decode_video(vae: AutoencoderKLTemporalDecoder, video: torch.Tensor, chunk: int = 14) -> torch.Tensor:
    """Scaled video latents (B, F, C, h, w) -> uint8 frames (B, F, H, W, 3).

    The temporal decoder mixes the frames of one call, so chunks never span two clips.
    """
    param = next(vae.parameters())
    clips = []
    for clip in video / vae.config.scaling_factor:
        parts = [vae.decode(clip[i:i + chunk].to(param), num_frames=len(clip[i:i + chunk])).sample.float()
                 for i in range(0, len(clip), chunk)]
        clips.append(torch.cat(parts))
    pixels = torch.stack(clips)
    return ((pixels.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).movedim(-3, -1)
