"""Training-time image augmentation: the authors' ColorJitter(0.2, 0.2, 0.2, 0.05).

Applied to the uint8 clip frames in the trainer, after the collate and before the model (never to
the stored frames, which every row shares). One random draw per camera per clip, the same for all of
that camera's frames (the authors seed torchvision's ColorJitter per camera), so the condition frame
and the predicted frames of a camera agree.

frames (B, V, T, H, W, 3) uint8 -> the same shape and dtype. Factors: brightness b, contrast c and
saturation s uniform in [1 - x, 1 + x]; hue shift uniform in [-x, x] (in turns). torchvision applies
the four in a random order per call; here the order is drawn once per batch.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as torchvision's rgb_to_grayscale


def _gray(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(-1)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(-1)


def _shift_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1] (..., H, W, 3), hue shift in turns (..., 1, 1, 1) -> RGB."""
    r, g, b = x.unbind(-1)
    maxc, _ = x.max(-1)
    minc, _ = x.min(-1)
    v = maxc
    delta = maxc - minc
    s = torch.where(maxc > 0, delta / maxc.clamp_min(1e-8), torch.zeros_like(maxc))
    d = delta.clamp_min(1e-8)
    h = torch.where(maxc == r, (g - b) / d % 6, torch.where(maxc == g, (b - r) / d + 2, (r - g) / d + 4)) / 6
    h = torch.where(delta > 0, h, torch.zeros_like(h))
    h = (h + shift.squeeze(-1)) % 1.0
    # HSV -> RGB: k = (n + 6h) mod 6 for n = 5, 3, 1; channel = v - v s max(0, min(k, 4 - k, 1))
    n = torch.tensor([5.0, 3.0, 1.0], device=x.device, dtype=x.dtype)
    k = (n + 6 * h.unsqueeze(-1)) % 6
    f = torch.clamp(torch.minimum(k, 4 - k), 0, 1)
    return v.unsqueeze(-1) - (v * s).unsqueeze(-1) * f


def color_jitter(frames: torch.Tensor, strength: Sequence[float],
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """uint8 (B, V, T, H, W, 3) -> jittered uint8, one draw per (clip, camera). strength: (b, c, s, h)."""
    bright, contrast, sat, hue = (float(v) for v in strength)
    if not any((bright, contrast, sat, hue)):
        return frames
    b, v = frames.shape[:2]
    dev = frames.device
    x = frames.float() / 255.0

    def draw(width: float) -> torch.Tensor:  # (B, V, 1, 1, 1, 1) uniform in [-width, width]
        u = torch.rand(b, v, generator=generator, device=dev) * 2 - 1
        return (u * width).reshape(b, v, 1, 1, 1, 1)

    ops = {
        "brightness": lambda x, f: (x * f).clamp(0, 1),
        "contrast": lambda x, f: (f * x + (1 - f) * _gray(x).mean(dim=(-3, -2, -1), keepdim=True)).clamp(0, 1),
        "saturation": lambda x, f: (f * x + (1 - f) * _gray(x)).clamp(0, 1),
        "hue": lambda x, f: _shift_hue(x, f),
    }
    factors = {"brightness": 1 + draw(bright), "contrast": 1 + draw(contrast), "saturation": 1 + draw(sat),
               "hue": draw(hue)}
    widths = {"brightness": bright, "contrast": contrast, "saturation": sat, "hue": hue}
    order = torch.randperm(4, generator=generator, device="cpu" if generator is None else generator.device).tolist()
    for i in order:
        name = list(ops)[i]
        if widths[name]:
            x = ops[name](x, factors[name])
    return (x * 255.0).round().clamp(0, 255).to(torch.uint8)
