"""The Video Policy model: video U-Net + feature taps + adapter + action head, with the EDM losses.

One forward pass of the video U-Net denoises the packed multi-view video; its tapped features go
through the adapter into the action head, which denoises the action chunk in the same call.

Training modes (the paper's words):
    stage1  video loss only; trains the video U-Net (the action branch is not run).
    stage2  video U-Net frozen (run without grad, features detached); trains adapter + head at 5x lr.
    joint   everything trains from the start; the action loss also reaches the U-Net through the taps.
The loss is the authors': the mean over the concatenation of per-frame video losses and per-step action
losses (in stage 2 the video part carries no gradient).

``forward(batch, mode)`` returns the loss, so the model can be wrapped in DDP as it is.
"""

from __future__ import annotations

import dataclasses
from contextlib import nullcontext
from typing import Optional

import torch
from torch import nn

from videopolicy.models import edm, multiview
from videopolicy.models.action_head import ActionUNet1D
from videopolicy.models.adapter import Adapter
from videopolicy.models.base import LossOutput, PolicyModel, SampleOutput, as_tensor
from videopolicy.models.config import MODES, ModelConfig, SamplerConfig
from videopolicy.models.feature_taps import FeatureTaps, tap_geometry
from videopolicy.models.sampler import sample
from videopolicy.models.vae import ClipLatents, encode_clip, encode_condition, to_pixels
from videopolicy.models.video_unet import PerFrameContext, added_time_ids, build_video_unet, noise_embedding


class VideoPolicyModel(PolicyModel):
    """Video U-Net + adapter + action head (the trainable parts); VAE and text encoder attached frozen."""

    kind = "video_policy"
    modes = MODES
    frozen_encoders = ("vae", "text")

    def __init__(self, cfg: ModelConfig, unet: Optional[nn.Module] = None):
        super().__init__(cfg)
        c = self.cfg
        self.unet = unet if unet is not None else build_video_unet(c)
        self._build_action_branch()

    def _build_action_branch(self) -> None:
        """Adapter + action head from ``self.cfg`` (their own seed: the same init whatever came before)."""
        c = self.cfg
        emb_dim = 4 * c.unet.block_out_channels[0]  # the U-Net's time-embedding width (1280 for SVD)
        taps = [tap_geometry(n, c.unet.block_out_channels) for n in c.adapter.taps]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c.init_seed + 3)
            self.adapter = Adapter(c.adapter, taps, c.num_cameras, c.frames_per_camera, c.latent_size, emb_dim)
            self.action_head = ActionUNet1D(c.action_head, self.adapter.out_dim, emb_dim)

    def with_stage2_config(self, cfg: ModelConfig) -> "VideoPolicyModel":
        """Two-stage's stage 2 from a stage-1 model: its U-Net and encoders (config and weights), with
        everything stage 2 trains or uses (adapter, action head, EDM, sampler, optimiser) from `cfg`.
        Stage 1 trains the U-Net alone, so the adapter and head it carries are still at init; they are
        built anew here, so a stage-2 setting that differs from stage 1's takes effect instead of being
        silently replaced by the checkpoint's."""
        cfg = cfg.checked()
        self.cfg = dataclasses.replace(cfg, unet=self.cfg.unet, vae=self.cfg.vae, text=self.cfg.text)
        device = self.device
        self._build_action_branch()
        return self.to(device)

    def trainable_parts(self, mode: str) -> dict[str, tuple[nn.Module, float]]:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {MODES}")
        scale = self.cfg.optim.head_lr_scale
        parts = {}
        if mode in ("stage1", "joint"):
            parts["video_unet"] = (self.unet, 1.0)
        if mode in ("stage2", "joint"):
            parts["adapter"] = (self.adapter, scale)
            parts["action_head"] = (self.action_head, scale)
        return parts

    # -- inputs ----------------------------------------------------------------------------------
    def encode(self, frames, generator: Optional[torch.Generator] = None) -> ClipLatents:
        """uint8 clip frames (B, V, T, H, W, 3) -> ClipLatents (cache these to skip the VAE)."""
        if self.vae is None:
            raise RuntimeError("no VAE attached: pass cached latents or build with encoders")
        return encode_clip(self.vae, as_tensor(frames, self.device), self.cfg, generator)

    def encode_observations(self, frames, generator: edm.Noise = None) -> torch.Tensor:
        """uint8 current frames (B, V, H, W, 3) -> concat-conditioning latents (B, V, C, h, w)."""
        if self.vae is None:
            raise RuntimeError("no VAE attached")
        return encode_condition(self.vae, to_pixels(as_tensor(frames, self.device)), self.cfg, generator)

    def prepare(self, batch: dict, generator: Optional[torch.Generator] = None) -> dict[str, torch.Tensor]:
        """A clip batch -> model tensors on the model's device.

        Accepts ``frames`` uint8 (B, V, T, H, W, 3) or cached ``latents`` (B, V, T, C, h, w) with
        optional ``cond_latents`` (B, V, C, h, w); ``text`` list[str] or ``text_emb`` (B, D);
        ``actions`` (B, horizon, action_dim) in [-1, 1] (optional in stage 1).
        Returns video target (B, F, C, h, w) scaled, cond (B, F, C, h, w), text (B, D), actions.
        """
        dev = self.device
        if "latents" in batch:
            latents = as_tensor(batch["latents"], dev).float()
            cond = as_tensor(batch["cond_latents"], dev).float() if "cond_latents" in batch else latents[:, :, 0]
        else:
            enc = self.encode(batch["frames"], generator)
            latents, cond = enc.latents, enc.cond
        t, want = multiview.frames_per_camera(latents), max(self.cfg.frames_per_camera, 1)
        if t != want or latents.shape[1] != self.cfg.num_cameras:
            raise ValueError(f"clip has {latents.shape[1]} cameras x {t} frames, the model expects "
                             f"{self.cfg.num_cameras} x {want}")
        pad = self.cfg.pad_camera
        out = {
            "video": multiview.pack_video(latents, pad) * self.cfg.vae.scaling_factor,
            "cond": multiview.pack_condition(cond, t, pad),
            "text": as_tensor(batch["text_emb"], dev).float() if "text_emb" in batch
            else self.embed_text(batch["text"]),
        }
        if batch.get("actions") is not None:
            out["actions"] = as_tensor(batch["actions"], dev).float()
        return out

    # -- the denoiser ----------------------------------------------------------------------------
    def denoise_video(self, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor, text: torch.Tensor,
                      taps: bool = False, detach_features: bool = False
                      ) -> tuple[torch.Tensor, Optional[list[torch.Tensor]]]:
        """Noisy video x (B, F, C, h, w) at sigma (B,) -> (denoised video, tapped features or None).

        cond: (B, F, C, h, w) unscaled first-frame latents; text: (B, D), or (B, F, D) per frame (training
        with per-frame condition dropout). Features: (B*F, C_k, h_k, w_k).
        """
        c_skip, c_out, c_in, c_noise = (edm.append_dims(s, x.ndim) if i < 3 else s
                                        for i, s in enumerate(edm.v_scalings(sigma)))
        inp = torch.cat([x * c_in, cond], dim=2)
        ids = added_time_ids(self.cfg.unet, self.cfg.vae.cond_aug, x.shape[0], x.device, x.dtype)
        self.calls["unet"] += x.shape[0]
        per_frame = PerFrameContext(self.unet, text) if text.ndim == 3 else nullcontext()
        context = text[:, :1] if text.ndim == 3 else text[:, None]
        tap = FeatureTaps(self.unet, self.cfg.adapter.taps, detach=detach_features) if taps else nullcontext()
        with per_frame, tap:
            out = self.unet(inp, c_noise, encoder_hidden_states=context, added_time_ids=ids).sample
        return c_skip * x + c_out * out, (tap.take() if taps else None)

    def action_condition(self, features: list[torch.Tensor], sigma: torch.Tensor) -> torch.Tensor:
        """Tapped features at video sigma (B,) -> the head's global condition (B, adapter.out_dim).

        The adapter's noise embedding is the features' (video) sigma: with tied sigmas this is the
        authors' choice; decoupled, it lets the fast sampler run the adapter once per chunk.
        """
        b = sigma.shape[0]
        per_camera = [multiview.unpack_features(f, b, self.cfg.num_cameras) for f in features]
        emb = noise_embedding(self.unet, edm.v_scalings(sigma)[3])
        self.calls["adapter"] += b
        return self.adapter(per_camera, emb)

    def denoise_actions(self, x: torch.Tensor, sigma: torch.Tensor, global_cond: torch.Tensor) -> torch.Tensor:
        """Noisy actions (B, horizon, action_dim) at sigma (B,) -> denoised actions."""
        c_skip, c_out, c_in, c_noise = edm.v_scalings(sigma)
        step = noise_embedding(self.unet, c_noise) if self.cfg.action_head.step_embedding == "unet" else c_noise
        self.calls["head"] += x.shape[0]
        out = self.action_head(x * edm.append_dims(c_in, 3), step, global_cond)
        return edm.append_dims(c_skip, 3) * x + edm.append_dims(c_out, 3) * out

    def denoise(self, video: torch.Tensor, video_sigma: torch.Tensor, cond: torch.Tensor, text: torch.Tensor,
                actions: torch.Tensor, action_sigma: torch.Tensor, detach_features: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """One joint call: (denoised video, denoised actions)."""
        d_video, features = self.denoise_video(video, video_sigma, cond, text, taps=True,
                                               detach_features=detach_features)
        return d_video, self.denoise_actions(actions, action_sigma, self.action_condition(features, video_sigma))

    # -- the loss ----------------------------------------------------------------------------------
    def forward(self, batch: dict, mode: str = "stage1", generator: Optional[torch.Generator] = None) -> LossOutput:
        """EDM v-prediction loss for `mode`; condition dropout (CFG) only in train()."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {MODES}")
        inputs = self.prepare(batch, generator)
        video, cond, text = inputs["video"], inputs["cond"], inputs["text"]
        b, dev = video.shape[0], video.device
        e = self.cfg.edm
        dropout = e.stage2_cond_dropout if mode == "stage2" and e.stage2_cond_dropout is not None else e.cond_dropout
        if "frozen" in batch and self.training and dropout > 0:
            raise ValueError("a cached stage-2 U-Net pass (train.feature_cache) cannot see condition dropout; "
                             "set model.edm.stage2_cond_dropout: 0")
        if self.training and dropout > 0:
            # The authors drop text and concat latents independently per frame (their conditioner holds
            # B x F rows): this shapes the unconditional branch that classifier-free guidance uses.
            f = video.shape[1]
            keep = (torch.rand(2, b, f, generator=generator, device=dev) >= dropout).float()
            text = text[:, None] * keep[0, :, :, None]  # (B, F, D)
            cond = cond * edm.append_dims(keep[1], cond.ndim)
        video_sigma, action_sigma = edm.training_sigmas(b, self.cfg.edm, mode, generator, dev)
        noisy = edm.noisy_video(video, video_sigma, e, mode, generator)
        tap_sigma = video_sigma  # the sigma of the U-Net pass whose taps condition the head
        if mode == "stage1":
            d_video, _ = self.denoise_video(noisy, video_sigma, cond, text)
            per_frame = edm.weighted_error(d_video, video, video_sigma).flatten(2).mean(-1)  # (B, F)
            return LossOutput(per_frame.mean(), per_frame.detach().mean(), None, video_sigma)

        actions = inputs["actions"]
        if mode == "stage2" and "frozen" in batch:  # train.feature_cache: this clip's U-Net pass, made once
            d_video, features = batch["frozen"]
            d_video, features = d_video.to(dev), [f.to(dev).flatten(0, 1) for f in features]
        elif mode == "stage2":  # every U-Net parameter is frozen: no graph through it at all
            with torch.no_grad():
                d_video, features = self.denoise_video(noisy, video_sigma, cond, text, taps=True,
                                                       detach_features=True)
        elif e.feature_noise:  # joint, faithful: one pass, the head on the noisy clip's taps
            d_video, features = self.denoise_video(noisy, video_sigma, cond, text, taps=True)
        else:
            # joint under the decoupled recipe: the sampler takes the head's features from the zero-video pass
            # (sampler._start), as stage 2 trains the head; on the noisy clip's taps the head learned features
            # it never sees when sampling (held-out chunk error above the mean chunk's, 0/100 closed loop).
            # So the head learns on that pass, with its gradient into the U-Net, and the U-Net keeps its
            # video loss on the noisy clip: two U-Net passes per step.
            d_video, _ = self.denoise_video(noisy, video_sigma, cond, text)
            _, features, tap_sigma = self._zero_video_pass(video, inputs["cond"], inputs["text"], detach_features=False)
        per_step = self.action_loss(self.action_condition(features, tap_sigma), actions, action_sigma, generator)
        per_frame = edm.weighted_error(d_video, video, video_sigma).flatten(2).mean(-1)  # (B, F)
        loss = torch.cat([per_frame.flatten(), per_step.flatten()]).mean()
        return LossOutput(loss, per_frame.detach().mean(), per_step.detach().mean(), video_sigma)

    @torch.no_grad()
    def frozen_stage2(self, batch: dict) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Stage 2's U-Net pass where it depends on the clip alone (edm.feature_noise false, no stage-2
        condition dropout, cached conditioning latents): (denoised video (B, F, C, h, w), taps, each
        (B, F, C_k, h_k, w_k)). ``forward`` takes them back as ``batch["frozen"]``, so a trainer can run
        the frozen U-Net once per clip instead of once per step (train.feature_cache)."""
        e = self.cfg.edm
        if e.feature_noise or e.feature_sigma is None:
            raise ValueError("frozen_stage2: the U-Net pass depends on the clip alone only with "
                             "edm.feature_noise: false and edm.feature_sigma set")
        inputs = self.prepare(batch)
        video = inputs["video"]
        b, f = video.shape[:2]
        d_video, taps, _ = self._zero_video_pass(video, inputs["cond"], inputs["text"], detach_features=True)
        return d_video, [t.reshape(b, f, *t.shape[1:]) for t in taps]

    def _zero_video_pass(self, video: torch.Tensor, cond: torch.Tensor, text: torch.Tensor, detach_features: bool
                         ) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        """The U-Net pass the fast sampler makes under edm.feature_noise false (sampler._start): the zero
        video at edm.feature_sigma -> (denoised video, taps, sigma (B,))."""
        sigma = torch.full((video.shape[0],), self.cfg.edm.feature_sigma, device=video.device)
        d_video, taps = self.denoise_video(torch.zeros_like(video), sigma, cond, text, taps=True,
                                           detach_features=detach_features)
        return d_video, taps, sigma

    def action_loss(self, global_cond: torch.Tensor, actions: torch.Tensor, sigma: torch.Tensor,
                    generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """EDM loss of the action head given its condition: per step (B, horizon)."""
        denoised = self.denoise_actions(edm.add_noise(actions, sigma, generator), sigma, global_cond)
        return edm.weighted_error(denoised, actions, sigma).mean(-1)

    # -- inference ---------------------------------------------------------------------------------
    @torch.no_grad()
    def sample_actions(self, frames, texts: list[str], sampler: Optional[SamplerConfig] = None,
                       generator: edm.Noise = None) -> SampleOutput:
        """uint8 current frames (B, V, H, W, 3) + instructions -> SampleOutput (normalised actions)."""
        cond = self.encode_observations(frames, generator)
        return sample(self, cond, self.embed_text(texts), sampler or self.cfg.sampler, generator)
