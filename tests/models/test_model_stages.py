"""Training modes as parameter groups: what each of stage1 / stage2 / joint trains and freezes."""

from __future__ import annotations

import pytest
import torch

from videopolicy.models.config import EDMConfig, SamplerConfig
from videopolicy.models.model import VideoPolicyModel
from videopolicy.models.vae import build_vae

from model_fixtures import synthetic_clips, tiny_config


@pytest.fixture(scope="module")
def setup():
    cfg = tiny_config()
    model = VideoPolicyModel(cfg).attach_encoders(vae=build_vae(cfg))
    data = synthetic_clips(2, seed=1)
    clip = model.encode(data["frames"], torch.Generator().manual_seed(0))  # cached latents, as training would
    batch = {"latents": clip.latents, "cond_latents": clip.cond, "text_emb": torch.randn(2, 64),
             "actions": data["actions"]}
    return cfg, model, batch


def _grads(module):
    return [p.grad for p in module.parameters()]


def test_stage2_leaves_every_unet_parameter_bit_identical(setup):
    cfg, model, batch = setup
    model.set_mode("stage2").train()
    unet_before = {k: v.clone() for k, v in model.unet.state_dict().items()}
    head_before = [p.detach().clone() for p in model.action_head.parameters()]
    groups = model.param_groups("stage2")
    assert [(g["name"], g["lr"]) for g in groups] == [("adapter", 5e-5), ("action_head", 5e-5)]
    # a careless trainer that hands *all* parameters to the optimizer must not move the U-Net either
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    g = torch.Generator().manual_seed(0)
    for _ in range(2):
        opt.zero_grad(set_to_none=True)
        out = model(batch, "stage2", g)
        out.loss.backward()
        assert all(grad is None for grad in _grads(model.unet))
        assert all(grad is not None for grad in _grads(model.action_head) + _grads(model.adapter))
        assert sum(float(grad.abs().sum()) for grad in _grads(model.action_head)) > 0
        opt.step()
    for k, v in model.unet.state_dict().items():
        assert torch.equal(v, unet_before[k]), k
    assert any(not torch.equal(a, b) for a, b in zip(head_before, model.action_head.parameters()))
    assert set(out.metrics()) == {"loss", "video_loss", "action_loss"}


def test_stage1_trains_only_the_unet(setup):
    cfg, model, batch = setup
    model.set_mode("stage1").zero_grad(set_to_none=True)
    assert [(g["name"], g["lr"]) for g in model.param_groups("stage1")] == [("video_unet", 1e-5)]
    out = model({k: v for k, v in batch.items() if k != "actions"}, "stage1")  # stage 1 needs no actions
    out.loss.backward()
    assert out.action_loss is None
    assert all(grad is None for grad in _grads(model.adapter) + _grads(model.action_head))
    assert sum(float(grad.abs().sum()) for grad in _grads(model.unet) if grad is not None) > 0


def test_joint_action_loss_reaches_the_unet(setup):
    cfg, model, batch = setup
    model.set_mode("joint").zero_grad(set_to_none=True)
    assert [g["name"] for g in model.param_groups("joint")] == ["video_unet", "adapter", "action_head"]
    inputs = model.prepare(batch)
    sigma = torch.full((2,), 1.5)
    _, d_actions = model.denoise(inputs["video"], sigma, inputs["cond"], inputs["text"], inputs["actions"], sigma)
    d_actions.square().mean().backward()  # the action loss alone
    unet_grad = sum(float(p.grad.abs().sum()) for p in model.unet.parameters() if p.grad is not None)
    assert unet_grad > 0  # features are not detached in joint training


def test_condition_dropout_only_in_training(setup):
    cfg, model, batch = setup
    model.set_mode("stage1")
    model.eval()
    a = model(batch, "stage1", torch.Generator().manual_seed(3)).loss
    b = model(batch, "stage1", torch.Generator().manual_seed(3)).loss
    assert torch.equal(a, b)  # evaluation loss: deterministic given the generator, no dropout


def test_gradient_checkpointing_gives_the_same_gradients():
    data = synthetic_clips(1, seed=2)
    batch = {"frames": data["frames"], "text_emb": torch.randn(1, 64)}
    grads = []
    for checkpointing in (False, True):
        cfg = tiny_config()
        cfg.unet.gradient_checkpointing = checkpointing
        model = VideoPolicyModel(cfg).attach_encoders(vae=build_vae(cfg)).set_mode("stage1").eval()
        assert model.unet.down_blocks[0].gradient_checkpointing == checkpointing
        model(batch, "stage1", torch.Generator().manual_seed(0)).loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.unet.parameters()]))
    assert torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_joint_head_learns_on_the_pass_the_fast_sampler_makes():
    """Decoupled recipe (feature_noise false): the sampler takes the head's features from one zero-video
    U-Net pass at feature_sigma, so joint training must too; on the noisy clip's taps the head learned
    features it never sees when sampling (the CPU study's joint row: 0/100). The action loss then cannot
    depend on the clip's future frames, only on its current frame and text; the U-Net still gets it."""
    cfg = tiny_config(edm=EDMConfig(action_sigma="independent", feature_sigma=700.0, feature_noise=False),
                      sampler=SamplerConfig(mode="fast", feature_sigma=700.0))
    model = VideoPolicyModel(cfg).attach_encoders(vae=build_vae(cfg)).eval()  # eval: no condition dropout
    data = synthetic_clips(2, seed=1)
    clip = model.encode(data["frames"], torch.Generator().manual_seed(0))
    batch = {"latents": clip.latents, "cond_latents": clip.cond, "text_emb": torch.randn(2, 64),
             "actions": data["actions"]}
    other_future = {**batch, "latents": torch.randn_like(clip.latents)}
    model.set_mode("joint").zero_grad(set_to_none=True)
    out = model(batch, "joint", torch.Generator().manual_seed(3))
    again = model(other_future, "joint", torch.Generator().manual_seed(3))
    assert float(out.video_loss) != pytest.approx(float(again.video_loss))  # the video loss sees the future
    assert float(out.action_loss) == pytest.approx(float(again.action_loss), rel=1e-5)
    out.loss.backward()
    assert sum(float(p.grad.abs().sum()) for p in model.unet.parameters() if p.grad is not None) > 0
