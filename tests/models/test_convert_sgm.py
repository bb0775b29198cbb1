"""The converter from the authors' sgm checkpoints: exact key maps at full size (from the sgm_keys fixture
of ../shared/reference, built from their code), and numerics at a tiny width against an independent,
functional re-implementation of their VideoResNet / ConditionalUnet1D that reads their key names."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from videopolicy.models import convert_sgm as cs
from videopolicy.models.config import PAPER_TAPS, AdapterConfig, ModelConfig, VideoUNetConfig
from videopolicy.models.model import VideoPolicyModel

from model_fixtures import tiny_config

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "sgm_keys"
EYE, LEFT, RIGHT = cs.AUTHORS_CAMERAS
OURS = [LEFT, RIGHT, EYE]  # an order other than the authors': exercises the camera permutation


def fixture(name: str) -> dict:
    path = FIXTURES / f"{name}.json"
    if not path.exists():
        pytest.fail(f"{path} missing: the sgm_keys fixture lives in ../shared/reference beside the clone")
    return json.loads(path.read_text())


def meta_network(name: str) -> dict[str, torch.Tensor]:
    return {k: torch.empty(v, device="meta") for k, v in fixture(name)["keys"].items()}


@pytest.fixture(scope="module")
def svd_xt_shapes() -> dict[str, tuple[int, ...]]:
    return cs.expected_shapes(ModelConfig(preset="svd-xt", image_size=256))


@pytest.mark.parametrize("cameras", [list(cs.AUTHORS_CAMERAS), OURS])
def test_stage2_fixture_maps_one_to_one_onto_svd_xt(svd_xt_shapes, cameras):
    sd = meta_network("stage2_robocasa_unet_adapter_head")
    assert cs.checkpoint_stage(sd) == 2
    ours = cs.convert(sd, cameras, "stage2 fixture")
    cs.check_exact(ours, svd_xt_shapes, "stage2 fixture")  # every key once, every shape equal, nothing left
    assert set(ours) == set(svd_xt_shapes)
    per_camera = sum(1 for k in sd if re.match(r"vision_encoder\.layer\d+_[123](_cat)?\.", k))
    assert per_camera == 825 and len(sd) == len(ours) + per_camera * 2 // 3  # three per-camera tensors -> one


def test_stage1_fixture_maps_onto_the_unet(svd_xt_shapes):
    sd = meta_network("stage1_robocasa_unet")
    assert cs.checkpoint_stage(sd) == 1
    ours = cs.convert(sd, cs.AUTHORS_CAMERAS, "stage1 fixture")
    cs.check_exact(ours, svd_xt_shapes, "stage1 fixture", parts=("unet.",))
    with pytest.raises(cs.CheckpointError, match="adapter"):  # a stage-1 network is not a policy
        cs.check_exact(ours, svd_xt_shapes, "stage1 fixture")


def test_unet_key_map_spot_checks():
    """Written from the layouts by hand, independently of the converter's rules."""
    expected = {
        "time_embed.2.weight": "time_embedding.linear_2.weight",
        "label_emb.0.0.bias": "add_embedding.linear_1.bias",
        "input_blocks.0.0.weight": "conv_in.weight",
        "input_blocks.2.0.time_stack.out_layers.3.weight": "down_blocks.0.resnets.1.temporal_res_block.conv2.weight",
        "input_blocks.4.0.skip_connection.weight": "down_blocks.1.resnets.0.spatial_res_block.conv_shortcut.weight",
        "input_blocks.5.1.time_stack.0.attn2.to_k.weight":
            "down_blocks.1.attentions.1.temporal_transformer_blocks.0.attn2.to_k.weight",
        "input_blocks.6.0.op.weight": "down_blocks.1.downsamplers.0.conv.weight",
        "input_blocks.11.0.time_mixer.mix_factor": "down_blocks.3.resnets.1.time_mixer.mix_factor",
        "middle_block.1.time_pos_embed.2.bias": "mid_block.attentions.0.time_pos_embed.linear_2.bias",
        "middle_block.2.in_layers.0.weight": "mid_block.resnets.1.spatial_res_block.norm1.weight",
        "output_blocks.0.0.time_mixer.mix_factor": "up_blocks.0.resnets.0.time_mixer.mix_factor",
        "output_blocks.1.0.time_mixer.mix_factor": "up_blocks.0.resnets.1.time_mixer.mix_factor",
        "output_blocks.2.0.emb_layers.1.weight": "up_blocks.0.resnets.2.spatial_res_block.time_emb_proj.weight",
        "output_blocks.2.1.conv.weight": "up_blocks.0.upsamplers.0.conv.weight",
        "output_blocks.4.1.time_mixer.mix_factor": "up_blocks.1.attentions.1.time_mixer.mix_factor",
        "output_blocks.8.2.conv.bias": "up_blocks.2.upsamplers.0.conv.bias",
        "output_blocks.11.1.proj_out.weight": "up_blocks.3.attentions.2.proj_out.weight",
        "out.0.weight": "conv_norm_out.weight",
        "out.2.bias": "conv_out.bias",
    }
    for sgm, diffusers in expected.items():
        assert cs.unet_key(sgm) == diffusers, sgm
    assert cs.adapter_key("layer3_2_cat.1.conv2.1.weight") == ("branches.merge.1.blocks.1.conv.1.weight", 1)
    assert cs.adapter_key("layer7_3.0.downsample.0.weight") == ("branches.tail.1.blocks.0.shortcut.0.weight", 2)
    assert cs.adapter_key("layer17.3.emb_layers.1.bias") == ("trunk.9.blocks.3.emb.1.bias", None)
    assert cs.head_key("up_modules.1.0.blocks.1.block.1.weight") == "up.1.0.conv2.1.weight"
    assert cs.head_key("final_conv.0.block.0.bias") == "out.0.0.bias"
    for bad in ("output_blocks.1.1.conv.weight", "input_blocks.12.0.in_layers.0.weight", "layer18.0.conv1.0.weight"):
        with pytest.raises(KeyError):
            cs.unet_key(bad) if bad.startswith(("in", "out")) else cs.adapter_key(bad)


def test_svd_xt_adapter_groupnorms_are_the_authors():
    """Group counts are not in the shapes: compare the svd-xt adapter with the fixture's notes."""
    notes = fixture("stage2_robocasa_unet_adapter_head")["notes"]["vision_encoder_groupnorm_num_groups"]
    with torch.device("meta"):
        model = VideoPolicyModel(ModelConfig(preset="svd-xt", image_size=256))
    norms = {f"adapter.{n}": m.num_groups for n, m in model.adapter.named_modules() if isinstance(m, torch.nn.GroupNorm)}
    ref = fixture("stage2_robocasa_unet_adapter_head")["keys"]
    checked = 0
    for key in ref:
        if not key.startswith("vision_encoder.") or not key.endswith(".weight") or len(ref[key]) != 1:
            continue
        ours, cam = cs.adapter_key(key[len("vision_encoder."):])
        layer = key.split(".")[1]
        want = notes["norm"] if layer == "norm" else notes[layer][
            "bottleneck(conv1,conv2)" if (".conv1." in key or ".conv2." in key) else "out(conv3,downsample)"]
        cameras = 1 if cam is None else 3  # grouped over the stacked cameras: 3 x the per-camera groups
        assert norms["adapter." + ours.rsplit(".", 1)[0]] == want * cameras, key
        checked += 1
    assert checked == CHECKED_NORMS  # every GroupNorm weight of the authors' adapter


# per camera 11 layers x (2 blocks x 3 norms + 1 shortcut norm); layers 8-12: 5 x 7; 13-14: 2 x 6 (no
# shortcut); 15-17: 3 x (4 x 3 + 1); the final norm: 3 x 77 + 35 + 12 + 39 + 1
CHECKED_NORMS = 318


# -- numerics at a tiny width ----------------------------------------------------------------------
G = dict(branch=(2, 4, 4, 4, 4), merge=(2, 2, 2, 2), tail=(3, 2), fuse=(5, 4, 3, 5, 2), refine=(4, 4),
         temporal=(4, 4, 4), norm=2)  # none equals the rule's choice: a test that ignores them fails


def authors_tiny() -> ModelConfig:
    """The authors' adapter/head topology (layers, blocks, strides) at a tiny width, tiny U-Net."""
    return ModelConfig(preset="tiny", image_size=128, frames_per_camera=4, adapter=AdapterConfig(
        branch_widths=(16, 32, 32, 32, 32), merge_widths=(16, 16, 16, 16), branch_tail_widths=(24, 16),
        fuse_widths=(40, 32, 24, 20, 16), refine_stages=2, blocks_per_stage=2, temporal_blocks_per_stage=4,
        branch_groups=G["branch"], merge_groups=G["merge"], branch_tail_groups=G["tail"], fuse_groups=G["fuse"],
        refine_groups=G["refine"], temporal_groups=G["temporal"], norm_groups=G["norm"]))


def sgm_named_policy(cfg: ModelConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random float64 adapter + head tensors under the authors' names (the stage-2 fixture's, verbatim)."""
    ours = cs.expected_shapes(cfg)
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key in fixture("stage2_robocasa_unet_adapter_head")["keys"]:
        if key.startswith(cs.ADAPTER):
            target, cam = cs.adapter_key(key[len(cs.ADAPTER):])
            shape = list(ours["adapter." + target])
            if cam is not None:
                shape[0] //= 3
        elif key.startswith(cs.HEAD):
            shape = list(ours["action_head." + cs.head_key(key[len(cs.HEAD):])])
        else:
            continue
        x = torch.randn(shape, generator=gen, dtype=torch.float64)
        if len(shape) > 1:  # conv / linear: unit-gain, so camera content reaches the output
            out[key] = x / math.prod(shape[1:]) ** 0.5
        else:  # norm scales near 1, small biases
            out[key] = 1 + 0.2 * x if key.endswith(".weight") else 0.1 * x
    return out


def _block(s, p, x, emb, groups, exp, stride=1, tstride=1):
    """The authors' Bottleneck, functionally, from their key names."""
    def gn(h, g, n):
        return F.group_norm(h, g, s[p + n + ".weight"], s[p + n + ".bias"])
    h = F.silu(gn(F.conv3d(x, s[p + "conv1.0.weight"]), groups, "conv1.1"))
    h = h + F.linear(F.silu(emb), s[p + "emb_layers.1.weight"], s[p + "emb_layers.1.bias"])[:, :, None, None, None]
    h = F.silu(gn(F.conv3d(h, s[p + "conv2.0.weight"], stride=(tstride, stride, stride), padding=1), groups, "conv2.1"))
    h = gn(F.conv3d(h, s[p + "conv3.0.weight"]), groups * exp, "conv3.1")
    res = x
    if p + "downsample.0.weight" in s:
        res = gn(F.conv3d(x, s[p + "downsample.0.weight"], stride=(tstride, stride, stride)), groups * exp, "downsample.1")
    return F.silu(h + res)


def _layer(s, name, x, emb, groups, exp=4, stride=1, tstride=1):
    b = 0
    while f"vision_encoder.{name}.{b}.conv1.0.weight" in s:
        x = _block(s, f"vision_encoder.{name}.{b}.", x, emb, groups, exp, stride if b == 0 else 1, tstride if b == 0 else 1)
        b += 1
    return x


def reference_vision_encoder(s, inputs, emb):
    """The authors' VideoResNet.forward: inputs[tap][c] (finest tap first, c = eye, left, right)."""
    xs = []
    for c in (1, 2, 3):
        f = [tap[c - 1] for tap in inputs]
        x = _layer(s, f"layer1_{c}", f[0], emb, G["branch"][0], stride=2)
        for k in range(2, 6):
            x = torch.cat([x, _layer(s, f"layer{k}_{c}_cat", f[k - 1], emb, G["merge"][k - 2])], dim=1)
            x = _layer(s, f"layer{k}_{c}", x, emb, G["branch"][k - 1], stride=2 if k <= 3 else 1)
        x = _layer(s, f"layer6_{c}", x, emb, G["tail"][0])
        xs.append(_layer(s, f"layer7_{c}", x, emb, G["tail"][1]))
    x = torch.cat(xs, dim=1)
    for k in range(8, 13):
        x = _layer(s, f"layer{k}", x, emb, G["fuse"][k - 8])
    for k in (13, 14):
        x = _layer(s, f"layer{k}", x, emb, G["refine"][k - 13], exp=2)
    for k in (15, 16, 17):
        x = _layer(s, f"layer{k}", x, emb, G["temporal"][k - 15], exp=2, tstride=2)
    return F.group_norm(x, G["norm"], s["vision_encoder.norm.weight"], s["vision_encoder.norm.bias"])


def _res1d(s, p, x, cond):
    def conv_gn(h, q):
        w = s[p + q + ".block.0.weight"]
        h = F.conv1d(h, w, s[p + q + ".block.0.bias"], padding=w.shape[-1] // 2)
        return F.silu(F.group_norm(h, 8, s[p + q + ".block.1.weight"], s[p + q + ".block.1.bias"]))
    out = conv_gn(x, "blocks.0")
    e = F.linear(F.silu(cond), s[p + "cond_encoder.1.weight"], s[p + "cond_encoder.1.bias"])
    c = out.shape[1]
    out = e[:, :c, None] * out + e[:, c:, None]
    out = conv_gn(out, "blocks.1")
    res = F.conv1d(x, s[p + "residual_conv.weight"], s[p + "residual_conv.bias"]) if p + "residual_conv.weight" in s else x
    return out + res


def reference_pose_net(s, actions, emb, global_cond):
    """The authors' ConditionalUnet1D.forward from their key names."""
    p = "pose_pred_net."
    cond = torch.cat([F.linear(F.silu(emb), s[p + "diffusion_step_encoder.1.weight"],
                               s[p + "diffusion_step_encoder.1.bias"]), global_cond], dim=-1)
    x, skips, i = actions.transpose(1, 2), [], 0
    while f"{p}down_modules.{i}.0.blocks.0.block.0.weight" in s:
        x = _res1d(s, f"{p}down_modules.{i}.1.", _res1d(s, f"{p}down_modules.{i}.0.", x, cond), cond)
        skips.append(x)
        if f"{p}down_modules.{i}.2.conv.weight" in s:
            x = F.conv1d(x, s[f"{p}down_modules.{i}.2.conv.weight"], s[f"{p}down_modules.{i}.2.conv.bias"], 2, 1)
        i += 1
    for j in (0, 1):
        x = _res1d(s, f"{p}mid_modules.{j}.", x, cond)
    i = 0
    while f"{p}up_modules.{i}.0.blocks.0.block.0.weight" in s:
        x = torch.cat([x, skips.pop()], dim=1)
        x = _res1d(s, f"{p}up_modules.{i}.1.", _res1d(s, f"{p}up_modules.{i}.0.", x, cond), cond)
        x = F.conv_transpose1d(x, s[f"{p}up_modules.{i}.2.conv.weight"], s[f"{p}up_modules.{i}.2.conv.bias"], 2, 1)
        i += 1
    w = s[p + "final_conv.0.block.0.weight"]
    x = F.conv1d(x, w, s[p + "final_conv.0.block.0.bias"], padding=w.shape[-1] // 2)
    x = F.silu(F.group_norm(x, 8, s[p + "final_conv.0.block.1.weight"], s[p + "final_conv.0.block.1.bias"]))
    return F.conv1d(x, s[p + "final_conv.1.weight"], s[p + "final_conv.1.bias"]).transpose(1, 2)


@pytest.mark.parametrize("cameras", [list(cs.AUTHORS_CAMERAS), OURS])
def test_adapter_and_head_match_the_authors_forward(cameras):
    cfg = authors_tiny()
    sgm = sgm_named_policy(cfg)
    model = VideoPolicyModel(cfg).double()
    ours = cs.convert(sgm, cameras, "tiny")
    cs.check_exact(ours, cs.expected_shapes(cfg), "tiny", parts=("adapter.", "action_head."))
    model.adapter.load_state_dict({k[len("adapter."):]: v for k, v in ours.items() if k.startswith("adapter.")})
    model.action_head.load_state_dict({k[len("action_head."):]: v for k, v in ours.items()
                                       if k.startswith("action_head.")})

    gen = torch.Generator().manual_seed(1)
    b, t, lat = 2, cfg.frames_per_camera, cfg.latent_size
    geo = [(64, 8), (64, 8), (64, 4), (64, 2), (32, 1)]  # tiny U-Net taps in PAPER_TAPS order: channels, downsample
    assert len(geo) == len(PAPER_TAPS)
    per_camera = [torch.randn(b, 3, c, t, lat // d, lat // d, generator=gen, dtype=torch.float64) for c, d in geo]
    emb = torch.randn(b, 128, generator=gen, dtype=torch.float64)
    got = model.adapter(per_camera, emb)
    # the authors' inputs: finest tap first (their reversed list), branch c <- the camera they trained it on
    mine = {cam: i for i, cam in enumerate(cameras)}
    inputs = [[per_camera[k][:, mine[cam]] for cam in cs.AUTHORS_CAMERAS] for k in reversed(range(len(geo)))]
    want = reference_vision_encoder(sgm, inputs, emb)
    assert want.shape == (b, 16, 1, 2, 2)  # 16 px latents: the output keeps 2 x 2 positions
    torch.testing.assert_close(got, want.flatten(1), rtol=1e-9, atol=1e-9)

    actions = torch.randn(b, 32, 7, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(model.action_head(actions, emb, got), reference_pose_net(sgm, actions, emb, got),
                               rtol=1e-9, atol=1e-9)


def test_a_swapped_camera_pair_changes_the_adapter_output():
    """Guards the test above: loading with two cameras swapped must not give the authors' output."""
    cfg = authors_tiny()
    sgm = sgm_named_policy(cfg)
    right = VideoPolicyModel(cfg).double()
    swapped = VideoPolicyModel(cfg).double()
    for model, cams in ((right, OURS), (swapped, [OURS[1], OURS[0], OURS[2]])):
        ours = cs.convert(sgm, cams, "tiny")
        model.adapter.load_state_dict({k[len("adapter."):]: v for k, v in ours.items() if k.startswith("adapter.")})
    gen = torch.Generator().manual_seed(2)
    geo = [(64, 8), (64, 8), (64, 4), (64, 2), (32, 1)]
    feats = [torch.randn(1, 3, c, 4, 16 // d, 16 // d, generator=gen, dtype=torch.float64) for c, d in geo]
    emb = torch.randn(1, 128, generator=gen, dtype=torch.float64)
    assert (right.adapter(feats, emb) - swapped.adapter(feats, emb)).abs().max() > 1e-3


def test_unet_round_trip_through_the_authors_names():
    """A tiny U-Net with SVD's topology (4 levels, widths growing where SVD's do, so the same keys) written
    under the fixture's sgm names, converted back and loaded: the same video and five taps (a pure rename)."""
    tiny_cfg = tiny_config(unet=VideoUNetConfig(block_out_channels=(32, 64, 96, 96), num_attention_heads=(2, 4, 4, 4)))
    names = fixture("stage1_robocasa_unet")["keys"]
    source = VideoPolicyModel(tiny_cfg).eval()
    mine = source.unet.state_dict()
    sgm = {k: mine[cs.unet_key(k)].clone() for k in names}
    assert {cs.unet_key(k) for k in names} == set(mine)  # the names cover our U-Net exactly
    converted = cs.convert(sgm, cs.AUTHORS_CAMERAS, "round trip")
    cs.check_exact(converted, cs.expected_shapes(tiny_cfg), "round trip", parts=("unet.",))
    target = VideoPolicyModel(dataclasses.replace(tiny_cfg, init_seed=7)).eval()
    assert not torch.equal(target.unet.conv_in.weight, source.unet.conv_in.weight)
    target.unet.load_state_dict({k[len("unet."):]: v for k, v in converted.items()})
    x = torch.randn(1, tiny_cfg.num_video_frames, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    text = torch.randn(1, 64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        a, fa = source.denoise_video(x, torch.full((1,), 0.7), x, text, taps=True)
        b, fb = target.denoise_video(x, torch.full((1,), 0.7), x, text, taps=True)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    for u, v in zip(fa, fb):
        torch.testing.assert_close(u, v, rtol=0, atol=0)


def test_unknown_and_colliding_keys_are_refused():
    sd = meta_network("stage1_robocasa_unet")
    sd["input_blocks.1.0.mystery.weight"] = torch.empty(1, device="meta")
    with pytest.raises(cs.CheckpointError, match="mystery"):
        cs.convert(sd, cs.AUTHORS_CAMERAS, "x")
    with pytest.raises(cs.CheckpointError, match="robot0_agentview_left"):
        cs.convert({}, [EYE, EYE, RIGHT], "x")
    twice = {cs.PREFIX + "out.2.bias": torch.zeros(4), cs.PREFIX + "_orig_mod.out.2.bias": torch.ones(4)}
    with pytest.raises(cs.CheckpointError, match="repeats model.diffusion_model.out.2.bias"):
        cs.network_tensors(twice, "x")
    assert list(cs.network_tensors({cs.PREFIX + "_orig_mod.out.2.bias": torch.ones(4)}, "x")) == ["out.2.bias"]


def test_group_counts_are_validated():
    cfg = ModelConfig(preset="svd-xt", image_size=256, adapter=AdapterConfig(fuse_groups=(10, 8, 6, 5, 4)))
    assert any("fuse_groups: 4 groups do not divide the bottleneck width 105" in e for e in cfg.problems())
    short = ModelConfig(preset="svd-xt", adapter=AdapterConfig(temporal_groups=(7, 7)))
    assert any("temporal_groups: needs one group count per stage (3)" in e for e in short.problems())
    assert ModelConfig(preset="svd-xt").problems() == [] and ModelConfig(preset="tiny").problems() == []
