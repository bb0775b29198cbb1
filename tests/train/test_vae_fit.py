"""vae.fit_steps: a random-init VAE fitted to the clip stage's frames, once per store, scaled to latent_std."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from videopolicy.config import ConfigError, config_from_dict
from videopolicy.data.clips import read_demo_shard
from videopolicy.models.config import ModelConfig
from videopolicy.models.vae import build_vae, encode_pixels, fit_vae, scale_latents, to_pixels
from videopolicy.train.vae_fit import fitted_vae


def _fit_cfg(clips, steps: int = 40) -> ModelConfig:
    cfg = ModelConfig(preset="tiny", image_size=clips.clips.image_size, num_cameras=len(clips.cameras))
    return dataclasses.replace(cfg, vae=dataclasses.replace(cfg.vae, fit_steps=steps, fit_batch_size=8)).resolve()


def _frames(clips) -> torch.Tensor:
    rel = sorted(clips.index("train").shard.unique())[0]
    frames, _ = read_demo_shard(str(clips.path.parents[1] / rel), clips.cameras, clips.clips.image_size)
    return to_pixels(torch.from_numpy(np.concatenate([np.array(f) for f in frames])))


def test_fit_lowers_reconstruction_error_and_scales_latents_to_latent_std(clips):
    cfg = _fit_cfg(clips)
    vae = build_vae(cfg)
    pixels = _frames(clips)
    g = torch.Generator().manual_seed(0)
    curve = fit_vae(vae, lambda g: pixels[torch.randint(len(pixels), (8,), generator=g)], 40, 1e-3,
                    cfg.vae.latent_std, g, log_every=10)
    assert curve[-1] < 0.5 * curve[0], curve
    z = encode_pixels(vae, pixels, 16)
    assert float(z.std()) == pytest.approx(cfg.vae.latent_std, rel=0.15)  # the scale was measured on one batch


@torch.no_grad()
def test_scaling_the_latents_leaves_reconstructions_unchanged(clips):
    vae, pixels = build_vae(_fit_cfg(clips)), _frames(clips)[:8]
    before = vae.encode(pixels).latent_dist
    recon = vae.decode(before.mean, num_frames=1).sample
    scale_latents(vae, 7.0)
    after = vae.encode(pixels).latent_dist
    torch.testing.assert_close(after.mean, 7.0 * before.mean, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(after.std, 7.0 * before.std, rtol=1e-4, atol=1e-4)  # the same relative width
    torch.testing.assert_close(vae.decode(after.mean, num_frames=1).sample, recon, rtol=1e-4, atol=1e-4)


def test_fitted_weights_are_stored_once_and_shared(clips, caplog):
    cfg = _fit_cfg(clips, steps=5)
    first, second = build_vae(cfg), build_vae(cfg)
    random_weights = {k: t.clone() for k, t in first.state_dict().items()}
    with caplog.at_level("INFO", logger="videopolicy.train.vae_fit"):
        path = fitted_vae(first, clips, cfg.vae)
        assert caplog.text.count("VAE fitted") == 1
        assert fitted_vae(second, clips, cfg.vae) == path  # the store's copy: no second fit
        assert caplog.text.count("VAE fitted") == 1
    assert path.is_file() and path.parent.parent.name == "vae_fit"
    for k, t in second.state_dict().items():
        torch.testing.assert_close(t, first.state_dict()[k])
    assert not torch.equal(first.state_dict()["quant_conv.weight"], random_weights["quant_conv.weight"])
    # other fit settings, another fit
    other = dataclasses.replace(cfg.vae, fit_steps=6)
    assert fitted_vae(build_vae(cfg), clips, other) != path


def test_fit_steps_refuses_a_pretrained_vae():
    with pytest.raises(ConfigError, match="vae.fit_steps: 10 fits a random-init VAE"):
        config_from_dict({"name": "x", "demos": {"tasks": ["Lift"]},
                          "model": {"vae": {"fit_steps": 10, "pretrained": "stabilityai/svd"}}})
