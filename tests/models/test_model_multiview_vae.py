"""Multi-view packing and the VAE conventions (unscaled conditioning, scaled targets, cacheable latents)."""

from __future__ import annotations

import dataclasses

import torch

from videopolicy.models import multiview
from videopolicy.models.model import VideoPolicyModel
from videopolicy.models.vae import build_vae, decode_video, encode_clip, encode_pixels, to_pixels

from model_fixtures import synthetic_clips, tiny_config


def _labelled(b=2, v=3, t=8):
    """latents whose value is 100*camera + frame, to follow frames through the packing."""
    x = torch.zeros(b, v, max(t, 1), 4, 2, 2)
    for cam in range(v):
        for f in range(max(t, 1)):
            x[:, cam, f] = 100 * cam + f
    return x


def test_pack_video_and_condition_per_camera():
    """The authors' 25 frames: [pad = camera 0's frame t, camera 0's t..t+28, camera 1's, camera 2's]."""
    latents = _labelled()
    video = multiview.pack_video(latents)
    assert video.shape == (2, 25, 4, 2, 2)  # the paper's 1 pad + 3 x 8
    labels = video[0, :, 0, 0, 0].tolist()
    assert labels == [0] + [100 * c + f for c in range(3) for f in range(8)]  # current frame first, no shift
    cond = multiview.pack_condition(latents[:, :, 0], 8)
    assert cond[0, :, 0, 0, 0].tolist() == [0] + [100 * c for c in range(3) for _ in range(8)]
    back = multiview.unpack_video(video, 3)
    assert torch.equal(back, latents)


def test_pad_frame_is_the_pad_cameras_current_frame():
    latents = _labelled()
    video = multiview.pack_video(latents, pad_camera=2)
    assert video[0, 0, 0, 0, 0].item() == 200 and video[0, 1:, 0, 0, 0].tolist()[:2] == [0, 1]
    cond = multiview.pack_condition(latents[:, :, 0], 8, pad_camera=2)
    assert cond[0, 0, 0, 0, 0].item() == 200 and torch.equal(cond[:, 1:], multiview.pack_condition(latents[:, :, 0], 8)[:, 1:])


def test_pad_camera_comes_from_the_clip_config():
    from videopolicy.config import config_from_dict

    cams = ["robot0_eye_in_hand", "agentview", "frontview"]
    base = {"demos": {"cameras": cams}, "clips": {"image_size": 64}}
    assert config_from_dict(base).model_config().pad_camera == 0  # default: the first camera listed
    cfg = config_from_dict({**base, "clips": {"image_size": 64, "pad_camera": "frontview"}})
    assert cfg.model_config().pad_camera == 2
    import pytest

    from videopolicy.config import ConfigError

    with pytest.raises(ConfigError, match="clips.pad_camera: 'frontviw' is not among"):
        config_from_dict({**base, "clips": {"image_size": 64, "pad_camera": "frontviw"}})


def test_horizon_zero_packs_the_current_frames():
    latents = _labelled(t=0)
    video = multiview.pack_video(latents)
    assert video[0, :, 0, 0, 0].tolist() == [0, 0, 100, 200]
    assert multiview.pack_condition(latents[:, :, 0], 0).shape == video.shape


def test_unpack_features_to_camera_volumes():
    feat = torch.arange(2 * 7, dtype=torch.float32).reshape(14, 1, 1, 1).expand(14, 5, 3, 3)
    vol = multiview.unpack_features(feat, batch=2, num_cameras=3)
    assert vol.shape == (2, 3, 5, 2, 3, 3)  # (B, V, C, T, h, w)
    assert vol[1, 2, 0, :, 0, 0].tolist() == [12.0, 13.0]  # clip 1, camera 2: frames 5 and 6 of 7


def test_vae_latents_conditioning_and_targets(tmp_path):
    cfg = tiny_config()
    vae = build_vae(cfg)
    data = synthetic_clips(2)
    clip = encode_clip(vae, data["frames"], cfg, torch.Generator().manual_seed(0))
    assert clip.latents.shape == (2, 3, 2, 4, 8, 8) and clip.cond.shape == (2, 3, 4, 8, 8)
    # conditioning = the mode of the current frame + cond_aug noise, unscaled: close to, not equal to,
    # the frame's latent mode (the targets are posterior samples: test_model_fidelity.py)
    mode0 = encode_pixels(vae, to_pixels(torch.as_tensor(data["frames"][:, :, 0])).flatten(0, 1), 16).reshape(clip.cond.shape)
    diff = (clip.cond - mode0).abs().mean()
    assert 0 < diff < 0.5 * mode0.abs().mean()
    model = VideoPolicyModel(cfg)
    inputs = model.prepare({"latents": clip.latents, "cond_latents": clip.cond, "text_emb": torch.zeros(2, 64)})
    assert torch.allclose(inputs["video"], multiview.pack_video(clip.latents) * 0.18215)
    assert torch.equal(inputs["cond"], multiview.pack_condition(clip.cond, 2))
    frames = decode_video(vae, inputs["video"][:1])
    assert frames.shape == (1, 7, 64, 64, 3) and frames.dtype == torch.uint8
    # loading code path of the svd-xt preset, exercised with a tiny VAE saved the diffusers way
    vae.save_pretrained(tmp_path / "vae")
    cfg.vae.pretrained = str(tmp_path)
    loaded = build_vae(cfg)
    assert all(torch.equal(a, b) for a, b in zip(vae.state_dict().values(), loaded.state_dict().values()))


def test_horizon_zero_model_trains_in_stage2():
    cfg = tiny_config(frames_per_camera=0)  # the paper's horizon-0 row: 1 pad + 3 current frames
    model = VideoPolicyModel(cfg).attach_encoders(vae=build_vae(cfg)).set_mode("stage2")
    data = synthetic_clips(2, frames=0)
    out = model({"frames": data["frames"], "actions": data["actions"], "text_emb": torch.zeros(2, 64)}, "stage2")
    out.loss.backward()
    assert cfg.num_video_frames == 4 and torch.isfinite(out.loss)


def test_random_vae_is_calibrated_like_a_trained_one():
    """tiny: latents at SVD's scale (std ~1/0.18215 on images, not only on the noise it is calibrated on)
    with a narrow posterior; with latent_std 0 the init is left as it is (std ~0.25, posterior std ~1)."""
    cfg = tiny_config(image_size=64)
    y, x = torch.meshgrid(torch.linspace(-1, 1, 64), torch.linspace(-1, 1, 64), indexing="ij")
    scene = torch.stack([x, y, x * y]).expand(6, 3, 64, 64).clone()  # smooth gradients, then blocks
    for i in range(6):
        scene[i, :, 8 * i:8 * i + 12, 10 + 6 * i:24 + 6 * i] = torch.tensor([0.9, -0.8, -0.9])[:, None, None]
    with torch.no_grad():
        dist = build_vae(cfg).encode(scene).latent_dist
        raw = build_vae(dataclasses.replace(cfg, vae=dataclasses.replace(cfg.vae, latent_std=0.0))).encode(scene)
    assert 3.5 < float(dist.mean.std()) < 8.0, float(dist.mean.std())
    assert float(dist.std.max()) < 0.2
    assert float(raw.latent_dist.mean.std()) < 1.0 and float(raw.latent_dist.std.mean()) > 0.3
