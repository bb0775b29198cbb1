"""Feature taps: the intermediate video U-Net activations that condition the action head.

The paper's layers 9/14/17/20/23 are the authors' code indices 9/13/16/19/22 into the list of the
12 encoder-block and 12 decoder-block outputs (the middle block is not in that list). In diffusers
names these are ``config.PAPER_TAPS``. Forward hooks store each output; they return None, because a
hook that returns a value replaces the module's output. Attention outputs are tuples: take [0].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class TapGeometry:
    """Channels and spatial downsampling (relative to the latent) of one tapped module."""

    name: str
    channels: int
    downsample: int  # latent_size / feature_size


def tap_geometry(name: str, block_out_channels: tuple[int, ...]) -> TapGeometry:
    """Channels and resolution of a diffusers SVD U-Net module output, from its name alone.

    Checked against real (fake-tensor) forwards in the tests.
    """
    parts = name.split(".")
    n = len(block_out_channels)
    if parts[0] == "conv_in":
        return TapGeometry(name, block_out_channels[0], 1)
    if parts[0] == "mid_block":
        return TapGeometry(name, block_out_channels[-1], 2 ** (n - 1))
    if parts[0] == "down_blocks" and len(parts) >= 3:
        i = int(parts[1])
        down = 2 ** (i + 1) if parts[2] == "downsamplers" else 2**i
        return TapGeometry(name, block_out_channels[i], down)
    if parts[0] == "up_blocks" and len(parts) >= 3:
        j = int(parts[1])
        channels = list(reversed(block_out_channels))[j]
        level = n - 1 - j  # resolution level of the block's input
        down = 2 ** (level - 1) if parts[2] == "upsamplers" else 2**level
        return TapGeometry(name, channels, down)
    raise ValueError(f"cannot tap {name!r}: use conv_in, mid_block, down_blocks.i.* or up_blocks.j.*")


class FeatureTaps:
    """Forward hooks on named U-Net modules; ``features`` holds the latest outputs.

    Usage::

        with FeatureTaps(unet, names, detach=True) as taps:
            unet(...)
        feats = taps.take()  # list of (B*F, C, h, w), in the order of `names`
    """

    def __init__(self, unet: nn.Module, names: tuple[str, ...] | list[str], detach: bool = False):
        modules = dict(unet.named_modules())
        missing = [n for n in names if n not in modules]
        if missing:
            raise KeyError(f"U-Net has no module(s) {missing}")
        self.names = tuple(names)
        self.detach = detach
        self.features: dict[str, torch.Tensor] = {}
        self._modules = [modules[n] for n in self.names]
        self._handles: list = []

    def _hook(self, name: str):
        def hook(module, inputs, output) -> None:
            if isinstance(output, (tuple, list)):
                output = output[0]
            elif hasattr(output, "sample"):
                output = output.sample
            self.features[name] = output.detach() if self.detach else output
            return None  # never replace the module's output
        return hook

    def __enter__(self) -> "FeatureTaps":
        self.features.clear()
        self._handles = [m.register_forward_hook(self._hook(n)) for n, m in zip(self.names, self._modules)]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def take(self) -> list[torch.Tensor]:
        """The captured features in tap order; clears the store so graphs are not kept alive."""
        missing = [n for n in self.names if n not in self.features]
        if missing:
            raise RuntimeError(f"taps {missing} did not fire; was the U-Net called inside the context?")
        out = [self.features[n] for n in self.names]
        self.features.clear()
        return out
