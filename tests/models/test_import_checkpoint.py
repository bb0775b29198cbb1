"""Importing the authors' Lightning checkpoints, offline: a checkpoint written the authors' way (their key
names from the sgm_keys fixture, tiny random tensors, Lightning bookkeeping) becomes a policy directory
that evaluation and stage 2 accept; wrong, truncated and unsafe files are refused with the fix."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from videopolicy.evaluate.policies import PolicySpec
from videopolicy.models import convert_sgm as cs
from videopolicy.models.config import VideoUNetConfig
from videopolicy.models.model import PolicyModel, VideoPolicyModel
from videopolicy.train.checkpoint import check_init_checkpoint

from test_convert_sgm import OURS, authors_tiny, fixture, sgm_named_policy

ROOT = Path(__file__).resolve().parents[2]


def tiny_cfg():
    """The authors' adapter/head topology and a U-Net with SVD's key set, at a tiny width."""
    cfg = authors_tiny()
    return dataclasses.replace(cfg, unet=VideoUNetConfig(block_out_channels=(32, 64, 96, 96),
                                                         num_attention_heads=(2, 4, 4, 4)))


class _Bookkeeping:
    """Stands for Lightning/OmegaConf objects in a checkpoint (pickled under their module names)."""

    def __init__(self, payload):
        self.payload = payload


def _as_module(cls: type, module: str, created: list) -> type:
    """`cls` importable as `module`.<name> while the checkpoint is written (modules listed in `created`)."""
    sub = type(cls.__name__, (cls,), {"__module__": module})
    parts = module.split(".")
    for i in range(1, len(parts) + 1):
        name = ".".join(parts[:i])
        if name not in sys.modules:
            sys.modules[name] = types.ModuleType(name)
            created.append(name)
    setattr(sys.modules[module], cls.__name__, sub)
    return sub


def write_authors_ckpt(path: Path, cfg, stage: int = 2, seed: int = 0) -> tuple[Path, VideoPolicyModel]:
    """A Lightning-style checkpoint of the authors' network at tiny width; returns it and the U-Net source."""
    source = VideoPolicyModel(dataclasses.replace(cfg, init_seed=11))
    mine = source.unet.state_dict()
    net = {k: mine[cs.unet_key(k)].clone() for k in fixture("stage1_robocasa_unet")["keys"]}
    if stage == 2:
        net.update({k: v.float() for k, v in sgm_named_policy(cfg, seed).items()})
    state = {cs.PREFIX + k: v for k, v in net.items()}
    state["first_stage_model.encoder.conv_in.weight"] = torch.zeros(2)  # stock parts: ignored
    state["conditioner.embedders.0.open_clip.model.token_embedding.weight"] = torch.zeros(2)
    created: list = []
    ckpt_cls = _as_module(_Bookkeeping, "pytorch_lightning.callbacks.model_checkpoint", created)
    conf_cls = _as_module(_Bookkeeping, "omegaconf.dictconfig", created)
    try:
        torch.save({"epoch": 3, "global_step": 369000, "pytorch-lightning_version": "2.1.4", "state_dict": state,
                    "callbacks": {"ModelCheckpoint": ckpt_cls({"best_model_path": "x"})},
                    "hyper_parameters": conf_cls({"lr": 1e-5}), "optimizer_states": [{"state": {}}]}, path)
    finally:  # gone before reading: the reader must cope without them
        for name in created:
            del sys.modules[name]
    return path, source


def write_demos(path: Path, lengths=(30, 45), dim: int = 12, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    every = []
    with h5py.File(path, "w") as f:
        for i, n in enumerate(lengths):
            a = rng.uniform(-2, 2, size=(n, dim)).astype(np.float32)
            f.create_dataset(f"data/demo_{i}/actions", data=a)
            every.append(a)
    return np.concatenate(every)


def test_stage2_checkpoint_becomes_an_evaluable_policy(tmp_path):
    cfg = tiny_cfg()
    ckpt, source = write_authors_ckpt(tmp_path / "stage_2.ckpt", cfg)
    a = write_demos(tmp_path / "TaskA.hdf5")
    b = write_demos(tmp_path / "TaskB.hdf5", lengths=(20,), seed=1)
    normalizer, summary = cs.normalizer_from_demos([tmp_path / "TaskA.hdf5", tmp_path / "TaskB.hdf5"], 7)
    every = np.concatenate([a, b])[:, :7]
    np.testing.assert_allclose(normalizer.low, every.min(0)), np.testing.assert_allclose(normalizer.high, every.max(0))
    assert summary["demos"] == 3 and summary["steps"] == 95

    out = cs.import_policy(ckpt, tmp_path / "policy", cfg, OURS, normalizer, stage=2,
                           extra={"normalizer_source": summary})
    assert PolicySpec("checkpoint", str(out)).problems() == []  # what jobs/evaluate.py and the sweep check
    extra = json.loads((out / "extra.json").read_text())
    assert extra["cameras"] == OURS and extra["normalizer"]["low"] == normalizer.to_dict()["low"]
    assert extra["imported_from"]["camera_map"] == {OURS[0]: "*_2", OURS[1]: "*_3", OURS[2]: "*_1"}

    loaded = PolicyModel.from_pretrained(out).eval()
    converted = cs.convert(cs.read_checkpoint(ckpt), OURS)
    for k, v in loaded.state_dict().items():  # every weight is the checkpoint's, none left at init
        torch.testing.assert_close(v, converted[k].to(v.dtype), rtol=0, atol=0, msg=k)
    x = torch.randn(1, cfg.num_video_frames, 4, cfg.latent_size, cfg.latent_size, generator=torch.Generator().manual_seed(0))
    text = torch.randn(1, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # the U-Net (a pure rename) computes what its source computed
        want, _ = source.eval().denoise_video(x, torch.ones(1), x, text)
        got, _ = loaded.denoise_video(x, torch.ones(1), x, text)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_stage1_checkpoint_becomes_an_init_for_stage2(tmp_path):
    cfg = tiny_cfg()
    ckpt, source = write_authors_ckpt(tmp_path / "stage_1.ckpt", cfg, stage=1)
    with pytest.raises(cs.CheckpointError, match="is a stage-1 checkpoint .*Fix: pass stage_2_trained_step_369k.ckpt"):
        cs.import_policy(ckpt, tmp_path / "wrong", cfg, OURS, stage=2)
    assert not (tmp_path / "wrong").exists()
    out = cs.import_policy(ckpt, tmp_path / "s1", cfg, OURS, stage=1)
    check_init_checkpoint(out, cfg, OURS)  # what stage 2's --init-from checks
    loaded = PolicyModel.from_pretrained(out)
    fresh = VideoPolicyModel(cfg).state_dict()  # adapter and head: the seeded init our stage 1 leaves them at
    unet = source.state_dict()
    for k, v in loaded.state_dict().items():
        ref = unet[k] if k.startswith("unet.") else fresh[k]
        torch.testing.assert_close(v, ref, rtol=0, atol=0, msg=k)

    stage2, _ = write_authors_ckpt(tmp_path / "stage_2.ckpt", cfg)
    with pytest.raises(cs.CheckpointError, match="is a stage-2 checkpoint"):
        cs.import_policy(stage2, tmp_path / "wrong1", cfg, OURS, stage=1)


def test_truncated_and_foreign_files_are_refused(tmp_path):
    cfg = tiny_cfg()
    ckpt, _ = write_authors_ckpt(tmp_path / "full.ckpt", cfg, stage=1)
    data = ckpt.read_bytes()
    (tmp_path / "cut.ckpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(cs.CheckpointError, match="cut.ckpt: .*truncated.*download it again"):
        cs.read_checkpoint(tmp_path / "cut.ckpt")
    with pytest.raises(cs.CheckpointError, match="checkpoint not found"):
        cs.read_checkpoint(tmp_path / "absent.ckpt")
    torch.save({"state_dict": {"model.encoder.weight": torch.zeros(1)}}, tmp_path / "other.ckpt")
    with pytest.raises(cs.CheckpointError, match="no 'model.diffusion_model.\\*' keys"):
        cs.read_checkpoint(tmp_path / "other.ckpt")


class _RunsCode:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_checkpoint_that_would_run_code_is_refused_unrun(tmp_path):
    marker = tmp_path / "ran"
    torch.save({"state_dict": {cs.PREFIX + "out.2.bias": torch.zeros(4)}, "evil": _RunsCode(str(marker))},
               tmp_path / "evil.ckpt")
    with pytest.raises(cs.CheckpointError, match=r"refers to \['(posix|os)\.system'\].*refusing"):
        cs.read_checkpoint(tmp_path / "evil.ckpt")
    assert not marker.exists()


def test_the_paper_sweep_has_the_authors_setup():
    from videopolicy.config import load_sweep

    cfg = load_sweep(ROOT / "sweeps/robocasa_paper.yaml", check_files=False).rows[0][1]
    cams = list(cfg.clips.cameras or cfg.demos.cameras)
    assert cams == list(cs.AUTHORS_CAMERAS) and cs.setup_problems(cfg.model_config(), cams) == []
    wrong = cs.setup_problems(dataclasses.replace(cfg.model_config(), image_size=128), cams[1:] + cams[:1])
    assert any("256 px" in e for e in wrong) and any("pad_camera" in e for e in wrong)


def test_import_job_reports_the_file_and_fix(tmp_path):
    write_demos(tmp_path / "demo.hdf5")
    (tmp_path / "cut.ckpt").write_bytes(b"PK\x03\x04 not really a zip")
    proc = subprocess.run([sys.executable, str(ROOT / "jobs/import_checkpoint.py"), "--ckpt", str(tmp_path / "cut.ckpt"),
                           "--out", str(tmp_path / "out"), "--demos", str(tmp_path / "demo.hdf5")],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode != 0 and "cut.ckpt" in proc.stderr and "download it again" in proc.stderr
    assert "action normaliser rebuilt (the checkpoints store none)" in proc.stdout
    assert not (tmp_path / "out").exists()


def test_a_sweep_row_evaluates_an_imported_policy(tmp_path):
    import yaml

    from videopolicy.config import load_sweep
    from videopolicy.models.pretrained import rows_problems
    from videopolicy.sweep.plan import build_plan

    cfg = tiny_cfg()
    ckpt, _ = write_authors_ckpt(tmp_path / "stage_2.ckpt", cfg)
    write_demos(tmp_path / "d.hdf5")
    normalizer, _ = cs.normalizer_from_demos([tmp_path / "d.hdf5"])
    out = cs.import_policy(ckpt, tmp_path / "authors", cfg, OURS, normalizer)
    data = yaml.safe_load((ROOT / "sweeps/smoke.yaml").read_text())
    data["rows"] = [{"name": "authors", "overrides": {"train": {"policy_dir": str(out)}}},
                    {"name": "two_stage", "overrides": {}},
                    {"name": "gone", "overrides": {"train": {"policy_dir": str(tmp_path / "gone")}}}]
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(data))
    sweep = load_sweep(tmp_path / "s.yaml", check_files=False)
    plan = build_plan(sweep, str(tmp_path / "store"))
    row = plan.row("authors")
    assert list(row.stages) == ["eval"] and plan.nodes[row.stages["eval"]].deps == ()  # nothing trained
    assert rows_problems(sweep.rows) == [f"rows[gone].train.policy_dir: {tmp_path / 'gone'} has no config.json, "
                                         f"model.safetensors, extra.json: not a policy directory (PolicyModel."
                                         f"save_pretrained or jobs/import_checkpoint.py output)"]
    before = row.stages["eval"]
    (out / "extra.json").write_text((out / "extra.json").read_text() + "\n")  # another policy: another eval
    assert build_plan(sweep, str(tmp_path / "store")).row("authors").stages["eval"] != before
