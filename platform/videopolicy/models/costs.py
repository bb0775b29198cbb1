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


def forward_flops(cfg) -> dict[str, float]:
    """FLOPs of one sample (batch 1) through each network of a Video Policy `cfg` (any preset), counted on
    fake tensors: U-Net pass with taps, adapter, action head, VAE encode of one frame per camera, VAE
    encode of a whole clip; and parameter counts. Seconds for svd-xt, no memory."""
    import torch

    from videopolicy.models.model import VideoPolicyModel
    from videopolicy.models.vae import build_vae

    from videopolicy.models.pretrained import without_weights

    cfg = without_weights(cfg.resolve())  # shapes only: never fetch or read the pretrained weights
    lat, f, px = cfg.latent_size, cfg.num_video_frames, cfg.image_size
    with fake_tensors():
        model = VideoPolicyModel(cfg)
        vae = build_vae(cfg)
        x, sigma, feats = torch.randn(1, f, 4, lat, lat), torch.ones(1), []
        text = torch.randn(1, cfg.unet.cross_attention_dim)
        unet = count_flops(lambda: feats.extend(model.denoise_video(x, sigma, x, text, taps=True)[1]))
        cond = torch.randn(1, model.adapter.out_dim)
        adapter = count_flops(lambda: model.action_condition(feats, sigma))
        h = cfg.action_head
        head = count_flops(lambda: model.denoise_actions(torch.randn(1, h.horizon, h.action_dim), sigma, cond))
        frames = cfg.num_cameras * (max(cfg.frames_per_camera, 0) + 1)
        encode_frame = count_flops(lambda: vae.encode(torch.randn(1, 3, px, px)).latent_dist.mode())
        params = {"unet": count_params(model.unet), "adapter": count_params(model.adapter),
                  "action_head": count_params(model.action_head), "vae": count_params(vae)}
    return {"unet_pass": unet, "adapter": adapter, "head": head,
            "vae_encode_current_frames": encode_frame * cfg.num_cameras, "vae_encode_clip": encode_frame * frames,
            "params": params}
