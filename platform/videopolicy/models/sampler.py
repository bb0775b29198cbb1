"""Inference: the joint Euler-EDM sampler over video and actions, and the fast decoupled mode.

Faithful (``mode="joint"``, the authors' ``EulerEDMSampler`` + ``LinearPredictionGuider``): 30 Euler
steps on the EDM schedule sigma 700 -> 0.002 (rho 7, then 0), starting from N(0, 1 + sigma_max^2);
video and actions advance together, one U-Net call per step, so with classifier-free guidance 2.0
(unconditional = zeroed text and concat latents, batched with the conditional) a chunk costs
2 x 30 = 60 U-Net sample-passes.

Fast (``mode="fast"``, for the decoupled ablation: stage 2 trained with independent action sigma):
``feature_passes`` U-Net passes from sigma_max down to ``feature_sigma`` give the features; the adapter
runs once; then ``head_steps`` Euler steps of the action head alone.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Protocol

import torch

from videopolicy.models import edm, multiview
from videopolicy.models.base import SampleOutput
from videopolicy.models.config import ModelConfig, SamplerConfig
from videopolicy.models.vae import decode_video


class JointDenoiser(Protocol):
    """What the samplers call on a model: `model.VideoPolicyModel` has it (this module does not import
    that class, which imports the samplers)."""

    cfg: ModelConfig
    vae: Any

    def denoise_video(self, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor, text: torch.Tensor,
                      taps: bool = False) -> tuple[torch.Tensor, Optional[list[torch.Tensor]]]: ...

    def action_condition(self, features: list[torch.Tensor], sigma: torch.Tensor) -> torch.Tensor: ...

    def denoise_actions(self, x: torch.Tensor, sigma: torch.Tensor, global_cond: torch.Tensor) -> torch.Tensor: ...


def guidance_scales(cfg: SamplerConfig, n: int) -> torch.Tensor:
    """Per-frame (or per-action-step) CFG scale (n,): constant, or a linear ramp from guidance_min."""
    lo = cfg.guidance if cfg.guidance_min is None else cfg.guidance_min
    return torch.linspace(lo, cfg.guidance, n)


def _guide(both: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """(2B, N, ...) = [conditional; unconditional] -> uncond + scale * (cond - uncond), scale (N,)."""
    cond, uncond = both.chunk(2)
    scale = scale.to(both).reshape((1, -1) + (1,) * (both.ndim - 2))
    return uncond + scale * (cond - uncond)


class _Guided:
    """Runs the model's pieces on [conditional; unconditional] inputs when guidance is on."""

    def __init__(self, model: JointDenoiser, cond: torch.Tensor, text: torch.Tensor, cfg: SamplerConfig):
        self.model, self.cfg = model, cfg
        self.on = cfg.guidance != 1.0 or (cfg.guidance_min is not None and cfg.guidance_min != 1.0)
        self.cond = torch.cat([cond, torch.zeros_like(cond)]) if self.on else cond
        self.text = torch.cat([text, torch.zeros_like(text)]) if self.on else text
        self.video_scale = guidance_scales(cfg, cond.shape[1])
        self.action_scale = guidance_scales(cfg, model.cfg.action_head.horizon)

    def _twice(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, x]) if self.on else x

    def video(self, x: torch.Tensor, sigma: float, taps: bool):
        s = torch.full((x.shape[0] * (2 if self.on else 1),), sigma, device=x.device, dtype=x.dtype)
        d, feats = self.model.denoise_video(self._twice(x), s, self.cond, self.text, taps=taps)
        return (_guide(d, self.video_scale) if self.on else d), feats, s

    def actions(self, x: torch.Tensor, sigma: float, global_cond: torch.Tensor) -> torch.Tensor:
        s = torch.full((global_cond.shape[0],), sigma, device=x.device, dtype=x.dtype)
        d = self.model.denoise_actions(self._twice(x), s, global_cond)
        return _guide(d, self.action_scale) if self.on else d


def _start(model: JointDenoiser, cond_first: torch.Tensor, text: torch.Tensor, cfg: SamplerConfig, sigma: float,
           generator: edm.Noise) -> tuple[_Guided, torch.Tensor]:
    """Both samplers' start: the guided model and the noisy video (B, F, C, h, w) at `sigma`."""
    m = model.cfg
    guided = _Guided(model, multiview.pack_condition(cond_first, m.frames_per_camera, m.pad_camera), text, cfg)
    c, h, w = cond_first.shape[2:]
    shape = (cond_first.shape[0], m.num_video_frames, c, h, w)
    if not m.edm.feature_noise:  # trained on the zero video (validated: fast mode, one pass)
        return guided, torch.zeros(shape, device=cond_first.device)
    return guided, edm.randn(shape, generator, cond_first.device) * edm.init_noise_scale(sigma)


@torch.no_grad()
def sample_joint(model: JointDenoiser, cond_first: torch.Tensor, text: torch.Tensor, cfg: SamplerConfig,
                 generator: edm.Noise = None) -> SampleOutput:
    """cond_first: (B, V, C, h, w) unscaled current-frame latents; text: (B, D) -> SampleOutput."""
    m = model.cfg
    sigmas = edm.karras_sigmas(cfg.steps, cfg.sigma_min, cfg.sigma_max, cfg.rho).tolist()
    guided, video = _start(model, cond_first, text, cfg, sigmas[0], generator)
    actions = edm.randn((cond_first.shape[0], m.action_head.horizon, m.action_head.action_dim), generator,
                        cond_first.device) * edm.init_noise_scale(sigmas[0])
    for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:]):
        d_video, feats, s = guided.video(video, sigma, taps=True)
        d_actions = guided.actions(actions, sigma, model.action_condition(feats, s))
        video = edm.euler_step(video, d_video, sigma, sigma_next)
        actions = edm.euler_step(actions, d_actions, sigma, sigma_next)
    frames = decode_video(model.vae, video) if cfg.decode_video and model.vae is not None else None
    return SampleOutput(actions, video, frames)


def feature_sigmas(cfg: SamplerConfig) -> list[float]:
    """Fast mode's U-Net pass sigmas: EDM schedule from sigma_max down to feature_sigma (one pass: feature_sigma)."""
    if cfg.feature_passes == 1:
        return [cfg.feature_sigma]
    return edm.karras_sigmas(cfg.feature_passes, cfg.feature_sigma, cfg.sigma_max, cfg.rho, append_zero=False).tolist()


@torch.no_grad()
def sample_fast(model: JointDenoiser, cond_first: torch.Tensor, text: torch.Tensor, cfg: SamplerConfig,
                generator: edm.Noise = None) -> SampleOutput:
    """Decoupled: features from a few U-Net passes, the adapter once, then head-only Euler steps."""
    m = model.cfg
    passes = feature_sigmas(cfg)
    guided, video = _start(model, cond_first, text, cfg, passes[0], generator)
    for i, sigma in enumerate(passes):
        last = i == len(passes) - 1
        d_video, feats, s = guided.video(video, sigma, taps=last)
        if not last:
            video = edm.euler_step(video, d_video, sigma, passes[i + 1])
    global_cond = model.action_condition(feats, s)
    sigmas = edm.karras_sigmas(cfg.head_steps, cfg.sigma_min, cfg.head_sigma_max or cfg.sigma_max, cfg.rho)
    shape = (cond_first.shape[0], m.action_head.horizon, m.action_head.action_dim)
    actions = euler_sample(lambda x, sigma: guided.actions(x, sigma, global_cond), shape, sigmas.tolist(),
                           generator, cond_first.device)
    return SampleOutput(actions, None, None)


def euler_sample(denoise: Callable[[torch.Tensor, float], torch.Tensor], shape: tuple[int, ...],
                 sigmas: list[float], generator: edm.Noise = None,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """Deterministic Euler from N(0, 1 + sigmas[0]^2) along `sigmas` (ending at 0) with denoiser D(x, sigma)."""
    x = edm.randn(shape, generator, device) * edm.init_noise_scale(sigmas[0])
    for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:]):
        x = edm.euler_step(x, denoise(x, sigma), sigma, sigma_next)
    return x


def sample(model: JointDenoiser, cond_first: torch.Tensor, text: torch.Tensor, cfg: SamplerConfig,
           generator: edm.Noise = None) -> SampleOutput:
    """Dispatch on ``cfg.mode``."""
    return (sample_joint if cfg.mode == "joint" else sample_fast)(model, cond_first, text, cfg, generator)
