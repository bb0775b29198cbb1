"""Paper-scale rows name their pretrained weights, and preflight refuses missing or misplaced ones
before Ray starts (offline: local directories shaped like the real ones, an empty Hugging Face cache)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from videopolicy.config import ConfigError, load_sweep
from videopolicy.models import pretrained
from videopolicy.models.config import ModelConfig, TextConfig, VAEConfig, VideoUNetConfig
from videopolicy.sweep.plan import build_plan

ROOT = Path(__file__).resolve().parents[2]


def paper_sweep(tmp_path: Path, name: str, model: dict) -> Path:
    """The RoboCasa paper sweep with its `model` section replaced."""
    data = yaml.safe_load((ROOT / "sweeps/robocasa_paper.yaml").read_text())
    data["base"]["model"] = model
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_paper_sweeps_name_their_weights():
    for name in ("robocasa_paper", "horizon", "libero10_paper"):
        sweep = load_sweep(ROOT / f"sweeps/{name}.yaml", check_files=False)
        for row, cfg in sweep.rows:
            m = cfg.model_config().resolve()
            assert m.preset == "svd-xt" and not m.allow_random_init, (name, row)
            assert pretrained.problems(m, check_files=False) == [], (name, row)
            if m.kind == "video_policy":
                assert m.unet.pretrained == m.vae.pretrained == pretrained.SVD_XT, (name, row)
            assert m.text.pretrained == pretrained.OPEN_CLIP_VIT_H, (name, row)


def test_svd_xt_rows_without_weights_are_refused_by_the_planner(tmp_path):
    sweep = load_sweep(paper_sweep(tmp_path, "bare", {"preset": "svd-xt"}), check_files=False)
    with pytest.raises(ConfigError) as e:
        build_plan(sweep, str(tmp_path / "store"))
    errors = e.value.errors
    two_stage = [x for x in errors if x.startswith("rows[two_stage].")]
    assert sorted(x.split(":")[0] for x in two_stage) == [
        "rows[two_stage].model.text.pretrained", "rows[two_stage].model.unet.pretrained",
        "rows[two_stage].model.vae.pretrained"]
    assert "random initialisation" in two_stage[0] and "allow_random_init: true" in two_stage[0]
    assert pretrained.SVD_XT in " ".join(two_stage) and pretrained.OPEN_CLIP_VIT_H in " ".join(two_stage)
    # DP-ResNet builds only the text encoder
    assert sorted(x.split(":")[0] for x in errors if x.startswith("rows[dp_resnet].")) == [
        "rows[dp_resnet].model.text.pretrained"]

    allowed = load_sweep(paper_sweep(tmp_path, "scratch", {"preset": "svd-xt", "allow_random_init": True}),
                         check_files=False)
    assert build_plan(allowed, str(tmp_path / "store")).rows  # asked for explicitly: fine
    smoke = load_sweep(ROOT / "sweeps/smoke.yaml", check_files=False)
    assert build_plan(smoke, str(tmp_path / "store")).rows  # tiny presets stay random-init


def svd_like(root: Path, unet_channels=(320, 640, 1280, 1280), weights: bool = True) -> Path:
    """A directory with SVD-XT's diffusers layout (configs only; weight files empty)."""
    for sub, cfg in (("unet", {"_class_name": "UNetSpatioTemporalConditionModel",
                               "block_out_channels": list(unet_channels), "cross_attention_dim": 1024}),
                     ("vae", {"_class_name": "AutoencoderKLTemporalDecoder", "block_out_channels": [128, 256, 512, 512]})):
        (root / sub).mkdir(parents=True)
        (root / sub / "config.json").write_text(json.dumps(cfg))
        if weights:
            (root / sub / "diffusion_pytorch_model.safetensors").write_bytes(b"")
    return root


def clip_like(root: Path, projection: int = 1024) -> Path:
    root.mkdir(parents=True)
    (root / "config.json").write_text(json.dumps({"architectures": ["CLIPModel"], "projection_dim": projection}))
    (root / "model.safetensors").write_bytes(b"")
    return root


def svd_xt(unet: str, text: str, vae: str | None = None) -> ModelConfig:
    return ModelConfig(preset="svd-xt", unet=VideoUNetConfig(pretrained=unet), vae=VAEConfig(pretrained=vae or unet),
                       text=TextConfig(pretrained=text))


def test_local_sources_in_the_expected_layout_pass(tmp_path):
    cfg = svd_xt(str(svd_like(tmp_path / "svd")), str(clip_like(tmp_path / "clip")))
    assert pretrained.problems(cfg) == []


def test_local_sources_in_the_wrong_layout_are_named(tmp_path):
    clip = str(clip_like(tmp_path / "clip"))
    missing = pretrained.problems(svd_xt(str(tmp_path / "nowhere"), clip))
    assert len(missing) == 2 and all("is not a directory" in m for m in missing)
    assert missing[0].startswith("model.unet.pretrained:") and missing[1].startswith("model.vae.pretrained:")

    (tmp_path / "flat").mkdir()  # the unet folder given as the root, subfolder still "unet"
    (tmp_path / "flat" / "config.json").write_text("{}")
    flat = pretrained.problems(svd_xt(str(tmp_path / "flat"), clip))
    assert "model.unet.pretrained" in flat[0] and "unet/config.json" in flat[0]
    assert "pretrained_subfolder: null" in flat[0] and "diffusion_pytorch_model.safetensors" in flat[0]

    no_weights = pretrained.problems(svd_xt(str(svd_like(tmp_path / "empty", weights=False)), clip))
    assert any(m.startswith("model.unet.pretrained:") and "has no weights" in m for m in no_weights)

    small = pretrained.problems(svd_xt(str(svd_like(tmp_path / "small", unet_channels=(32, 64, 64, 64))), clip))
    assert small == [f"model.unet.pretrained: {tmp_path / 'small' / 'unet' / 'config.json'} has block_out_channels/"
                     f"cross_attention_dim ((32, 64, 64, 64), 1024), the svd-xt preset ((320, 640, 1280, 1280), 1024)"]

    svd_like(tmp_path / "svd")  # the VAE pointed at the U-Net's folder
    swapped = pretrained.problems(svd_xt(str(tmp_path / "svd"), clip, vae=str(tmp_path / "svd" / "unet")))
    assert swapped and "model.vae.pretrained" in swapped[0]

    proj = pretrained.problems(svd_xt(str(tmp_path / "svd"), str(clip_like(tmp_path / "clip768", projection=768))))
    assert proj and proj[0].startswith("model.text.pretrained:") and "768-d" in proj[0]


def test_hub_sources_missing_offline_are_refused(tmp_path, monkeypatch):
    import huggingface_hub.constants as hf

    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path / "hub"))
    pretrained._checked.clear()
    errs = pretrained.problems(svd_xt(pretrained.SVD_XT, pretrained.OPEN_CLIP_VIT_H))
    assert [e.split(":")[0] for e in errs] == ["model.unet.pretrained", "model.vae.pretrained", "model.text.pretrained"]
    assert "not in this node's Hugging Face cache" in errs[0]
    assert "hf download stabilityai/stable-video-diffusion-img2vid-xt --revision 9689bb5" in errs[0]
    assert pretrained.split_source(pretrained.SVD_XT) == (
        "stabilityai/stable-video-diffusion-img2vid-xt", "9689bb5af8d6c0fd3394fed3598893564438191c")
    pretrained._checked.clear()


def test_sweep_driver_refuses_missing_weights_before_ray(tmp_path):
    """jobs/sweep_ablations.py exits with the key to set and starts no Ray (the smoke sweep at svd-xt)."""
    data = yaml.safe_load((ROOT / "sweeps/smoke.yaml").read_text())
    data["base"]["model"] = {"preset": "svd-xt", "unet": {"pretrained": str(tmp_path / "svd")},
                             "vae": {"pretrained": str(tmp_path / "svd")},
                             "text": {"pretrained": str(clip_like(tmp_path / "clip"))}}
    data["base"]["store"] = str(tmp_path / "store")
    (tmp_path / "svd").mkdir()  # exists, but not SVD's layout
    path = tmp_path / "svd_smoke.yaml"
    path.write_text(yaml.safe_dump(data))
    env = {**os.environ, "RAY_ADDRESS": "", "MLFLOW_TRACKING_URI": ""}
    proc = subprocess.run([sys.executable, str(ROOT / "jobs/sweep_ablations.py"), "--sweep", str(path),
                           "--rows", "two_stage", "dp_resnet"], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=300)
    assert proc.returncode != 0
    assert "rows[two_stage].model.unet.pretrained" in proc.stderr and "unet/config.json" in proc.stderr
    assert "model.text.pretrained" not in proc.stderr  # that one is in place
    assert "Started a local Ray" not in proc.stdout + proc.stderr and not (tmp_path / "store").exists()


def test_train_stage_refuses_unset_weights_before_ray(tmp_path):
    data = yaml.safe_load((ROOT / "sweeps/smoke.yaml").read_text())
    data["base"]["model"] = {"preset": "svd-xt"}
    data["base"]["store"] = str(tmp_path / "store")
    path = tmp_path / "bare.yaml"
    path.write_text(yaml.safe_dump(data))
    proc = subprocess.run([sys.executable, str(ROOT / "jobs/train_stage.py"), "--sweep", str(path), "--row", "two_stage",
                           "--stage", "stage1"], capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**os.environ, "RAY_ADDRESS": ""})
    assert proc.returncode != 0 and "model.unet.pretrained: not set" in proc.stderr, proc.stderr[-1000:]
    assert "allow_random_init: true" in proc.stderr and not (tmp_path / "store").exists()
