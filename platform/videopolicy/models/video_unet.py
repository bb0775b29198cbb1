"""The video U-Net: SVD's ``UNetSpatioTemporalConditionModel`` (diffusers), text-conditioned.

The paper fine-tunes Stable Video Diffusion XT. The cross-attention context is the pooled CLIP text
embedding (length 1) instead of SVD's CLIP image embedding; both live in the same CLIP space, so
the architecture is unchanged. ``added_time_ids`` are the authors' constants (fps 6, motion 100,
cond_aug 0.02).
"""

from __future__ import annotations

import torch
from diffusers import UNetSpatioTemporalConditionModel

from videopolicy.models.config import ModelConfig, VideoUNetConfig

SVD_XT_UNET_PARAMS = 1_524_623_082  # diffusers' default config == the SVD-XT U-Net


def unet_kwargs(cfg: VideoUNetConfig, num_frames: int) -> dict:
    """diffusers constructor arguments for a resolved config."""
    emb = cfg.addition_time_embed_dim
    return dict(
        in_channels=8,  # 4 noisy latent channels + 4 concat (first-frame) channels
        out_channels=4,
        block_out_channels=tuple(cfg.block_out_channels),
        num_attention_heads=tuple(cfg.num_attention_heads),
        cross_attention_dim=cfg.cross_attention_dim,
        addition_time_embed_dim=emb,
        projection_class_embeddings_input_dim=3 * emb,  # three added time ids
        layers_per_block=cfg.layers_per_block,
        transformer_layers_per_block=cfg.transformer_layers_per_block,
        num_frames=num_frames,
    )


def build_video_unet(cfg: ModelConfig) -> UNetSpatioTemporalConditionModel:
    """Random init from the config, or ``from_pretrained`` when ``unet.pretrained`` is set.

    Works under ``FakeTensorMode`` and on the meta device (shape and cost checks without memory).
    ``unet.pretrained`` is a local directory or a hub id (``org/name@revision``; ``models.pretrained``).
    """
    cfg = cfg.resolve()
    u = cfg.unet
    if u.pretrained:
        from videopolicy.models.pretrained import from_pretrained_args

        path, kwargs = from_pretrained_args(u.pretrained, u.pretrained_subfolder, "unet")
        unet = UNetSpatioTemporalConditionModel.from_pretrained(path, **kwargs)
        want = unet_kwargs(u, cfg.num_video_frames)
        for key in ("block_out_channels", "cross_attention_dim", "addition_time_embed_dim"):
            got = unet.config[key]
            got = tuple(got) if isinstance(got, list) else got
            if got != want[key]:
                raise ValueError(f"pretrained U-Net at {u.pretrained!r} has {key}={got}, the config says "
                                 f"{want[key]}; pick the matching preset")
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.init_seed)
            unet = UNetSpatioTemporalConditionModel(**unet_kwargs(u, cfg.num_video_frames))
    if u.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    return unet


def added_time_ids(cfg: VideoUNetConfig, cond_aug: float, batch: int, device, dtype) -> torch.Tensor:
    """SVD micro-conditioning (fps_id, motion_bucket_id, cond_aug): (B, 3)."""
    ids = torch.tensor([cfg.fps_id, cfg.motion_bucket_id, cond_aug], device=device, dtype=dtype)
    return ids.expand(batch, 3)


def noise_embedding(unet: UNetSpatioTemporalConditionModel, c_noise: torch.Tensor) -> torch.Tensor:
    """The U-Net's own time embedding of c_noise (B,) -> (B, 4 * block_out_channels[0]).

    Without the added-time-id embedding, as the authors' adapter and action head use it.
    """
    t = unet.time_proj(c_noise).to(unet.time_embedding.linear_1.weight.dtype)
    return unet.time_embedding(t)


class PerFrameContext:
    """``with PerFrameContext(unet, context):`` the U-Net's blocks see a cross-attention context per frame.

    diffusers repeats one (B, 1, D) context over the F frames of a clip; the authors' conditioner holds
    one row per frame (B*F rows), so condition dropout can zero the text of single frames. This swaps
    the context each block receives for `context` (B, F, D) -> (B*F, 1, D). The temporal layers take
    the first frame's context (diffusers and sgm alike), i.e. the pad frame's.
    """

    def __init__(self, unet: UNetSpatioTemporalConditionModel, context: torch.Tensor):
        self.blocks = [*unet.down_blocks, unet.mid_block, *unet.up_blocks]
        self.context = context.reshape(-1, 1, context.shape[-1])
        self.handles: list = []

    def _swap(self, module, args, kwargs):
        if kwargs.get("encoder_hidden_states") is not None:
            kwargs["encoder_hidden_states"] = self.context.to(kwargs["encoder_hidden_states"])
        return args, kwargs

    def __enter__(self) -> "PerFrameContext":
        self.handles = [b.register_forward_pre_hook(self._swap, with_kwargs=True) for b in self.blocks]
        return self

    def __exit__(self, *exc) -> None:
        for h in self.handles:
            h.remove()
