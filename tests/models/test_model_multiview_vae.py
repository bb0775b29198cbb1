"""Multi-view packing and the VAE conventions (unscaled conditioning, scaled targets, cacheable latents)."""

from __future__ import annotations

import torch

from videopolicy.models import multiview
from videopolicy.models.model import VideoPolicyModel
from videopolicy.models.vae import build_vae, decode_video, encode_clip

from model_fixtures import synthetic_clips, tiny_config


def _labelled(b=2, v=3, t=8):
    """latents whose value is 100*camera + frame, to follow frames through the packing."""
    x = torch.zeros(b, v, t + 1, 4, 2, 2)
    for cam in range(v):
        for f in range(t + 1):
            x[:, cam, f] = 100 * cam + f
    return x


def test_pack_video_and_condition_per_camera():
    latents = _labelled()
    video = multiview.pack_video(latents)
    assert video.shape == (2, 25, 4, 2, 2)  # the paper's 1 pad + 3 x 8
    labels = video[0, :, 0, 0, 0].tolist()
    assert labels == [0] + [100 * c + f for c in range(3) for f in range(1, 9)]
    cond = multiview.pack_condition(latents[:, :, 0], 8)
    assert cond[0, :, 0, 0, 0].tolist() == [0] + [100 * c for c in range(3) for _ in range(8)]
    back = multiview.unpack_video(video, 3)
    assert torch.equal(back, latents[:, :, 1:])


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
    assert clip.latents.shape == (2, 3, 3, 4, 8, 8) and clip.cond.shape == (2, 3, 4, 8, 8)
    # conditioning = first frame + cond_aug noise, unscaled: close to, not equal to, the frame-0 latent
    diff = (clip.cond - clip.latents[:, :, 0]).abs().mean()
    assert 0 < diff < 0.5 * clip.latents[:, :, 0].abs().mean()
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
