"""EDM maths and the samplers against diffusers' schedulers (the reference implementations)."""

from __future__ import annotations

import numpy as np
import torch
from diffusers import EDMEulerScheduler, EulerDiscreteScheduler

from videopolicy.models import edm
from videopolicy.models.config import EDMConfig, SamplerConfig
from videopolicy.models.model import VideoPolicyModel
from videopolicy.models.sampler import feature_sigmas, guidance_scales, sample

from model_fixtures import tiny_config


def _euler_reference(steps: int) -> EulerDiscreteScheduler:
    s = EulerDiscreteScheduler(use_karras_sigmas=True, sigma_min=0.002, sigma_max=700.0,
                               prediction_type="v_prediction", timestep_type="continuous", final_sigmas_type="zero")
    s.set_timesteps(steps)
    return s


def test_sampler_sigmas_match_the_edm_schedule():
    cfg = SamplerConfig()
    ours = edm.karras_sigmas(cfg.steps, cfg.sigma_min, cfg.sigma_max, cfg.rho)
    ref = _euler_reference(cfg.steps)
    assert len(ours) == len(ref.sigmas) == 31 and ours[-1] == 0
    assert torch.allclose(ours[:-1], ref.sigmas[:-1].double(), rtol=1e-5, atol=0)
    assert abs(float(ours[0]) - 700.0) < 1e-9 and abs(float(ours[-2]) - 0.002) < 1e-12
    # the U-Net's timestep is c_noise = ln(sigma) / 4, as diffusers' continuous timesteps
    assert torch.allclose(edm.v_scalings(ours[:-1])[3].float(), ref.timesteps, rtol=1e-5)


def test_v_scalings_match_edm_euler_scheduler():
    ref = EDMEulerScheduler(sigma_data=1.0, prediction_type="v_prediction", sigma_max=700.0)
    sigma = torch.tensor([0.01, 0.5, 3.0, 80.0])
    c_skip, c_out, c_in, c_noise = edm.v_scalings(sigma)
    assert torch.allclose(c_in, ref.precondition_inputs(torch.ones(4), sigma))
    assert torch.allclose(c_noise, ref.precondition_noise(sigma))
    model_out, sample = torch.tensor([0.3, -1.0, 2.0, 0.5]), torch.tensor([1.0, 0.2, -3.0, 40.0])
    assert torch.allclose(c_skip * sample + c_out * model_out, ref.precondition_outputs(sample, model_out, sigma))
    assert torch.allclose(edm.loss_weight(sigma) * c_out**2, torch.ones(4))  # unit weight on v


def test_euler_loop_matches_diffusers_step_by_step():
    """Our Euler loop on D = c_skip x + c_out F(c_in x, c_noise) == diffusers' v-prediction Euler."""
    def network(x_in, c_noise):  # any fixed function stands in for the U-Net
        return torch.tanh(x_in) * 0.7 + 0.1 * c_noise

    steps, shape = 12, (2, 5)
    ref = _euler_reference(steps)
    x0 = torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = x0 * ref.init_noise_sigma
    for t in ref.timesteps:
        x = ref.step(network(ref.scale_model_input(x, t), t), t, x).prev_sample

    sigmas = edm.karras_sigmas(steps, 0.002, 700.0, 7.0).tolist()

    def denoise(y, sigma):
        c_skip, c_out, c_in, c_noise = edm.v_scalings(torch.tensor(sigma, dtype=torch.float64))
        return c_skip * y + c_out * network(c_in * y, c_noise)

    ours = x0 * edm.init_noise_scale(sigmas[0])
    for sigma, nxt in zip(sigmas[:-1], sigmas[1:]):
        ours = edm.euler_step(ours, denoise(ours, sigma), sigma, nxt)
    assert torch.allclose(ours, x.double(), rtol=1e-4, atol=1e-5)


def test_decoupled_action_sigmas_have_their_own_lognormal():
    """edm.action_p_mean/std: the action sigmas' log has that mean and std; the video's keeps p_mean/p_std."""
    g = torch.Generator().manual_seed(0)
    cfg = EDMConfig(action_sigma="independent", action_p_mean=-1.2, action_p_std=1.2)
    video, action = edm.training_sigmas(20000, cfg, "stage1", g)
    assert abs(float(action.log().mean()) + 1.2) < 0.05 and abs(float(action.log().std()) - 1.2) < 0.05
    assert abs(float(video.log().mean()) - cfg.p_mean) < 0.05 and abs(float(video.log().std()) - cfg.p_std) < 0.05
    assert any("action_p_mean" in e for e in EDMConfig(action_p_mean=-1.2).validate())  # tied: refused


def test_training_sigmas_tied_or_independent():
    g = torch.Generator().manual_seed(0)
    video, action = edm.training_sigmas(4096, EDMConfig(), "joint", g)
    assert torch.equal(video, action)  # faithful: one sigma per clip for frames and actions
    assert abs(float(video.log().mean()) - 1.0) < 0.1 and abs(float(video.log().std()) - 1.6) < 0.1
    video, action = edm.training_sigmas(8, EDMConfig(action_sigma="independent", feature_sigma=0.5), "stage2", g)
    assert torch.all(video == 0.5) and not torch.equal(video, action)


def test_guidance_and_fast_schedules():
    assert torch.allclose(guidance_scales(SamplerConfig(), 25), torch.full((25,), 2.0))
    ramp = guidance_scales(SamplerConfig(guidance=2.5, guidance_min=1.0), 4)
    assert torch.allclose(ramp, torch.tensor([1.0, 1.5, 2.0, 2.5]))
    assert feature_sigmas(SamplerConfig(mode="fast")) == [700.0]
    three = feature_sigmas(SamplerConfig(mode="fast", feature_passes=3, feature_sigma=1.0))
    assert three[0] == 700.0 and abs(three[-1] - 1.0) < 1e-9 and three[0] > three[1] > three[2]


def test_u_net_passes_per_chunk():
    """Faithful: steps x 2 (CFG) U-Net sample-passes per chunk; fast: passes x 2, then head-only steps."""
    cfg = tiny_config()
    model = VideoPolicyModel(cfg).eval()
    cond, text = torch.randn(1, 3, 4, 8, 8), torch.randn(1, 64)
    for sampler, unet, adapter, head in [
        (SamplerConfig(steps=3), 6, 6, 6),
        (SamplerConfig(steps=3, guidance=1.0), 3, 3, 3),
        (SamplerConfig(mode="fast", feature_passes=2, head_steps=4), 4, 2, 8),
    ]:
        model.calls.clear()
        out = sample(model, cond, text, sampler, torch.Generator().manual_seed(0))
        assert out.actions.shape == (1, 32, 7) and torch.isfinite(out.actions).all()
        assert (model.calls["unet"], model.calls["adapter"], model.calls["head"]) == (unet, adapter, head)
        if sampler.mode == "joint":
            assert out.video.shape == (1, cfg.num_video_frames, 4, 8, 8)
    # same seed, same chunk
    a = sample(model, cond, text, SamplerConfig(steps=2), torch.Generator().manual_seed(1)).actions
    b = sample(model, cond, text, SamplerConfig(steps=2), torch.Generator().manual_seed(1)).actions
    assert np.array_equal(a.numpy(), b.numpy())
