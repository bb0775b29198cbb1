"""The CNN adapter: tapped video U-Net features -> the action head's global condition.

Faithful to the authors' ``VideoResNet``: each camera has its own branch of strided 3D bottleneck
blocks that starts at the finest tapped feature and, at each coarser scale, concatenates a projection
of the next tap (a feature pyramid, fine to coarse). The cameras are then concatenated, a trunk
reduces the channels, and stride-2 stages over time reduce T frames to 1. Every bottleneck adds a
projection of the noise-level embedding (the video U-Net's time embedding of the clip's sigma).

At svd-xt sizes (32x32 latents, 3 cameras x 8 frames): 205.8M parameters, output 420 x 1 x 4 x 4 = 6720.
The per-camera branches run as grouped 3D convolutions (cameras stacked along channels): the same
parameters as the authors' separate modules, a third of the kernel launches. GroupNorm group counts
are per stage (``AdapterConfig.*_groups``): the svd-xt preset uses the authors' per-layer values, so
their released adapter loads (``models.convert_sgm``); left unset (tiny) they follow a rule (<= 10
groups, >= 4 channels each). Parameter counts do not depend on them.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from videopolicy.models.config import AdapterConfig
from videopolicy.models.feature_taps import TapGeometry


def _groups(channels: int, max_groups: int = 10, min_per_group: int = 4) -> int:
    """GroupNorm groups for a bottleneck width: the largest divisor <= 10 (as the authors) that keeps
    >= 4 channels per group. Group size matters at small sizes: a 1-channel group over a 1x1x1
    feature normalises it to a constant and erases the input."""
    limit = max(1, min(max_groups, channels // min_per_group))
    return max(g for g in range(1, limit + 1) if channels % g == 0)


class Bottleneck3D(nn.Module):
    """1x1x1 reduce -> (+ noise embedding) -> 3x3x3 (strided) -> 1x1x1 expand, residual, SiLU.

    x: (B, G*C_in, T, H, W), emb: (B, E) -> (B, G*C_out, T', H', W'). With ``groups`` G > 1 it is G
    independent blocks (one per camera) run as grouped convolutions: the same parameters as G separate
    modules, a G-th of the kernel launches.
    """

    def __init__(self, c_in: int, c_out: int, emb_dim: int, expansion: int, stride: int = 1,
                 temporal_stride: int = 1, groups: int = 1, norm_groups: Optional[int] = None):
        super().__init__()
        mid, n = c_out // expansion, groups
        g = norm_groups or _groups(mid)  # per camera; the output norms use g * expansion
        self.reduce = nn.Sequential(nn.Conv3d(n * c_in, n * mid, 1, groups=n, bias=False),
                                    nn.GroupNorm(n * g, n * mid), nn.SiLU())
        self.emb = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, n * mid))
        self.conv = nn.Sequential(
            nn.Conv3d(n * mid, n * mid, 3, stride=(temporal_stride, stride, stride), padding=1, groups=n, bias=False),
            nn.GroupNorm(n * g, n * mid), nn.SiLU())
        self.expand = nn.Sequential(nn.Conv3d(n * mid, n * c_out, 1, groups=n, bias=False),
                                    nn.GroupNorm(n * g * expansion, n * c_out))
        self.shortcut = nn.Identity()
        if c_in != c_out or stride != 1 or temporal_stride != 1:
            self.shortcut = nn.Sequential(
                nn.Conv3d(n * c_in, n * c_out, 1, stride=(temporal_stride, stride, stride), groups=n, bias=False),
                nn.GroupNorm(n * g * expansion, n * c_out))
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.reduce(x) + self.emb(emb)[:, :, None, None, None]
        h = self.expand(self.conv(h))
        return self.act(h + self.shortcut(x))


class Stage(nn.Module):
    """`blocks` bottlenecks; only the first changes width or strides."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, blocks: int, expansion: int, stride: int = 1,
                 temporal_stride: int = 1, groups: int = 1, norm_groups: Optional[int] = None):
        super().__init__()
        self.blocks = nn.ModuleList(
            [Bottleneck3D(c_in if i == 0 else c_out, c_out, emb_dim, expansion, stride if i == 0 else 1,
                          temporal_stride if i == 0 else 1, groups, norm_groups) for i in range(blocks)])

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, emb)
        return x


def _cat_per_camera(x: torch.Tensor, y: torch.Tensor, cameras: int) -> torch.Tensor:
    """Channel-concatenate camera by camera: (B, V*C1, ...), (B, V*C2, ...) -> (B, V*(C1+C2), ...)."""
    return torch.cat([x.unflatten(1, (cameras, -1)), y.unflatten(1, (cameras, -1))], dim=2).flatten(1, 2)


class CameraBranches(nn.Module):
    """Every camera's own pyramid over the taps (finest first), cameras stacked along channels.

    Input: per tap (B, V*C_k, T, h_k, w_k); output (B, V*C, T, h, w), camera-major channels.
    """

    def __init__(self, taps: list[TapGeometry], cfg: AdapterConfig, emb_dim: int, cameras: int):
        super().__init__()
        e, n, v = cfg.bottleneck_expansion, cfg.blocks_per_stage, cameras
        widths, merges = cfg.branch_widths, cfg.merge_widths
        groups = {name: [g for g, _, _ in stages] for name, stages in cfg.stage_groups().items()}
        self.cameras = cameras
        self.main = nn.ModuleList()
        self.merge = nn.ModuleList()
        c = taps[0].channels
        for k in range(len(taps)):
            if k > 0:
                self.merge.append(Stage(taps[k].channels, merges[k - 1], emb_dim, n, e, groups=v,
                                        norm_groups=groups["merge_groups"][k - 1]))
                c = c + merges[k - 1]
            # stride brings the path to the next tap's resolution (1 after the last tap)
            nxt = taps[k + 1].downsample if k + 1 < len(taps) else taps[k].downsample
            ratio = nxt // taps[k].downsample
            if ratio * taps[k].downsample != nxt or ratio < 1:
                raise ValueError(f"taps must be ordered fine to coarse with integer ratios; got {taps}")
            self.main.append(Stage(c, widths[k], emb_dim, n, e, stride=ratio, groups=v,
                                   norm_groups=groups["branch_groups"][k]))
            c = widths[k]
        self.tail = nn.ModuleList()
        for w, g in zip(cfg.branch_tail_widths, groups["branch_tail_groups"]):
            self.tail.append(Stage(c, w, emb_dim, n, e, groups=v, norm_groups=g))
            c = w
        self.out_channels = c * cameras

    def forward(self, feats: list[torch.Tensor], emb: torch.Tensor) -> torch.Tensor:
        x = self.main[0](feats[0], emb)
        for k in range(1, len(feats)):
            x = _cat_per_camera(x, self.merge[k - 1](feats[k], emb), self.cameras)
            x = self.main[k](x, emb)
        for stage in self.tail:
            x = stage(x, emb)
        return x


class Adapter(nn.Module):
    """Tapped features of all cameras -> flat global condition (B, out_dim)."""

    def __init__(self, cfg: AdapterConfig, taps: list[TapGeometry], num_cameras: int, frames_per_camera: int,
                 latent_size: int, emb_dim: int):
        super().__init__()
        # finest tap first, as the pyramid is built; taps at one resolution go later-layer first
        # (the authors reverse their U-Net-ordered list)
        self.order = sorted(range(len(taps)), key=lambda i: (taps[i].downsample, -i))
        ordered = [taps[i] for i in self.order]
        self.branches = CameraBranches(ordered, cfg, emb_dim, num_cameras)
        c = self.branches.out_channels
        e, n = cfg.bottleneck_expansion, cfg.blocks_per_stage
        groups = {name: [g for g, _, _ in stages] for name, stages in cfg.stage_groups().items()}
        trunk = []
        for w, g in zip(cfg.fuse_widths, groups["fuse_groups"]):
            trunk.append(Stage(c, w, emb_dim, n, e, norm_groups=g))
            c = w
        for g in groups["refine_groups"]:
            trunk.append(Stage(c, c, emb_dim, n, 2, norm_groups=g))
        for g in groups["temporal_groups"]:
            trunk.append(Stage(c, c, emb_dim, cfg.temporal_blocks_per_stage, 2, temporal_stride=2, norm_groups=g))
        self.trunk = nn.ModuleList(trunk)
        self.norm = nn.GroupNorm(cfg.norm_groups or _groups(c // 2) * 2, c)
        t = max(frames_per_camera, 1)
        for _ in range(cfg.temporal_stages):
            t = (t - 1) // 2 + 1  # kernel 3, padding 1, stride 2
        h = latent_size // ordered[-1].downsample
        self.out_shape = (c, t, h, h)
        self.out_dim = math.prod(self.out_shape)
        if cfg.zero_init_residual:
            for block in self.modules():
                if isinstance(block, Bottleneck3D):
                    nn.init.zeros_(block.expand[1].weight)

    def forward(self, per_camera: list[torch.Tensor], emb: torch.Tensor) -> torch.Tensor:
        """per_camera: one (B, V, C_k, T, h_k, w_k) per tap, in config order; emb: (B, E) -> (B, out_dim)."""
        x = self.branches([per_camera[i].flatten(1, 2) for i in self.order], emb)
        for stage in self.trunk:
            x = stage(x, emb)
        return self.norm(x).flatten(1)
