"""Model hyper-parameters of Video Policy (arXiv 2508.00795) as plain, YAML-loadable dataclasses.

Every architecture field that differs between the two presets is ``Optional`` with default ``None``:
``None`` means "take it from the preset" (``ModelConfig.preset``: ``"tiny"``, ``"cpu"`` or ``"svd-xt"``), a value
overrides the preset. ``ModelConfig.resolve()`` returns the concrete config that every builder uses
(builders call it themselves), so a YAML file can say ``preset: svd-xt`` and override one field.

Field types stay within int, float, str, bool, Optional[...], tuple[...] of those, Literal[...] of
strings and nested dataclasses, so the platform's generic loader (``videopolicy.config``) can build
and check them. ``validate()`` on each class returns human-readable problems, not exceptions.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Literal, Optional

Mode = Literal["stage1", "stage2", "joint"]
MODES: tuple[str, ...] = ("stage1", "stage2", "joint")

# The paper's feature layers 9/14/17/20/23 (authors' code indices 9/13/16/19/22) as diffusers modules.
PAPER_TAPS: tuple[str, ...] = (
    "down_blocks.2.downsamplers.0",
    "up_blocks.0.resnets.1",
    "up_blocks.1.attentions.1",
    "up_blocks.2.attentions.1",
    "up_blocks.3.attentions.1",
)


@dataclass
class VideoUNetConfig:
    """SVD's spatio-temporal video U-Net (diffusers ``UNetSpatioTemporalConditionModel``)."""

    block_out_channels: Optional[tuple[int, ...]] = None  # svd-xt (320, 640, 1280, 1280)
    num_attention_heads: Optional[tuple[int, ...]] = None  # svd-xt (5, 10, 20, 20)
    cross_attention_dim: Optional[int] = None  # = text embedding width (1024 for svd-xt)
    addition_time_embed_dim: Optional[int] = None  # per added-time-id sinusoid width (256 for svd-xt)
    layers_per_block: int = 2  # 2 in SVD; the feature-tap names assume it
    transformer_layers_per_block: int = 1
    pretrained: Optional[str] = None  # local dir or hub id of an SVD(-XT) pipeline or a bare U-Net
    pretrained_subfolder: Optional[str] = "unet"  # None when `pretrained` is the U-Net folder itself
    gradient_checkpointing: bool = False
    fps_id: int = 6  # constant added_time_ids of the authors: (fps_id, motion_bucket_id, cond_aug)
    motion_bucket_id: int = 100

    def validate(self) -> list[str]:
        errs = []
        if self.block_out_channels is not None:
            if len(self.block_out_channels) != 4:
                errs.append("block_out_channels: SVD's topology has 4 levels (the feature taps name them)")
            if any(c <= 0 or c % 32 for c in self.block_out_channels):
                errs.append("block_out_channels: each must be a positive multiple of 32 (GroupNorm uses 32 groups)")
        if self.num_attention_heads is not None:
            if self.block_out_channels is not None and len(self.num_attention_heads) != len(self.block_out_channels):
                errs.append("num_attention_heads: needs one entry per level of block_out_channels")
            for i, h in enumerate(self.num_attention_heads):
                if h <= 0:
                    errs.append(f"num_attention_heads[{i}]: must be > 0")
                elif self.block_out_channels is not None and i < len(self.block_out_channels) \
                        and self.block_out_channels[i] % h:
                    errs.append(f"num_attention_heads[{i}]: {h} does not divide {self.block_out_channels[i]} channels")
        for name in ("cross_attention_dim", "addition_time_embed_dim"):
            v = getattr(self, name)
            if v is not None and v <= 0:
                errs.append(f"{name}: must be > 0")
        if self.layers_per_block != 2:
            errs.append("layers_per_block: must be 2 (SVD's topology; the feature taps assume it)")
        if self.transformer_layers_per_block <= 0:
            errs.append("transformer_layers_per_block: must be > 0")
        if self.pretrained is not None and not self.pretrained.strip():
            errs.append("pretrained: empty string; use null for random init")
        return errs


@dataclass
class TextConfig:
    """Instruction encoder: pooled, projected CLIP text embedding (OpenCLIP ViT-H-14 for svd-xt)."""

    hidden_size: Optional[int] = None
    num_layers: Optional[int] = None
    num_heads: Optional[int] = None
    intermediate_size: Optional[int] = None
    projection_dim: Optional[int] = None  # must equal the U-Net's cross_attention_dim
    hidden_act: str = "gelu"  # OpenCLIP ViT-H uses GELU (OpenAI CLIP used quick_gelu)
    context_length: int = 77
    pretrained: Optional[str] = None  # e.g. laion/CLIP-ViT-H-14-laion2B-s32B-b79K or a local dir
    bpe_path: Optional[str] = None  # open_clip's bpe_simple_vocab_16e6.txt.gz; None: ensure_bpe_vocab()

    def validate(self) -> list[str]:
        errs = []
        for name in ("hidden_size", "num_layers", "num_heads", "intermediate_size", "projection_dim"):
            v = getattr(self, name)
            if v is not None and v <= 0:
                errs.append(f"{name}: must be > 0")
        if self.hidden_size and self.num_heads and self.hidden_size % self.num_heads:
            errs.append(f"num_heads: {self.num_heads} does not divide hidden_size {self.hidden_size}")
        if not 2 <= self.context_length <= 77:
            errs.append("context_length: must be in [2, 77] (CLIP's position table has 77 entries)")
        if self.hidden_act not in ("gelu", "quick_gelu"):
            errs.append(f"hidden_act: {self.hidden_act!r} is not 'gelu' or 'quick_gelu'")
        return errs


@dataclass
class VAEConfig:
    """SVD's image VAE with temporal decoder (diffusers ``AutoencoderKLTemporalDecoder``)."""

    block_out_channels: Optional[tuple[int, ...]] = None  # svd-xt (128, 256, 512, 512)
    layers_per_block: Optional[int] = None
    latent_channels: int = 4
    scaling_factor: float = 0.18215  # applied to video targets only; conditioning latents stay unscaled
    cond_aug: float = 0.02  # pixel noise on the conditioning frame before encoding (SVD convention)
    encode_chunk: int = 16  # frames per VAE call, bounds memory
    # Random init only: rescale the encoder's output so latents have this std, as SVD's trained VAE's do
    # (~1 / scaling_factor = 5.5), with a narrow posterior (2% of it). A random encoder's latents come out
    # at std ~0.25 whatever the image (GroupNorm precedes its last conv) with a posterior std ~1: the
    # concat conditioning drowns in the U-Net's unit-variance noise input and the sampled targets are
    # mostly noise (vae.calibrate_latent_std). None: the preset's; 0: leave the init as it is.
    latent_std: Optional[float] = None
    # Random init only: first fit the VAE to the clip stage's frames (reconstruction, a small KL), as SVD's
    # VAE was trained before the U-Net, then scale its latents to latent_std. Every stage on the same
    # clips shares the fitted weights through the store (train/vae_fit.py). A random encoder keeps
    # too little of a 64 px frame: measured on 4 Lift demos (no stage-2 condition dropout), stage 2's
    # adapter gave one output for every clip on a random VAE, and on a fitted one (600 steps, PSNR 27 dB)
    # a conditional policy (sampled chunks' MSE 0.11, against 0.15 for the mean chunk; README).
    fit_steps: int = 0
    fit_batch_size: int = 32
    fit_lr: float = 1e-3
    pretrained: Optional[str] = None
    pretrained_subfolder: Optional[str] = "vae"

    def validate(self) -> list[str]:
        errs = []
        if self.block_out_channels is not None and any(c <= 0 for c in self.block_out_channels):
            errs.append("block_out_channels: must all be > 0")
        if self.layers_per_block is not None and self.layers_per_block <= 0:
            errs.append("layers_per_block: must be > 0")
        if self.latent_channels <= 0:
            errs.append("latent_channels: must be > 0")
        if self.scaling_factor <= 0:
            errs.append("scaling_factor: must be > 0")
        if self.cond_aug < 0:
            errs.append("cond_aug: must be >= 0")
        if self.encode_chunk <= 0:
            errs.append("encode_chunk: must be > 0")
        if self.latent_std is not None and self.latent_std < 0:
            errs.append("latent_std: must be >= 0 (0 leaves a random VAE's scale as initialised)")
        if self.fit_steps < 0 or self.fit_batch_size <= 0 or self.fit_lr <= 0:
            errs.append("fit_steps/fit_batch_size/fit_lr: need fit_steps >= 0, fit_batch_size > 0, fit_lr > 0")
        if self.fit_steps and self.pretrained:
            errs.append(f"fit_steps: {self.fit_steps} fits a random-init VAE; this one loads {self.pretrained!r}. "
                        f"Fix: drop vae.fit_steps, or vae.pretrained")
        return errs

    @property
    def downsample(self) -> int:
        """Pixel-to-latent downsampling factor (8 for SVD's 4-level VAE)."""
        return 2 ** (len(self.block_out_channels or (0, 0, 0, 0)) - 1)


@dataclass
class AdapterConfig:
    """The CNN adapter: per-camera 3D-CNN pyramid over the tapped U-Net features, then a fused trunk.

    Widths are per stage; ``None`` takes the preset's. The faithful (svd-xt) widths reproduce the
    authors' 205.8M-parameter adapter and its 420 x 4 x 4 = 6720-d output at 32x32 latents.
    """

    taps: tuple[str, ...] = PAPER_TAPS  # U-Net modules whose outputs are the features (any order)
    branch_widths: Optional[tuple[int, ...]] = None  # per camera, one per tap, finest tap first
    merge_widths: Optional[tuple[int, ...]] = None  # projection of each coarser tap before the concat
    branch_tail_widths: Optional[tuple[int, ...]] = None  # per-camera stages after the last tap
    fuse_widths: Optional[tuple[int, ...]] = None  # after concatenating the cameras; last = output channels
    refine_stages: Optional[int] = None  # extra stages at the output width (expansion 2)
    temporal_stages: int = 3  # stride-2 stages over time (8 frames -> 1)
    # Start every bottleneck as its shortcut (its last GroupNorm's scale 0; Goyal et al. 2017), so the
    # untrained stack passes its input on. The authors' adapter starts from PyTorch's default init;
    # at tiny sizes (1x1 coarse taps, ~17 blocks deep) that default loses what the taps know about the
    # clip: on 4 Lift demos' frozen taps a ridge probe of the action chunk reaches MSE 0.02 from the
    # taps, 0.16 from the default-init output (0.14: the mean chunk) and 0.05 with this init.
    zero_init_residual: bool = False
    blocks_per_stage: Optional[int] = None
    temporal_blocks_per_stage: Optional[int] = None
    bottleneck_expansion: int = 4
    # GroupNorm groups of each stage's bottleneck (its reduce and 3x3x3 convs; the output and shortcut
    # norms use groups x expansion), one per stage of the matching *_widths / stage count. None: a rule
    # (<= 10 groups, >= 4 channels each). svd-xt: the authors' VideoResNet values, so their weights load.
    branch_groups: Optional[tuple[int, ...]] = None  # authors' layer1-5_c: 10
    merge_groups: Optional[tuple[int, ...]] = None  # layer2-5_c_cat: 10
    branch_tail_groups: Optional[tuple[int, ...]] = None  # layer6_c: 8, layer7_c: 6
    fuse_groups: Optional[tuple[int, ...]] = None  # layer8-12: 10, 8, 6, 5, 5
    refine_groups: Optional[tuple[int, ...]] = None  # layer13-14: 7, 7 (expansion 2)
    temporal_groups: Optional[tuple[int, ...]] = None  # layer15-17: 7, 7, 7 (expansion 2)
    norm_groups: Optional[int] = None  # the final GroupNorm over the output channels: 14

    def stage_groups(self) -> dict[str, tuple[tuple[Optional[int], int, int], ...]]:
        """Per group field: (groups or None, bottleneck width, expansion) of each of its stages."""
        e, out = self.bottleneck_expansion, (self.fuse_widths or (0,))[-1]
        spec = {"branch_groups": (self.branch_widths, e), "merge_groups": (self.merge_widths, e),
                "branch_tail_groups": (self.branch_tail_widths, e), "fuse_groups": (self.fuse_widths, e),
                "refine_groups": ((out,) * (self.refine_stages or 0), 2),
                "temporal_groups": ((out,) * self.temporal_stages, 2)}
        result = {}
        for name, (widths, exp) in spec.items():
            groups = getattr(self, name)
            widths = tuple(widths or ())
            result[name] = tuple((None if groups is None else groups[i] if i < len(groups) else -1, w // exp, exp)
                                 for i, w in enumerate(widths))
        return result

    def _group_errors(self) -> list[str]:
        errs = []
        needs = {"branch_groups": ("branch_widths",), "merge_groups": ("merge_widths",),
                 "branch_tail_groups": ("branch_tail_widths",), "fuse_groups": ("fuse_widths",),
                 "refine_groups": ("fuse_widths", "refine_stages"), "temporal_groups": ("fuse_widths",)}
        for name, stages in self.stage_groups().items():
            groups = getattr(self, name)
            if groups is None or any(getattr(self, w) is None for w in needs[name]):
                continue  # unresolved (the preset fills the widths): checked again once resolved
            if len(groups) != len(stages):
                errs.append(f"{name}: needs one group count per stage ({len(stages)}), got {len(groups)}")
                continue
            for g, width, _ in stages:
                if g <= 0 or (width and width % g):
                    errs.append(f"{name}: {g} groups do not divide the bottleneck width {width}")
                    break
        if self.norm_groups is not None and self.fuse_widths:
            out = self.fuse_widths[-1]
            if self.norm_groups <= 0 or out % self.norm_groups:
                errs.append(f"norm_groups: {self.norm_groups} does not divide the output width {out}")
        return errs

    def validate(self) -> list[str]:
        errs = self._group_errors()
        if not self.taps:
            errs.append("taps: at least one feature tap is needed")
        if len(set(self.taps)) != len(self.taps):
            errs.append("taps: duplicate module names")
        n = len(self.taps)
        if self.branch_widths is not None and len(self.branch_widths) != n:
            errs.append(f"branch_widths: needs one width per tap ({n}), got {len(self.branch_widths)}")
        if self.merge_widths is not None and len(self.merge_widths) != max(n - 1, 0):
            errs.append(f"merge_widths: needs {max(n - 1, 0)} widths (taps - 1), got {len(self.merge_widths)}")
        if self.fuse_widths is not None and not self.fuse_widths:
            errs.append("fuse_widths: at least one width (the output channels)")
        for name in ("branch_widths", "merge_widths", "branch_tail_widths", "fuse_widths"):
            v = getattr(self, name)
            if v is not None and any(w <= 0 or w % self.bottleneck_expansion for w in v):
                errs.append(f"{name}: widths must be positive multiples of bottleneck_expansion "
                            f"{self.bottleneck_expansion}")
        if self.fuse_widths and self.fuse_widths[-1] % 2:
            errs.append("fuse_widths: the last (output) width must be even (expansion-2 refine/temporal stages)")
        if self.refine_stages is not None and self.refine_stages < 0:
            errs.append("refine_stages: must be >= 0")
        if self.temporal_stages < 0:
            errs.append("temporal_stages: must be >= 0")
        for name in ("blocks_per_stage", "temporal_blocks_per_stage"):
            v = getattr(self, name)
            if v is not None and v <= 0:
                errs.append(f"{name}: must be > 0")
        if self.bottleneck_expansion <= 0:
            errs.append("bottleneck_expansion: must be > 0")
        return errs


@dataclass
class ActionHeadConfig:
    """The action U-Net: Diffusion Policy's FiLM-conditioned 1D convolutional U-Net."""

    horizon: int = 32  # actions per chunk (the first 16 are executed)
    action_dim: int = 7
    down_dims: Optional[tuple[int, ...]] = None  # svd-xt (256, 512, 1024)
    kernel_size: int = 5
    n_groups: int = 8
    step_embed_dim: Optional[int] = None  # 256 for svd-xt
    step_embedding: Literal["unet", "own"] = "unet"  # faithful: the video U-Net's own time embedding

    def validate(self) -> list[str]:
        errs = []
        if self.horizon <= 0:
            errs.append("horizon must be > 0")
        if self.action_dim <= 0:
            errs.append("action_dim: must be > 0")
        if self.down_dims is not None:
            if not self.down_dims:
                errs.append("down_dims: at least one level")
            for d in self.down_dims:
                if d <= 0 or d % self.n_groups:
                    errs.append(f"down_dims: {d} must be a positive multiple of n_groups {self.n_groups}")
                    break
            if self.horizon % (2 ** (len(self.down_dims) - 1)):
                errs.append(f"horizon: {self.horizon} must be divisible by 2^(levels-1) = "
                            f"{2 ** (len(self.down_dims) - 1)} (one stride-2 downsample per level but the last)")
        if self.kernel_size <= 0 or self.kernel_size % 2 == 0:
            errs.append("kernel_size: must be a positive odd number")
        if self.n_groups <= 0:
            errs.append("n_groups: must be > 0")
        if self.step_embed_dim is not None and (self.step_embed_dim <= 0 or self.step_embed_dim % 2):
            errs.append("step_embed_dim: must be a positive even number")
        return errs


@dataclass
class EDMConfig:
    """EDM training with SVD's v-prediction scaling (``VScalingWithEDMcNoise``)."""

    p_mean: float = 1.0  # log-sigma mean of the training noise (authors; SVD_Xtend uses 0.7)
    p_std: float = 1.6
    action_sigma: Literal["tied", "independent"] = "tied"  # tied: action sigma = the clip's video sigma
    feature_sigma: Optional[float] = None  # decoupled ablation: fixed video sigma in stage 2
    # Decoupled ablation: the action sigma's own lognormal (None: the video's p_mean / p_std). Actions in
    # [-1, 1] learn best at EDM's (-1.2, 1.2); the video's (1.0, 1.6) spends most steps where the
    # observation barely matters (the DP-ResNet baseline's reason for its own schedule).
    action_p_mean: Optional[float] = None
    action_p_std: Optional[float] = None
    cond_dropout: float = 0.1  # per frame, text and concat latents dropped independently (for CFG), as the authors
    # Stage 2 only (None: cond_dropout, as the authors). Without guidance (sampler.guidance 1.0) nothing
    # uses the unconditional branch, and at tiny sizes the dropped frames' features make the adapter
    # collapse: measured on 4 Lift demos' frozen features (2000 head steps), sampled chunks missed the
    # demo by MSE 0.34 with 0.1 (adapter output nearly constant over clips), 0.11 with 0 (0.19: the mean).
    stage2_cond_dropout: Optional[float] = None
    # Decoupled ablation, stage 2 and the fast sampler: False feeds the U-Net an all-zero video at
    # feature_sigma (the noise's mean) instead of a fresh draw, so the features are a function of the
    # observation alone. At sigma 700 the draw carries no information about the clip, only variance the
    # adapter must learn to ignore: on 4 Lift demos' frozen features (2000 head steps) sampled chunks
    # missed the demo by MSE 0.11 with 4 noise draws per clip against 0.063 with one fixed draw.
    feature_noise: bool = True

    def validate(self) -> list[str]:
        errs = []
        if self.p_std <= 0:
            errs.append("p_std: must be > 0")
        if self.feature_sigma is not None and self.feature_sigma <= 0:
            errs.append("feature_sigma: must be > 0")
        if self.action_p_std is not None and self.action_p_std <= 0:
            errs.append("action_p_std: must be > 0")
        if (self.action_p_mean is not None or self.action_p_std is not None) and self.action_sigma == "tied":
            errs.append("action_p_mean/action_p_std: need action_sigma: independent (tied: the action sigma is "
                        "the clip's video sigma)")
        if self.feature_sigma is not None and self.action_sigma == "tied":
            errs.append("feature_sigma: only meaningful with action_sigma 'independent' (decoupled ablation)")
        if not self.feature_noise and self.feature_sigma is None:
            errs.append("feature_noise: false needs feature_sigma (the decoupled ablation's fixed stage-2 sigma)")
        if not 0.0 <= self.cond_dropout < 1.0:
            errs.append("cond_dropout: must be in [0, 1)")
        if self.stage2_cond_dropout is not None and not 0.0 <= self.stage2_cond_dropout < 1.0:
            errs.append("stage2_cond_dropout: must be in [0, 1)")
        return errs


@dataclass
class SamplerConfig:
    """Inference: the joint Euler-EDM sampler (faithful) or the fast decoupled mode."""

    mode: Literal["joint", "fast"] = "joint"
    steps: int = 30  # joint Euler steps over video and actions together
    sigma_min: float = 0.002
    sigma_max: float = 700.0
    rho: float = 7.0
    guidance: float = 2.0  # classifier-free guidance on video and actions; 1.0 turns CFG off
    guidance_min: Optional[float] = None  # linear ramp min -> guidance over frames/steps; None: constant
    decode_video: bool = False  # decode the predicted video with the VAE (logging only)
    feature_passes: int = 1  # fast mode: U-Net passes, from sigma_max down to feature_sigma
    feature_sigma: float = 700.0  # fast mode: sigma of the last pass, whose features are tapped
    head_steps: int = 10  # fast mode: head-only Euler steps on the actions
    head_sigma_max: Optional[float] = None  # fast mode: action schedule start; None: sigma_max

    def validate(self) -> list[str]:
        errs = []
        if self.steps <= 0:
            errs.append("steps: must be > 0")
        if not 0 < self.sigma_min < self.sigma_max:
            errs.append("sigma_min/sigma_max: need 0 < sigma_min < sigma_max")
        if self.rho <= 0:
            errs.append("rho: must be > 0")
        if self.guidance < 0:
            errs.append("guidance: must be >= 0")
        if self.guidance_min is not None and self.guidance_min < 0:
            errs.append("guidance_min: must be >= 0")
        if self.feature_passes <= 0:
            errs.append("feature_passes: must be > 0")
        if not 0 < self.feature_sigma <= self.sigma_max:
            errs.append("feature_sigma: must be in (0, sigma_max]")
        if self.head_steps <= 0:
            errs.append("head_steps: must be > 0")
        if self.head_sigma_max is not None and self.head_sigma_max <= self.sigma_min:
            errs.append("head_sigma_max: must be > sigma_min")
        return errs


@dataclass
class OptimConfig:
    """Parameter groups of the three training modes (the authors' Adam settings)."""

    lr: float = 1e-5  # video U-Net
    head_lr_scale: float = 5.0  # adapter and action head train at lr * head_lr_scale
    weight_decay: float = 0.0

    def validate(self) -> list[str]:
        errs = []
        if self.lr <= 0:
            errs.append("lr: must be > 0")
        if self.head_lr_scale <= 0:
            errs.append("head_lr_scale: must be > 0")
        if self.weight_decay < 0:
            errs.append("weight_decay: must be >= 0")
        return errs


@dataclass
class BaselineConfig:
    """DP-ResNet: a ResNet-18-shaped image encoder per camera + the same action head."""

    embedding_size: Optional[int] = None  # stem width (64 for ResNet-18)
    hidden_sizes: Optional[tuple[int, ...]] = None  # (64, 128, 256, 512) for ResNet-18
    depths: tuple[int, ...] = (2, 2, 2, 2)
    group_norm: bool = True  # Diffusion Policy swaps BatchNorm for GroupNorm (channels / 16 groups)
    pooling: Literal["spatial_softmax", "average"] = "spatial_softmax"  # Diffusion Policy: spatial softmax
    keypoints: int = 32  # spatial softmax: learned keypoints per camera (2 coordinates each)
    # Its own noise schedule: it denoises actions in [-1, 1] alone, so EDM's defaults (Karras et al. 2022:
    # lognormal(-1.2, 1.2), sigma_max 80) rather than the video's lognormal(1.0, 1.6) from sigma 700,
    # which spends most training steps at noise levels where the observation barely matters.
    p_mean: float = -1.2
    p_std: float = 1.2
    sigma_max: float = 80.0

    def validate(self) -> list[str]:
        errs = []
        if self.embedding_size is not None and self.embedding_size <= 0:
            errs.append("embedding_size: must be > 0")
        if self.hidden_sizes is not None:
            if len(self.hidden_sizes) != len(self.depths):
                errs.append("hidden_sizes: needs one width per entry of depths")
            if any(h <= 0 or (self.group_norm and h % 16) for h in self.hidden_sizes):
                errs.append("hidden_sizes: must be > 0 (multiples of 16 with group_norm)")
        if any(d <= 0 for d in self.depths):
            errs.append("depths: must all be > 0")
        return errs


@dataclass
class ModelConfig:
    """Everything that defines a Video Policy (or DP-ResNet baseline) model.

    ``num_cameras``, ``frames_per_camera`` and ``image_size`` must match the clips
    (``ClipConfig.frames_per_camera``, its cameras and ``image_size``); the U-Net sees
    ``1 + num_cameras * max(frames_per_camera, 1)`` frames (25 in the paper).
    """

    preset: str = "tiny"  # "tiny" (random init), "cpu" (tiny sizes + a recipe that learns on CPU), "svd-xt" (the paper)
    kind: Literal["video_policy", "dp_resnet"] = "video_policy"
    num_cameras: int = 3
    frames_per_camera: int = 8  # T; 0 = the paper's horizon-0 row (each camera predicts its current frame)
    pad_camera: int = 0  # index of the camera whose current frame is the pad frame (the authors: eye-in-hand)
    image_size: int = 128  # pixels (256 in the paper); latents are image_size / 8
    init_seed: int = 0  # random init of every part not loaded from `pretrained`
    allow_random_init: bool = False  # svd-xt without pretrained weights is refused unless this is true
    unet: VideoUNetConfig = field(default_factory=VideoUNetConfig)
    text: TextConfig = field(default_factory=TextConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    action_head: ActionHeadConfig = field(default_factory=ActionHeadConfig)
    edm: EDMConfig = field(default_factory=EDMConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)

    @property
    def num_video_frames(self) -> int:
        """Frames the video U-Net denoises: 1 pad frame + cameras x frames (25 = 1 + 3 x 8)."""
        return 1 + self.num_cameras * max(self.frames_per_camera, 1)

    @property
    def latent_size(self) -> int:
        return self.image_size // self.vae.downsample

    def validate(self) -> list[str]:
        errs = []
        if self.preset not in PRESETS:
            errs.append(f"preset: unknown preset {self.preset!r}; known: {sorted(PRESETS)}")
        if self.num_cameras <= 0:
            errs.append("num_cameras: must be > 0")
        if self.frames_per_camera < 0:
            errs.append("frames_per_camera: must be >= 0")
        if not 0 <= self.pad_camera < max(self.num_cameras, 1):
            errs.append(f"pad_camera: {self.pad_camera} is not a camera index in [0, {self.num_cameras})")
        if self.image_size <= 0 or self.image_size % 64:
            errs.append("image_size: must be a positive multiple of 64 (VAE x8, then the U-Net's three x2 levels)")
        if errs:
            return errs
        r = self.resolve()
        # Sections are checked by the loader as written; check them again with the preset filled in.
        for f in dataclasses.fields(self):
            section = getattr(self, f.name)
            if dataclasses.is_dataclass(section):
                before = set(section.validate())
                errs.extend(f"{f.name}.{e}" for e in getattr(r, f.name).validate() if e not in before)
        if r.kind == "video_policy" and not r.edm.feature_noise and (
                r.sampler.mode != "fast" or r.sampler.feature_passes != 1):
            errs.append("edm.feature_noise: false is trained for one zero-noise U-Net pass; set sampler.mode: fast "
                        "and sampler.feature_passes: 1")
        if r.kind == "video_policy" and r.text.projection_dim != r.unet.cross_attention_dim:
            errs.append(f"text.projection_dim: {r.text.projection_dim} must equal unet.cross_attention_dim "
                        f"{r.unet.cross_attention_dim} (the text embedding is the cross-attention context)")
        return errs

    def problems(self) -> list[str]:
        """Every problem of this config and its sections (what the platform loader reports)."""
        errs = []
        for f in dataclasses.fields(self):
            section = getattr(self, f.name)
            if dataclasses.is_dataclass(section):
                errs.extend(f"{f.name}.{e}" for e in section.validate())
        return errs + self.validate()

    def checked(self) -> "ModelConfig":
        """The resolved config; raises ValueError listing every problem."""
        errs = self.problems()
        if errs:
            raise ValueError("invalid model config:\n  - " + "\n  - ".join(errs))
        return self.resolve()

    def resolve(self) -> "ModelConfig":
        """A copy with every ``None`` architecture field filled from the preset."""
        if self.preset not in PRESETS:
            raise ValueError(f"unknown model preset {self.preset!r}; known: {sorted(PRESETS)}")
        return _fill(self, PRESETS[self.preset]())


def _fill(cfg, preset):
    """Recursively replace None fields of `cfg` by the preset's values (dataclasses of one type)."""
    out = {}
    for f in dataclasses.fields(cfg):
        mine, theirs = getattr(cfg, f.name), getattr(preset, f.name)
        if dataclasses.is_dataclass(mine):
            out[f.name] = _fill(mine, theirs)
        else:
            out[f.name] = theirs if mine is None else mine
    return type(cfg)(**out)


def _tiny() -> ModelConfig:
    """~6M-parameter U-Net with SVD's 4-level topology (so the paper's taps exist), random init."""
    return ModelConfig(
        preset="tiny",
        unet=VideoUNetConfig(block_out_channels=(32, 64, 64, 64), num_attention_heads=(2, 4, 4, 4),
                             cross_attention_dim=64, addition_time_embed_dim=32),
        text=TextConfig(hidden_size=64, num_layers=2, num_heads=4, intermediate_size=256, projection_dim=64),
        vae=VAEConfig(block_out_channels=(32, 32, 64, 64), layers_per_block=1, latent_std=1 / 0.18215),
        adapter=AdapterConfig(branch_widths=(32, 64, 64, 64, 64), merge_widths=(32, 32, 32, 32),
                              branch_tail_widths=(48, 32), fuse_widths=(64, 48, 32), refine_stages=1,
                              blocks_per_stage=1, temporal_blocks_per_stage=1),
        action_head=ActionHeadConfig(down_dims=(32, 64, 128), step_embed_dim=32),
        baseline=BaselineConfig(embedding_size=16, hidden_sizes=(16, 32, 64, 128)),
    )


def _svd_xt() -> ModelConfig:
    """The paper's sizes: SVD-XT U-Net (1,524,623,082 params), ViT-H text tower, faithful adapter/head."""
    return ModelConfig(
        preset="svd-xt",
        unet=VideoUNetConfig(block_out_channels=(320, 640, 1280, 1280), num_attention_heads=(5, 10, 20, 20),
                             cross_attention_dim=1024, addition_time_embed_dim=256),
        text=TextConfig(hidden_size=1024, num_layers=24, num_heads=16, intermediate_size=4096, projection_dim=1024),
        vae=VAEConfig(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_std=0.0),
        adapter=AdapterConfig(branch_widths=(320, 640, 1280, 1280, 1280), merge_widths=(320, 640, 640, 640),
                              branch_tail_widths=(864, 576), fuse_widths=(1280, 960, 720, 540, 420),
                              refine_stages=2, blocks_per_stage=2, temporal_blocks_per_stage=4,
                              branch_groups=(10,) * 5, merge_groups=(10,) * 4, branch_tail_groups=(8, 6),
                              fuse_groups=(10, 8, 6, 5, 5), refine_groups=(7, 7), temporal_groups=(7, 7, 7),
                              norm_groups=14),
        action_head=ActionHeadConfig(down_dims=(256, 512, 1024), step_embed_dim=256),
        baseline=BaselineConfig(embedding_size=64, hidden_sizes=(64, 128, 256, 512)),
    )


def _cpu() -> ModelConfig:
    """The CPU study's sizes (sweeps/cpu_paper.yaml): tiny at half the U-Net's width, where stage 1 costs the
    most (bench/study_costs.py), and a wider last fuse stage, as the closed-loop test learned with."""
    tiny = _tiny()
    return dataclasses.replace(
        tiny, preset="cpu",
        unet=dataclasses.replace(tiny.unet, block_out_channels=(32, 32, 32, 32), num_attention_heads=(2, 2, 2, 2)),
        adapter=dataclasses.replace(tiny.adapter, fuse_widths=(64, 48, 128)))


PRESETS = {"tiny": _tiny, "cpu": _cpu, "svd-xt": _svd_xt}
#: Presets meant to start from random weights (no pretrained checkpoint exists at their sizes).
RANDOM_INIT_PRESETS = frozenset({"tiny", "cpu"})

#: What a preset sets beyond its sizes: training and sampling settings, as config data merged UNDER the
#: `model` section when a config is read (YAML, --set, dicts: config.py's loader), so the file's own values win.
#: These settings are not Optional fields (None already means something for several), so resolve() cannot
#: fill them. "cpu" is the recipe that passed the closed-loop test (tests/test_closed_loop.py) at tiny sizes:
RECIPES: dict[str, dict] = {
    "cpu": {
        "vae": {"fit_steps": 150, "fit_batch_size": 16},  # a random VAE encoder loses the cube; 150 steps keep it
        # decoupled EDM (fidelity.md): actions on their own schedule, stage-2 features at a fixed sigma from a
        # zero video, no stage-2 conditioning dropout (the adapter collapsed with it at these sizes)
        "edm": {"action_sigma": "independent", "feature_sigma": 700.0, "feature_noise": False,
                "action_p_mean": -1.2, "action_p_std": 1.2, "stage2_cond_dropout": 0.0},
        "sampler": {"mode": "fast", "feature_sigma": 700.0, "head_steps": 10, "head_sigma_max": 80.0, "guidance": 1.0},
        "action_head": {"step_embedding": "own"},
        "adapter": {"zero_init_residual": True},
    },
}



def from_dict(cls, data: dict):
    """Plain data (e.g. a checkpoint's config.json) -> dataclass `cls`; lists become tuples where typed so.

    Only for configs this package wrote itself; user YAML goes through the platform's strict loader.
    """
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value, tp = data[f.name], hints[f.name]
        if dataclasses.is_dataclass(tp):
            value = from_dict(tp, value)
        elif isinstance(value, list) and "tuple" in str(tp):
            value = tuple(value)
        kwargs[f.name] = value
    return cls(**kwargs)
