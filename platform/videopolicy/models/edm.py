"""EDM noise schedule and preconditioning with SVD's v-prediction (``VScalingWithEDMcNoise``).

The same maths serves the video latents and the actions: the network output F is turned into a
denoised estimate ``D = c_skip * x + c_out * F(c_in * x, c_noise)``; the loss is
``(sigma^2 + 1) / sigma^2 * (D - x0)^2``, which is unit weight on the v-target (sigma_data = 1).
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch

from videopolicy.models.config import EDMConfig

#: Where sampling noise comes from: one generator for the batch, or one per batch row. Evaluation batches
#: the requests of many episodes into one forward pass; a generator per request (seeded by policy seed,
#: episode and chunk: evaluate.worker.request_seed) keeps each episode's noise, and so its outcome,
#: independent of which other requests shared its batch.
Noise = Union[torch.Generator, Sequence[torch.Generator], None]


def randn(shape: Sequence[int], generator: Noise, device: torch.device | str,
          dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """N(0, 1) of `shape` (B, ...); with per-row generators, row b is drawn from generator[b] alone."""
    if generator is None or isinstance(generator, torch.Generator):
        return torch.randn(tuple(shape), generator=generator, device=device, dtype=dtype)
    if len(generator) != shape[0]:
        raise ValueError(f"{len(generator)} per-row generators for a batch of {shape[0]} (shape {tuple(shape)})")
    return torch.stack([torch.randn(tuple(shape[1:]), generator=g, device=device, dtype=dtype) for g in generator])


def append_dims(x: torch.Tensor, ndim: int) -> torch.Tensor:
    """(B,) -> (B, 1, ..., 1) with `ndim` dims, for broadcasting per-clip scalars."""
    return x.reshape(x.shape + (1,) * (ndim - x.ndim))


def v_scalings(sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(c_skip, c_out, c_in, c_noise) for sigma of shape (B,), sigma_data = 1."""
    s2 = sigma**2 + 1.0
    return 1.0 / s2, -sigma / s2.sqrt(), 1.0 / s2.sqrt(), 0.25 * sigma.log()


def loss_weight(sigma: torch.Tensor) -> torch.Tensor:
    """EDM weighting (sigma^2 + 1) / sigma^2: unit weight on v."""
    return (sigma**2 + 1.0) / sigma**2


def add_noise(x0: torch.Tensor, sigma: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """x0 + sigma * N(0, 1), sigma (B,) broadcast over the rest of x0 (B, ...)."""
    return x0 + append_dims(sigma, x0.ndim) * torch.randn(x0.shape, generator=generator, device=x0.device)


def weighted_error(denoised: torch.Tensor, x0: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Elementwise EDM loss (sigma^2 + 1) / sigma^2 * (D - x0)^2, same shape as x0."""
    return append_dims(loss_weight(sigma), x0.ndim) * (denoised - x0) ** 2


def sample_sigma(batch: int, cfg: EDMConfig, generator: Optional[torch.Generator] = None,
                 device: torch.device | str = "cpu", actions: bool = False) -> torch.Tensor:
    """One training sigma per clip, lognormal(p_mean, p_std) (the action ones if `actions` and set): (B,)."""
    mean, std = cfg.p_mean, cfg.p_std
    if actions:
        mean = cfg.p_mean if cfg.action_p_mean is None else cfg.action_p_mean
        std = cfg.p_std if cfg.action_p_std is None else cfg.action_p_std
    z = torch.randn(batch, generator=generator, device=device)
    return (mean + std * z).exp()


def training_sigmas(batch: int, cfg: EDMConfig, mode: str, generator: Optional[torch.Generator] = None,
                    device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(video_sigma, action_sigma), each (B,).

    Faithful: one sigma per clip shared by its frames and its actions. The decoupled ablation draws
    the action sigma independently and, in stage 2, may fix the video (feature) sigma.
    """
    video = sample_sigma(batch, cfg, generator, device)
    if cfg.action_sigma == "tied":
        return video, video
    action = sample_sigma(batch, cfg, generator, device, actions=True)
    if cfg.feature_sigma is not None and mode == "stage2":
        video = torch.full_like(video, cfg.feature_sigma)
    return video, action


def noisy_video(video: torch.Tensor, sigma: torch.Tensor, cfg: EDMConfig, mode: str,
                generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """The U-Net's noisy input for training: x0 + sigma * eps, or zeros for stage 2 without feature noise."""
    if mode == "stage2" and not cfg.feature_noise:
        return torch.zeros_like(video)
    return add_noise(video, sigma, generator)


def karras_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float,
                  append_zero: bool = True) -> torch.Tensor:
    """EDM discretisation, decreasing from sigma_max to sigma_min (then 0): shape (steps [+1],).

    float64 so the schedule is exact; callers cast.
    """
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (hi + ramp * (lo - hi)) ** rho
    sigmas[0] = sigma_max  # exact ends (the power loses the last bits)
    if steps > 1:
        sigmas[-1] = sigma_min
    if append_zero:
        sigmas = torch.cat([sigmas, sigmas.new_zeros(1)])
    return sigmas


def euler_step(x: torch.Tensor, denoised: torch.Tensor, sigma: float, sigma_next: float) -> torch.Tensor:
    """One deterministic Euler step of the probability-flow ODE (the "DDIM" step in sigma space)."""
    return x + (x - denoised) / sigma * (sigma_next - sigma)


def init_noise_scale(sigma_max: float) -> float:
    """SVD's sampler starts from N(0, 1 + sigma_max^2), not N(0, sigma_max^2)."""
    return (1.0 + sigma_max**2) ** 0.5
