"""The action head: Diffusion Policy's FiLM-conditioned 1D convolutional U-Net over the action chunk.

Written from the Diffusion Policy paper's description (Chi et al. 2023, "CNN-based"): the noisy
action sequence is processed by a 1D temporal U-Net of residual blocks (two Conv1d-GroupNorm-act
layers each); every block is modulated by FiLM (per-channel scale and bias) predicted from the
concatenation of the diffusion-step embedding and the global observation condition. Down levels halve
the horizon with a strided conv, up levels restore it with a transposed conv and skip connections.

Video Policy's variant (faithful defaults): kernel 5, widths 256/512/1024, SiLU, and the step
embedding is the video U-Net's own time embedding of the action c_noise, passed through
SiLU -> Linear(1280 -> 256). The ``own`` option gives the head its own sinusoidal step MLP.
"""

from __future__ import annotations

import torch
from diffusers.models.embeddings import Timesteps
from torch import nn

from videopolicy.models.config import ActionHeadConfig


OWN_STEP_SCALE = 1000.0


class _Scale(nn.Module):
    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


class ConvNormAct(nn.Sequential):
    """Conv1d (same padding) -> GroupNorm -> SiLU on (B, C, L)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, n_groups: int):
        super().__init__(nn.Conv1d(c_in, c_out, kernel_size, padding=kernel_size // 2),
                         nn.GroupNorm(n_groups, c_out), nn.SiLU())


class FiLMResBlock(nn.Module):
    """Two conv layers, the first modulated by FiLM from `cond`; residual. (B, C_in, L) -> (B, C_out, L)."""

    def __init__(self, c_in: int, c_out: int, cond_dim: int, kernel_size: int, n_groups: int):
        super().__init__()
        self.conv1 = ConvNormAct(c_in, c_out, kernel_size, n_groups)
        self.conv2 = ConvNormAct(c_out, c_out, kernel_size, n_groups)
        self.film = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, 2 * c_out))
        self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, bias = self.film(cond)[:, :, None].chunk(2, dim=1)
        h = self.conv1(x) * scale + bias
        return self.conv2(h) + self.skip(x)


class ActionUNet1D(nn.Module):
    """Noisy actions (B, horizon, action_dim) + step embedding + global condition -> (B, horizon, action_dim).

    ``step_input_dim``: width of the embedding passed to ``forward`` as ``step`` (the video U-Net's
    time-embedding width with ``step_embedding="unet"``); with ``"own"`` ``step`` is c_noise (B,).
    """

    def __init__(self, cfg: ActionHeadConfig, global_cond_dim: int, step_input_dim: int = 0):
        super().__init__()
        self.cfg = cfg
        dims, k, g, sdim = tuple(cfg.down_dims), cfg.kernel_size, cfg.n_groups, cfg.step_embed_dim
        if cfg.step_embedding == "unet":
            self.step_encoder = nn.Sequential(nn.SiLU(), nn.Linear(step_input_dim, sdim))
        else:
            # c_noise = ln(sigma)/4 spans a few units; scaled to DDPM-like step indices so the
            # sinusoids (periods up to 10^4) resolve it, as Diffusion Policy's step encoder expects
            self.step_encoder = nn.Sequential(_Scale(OWN_STEP_SCALE), Timesteps(sdim, True, downscale_freq_shift=0),
                                              nn.Linear(sdim, 4 * sdim), nn.SiLU(), nn.Linear(4 * sdim, sdim))
        cond_dim = sdim + global_cond_dim
        widths = (cfg.action_dim,) + dims
        self.down = nn.ModuleList()
        for i in range(len(dims)):
            last = i == len(dims) - 1
            self.down.append(nn.ModuleList([
                FiLMResBlock(widths[i], widths[i + 1], cond_dim, k, g),
                FiLMResBlock(widths[i + 1], widths[i + 1], cond_dim, k, g),
                nn.Identity() if last else nn.Conv1d(widths[i + 1], widths[i + 1], 3, stride=2, padding=1)]))
        self.mid = nn.ModuleList([FiLMResBlock(dims[-1], dims[-1], cond_dim, k, g) for _ in range(2)])
        self.up = nn.ModuleList()
        for i in reversed(range(len(dims) - 1)):  # back up to the first level's width
            self.up.append(nn.ModuleList([
                FiLMResBlock(2 * dims[i + 1], dims[i], cond_dim, k, g),
                FiLMResBlock(dims[i], dims[i], cond_dim, k, g),
                nn.ConvTranspose1d(dims[i], dims[i], 4, stride=2, padding=1)]))
        self.out = nn.Sequential(ConvNormAct(dims[0], dims[0], k, g), nn.Conv1d(dims[0], cfg.action_dim, 1))

    def forward(self, actions: torch.Tensor, step: torch.Tensor, global_cond: torch.Tensor) -> torch.Tensor:
        cond = torch.cat([self.step_encoder(step), global_cond], dim=-1)
        x = actions.transpose(1, 2)  # (B, action_dim, horizon)
        skips = []
        for block1, block2, downsample in self.down:
            x = block2(block1(x, cond), cond)
            skips.append(x)
            x = downsample(x)
        for block in self.mid:
            x = block(x, cond)
        # as in Diffusion Policy, the coarsest levels' outputs are the skips (the finest one goes unused)
        for block1, block2, upsample in self.up:
            x = torch.cat([x, skips.pop()], dim=1)
            x = upsample(block2(block1(x, cond), cond))
        return self.out(x).transpose(1, 2)
