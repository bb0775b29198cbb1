"""Learning on CPU in fixed step budgets: the tiny video U-Net overfits two clips; the adapter + head
learn a clip -> action-chunk mapping well enough that sampled chunks beat predicting the mean."""

from __future__ import annotations

import numpy as np
import torch

from videopolicy.models import edm
from videopolicy.models.config import EDMConfig, SamplerConfig
from videopolicy.models.model import VideoPolicyModel
from videopolicy.models.sampler import euler_sample
from videopolicy.models.vae import build_vae

from model_fixtures import synthetic_clips, tiny_config


def test_tiny_unet_overfits_two_clips():
    torch.manual_seed(0)
    cfg = tiny_config()  # 3 cameras x 2 frames + pad = 7 frames of 8x8 latents
    model = VideoPolicyModel(cfg).attach_encoders(vae=build_vae(cfg)).set_mode("stage1")
    data = synthetic_clips(2, seed=0)
    clip = model.encode(data["frames"], torch.Generator().manual_seed(0))
    batch = {"latents": clip.latents, "cond_latents": clip.cond,
             "text_emb": torch.randn(2, 64, generator=torch.Generator().manual_seed(1))}

    def evaluation_loss() -> float:  # 4 fixed (sigma, noise) draws
        model.eval()
        with torch.no_grad():
            loss = np.mean([model(batch, "stage1", torch.Generator().manual_seed(100 + k)).loss.item()
                            for k in range(4)])
        model.train()
        return float(loss)

    before = evaluation_loss()
    (group,) = model.param_groups("stage1")
    opt = torch.optim.Adam(group["params"], lr=1e-3, fused=True)
    g = torch.Generator().manual_seed(5)
    for _ in range(15):
        opt.zero_grad()
        model(batch, "stage1", g).loss.backward()
        opt.step()
    after = evaluation_loss()
    assert after <= 0.7 * before, f"evaluation loss {before:.4f} -> {after:.4f}"


def test_tiny_head_learns_clip_to_actions():
    """Decoupled stage 2 (independent action sigma, features at the fast sampler's sigma 700) with the
    features computed once per clip: the adapter and head train on them, then the fast sampler's
    head-only Euler steps. 128 px: at 64 px the adapter's trunk runs at 1x1 and its GroupNorms leave
    too little of the clip for a 200-step budget."""
    torch.manual_seed(0)
    edm_cfg = EDMConfig(action_sigma="independent", feature_sigma=700.0, p_mean=-1.0, p_std=1.0)
    sampler = SamplerConfig(mode="fast", feature_sigma=700.0, head_steps=10, head_sigma_max=5.0)
    cfg = tiny_config(frames_per_camera=1, image_size=128, edm=edm_cfg, sampler=sampler)
    model = VideoPolicyModel(cfg).attach_encoders(vae=build_vae(cfg)).set_mode("stage2")
    n, repeats = 4, 8
    data = synthetic_clips(n, frames=1, size=128, seed=3)
    actions = torch.as_tensor(data["actions"])
    clip = model.encode(data["frames"], torch.Generator().manual_seed(0))
    inputs = model.prepare({"latents": clip.latents, "cond_latents": clip.cond, "text_emb": torch.zeros(n, 64)})
    video_sigma = torch.full((n,), edm_cfg.feature_sigma)
    with torch.no_grad():
        noisy = edm.add_noise(inputs["video"], video_sigma, torch.Generator().manual_seed(1))
        _, features = model.denoise_video(noisy, video_sigma, inputs["cond"], inputs["text"], taps=True,
                                          detach_features=True)

    opt = torch.optim.Adam([p for group in model.param_groups("stage2") for p in group["params"]], lr=1e-3, fused=True)
    g = torch.Generator().manual_seed(5)
    for _ in range(200):  # each clip seen at `repeats` action sigmas per step
        action_sigma = edm.sample_sigma(n * repeats, edm_cfg, g)
        cond = model.action_condition(features, video_sigma).repeat(repeats, 1)
        loss = model.action_loss(cond, actions.repeat(repeats, 1, 1), action_sigma, g).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    model.eval()
    with torch.no_grad():
        cond = model.action_condition(features, video_sigma)
        sigmas = edm.karras_sigmas(sampler.head_steps, sampler.sigma_min, sampler.head_sigma_max, sampler.rho).tolist()
        sampled = euler_sample(lambda x, s: model.denoise_actions(x, torch.full((n,), s), cond), tuple(actions.shape),
                               sigmas, torch.Generator().manual_seed(9))
    error = float(((sampled - actions) ** 2).mean())
    mean_error = float(((actions - actions.mean(0)) ** 2).mean())
    assert error < 0.5 * mean_error, f"sampled MSE {error:.4f} vs predicting the mean {mean_error:.4f}"
