"""The paper's full-size model, checked without memory (FakeTensorMode): parameters and tap shapes."""

from __future__ import annotations

import torch

from videopolicy.models.config import PAPER_TAPS, ModelConfig
from videopolicy.models.costs import count_params, fake_tensors
from videopolicy.models.feature_taps import tap_geometry
from videopolicy.models.model import VideoPolicyModel
from videopolicy.models.video_unet import SVD_XT_UNET_PARAMS

from model_fixtures import tiny_config


def test_svd_xt_parameter_counts_and_tap_shapes():
    cfg = ModelConfig(preset="svd-xt", image_size=256)  # 32x32 latents, 3 cameras x 8 frames = 25 frames
    with fake_tensors():
        model = VideoPolicyModel(cfg)
        assert count_params(model.unet) == SVD_XT_UNET_PARAMS == 1_524_623_082
        assert round(count_params(model.adapter) / 1e6, 1) == 205.8  # the authors' VideoResNet
        assert round(count_params(model.action_head) / 1e6, 1) == 161.4  # their ConditionalUnet1D
        assert model.adapter.out_dim == 6720 and model.adapter.out_shape == (420, 1, 4, 4)

        video = torch.randn(1, 25, 4, 32, 32)
        sigma = torch.full((1,), 1.0)
        denoised, feats = model.denoise_video(video, sigma, torch.randn_like(video), torch.randn(1, 1024), taps=True)
        cond = model.action_condition(feats, sigma)
        actions = model.denoise_actions(torch.randn(1, 32, 7), sigma, cond)
    assert denoised.shape == (1, 25, 4, 32, 32)
    assert [tuple(f.shape) for f in feats] == [
        (25, 1280, 4, 4), (25, 1280, 4, 4), (25, 1280, 8, 8), (25, 640, 16, 16), (25, 320, 32, 32)]
    for name, f in zip(PAPER_TAPS, feats):
        g = tap_geometry(name, cfg.resolve().unet.block_out_channels)
        assert (f.shape[1], 32 // g.downsample) == (g.channels, f.shape[-1])
    assert cond.shape == (1, 6720) and actions.shape == (1, 32, 7)


def test_tiny_unet_has_the_same_topology():
    cfg = tiny_config()
    model = VideoPolicyModel(cfg)
    assert 5.5e6 < count_params(model.unet) < 6.5e6
    x = torch.randn(1, cfg.num_video_frames, 4, 8, 8)
    with torch.no_grad():
        _, feats = model.denoise_video(x, torch.ones(1), x, torch.randn(1, 64), taps=True)
    for name, f in zip(PAPER_TAPS, feats):
        g = tap_geometry(name, cfg.resolve().unet.block_out_channels)
        assert tuple(f.shape) == (cfg.num_video_frames, g.channels, 8 // g.downsample, 8 // g.downsample), name
