"""The policy API: act() -> unnormalised chunk in the suite's action space; checkpoints; the baseline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from videopolicy.models.baseline import DPResNetModel
from videopolicy.models.build import build_model
from videopolicy.models.config import ModelConfig, SamplerConfig
from videopolicy.models.costs import count_params, fake_tensors
from videopolicy.models.model import VideoPolicyModel
from videopolicy.models.policy import ActionNormalizer, VideoPolicy, to_suite_actions
from videopolicy.models.vae import build_vae
from videopolicy.models.video_unet import build_video_unet

from model_fixtures import synthetic_clips, tiny_config

LOW = np.array([-1.0, -1.0, -1.0, -0.5, -0.5, -0.5, -1.0])
HIGH = np.array([1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 1.0])


def test_normalizer_roundtrip_and_constant_dims():
    raw = np.random.default_rng(0).uniform(-3, 3, size=(100, 7))
    raw[:, 5] = 0.25  # a dimension that never moves
    norm = ActionNormalizer.fit(raw)
    x = norm.normalize(raw)
    assert x.min() >= -1 - 1e-6 and x.max() <= 1 + 1e-6 and np.all(x[:, 5] == 0)
    assert np.allclose(norm.unnormalize(x), raw, atol=1e-5)
    assert ActionNormalizer.from_dict(norm.to_dict()).to_dict() == norm.to_dict()


def test_robocasa_action_space():
    chunk = np.ones((32, 7), dtype=np.float32)
    out = to_suite_actions(chunk, "robocasa")
    assert out.shape == (32, 12) and out[0, 7:].tolist() == [0, 0, 0, 0, -1]
    assert to_suite_actions(chunk, "libero").shape == (32, 7)


@pytest.fixture(scope="module")
def saved_policy(tmp_path_factory):
    cfg = tiny_config(sampler=SamplerConfig(steps=2))
    model = VideoPolicyModel(cfg).attach_encoders(vae=build_vae(cfg))
    model.text_cache.embeddings["open the drawer"] = torch.randn(64)
    d = tmp_path_factory.mktemp("ckpt")
    model.save_pretrained(d, extra={"normalizer": ActionNormalizer(LOW, HIGH).to_dict(),
                                    "cameras": ["left", "right", "wrist"]})
    return model, d


def test_act_returns_an_unnormalised_chunk(saved_policy):
    model, _ = saved_policy
    policy = VideoPolicy(model, ActionNormalizer(LOW, HIGH), suite="robocasa", cameras=["left", "right", "wrist"])
    frames = synthetic_clips(2)["frames"][:, :, 0]  # (B, V, H, W, 3) current images
    policy.reset("open the drawer")
    one = policy.act(frames[0])
    assert one.shape == (32, 12) and one.dtype == np.float32 and np.isfinite(one).all()
    batch = policy.act(frames, ["open the drawer"] * 2)
    assert batch.shape == (2, 32, 12)
    by_name = policy.act({"left": frames[0, 0], "right": frames[0, 1], "wrist": frames[0, 2]})
    assert by_name.shape == (32, 12)
    fast = VideoPolicy(model, ActionNormalizer(LOW, HIGH),
                       sampler=SamplerConfig(mode="fast", head_steps=3)).act(frames[0], "open the drawer")
    assert fast.shape == (32, 7)


def test_checkpoint_roundtrip_gives_the_same_actions(saved_policy):
    model, d = saved_policy
    frames = synthetic_clips(1)["frames"][0, :, 0]
    a = VideoPolicy(model, ActionNormalizer(LOW, HIGH), seed=3).act(frames, "open the drawer")
    loaded = VideoPolicy.from_pretrained(d, seed=3)
    assert loaded.cameras == ["left", "right", "wrist"]
    b = loaded.act(frames, "open the drawer")
    assert np.allclose(a, b, atol=1e-5)


def test_pretrained_unet_loading_path(tmp_path):
    cfg = tiny_config()
    unet = build_video_unet(cfg)
    unet.save_pretrained(tmp_path / "unet")  # the layout of an SVD pipeline directory
    cfg.unet.pretrained = str(tmp_path)
    loaded = build_video_unet(cfg)
    assert all(torch.equal(a, b) for a, b in zip(unet.state_dict().values(), loaded.state_dict().values()))
    bad = ModelConfig(preset="svd-xt")
    bad.unet.pretrained = str(tmp_path)
    with pytest.raises(ValueError, match="block_out_channels"):
        build_video_unet(bad)  # a tiny checkpoint under the svd-xt preset is refused, not silently used


def test_dp_resnet_baseline_trains_and_samples():
    cfg = tiny_config(kind="dp_resnet", sampler=SamplerConfig(steps=3))
    model = build_model(cfg, with_encoders=False)
    assert isinstance(model, DPResNetModel) and model.modes[0] == "baseline"
    model.set_mode("baseline")
    data = synthetic_clips(2)
    batch = {"frames": data["frames"], "actions": data["actions"], "text_emb": torch.randn(2, 64)}
    out = model(batch, "baseline")
    out.loss.backward()
    assert all(p.grad is not None for p in model.encoders.parameters())
    model.text_cache.embeddings["stack the cubes"] = torch.randn(64)
    chunk = model.sample_actions(data["frames"][:, :, 0], ["stack the cubes"] * 2).actions
    assert chunk.shape == (2, 32, 7)
    with fake_tensors():  # the paper's baseline: a ResNet-18 per camera
        full = DPResNetModel(ModelConfig(preset="svd-xt", kind="dp_resnet"))
        assert count_params(full.encoders[0]) == 11_176_512


def test_model_kinds_cover_the_config_and_load_back(tmp_path):
    """One class per ``ModelConfig.kind`` (build.KINDS, registered on PolicyModel), and a checkpoint of the
    non-default kind comes back as that kind through the generic loader."""
    import typing

    from videopolicy.models.base import PolicyModel
    from videopolicy.models.build import KINDS

    allowed = set(typing.get_args(typing.get_type_hints(ModelConfig)["kind"]))
    assert set(KINDS) == allowed and {k: PolicyModel.kinds[k] for k in allowed} == KINDS
    model = build_model(tiny_config(kind="dp_resnet"), with_encoders=False)
    loaded = PolicyModel.from_pretrained(model.save_pretrained(tmp_path / "dp"), with_encoders=False)
    assert type(loaded) is DPResNetModel
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))


def test_spatial_softmax_pools_where_not_what():
    """Diffusion Policy's pooling: the expected coordinates of learned keypoints. A bright spot moved
    across the map moves the output; average pooling gives the same vector wherever the spot is."""
    from videopolicy.models.baseline import SpatialSoftmax

    pool = SpatialSoftmax(channels=4, keypoints=3)
    with torch.no_grad():
        pool.proj.weight.fill_(1.0)
        pool.proj.bias.zero_()
    left, right = torch.zeros(1, 4, 4, 4), torch.zeros(1, 4, 4, 4)
    left[..., 1, 0], right[..., 1, 3] = 20.0, 20.0
    a, b = pool(left), pool(right)
    assert a.shape == (1, 6)
    assert a[0, 0] < -0.9 and b[0, 0] > 0.9  # x of keypoint 0: left edge vs right edge
    assert torch.allclose(a[0, 1], b[0, 1])  # same row, same y
    assert torch.equal(left.mean((-2, -1)), right.mean((-2, -1)))  # what average pooling would see


def test_dp_resnet_has_its_own_noise_schedule():
    """It denoises actions alone: EDM's lognormal(-1.2, 1.2) from sigma 80, not the video's (1.0, 1.6) from 700."""
    cfg = tiny_config(kind="dp_resnet")
    model = build_model(cfg, with_encoders=False).set_mode("baseline")
    seen = []
    orig = model.denoise_actions
    model.denoise_actions = lambda x, s, c: (seen.append(s.clone()), orig(x, s, c))[1]
    data = synthetic_clips(64)
    model({"frames": data["frames"], "actions": data["actions"], "text_emb": torch.zeros(64, 64)}, "baseline",
          torch.Generator().manual_seed(0))
    log_sigma = seen[0].log()
    assert abs(log_sigma.mean().item() - (-1.2)) < 0.4 and abs(log_sigma.std().item() - 1.2) < 0.35
    seen.clear()
    model.text_cache.embeddings["x"] = torch.zeros(64)
    model.sample_actions(data["frames"][:1, :, 0], ["x"], SamplerConfig(steps=4), torch.Generator().manual_seed(0))
    assert seen[0][0].item() == pytest.approx(80.0)  # the first Euler step starts at the baseline's sigma_max
