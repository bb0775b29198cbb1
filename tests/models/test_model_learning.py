"""Learning on CPU in fixed step budgets: the tiny video U-Net overfits two clips; the adapter + head
learn a clip -> action-chunk mapping well enough that sampled chunks beat predicting the mean."""

from __future__ import annotations

import dataclasses

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
    head-only Euler steps. This synthetic task also passes at 64 px with or without
    ``adapter.zero_init_residual`` (measured); real Lift features at 64 px are where it mattered."""
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


def test_adapter_zero_init_residual_starts_every_bottleneck_as_its_shortcut():
    """``adapter.zero_init_residual``: at init each bottleneck outputs act(shortcut(x)) exactly (its residual
    branch ends in a zero-scale GroupNorm), so an untrained adapter passes its input on; nothing else
    about the init changes. With the default init the residual branches add their share."""
    cfg = tiny_config()
    on_cfg = dataclasses.replace(cfg, adapter=dataclasses.replace(cfg.adapter, zero_init_residual=True))
    g = torch.Generator().manual_seed(0)
    b, f, c, s = 2, 7, 4, 8  # 3 cameras x 2 frames + pad, 8x8 latents
    x, cond = torch.randn(b, f, c, s, s, generator=g), torch.randn(b, f, c, s, s, generator=g)
    sigma = torch.full((b,), 700.0)

    def block_gaps(model) -> list[float]:
        from videopolicy.models.adapter import Bottleneck3D

        gaps = []
        hooks = [m.register_forward_hook(lambda m, inp, out: gaps.append(float((out - m.act(m.shortcut(inp[0]))).abs().max())))
                 for m in model.adapter.modules() if isinstance(m, Bottleneck3D)]
        with torch.no_grad():
            _, feats = model.denoise_video(x, sigma, cond, torch.zeros(b, 64), taps=True)
            model.action_condition(feats, sigma)
        for h in hooks:
            h.remove()
        return gaps

    on, off = VideoPolicyModel(on_cfg).eval(), VideoPolicyModel(cfg).eval()
    gaps_on, gaps_off = block_gaps(on), block_gaps(off)
    assert len(gaps_on) == len(gaps_off) >= 10
    assert max(gaps_on) == 0.0, gaps_on
    assert min(gaps_off) > 1e-3, gaps_off
    diff = {k for k, v in on.state_dict().items() if not torch.equal(v, off.state_dict()[k])}
    assert diff and all(k.startswith("adapter.") and k.endswith("expand.1.weight") for k in diff), diff
