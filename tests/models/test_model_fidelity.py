"""Fidelity to the authors' training code where it changes results (shared/reference/fidelity.md):
per-frame condition dropout, posterior-sample video targets, colour-jitter augmentation."""

from __future__ import annotations

import torch

from videopolicy.models.model import VideoPolicyModel
from videopolicy.models.vae import build_vae, encode_clip, encode_pixels, to_pixels
from videopolicy.models.video_unet import PerFrameContext
from videopolicy.train.augment import color_jitter

from model_fixtures import synthetic_clips, tiny_config


def _capture(model: VideoPolicyModel) -> dict:
    """Record what the U-Net receives: its input (B, F, 2C, h, w) and each block's cross-attention rows."""
    seen: dict = {"context": []}

    def unet_in(module, args, kwargs):
        seen["sample"] = (args[0] if args else kwargs["sample"]).detach().clone()

    def block_in(module, args, kwargs):
        if kwargs.get("encoder_hidden_states") is not None:
            seen["context"].append(kwargs["encoder_hidden_states"].detach().clone())

    model.unet.register_forward_pre_hook(unet_in, with_kwargs=True)
    model.unet.down_blocks[0].attentions[0].register_forward_pre_hook(block_in, with_kwargs=True)  # inside the block
    return seen


def test_condition_dropout_is_per_frame_as_the_authors():
    """The authors' conditioner holds B x F rows and drops text and concat latents per row: within one
    clip some frames keep their condition and others lose it."""
    from videopolicy.models.config import EDMConfig

    cfg = tiny_config(edm=EDMConfig(cond_dropout=0.5))
    model = VideoPolicyModel(cfg).attach_encoders(vae=build_vae(cfg)).set_mode("stage1").train()
    seen = _capture(model)
    data = synthetic_clips(4)
    text = torch.randn(4, 64, generator=torch.Generator().manual_seed(1))
    model({"frames": data["frames"], "text_emb": text}, "stage1", torch.Generator().manual_seed(0))
    b, f = 4, cfg.num_video_frames
    rows = seen["context"][0].reshape(b, f, -1)  # the text each frame attends to
    text_kept = rows.abs().sum(-1) > 0  # (B, F)
    cond_kept = seen["sample"][:, :, 4:].flatten(2).abs().sum(-1) > 0  # concat channels, (B, F)
    for kept in (text_kept, cond_kept):
        mixed = [bool(k.any() and not k.all()) for k in kept]  # per clip: some frames kept, some dropped
        assert any(mixed), kept
    assert not torch.equal(text_kept, cond_kept)  # text and image conditions are dropped independently
    # kept rows are the clip's own embedding, untouched
    assert torch.allclose(rows[text_kept], text[:, None].expand(b, f, 64)[text_kept])


def test_stage2_cond_dropout_overrides_the_dropout_in_stage2_only():
    """edm.stage2_cond_dropout: 0 keeps every frame's condition in stage 2 (no CFG branch to train);
    stage 1 keeps the authors' per-frame dropout."""
    from videopolicy.models.config import EDMConfig

    edm_cfg = EDMConfig(cond_dropout=0.5, action_sigma="independent", feature_sigma=700.0, stage2_cond_dropout=0.0)
    cfg = tiny_config(edm=edm_cfg)
    data = synthetic_clips(4)
    text = torch.randn(4, 64, generator=torch.Generator().manual_seed(1))
    kept = {}
    for mode in ("stage1", "stage2"):
        model = VideoPolicyModel(cfg).attach_encoders(vae=build_vae(cfg)).set_mode(mode).train()
        seen = _capture(model)
        model({"frames": data["frames"], "text_emb": text, "actions": data["actions"]}, mode,
              torch.Generator().manual_seed(0))
        kept[mode] = seen["sample"][:, :, 4:].flatten(2).abs().sum(-1) > 0  # concat channels per frame, (B, F)
    assert kept["stage2"].all() and not kept["stage1"].all()


def test_feature_noise_off_feeds_the_unet_a_zero_video_in_stage2_and_the_fast_sampler():
    """edm.feature_noise: false makes stage-2 features a function of the observation alone: the U-Net's
    noisy-video channels are zero in training (stage 2 only) and in the fast sampler."""
    from videopolicy.models.config import EDMConfig, SamplerConfig
    from videopolicy.models.sampler import sample

    edm_cfg = EDMConfig(action_sigma="independent", feature_sigma=700.0, feature_noise=False, cond_dropout=0.0)
    cfg = tiny_config(edm=edm_cfg, sampler=SamplerConfig(mode="fast", head_steps=2))
    assert not cfg.problems()
    data = synthetic_clips(2)
    text = torch.randn(2, 64, generator=torch.Generator().manual_seed(1))
    noise = {}
    for mode in ("stage1", "stage2"):
        model = VideoPolicyModel(cfg).attach_encoders(vae=build_vae(cfg)).set_mode(mode).train()
        seen = _capture(model)
        model({"frames": data["frames"], "text_emb": text, "actions": data["actions"]}, mode,
              torch.Generator().manual_seed(0))
        noise[mode] = seen["sample"][:, :, :4].abs().amax().item()  # the noisy-video channels
    assert noise["stage2"] == 0.0 and noise["stage1"] > 1.0
    model = VideoPolicyModel(cfg).eval()
    seen = _capture(model)
    cond = torch.randn(2, 3, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    sample(model, cond, text, cfg.sampler, torch.Generator().manual_seed(3))
    assert seen["sample"][:, :, :4].abs().amax().item() == 0.0
    # trained for one zero-noise pass: other samplers are refused, and the fixed sigma is required
    joint = tiny_config(edm=edm_cfg, sampler=SamplerConfig(mode="joint"))
    assert any("feature_noise" in e for e in joint.problems())
    assert any("feature_noise" in e for e in EDMConfig(action_sigma="independent", feature_noise=False).validate())


def test_per_frame_context_equals_the_shared_one_when_all_frames_agree():
    cfg = tiny_config()
    model = VideoPolicyModel(cfg).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, cfg.num_video_frames, 4, 8, 8, generator=g)
    cond = torch.randn(2, cfg.num_video_frames, 4, 8, 8, generator=g)
    text = torch.randn(2, 64, generator=g)
    sigma = torch.tensor([0.5, 3.0])
    with torch.no_grad():
        shared, _ = model.denoise_video(x, sigma, cond, text)
        per_frame, _ = model.denoise_video(x, sigma, cond, text[:, None].expand(2, cfg.num_video_frames, 64))
        text_f = text[:, None].repeat(1, cfg.num_video_frames, 1)
        text_f[:, 3] = 0  # one frame without text: a different output
        dropped, _ = model.denoise_video(x, sigma, cond, text_f)
    assert torch.allclose(shared, per_frame, atol=1e-5)
    assert not torch.allclose(shared, dropped, atol=1e-4)
    # the hooks are gone afterwards
    assert all(not b._forward_pre_hooks for b in [*model.unet.down_blocks, model.unet.mid_block, *model.unet.up_blocks])
    with PerFrameContext(model.unet, text_f):
        pass
    assert all(not b._forward_pre_hooks for b in model.unet.down_blocks)


def test_video_targets_are_posterior_samples_and_conditioning_the_mode():
    cfg = tiny_config()
    vae = build_vae(cfg)
    frames = synthetic_clips(2)["frames"]
    a = encode_clip(vae, frames, cfg, torch.Generator().manual_seed(0))
    b = encode_clip(vae, frames, cfg, torch.Generator().manual_seed(1))
    mode = encode_pixels(vae, to_pixels(torch.as_tensor(frames)).flatten(0, 2), 16).reshape(a.latents.shape)
    assert not torch.allclose(a.latents, b.latents)  # samples (sgm's DiagonalGaussianRegularizer), not the mode
    std = vae.encode(to_pixels(torch.as_tensor(frames)).flatten(0, 2)).latent_dist.std.reshape(a.latents.shape)
    z = (a.latents - mode) / std
    assert 0.8 < z.std().item() < 1.2 and abs(z.mean().item()) < 0.1  # mode + std * N(0, 1)
    # same generator, same sample (training noise is reproducible)
    again = encode_clip(vae, frames, cfg, torch.Generator().manual_seed(0))
    assert torch.equal(a.latents, again.latents) and torch.equal(a.cond, again.cond)


def test_color_jitter_one_draw_per_camera_and_clip():
    g = torch.Generator().manual_seed(0)
    base = torch.randint(40, 200, (1, 1, 1, 16, 16, 3), dtype=torch.uint8)
    frames = base.expand(3, 2, 4, 16, 16, 3).clone()  # 3 clips x 2 cameras x 4 identical frames
    out = color_jitter(frames, (0.2, 0.2, 0.2, 0.05), g)
    assert out.shape == frames.shape and out.dtype == torch.uint8
    # the frames of one camera in one clip share the draw; cameras and clips get their own
    assert all(torch.equal(out[i, v, 0], out[i, v, t]) for i in range(3) for v in range(2) for t in range(4))
    views = [out[i, v, 0] for i in range(3) for v in range(2)]
    assert len({bytes(v.numpy().tobytes()) for v in views}) == 6
    assert 1.0 < (out.float() - frames.float()).abs().mean() < 40.0  # a jitter, not a new image
    assert torch.equal(color_jitter(frames, (0, 0, 0, 0), g), frames)


def test_color_jitter_components():
    g = torch.Generator().manual_seed(0)
    grey = torch.full((8, 1, 1, 4, 4, 3), 100, dtype=torch.uint8)
    # brightness scales within [0.8, 1.2]; hue and saturation leave a grey image grey
    bright = color_jitter(grey, (0.2, 0, 0, 0), g).float()
    assert 80 <= bright.min() and bright.max() <= 120 and bright.std() > 1
    assert torch.equal(color_jitter(grey, (0, 0, 0.2, 0.05), g), grey)
    # a pure hue rotation keeps brightness order of the max channel and changes the colour
    red = torch.zeros(4, 1, 1, 4, 4, 3, dtype=torch.uint8)
    red[..., 0] = 200
    hued = color_jitter(red, (0, 0, 0, 0.05), g)
    assert (hued.max(-1).values == 200).all() and not torch.equal(hued, red)


def test_training_configs_jitter_by_default():
    from videopolicy.config import ConfigError, config_from_dict

    assert config_from_dict({}).train.color_jitter == (0.2, 0.2, 0.2, 0.05)  # the authors' values
    assert config_from_dict({"train": {"color_jitter": [0, 0, 0, 0]}}).train.color_jitter == (0, 0, 0, 0)
    import pytest

    with pytest.raises(ConfigError, match="color_jitter"):
        config_from_dict({"train": {"color_jitter": [1.5, 0, 0, 0]}})
