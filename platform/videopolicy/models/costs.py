"""Parameter and FLOP counts without memory: build and run under ``FakeTensorMode``.

Used for the full svd-xt preset on a CPU box (one real SVD-XT forward takes ~95 CPU-s and 7 GiB; a
fake one takes seconds and no memory). The meta device does not work for diffusers' SVD U-Net.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode


@contextlib.contextmanager
def fake_tensors() -> Iterator[FakeTensorMode]:
    """Every tensor created inside is a shape-only FakeTensor (parameters included)."""
    with FakeTensorMode(allow_non_fake_inputs=True) as mode:
        yield mode


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs (2 per multiply-add) of the matmuls, convolutions and attention that `fn` runs.

    Attention runs on the math backend here: the counter has no formula for the fused CPU kernel
    and would silently leave attention out (7.16 instead of 7.36 TFLOP for an SVD-XT forward).
    """
    counter = FlopCounterMode(display=False)
    with sdpa_kernel(SDPBackend.MATH), counter:
        fn()
    return counter.get_total_flops()
