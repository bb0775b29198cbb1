"""The DP-ResNet baseline of the paper's tables: Diffusion Policy with ResNet-18 image encoders.

One ResNet-18-shaped encoder per camera (transformers ``ResNetModel``, random init; torchvision cannot
be installed beside the CPU torch), BatchNorm replaced by GroupNorm as Diffusion Policy does, global
average pooling, concatenated with the instruction's CLIP text embedding (multi-task) into the global
condition of the same FiLM action head as Video Policy, with its own step embedding. Trained with
the same EDM action loss (independent sigma per clip, its own schedule: ``baseline.p_mean/p_std``) and
sampled with head-only Euler steps (``sampler.steps`` from ``baseline.sigma_max``, no guidance).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import torch
from torch import nn
from transformers import ResNetConfig, ResNetModel

from videopolicy.models import edm
from videopolicy.models.action_head import ActionUNet1D
from videopolicy.models.config import ModelConfig, SamplerConfig
from videopolicy.models.base import LossOutput, PolicyModel, SampleOutput, as_tensor
from videopolicy.models.sampler import euler_sample
from videopolicy.models.vae import to_pixels

MODES = ("baseline", "stage2")  # "stage2" too: in a sweep the baseline trains in the head-training stage


def _group_norm_instead_of_batch_norm(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, nn.GroupNorm(child.num_features // 16, child.num_features))
        else:
            _group_norm_instead_of_batch_norm(child)


class SpatialSoftmax(nn.Module):
    """Feature map (B, C, h, w) -> the expected image coordinates of K learned keypoints (B, 2K).

    Diffusion Policy (after robomimic and Levine et al. 2016) pools its ResNet features this way
    instead of averaging them: an average over the map discards *where* things are, which is most of
    what a manipulation policy needs from its cameras.
    """

    def __init__(self, channels: int, keypoints: int):
        super().__init__()
        self.proj = nn.Conv2d(channels, keypoints, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        attention = self.proj(x).flatten(2).softmax(-1)  # (B, K, h*w)
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, h, device=x.device), torch.linspace(-1, 1, w, device=x.device),
                                indexing="ij")
        grid = torch.stack([xs.flatten(), ys.flatten()], dim=-1).to(attention)  # (h*w, 2)
        return (attention @ grid).flatten(1)


class DPResNetModel(PolicyModel):
    """Current frame of each camera (B, V, H, W, 3) uint8 + instruction -> action chunk (B, horizon, A)."""

    kind = "dp_resnet"
    modes = MODES
    frozen_encoders = ("text",)  # no VAE: the ResNets read pixels

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        c = self.cfg
        b = c.baseline
        text_dim = c.text.projection_dim
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c.init_seed + 4)
            rc = ResNetConfig(embedding_size=b.embedding_size, hidden_sizes=list(b.hidden_sizes),
                              depths=list(b.depths), layer_type="basic")
            self.encoders = nn.ModuleList([ResNetModel(rc) for _ in range(c.num_cameras)])
            if b.group_norm:
                for enc in self.encoders:
                    _group_norm_instead_of_batch_norm(enc)
            if b.pooling == "spatial_softmax":
                self.pools = nn.ModuleList([SpatialSoftmax(b.hidden_sizes[-1], b.keypoints)
                                            for _ in range(c.num_cameras)])
                feature_dim = 2 * b.keypoints
            else:
                self.pools = nn.ModuleList([nn.AdaptiveAvgPool2d(1) for _ in range(c.num_cameras)])
                feature_dim = b.hidden_sizes[-1]
            head_cfg = dataclasses.replace(c.action_head, step_embedding="own")  # no video U-Net here
            self.action_head = ActionUNet1D(head_cfg, c.num_cameras * feature_dim + text_dim)

    def trainable_parts(self, mode: str) -> dict[str, tuple[nn.Module, float]]:
        if mode not in MODES:
            raise ValueError(f"DP-ResNet trains in mode 'baseline', not {mode!r}")
        return {"encoders": (self.encoders, self.cfg.optim.head_lr_scale),
                "pools": (self.pools, self.cfg.optim.head_lr_scale),
                "action_head": (self.action_head, self.cfg.optim.head_lr_scale)}

    def observation_condition(self, frames, text: torch.Tensor) -> torch.Tensor:
        """uint8 (B, V, H, W, 3) + text (B, D) -> global condition (B, V * F + D); F = 2 x keypoints
        (spatial softmax) or the last stage's width (average pooling)."""
        pixels = to_pixels(as_tensor(frames, self.device))
        feats = [pool(enc(pixel_values=pixels[:, v]).last_hidden_state).flatten(1)
                 for v, (enc, pool) in enumerate(zip(self.encoders, self.pools))]
        return torch.cat(feats + [text], dim=-1)

    def denoise_actions(self, x: torch.Tensor, sigma: torch.Tensor, global_cond: torch.Tensor) -> torch.Tensor:
        c_skip, c_out, c_in, c_noise = (edm.append_dims(s, 3) if i < 3 else s
                                        for i, s in enumerate(edm.v_scalings(sigma)))
        self.calls["head"] += x.shape[0]
        return c_skip * x + c_out * self.action_head(x * c_in, c_noise, global_cond)

    def forward(self, batch: dict, mode: str = "baseline", generator: Optional[torch.Generator] = None) -> LossOutput:
        """EDM action loss. batch: frames (B, V, T, H, W, 3) uint8 (frame 0, the current one, used), text / text_emb, actions."""
        if mode not in MODES:
            raise ValueError(f"DP-ResNet trains in mode 'baseline', not {mode!r}")
        text = as_tensor(batch["text_emb"], self.device).float() if "text_emb" in batch \
            else self.embed_text(batch["text"])
        frames = as_tensor(batch["frames"], self.device)[:, :, 0]
        actions = as_tensor(batch["actions"], self.device).float()
        b = actions.shape[0]
        if self.training and self.cfg.edm.cond_dropout > 0:
            text = text * (torch.rand(b, 1, generator=generator, device=text.device) >= self.cfg.edm.cond_dropout)
        bl = self.cfg.baseline
        sigma = edm.sample_sigma(b, dataclasses.replace(self.cfg.edm, p_mean=bl.p_mean, p_std=bl.p_std), generator,
                                 self.device)
        cond = self.observation_condition(frames, text)
        denoised = self.denoise_actions(edm.add_noise(actions, sigma, generator), sigma, cond)
        per_step = edm.weighted_error(denoised, actions, sigma).mean(-1)
        return LossOutput(per_step.mean(), None, per_step.detach().mean(), sigma)

    @torch.no_grad()
    def sample_actions(self, frames, texts: list[str], sampler: Optional[SamplerConfig] = None,
                       generator: edm.Noise = None) -> SampleOutput:
        cfg = sampler or self.cfg.sampler
        cond = self.observation_condition(frames, self.embed_text(texts))
        h = self.cfg.action_head
        sigmas = edm.karras_sigmas(cfg.steps, cfg.sigma_min, min(cfg.sigma_max, self.cfg.baseline.sigma_max),
                                   cfg.rho).tolist()
        shape = (cond.shape[0], h.horizon, h.action_dim)
        return SampleOutput(euler_sample(
            lambda x, sigma: self.denoise_actions(x, torch.full((x.shape[0],), sigma, device=x.device), cond),
            shape, sigmas, generator, self.device))
