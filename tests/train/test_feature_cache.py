"""train.feature_cache: stage 2's frozen U-Net pass made once per clip gives the uncached losses and gradients."""

from __future__ import annotations

import pytest
import torch

from videopolicy.config import ConfigError
from videopolicy.models import build_model
from videopolicy.train.latents import FeatureCache, LatentCache, sample_latents
from videopolicy.train.launch import TrainSpec, run_training

COLS = ["demo_uid", "task", "language", "shard", "start"]
DECOUPLED = {"edm": {"action_sigma": "independent", "feature_sigma": 700.0, "feature_noise": False,
                     "stage2_cond_dropout": 0.0},
             "sampler": {"mode": "fast", "head_steps": 2}}


def _rows(batch: dict, rows: slice) -> dict:
    return {k: v[rows] for k, v in batch.items()}


def _loss_and_grads(model, inputs: dict) -> tuple[float, dict]:
    model.zero_grad(set_to_none=True)
    out = model(inputs, "stage2", torch.Generator().manual_seed(2))  # the same noise draws on both paths
    out.loss.backward()
    return out.loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_cached_stage2_pass_gives_the_uncached_loss_and_gradients(make_cfg, clips):
    mc = make_cfg(model=DECOUPLED).model_config()
    model = build_model(mc).set_mode("stage2").train()
    index = clips.index("train").iloc[::7][:6]
    batch = LatentCache(clips, model.vae, mc.vae.cond_aug, seed=0)({k: index[k].to_numpy() for k in COLS})
    keys = batch["clip_key"]
    assert len(set(keys)) == 6
    inputs = {"latents": sample_latents(batch, torch.Generator().manual_seed(1), "cpu"),
              "cond_latents": batch["cond_latents"], "actions": batch["actions"], "text": batch["language"]}
    plain_loss, plain_grads = _loss_and_grads(model, inputs)
    assert plain_grads and all(n.startswith(("adapter.", "action_head.")) for n in plain_grads)

    cache = FeatureCache()
    frozen = cache.frozen(model, inputs, keys)
    assert cache.computed == 6
    cached_loss, cached_grads = _loss_and_grads(model, {**inputs, "frozen": frozen})
    assert cached_loss == pytest.approx(plain_loss, rel=1e-6)
    assert cached_grads.keys() == plain_grads.keys()
    for n, g in plain_grads.items():
        torch.testing.assert_close(cached_grads[n], g, rtol=1e-5, atol=1e-7, msg=n)

    # hits and misses in one batch, in another order: each clip gets its own pass back. Compared with the
    # passes over the same sub-batches: a pass depends on the batch size (the kernels' rounding, up to
    # ~1e-2 in a tap at random init), not on the order or the neighbours (checked exactly here).
    mixed = FeatureCache()
    mixed.frozen(model, _rows(inputs, slice(3)), keys[:3])
    calls = model.calls["unet"]
    order = [5, 0, 4, 1, 3, 2]
    shuffled = {k: v[order] if isinstance(v, torch.Tensor) else [v[i] for i in order] for k, v in inputs.items()}
    d_video, taps = mixed.frozen(model, shuffled, [keys[i] for i in order])
    assert mixed.computed == 6 and model.calls["unet"] - calls == 3  # only the 3 new clips ran the U-Net
    first, second = model.frozen_stage2(_rows(inputs, slice(3))), model.frozen_stage2(_rows(inputs, slice(3, 6)))
    torch.testing.assert_close(d_video, torch.cat([first[0], second[0]])[order], atol=0, rtol=0)
    for got, a, b in zip(taps, first[1], second[1]):
        torch.testing.assert_close(got, torch.cat([a, b])[order], atol=0, rtol=0)
    calls = model.calls["unet"]
    mixed.frozen(model, inputs, keys)
    assert model.calls["unet"] == calls  # all hits


def test_feature_cache_needs_a_pass_that_depends_on_the_clip_alone(make_cfg):
    with pytest.raises(ConfigError, match="feature_cache: needs latent_cache"):
        make_cfg(model=DECOUPLED, feature_cache=True)
    with pytest.raises(ConfigError, match="feature_noise: false"):  # fresh noise in every pass
        make_cfg(feature_cache=True, latent_cache=True, color_jitter=[0, 0, 0, 0])
    with pytest.raises(ConfigError, match="stage2_cond_dropout: 0"):
        make_cfg(model={**DECOUPLED, "edm": {**DECOUPLED["edm"], "stage2_cond_dropout": 0.1}},
                 feature_cache=True, latent_cache=True, color_jitter=[0, 0, 0, 0])


def test_stage2_trains_with_the_feature_cache(make_cfg, clips, tmp_path):
    cfg = make_cfg(model=DECOUPLED, method="no_video_tuning", feature_cache=True, latent_cache=True,
                   color_jitter=[0, 0, 0, 0], stage2={"steps": 4, "batch_size": 4, "checkpoint_every": 4, "log_every": 2})
    result = run_training(TrainSpec("stage2", cfg, clips.path, name="features", storage_path=str(tmp_path / "runs"),
                                    tracking_uri=f"sqlite:///{tmp_path}/mlflow.db"))
    assert result.step == 4
