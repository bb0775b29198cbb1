"""The authors' released checkpoints (sgm ``VideoUNet`` in a Lightning ``.ckpt``) -> this package's model.

The authors (cvlab-columbia/videopolicy) train one sgm network: SVD's ``VideoUNet`` with, in stage 2,
a ``vision_encoder`` (our adapter) and a ``pose_pred_net`` (our action head) inside it. Its weights sit
in the checkpoint's ``state_dict`` under ``model.diffusion_model.``; everything else there
(``conditioner.*``: the OpenCLIP text tower and a VAE encoder; ``first_stage_model.*``: the VAE) is
stock, frozen SVD-XT / OpenCLIP and comes from the pretrained sources of the config instead.

Key maps (the scheme of diffusers' ``scripts/convert_svd_to_diffusers.py``, rewritten here):

* U-Net: ``input_blocks.i`` -> ``down_blocks.(i-1)//3`` (resnet ``.0``, attention ``.1``, the
  downsampler of every third), ``middle_block.{0,1,2}`` -> ``mid_block.{resnets.0, attentions.0,
  resnets.1}``, ``output_blocks.i`` -> ``up_blocks.i//3`` (the upsampler is ``.1.conv`` in the
  resnet-only level 0, ``.2.conv`` elsewhere). diffusers' script writes ``up_blocks.0.resnets.0
  .time_mixer.mix_factor`` for two source keys and leaves ``resnets.1``'s unset; here every target is
  written once (a collision raises) and the converted key set is checked exactly against the model.
* Adapter (``vision_encoder``): ``layer{k}_{c}`` (k = 1-5) -> ``branches.main.{k-1}``,
  ``layer{k}_{c}_cat`` -> ``branches.merge.{k-2}``, ``layer6_c``/``layer7_c`` -> ``branches.tail.{0,1}``,
  ``layer8..17`` -> ``trunk.0..9``, ``norm`` -> ``norm``. The authors keep one module per camera
  (c = 1, 2, 3 = eye-in-hand, left, right); ours are grouped convolutions over the cameras stacked
  along channels, so the three tensors are concatenated along dim 0 **in our camera order**, and the
  input channels of layer 8 (the concatenated cameras) are permuted to that order.
* Action head (``pose_pred_net``): Diffusion Policy's ``ConditionalUnet1D`` names -> ours.

The U-Net's ``time_embed`` embeds the noise level for the video, the adapter and the head alike, in
their network and in ours (``video_unet.noise_embedding``), so it needs no copy.

    sd = read_checkpoint("stage_2_trained_step_369k.ckpt")          # safe: no foreign code runs
    ours = convert(sd, cameras=["robot0_eye_in_hand", "robot0_agentview_left", "robot0_agentview_right"])
    check_exact(ours, expected_shapes(cfg), "stage_2_trained_step_369k.ckpt")
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Mapping, Optional, Sequence

import torch

PREFIX = "model.diffusion_model."
#: The authors' per-camera modules *_1, *_2, *_3 see these cameras (their clip packs eye, left, right).
AUTHORS_CAMERAS = ("robot0_eye_in_hand", "robot0_agentview_left", "robot0_agentview_right")
ADAPTER, HEAD = "vision_encoder.", "pose_pred_net."
#: Module prefixes whose classes may appear in a Lightning checkpoint's bookkeeping (hyper-parameters,
#: callback state). They are replaced by an inert placeholder when read; any other class is refused.
INERT_MODULES = ("pytorch_lightning.", "lightning.", "lightning_fabric.", "omegaconf.", "sgm.", "typing.",
                 "argparse.", "pathlib.", "numpy.", "collections.", "functools.", "enum.", "datetime.")


class CheckpointError(ValueError):
    """A checkpoint that cannot be converted; the message names the file, the key and the fix."""


# -- reading -------------------------------------------------------------------------------------
class _Inert:
    """Stands in for a bookkeeping object of a checkpoint: takes any arguments and state, runs nothing."""

    def __init__(self, *args, **kwargs):
        self.args = args

    def __setstate__(self, state):
        self.state = state

    def __setitem__(self, key, value):  # dict subclasses are rebuilt item by item
        self.__dict__.setdefault("items", {})[key] = value

    def append(self, value):  # and list subclasses
        self.__dict__.setdefault("values", []).append(value)

    def extend(self, values):
        self.__dict__.setdefault("values", []).extend(values)


def _inert_class(name: str) -> type:
    return type(name.rsplit(".", 1)[-1], (_Inert,), {})


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The network tensors (``model.diffusion_model.*``, prefix removed) of an authors' checkpoint.

    ``.ckpt``/``.pt``: ``torch.load(weights_only=True, mmap=True)``; classes of Lightning/OmegaConf
    bookkeeping are replaced by an inert placeholder (nothing of theirs runs), any other class is refused.
    ``.safetensors``: a flat dict. Raises CheckpointError naming the file and the fix.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found. Fix: download checkpoints.zip from "
                              f"videopolicy.cs.columbia.edu and pass the path of stage_1_/stage_2_trained_step_369k.ckpt")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            raw = load_file(str(path))
        except Exception as e:  # safetensors raises its own error types
            raise CheckpointError(f"{path}: not a readable safetensors file ({e}); the file may be truncated: "
                                  f"download it again") from e
    else:
        raw = _torch_load(path)
        if not isinstance(raw, Mapping):
            raise CheckpointError(f"{path}: holds a {type(raw).__name__}, not a checkpoint dict")
        raw = raw.get("state_dict", raw)
    return network_tensors(raw, str(path))


def _torch_load(path: Path):
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path}: not a torch zip checkpoint ({path.stat().st_size} bytes): the file is "
                              f"truncated or not a checkpoint. Fix: download it again (or unzip checkpoints.zip)")
    inert: list = []
    for _ in range(64):  # each round registers the bookkeeping classes the previous one met
        try:
            with torch.serialization.safe_globals(inert):
                return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except pickle.UnpicklingError as e:
            names = re.findall(r"GLOBAL ([\w.]+)", str(e))
            if not names:
                raise CheckpointError(f"{path}: cannot be unpickled safely ({e})") from e
            refused = [n for n in names if not n.startswith(INERT_MODULES)]
            if refused:
                raise CheckpointError(
                    f"{path}: refers to {refused}, which is not tensor data or checkpoint bookkeeping; refusing to "
                    f"load it (it could run code). Fix: re-save only its state_dict, e.g. "
                    f"torch.save({{'state_dict': ckpt['state_dict']}}, 'clean.ckpt') in a trusted environment") from e
            inert.extend((_inert_class(n), n) for n in names)
        except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as e:
            raise CheckpointError(f"{path}: cannot be read ({e}); the file is probably truncated. Fix: download it "
                                  f"again and compare its size with the published one") from e
    raise CheckpointError(f"{path}: too many unknown classes in its bookkeeping")


def network_tensors(state_dict: Mapping[str, object], source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """``model.diffusion_model.*`` of a full state dict, prefix (and a torch.compile ``_orig_mod.``) removed."""
    out = {}
    for key, value in state_dict.items():
        if not isinstance(key, str) or not key.startswith(PREFIX):
            continue
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{source}: {key} is a {type(value).__name__}, not a tensor")
        name = key[len(PREFIX):].replace("_orig_mod.", "")
        if name in out:
            raise CheckpointError(f"{source}: {key} repeats {PREFIX}{name} (a compiled and a plain copy?); "
                                  f"keep one and save again")
        out[name] = value
    if not out:
        sample = [k for k in list(state_dict)[:5]]
        raise CheckpointError(f"{source}: no '{PREFIX}*' keys (first keys: {sample}); not an authors' Video Policy "
                              f"checkpoint. Fix: pass stage_1_/stage_2_trained_step_369k.ckpt")
    return out


def checkpoint_stage(sd: Mapping[str, object]) -> int:
    """2 when the network holds the adapter and the action head, 1 when it is the video U-Net alone."""
    has_adapter = any(k.startswith(ADAPTER) for k in sd)
    has_head = any(k.startswith(HEAD) for k in sd)
    if has_adapter != has_head:
        raise CheckpointError(f"network has {'vision_encoder' if has_adapter else 'pose_pred_net'} keys but not "
                              f"{'pose_pred_net' if has_adapter else 'vision_encoder'}: an incomplete stage-2 checkpoint")
    return 2 if has_adapter else 1


# -- U-Net ---------------------------------------------------------------------------------------
_RESNET = {"in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj",
           "out_layers.0": "norm2", "out_layers.3": "conv2", "skip_connection": "conv_shortcut"}


def _resnet_inner(rest: str) -> str:
    """Inside an sgm VideoResBlock -> inside a diffusers SpatioTemporalResBlock."""
    if rest == "time_mixer.mix_factor":
        return rest
    part = "spatial_res_block"
    if rest.startswith("time_stack."):
        part, rest = "temporal_res_block", rest[len("time_stack."):]
    for old, new in _RESNET.items():
        if rest.startswith(old + "."):
            return f"{part}.{new}{rest[len(old):]}"
    raise KeyError(rest)


def _attention_inner(rest: str) -> str:
    """Inside an sgm SpatialVideoTransformer -> inside a diffusers TransformerSpatioTemporalModel."""
    if rest.startswith("time_stack."):
        return "temporal_transformer_blocks." + rest[len("time_stack."):]
    m = re.fullmatch(r"time_pos_embed\.([02])\.(\w+)", rest)
    if m:
        return f"time_pos_embed.linear_{1 if m[1] == '0' else 2}.{m[2]}"
    return rest  # norm, proj_in, proj_out, transformer_blocks.*, time_mixer.mix_factor: same names


def unet_key(key: str, levels: int = 4, layers: int = 2) -> str:
    """One sgm VideoUNet key -> its diffusers UNetSpatioTemporalConditionModel key (KeyError if unknown).

    SVD's topology: `levels` resolution levels with `layers` resnets (+ attentions) each, attention in
    every level but the last, a downsampler after every level but the last.
    """
    fixed = {"time_embed.0": "time_embedding.linear_1", "time_embed.2": "time_embedding.linear_2",
             "label_emb.0.0": "add_embedding.linear_1", "label_emb.0.2": "add_embedding.linear_2",
             "input_blocks.0.0": "conv_in", "out.0": "conv_norm_out", "out.2": "conv_out"}
    for old, new in fixed.items():
        if key.startswith(old + "."):
            return new + key[len(old):]
    m = re.fullmatch(r"input_blocks\.(\d+)\.([012])\.(.+)", key)
    if m:
        i, sub, rest = int(m[1]), m[2], m[3]
        level, slot = divmod(i - 1, layers + 1)
        if i == 0 or level >= levels:
            raise KeyError(key)
        if slot == layers:  # the downsampler closing a level
            if sub == "0" and rest.startswith("op.") and level < levels - 1:
                return f"down_blocks.{level}.downsamplers.0.conv.{rest[3:]}"
            raise KeyError(key)
        if sub == "0":
            return f"down_blocks.{level}.resnets.{slot}.{_resnet_inner(rest)}"
        if sub == "1" and level < levels - 1:
            return f"down_blocks.{level}.attentions.{slot}.{_attention_inner(rest)}"
        raise KeyError(key)
    m = re.fullmatch(r"middle_block\.([012])\.(.+)", key)
    if m:
        sub, rest = m[1], m[2]
        if sub == "1":
            return f"mid_block.attentions.0.{_attention_inner(rest)}"
        return f"mid_block.resnets.{0 if sub == '0' else 1}.{_resnet_inner(rest)}"
    m = re.fullmatch(r"output_blocks\.(\d+)\.([012])\.(.+)", key)
    if m:
        i, sub, rest = int(m[1]), int(m[2]), m[3]
        block, slot = divmod(i, layers + 1)
        if block >= levels:
            raise KeyError(key)
        attention = block > 0  # the first up block mirrors the attention-free lowest level
        upsampler_at = 2 if attention else 1
        if sub == 0:
            return f"up_blocks.{block}.resnets.{slot}.{_resnet_inner(rest)}"
        if sub == upsampler_at and slot == layers and block < levels - 1 and rest.startswith("conv."):
            return f"up_blocks.{block}.upsamplers.0.{rest}"
        if sub == 1 and attention:
            return f"up_blocks.{block}.attentions.{slot}.{_attention_inner(rest)}"
        raise KeyError(key)
    raise KeyError(key)


# -- adapter and action head ---------------------------------------------------------------------
_BOTTLENECK = {"conv1.0": "reduce.0", "conv1.1": "reduce.1", "conv2.0": "conv.0", "conv2.1": "conv.1",
               "conv3.0": "expand.0", "conv3.1": "expand.1", "downsample.0": "shortcut.0",
               "downsample.1": "shortcut.1", "emb_layers.1": "emb.1"}


def _bottleneck_inner(rest: str) -> str:
    m = re.fullmatch(r"(\d+)\.(\w+\.\d)\.(weight|bias)", rest)
    if not m or m[2] not in _BOTTLENECK:
        raise KeyError(rest)
    return f"blocks.{m[1]}.{_BOTTLENECK[m[2]]}.{m[3]}"


def adapter_key(key: str) -> tuple[str, Optional[int]]:
    """A ``vision_encoder`` key (no prefix) -> (our adapter key, authors' camera 0/1/2 or None if shared)."""
    if key.startswith("norm."):
        return key, None
    m = re.fullmatch(r"layer(\d+)(?:_([123]))?(_cat)?\.(.+)", key)
    if not m:
        raise KeyError(key)
    k, cam, cat, rest = int(m[1]), m[2], m[3], m[4]
    inner = _bottleneck_inner(rest)
    if cam is None:
        if cat or not 8 <= k <= 17:
            raise KeyError(key)
        return f"trunk.{k - 8}.{inner}", None
    if cat and 2 <= k <= 5:
        return f"branches.merge.{k - 2}.{inner}", int(cam) - 1
    if not cat and 1 <= k <= 5:
        return f"branches.main.{k - 1}.{inner}", int(cam) - 1
    if not cat and k in (6, 7):
        return f"branches.tail.{k - 6}.{inner}", int(cam) - 1
    raise KeyError(key)


def head_key(key: str) -> str:
    """A ``pose_pred_net`` key (no prefix) -> our action-head key."""
    if key.startswith("diffusion_step_encoder.1."):
        return "step_encoder.1." + key[len("diffusion_step_encoder.1."):]
    m = re.fullmatch(r"final_conv\.0\.block\.([01])\.(weight|bias)", key)
    if m:
        return f"out.0.{m[1]}.{m[2]}"
    m = re.fullmatch(r"final_conv\.1\.(weight|bias)", key)
    if m:
        return f"out.1.{m[1]}"
    m = re.fullmatch(r"(down|up)_modules\.(\d+)\.2\.conv\.(weight|bias)", key)
    if m:
        return f"{m[1]}.{m[2]}.2.{m[3]}"
    m = re.fullmatch(r"(?:(down|up)_modules\.(\d+)\.([01])|mid_modules\.(\d+))\.(.+)", key)
    if not m:
        raise KeyError(key)
    where = f"{m[1]}.{m[2]}.{m[3]}" if m[1] else f"mid.{m[4]}"
    rest = m[5]
    inner = re.fullmatch(r"blocks\.([01])\.block\.([01])\.(weight|bias)", rest)
    if inner:
        return f"{where}.conv{int(inner[1]) + 1}.{inner[2]}.{inner[3]}"
    inner = re.fullmatch(r"cond_encoder\.1\.(weight|bias)", rest)
    if inner:
        return f"{where}.film.1.{inner[1]}"
    inner = re.fullmatch(r"residual_conv\.(weight|bias)", rest)
    if inner:
        return f"{where}.skip.{inner[1]}"
    raise KeyError(key)


def camera_order(cameras: Sequence[str]) -> list[int]:
    """For each of our cameras (in order), the index of the authors' branch that saw it (0 = *_1)."""
    cams = list(cameras)
    if sorted(cams) != sorted(AUTHORS_CAMERAS):
        raise CheckpointError(f"cameras {cams}: the authors' network has one branch per camera of "
                              f"{list(AUTHORS_CAMERAS)}; set clips.cameras to these three (any order)")
    return [AUTHORS_CAMERAS.index(c) for c in cams]


# -- the whole conversion --------------------------------------------------------------------------
def convert(sd: Mapping[str, torch.Tensor], cameras: Sequence[str] = AUTHORS_CAMERAS,
            source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Network tensors named the authors' way (prefix removed) -> our ``VideoPolicyModel`` state dict.

    Stage-1 networks give ``unet.*`` only; stage-2 ones also ``adapter.*`` and ``action_head.*``.
    Works on meta tensors. Unknown keys and two keys writing one target raise CheckpointError.
    """
    order = camera_order(cameras)
    out: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    per_camera: dict[str, dict[int, torch.Tensor]] = {}
    unknown = []

    def put(target: str, value: torch.Tensor, key: str) -> None:
        if target in origin:
            raise CheckpointError(f"{source}: {key} and {origin[target]} both map to {target}: a key-map bug")
        origin[target] = key
        out[target] = value

    for key, value in sd.items():
        try:
            if key.startswith(ADAPTER):
                target, cam = adapter_key(key[len(ADAPTER):])
                if cam is None:
                    put("adapter." + target, value, key)
                else:
                    slot = per_camera.setdefault("adapter." + target, {})
                    if cam in slot:
                        raise CheckpointError(f"{source}: {key}: camera {cam + 1} given twice")
                    slot[cam] = value
            elif key.startswith(HEAD):
                put("action_head." + head_key(key[len(HEAD):]), value, key)
            else:
                put("unet." + unet_key(key), value, key)
        except KeyError:
            unknown.append(key)
    if unknown:
        raise CheckpointError(f"{source}: {len(unknown)} key(s) the converter does not know, e.g. {unknown[:5]}; "
                              f"not the authors' VideoUNet / VideoResNet / ConditionalUnet1D")
    for target, slot in per_camera.items():
        if sorted(slot) != [0, 1, 2]:
            raise CheckpointError(f"{source}: {target} has cameras {[c + 1 for c in sorted(slot)]} of 1, 2, 3")
        put(target, torch.cat([slot[a] for a in order]), f"vision_encoder.*_{{1,2,3}} -> {target}")
    _permute_fused_input(out, order)
    return out


def _permute_fused_input(out: dict[str, torch.Tensor], order: list[int]) -> None:
    """Layer 8 reads the concatenated cameras (authors: eye, left, right): its input channels, our order."""
    if order == sorted(order):
        return
    for name in ("adapter.trunk.0.blocks.0.reduce.0.weight", "adapter.trunk.0.blocks.0.shortcut.0.weight"):
        if name in out:
            w = out[name]
            per = w.shape[1] // len(order)
            out[name] = torch.cat([w[:, a * per:(a + 1) * per] for a in order], dim=1)


def expected_shapes(cfg) -> dict[str, tuple[int, ...]]:
    """Our Video Policy state dict for a model config: key -> shape (built on the meta device, no memory)."""
    from videopolicy.models.model import VideoPolicyModel
    from videopolicy.models.pretrained import without_weights

    with torch.device("meta"):
        model = VideoPolicyModel(without_weights(cfg))
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def check_exact(converted: Mapping[str, torch.Tensor], expected: Mapping[str, tuple[int, ...]],
                source: str = "checkpoint", parts: Sequence[str] = ("unet.", "adapter.", "action_head.")) -> None:
    """The converted keys (within `parts`) are exactly the model's, every shape equal; else CheckpointError."""
    want = {k: v for k, v in expected.items() if k.startswith(tuple(parts))}
    missing = sorted(set(want) - set(converted))
    extra = sorted(set(converted) - set(want))
    shapes = [f"{k}: checkpoint {tuple(converted[k].shape)}, model {want[k]}"
              for k in sorted(set(want) & set(converted)) if tuple(converted[k].shape) != tuple(want[k])]
    problems = []
    if missing:
        problems.append(f"{len(missing)} model key(s) not written, e.g. {missing[:5]}")
    if extra:
        problems.append(f"{len(extra)} key(s) the model does not have, e.g. {extra[:5]}")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatch(es), e.g. {shapes[:3]}")
    if problems:
        raise CheckpointError(f"{source} does not fit the model ({', '.join(p.rstrip('.') for p in parts)}):\n  - "
                              + "\n  - ".join(problems)
                              + "\nFix: the model config must be the svd-xt preset at 256 px, 3 cameras x 8 frames "
                                "(the authors' network); a different checkpoint needs its own config")


# -- a policy directory from a checkpoint --------------------------------------------------------
def setup_problems(cfg, cameras: Sequence[str]) -> list[str]:
    """Why a model config cannot take the authors' weights as trained (shapes aside): their clip is
    256 px, eye-in-hand/left/right x 8 frames with the eye-in-hand frame as the U-Net's pad frame."""
    cfg = cfg.resolve()
    errs = []
    try:
        camera_order(cameras)
    except CheckpointError as e:
        errs.append(str(e))
    if cfg.preset != "svd-xt":
        errs.append(f"model.preset: {cfg.preset!r}; the authors' network is svd-xt")
    if cfg.image_size != 256:
        errs.append(f"clips.image_size: {cfg.image_size}; the authors trained on 256 px frames")
    if cfg.frames_per_camera != 8:
        errs.append(f"clips.video_horizon / frame_stride: {cfg.frames_per_camera} frames per camera; the authors: 8 "
                    f"(video_horizon 32, frame_stride 4)")
    if cfg.action_head.horizon != 32 or cfg.action_head.action_dim != 7:
        errs.append(f"clips.action_horizon / action_dim: {cfg.action_head.horizon} x {cfg.action_head.action_dim}; "
                    f"the authors: 32 x 7")
    pad = getattr(cfg, "pad_camera", 0)
    if list(cameras) and 0 <= pad < len(cameras) and cameras[pad] != AUTHORS_CAMERAS[0]:
        errs.append(f"clips.pad_camera: {cameras[pad]!r}; the authors' U-Net was trained with the "
                    f"{AUTHORS_CAMERAS[0]} frame as pad frame")
    return errs


def normalizer_from_demos(files: Sequence[str | Path], action_dim: int = 7):
    """The authors' action normaliser: per-dimension min and max over every step of every demo of
    every file (robomimic HDF5 ``data/<demo>/actions``), first `action_dim` dimensions.

    Returns (ActionNormalizer, summary dict for extra.json)."""
    import h5py
    import numpy as np

    from videopolicy.normalize import ActionNormalizer

    if not files:
        raise CheckpointError("no demo files: the checkpoints store no action normaliser; name the demo files the "
                              "authors trained on (all tasks, all demos) so it can be rebuilt")
    low = high = None
    demos = steps = 0
    for f in files:
        f = Path(f).expanduser()
        if not f.is_file():
            raise CheckpointError(f"{f}: demo file not found (needed to rebuild the action normaliser)")
        with h5py.File(f, "r") as h:
            if "data" not in h or not len(h["data"]):
                raise CheckpointError(f"{f}: no data/<demo> groups: not a robomimic HDF5 demo file")
            for name in h["data"]:
                if "actions" not in h["data"][name]:
                    raise CheckpointError(f"{f}: data/{name} has no actions")
                a = np.asarray(h["data"][name]["actions"][:, :action_dim], dtype=np.float64)
                if a.shape[-1] != action_dim:
                    raise CheckpointError(f"{f}: data/{name}/actions has {a.shape[-1]} dims, need {action_dim}")
                lo, hi = a.min(0), a.max(0)
                low = lo if low is None else np.minimum(low, lo)
                high = hi if high is None else np.maximum(high, hi)
                demos, steps = demos + 1, steps + len(a)
    summary = {"files": [str(Path(f).expanduser().resolve()) for f in files], "demos": demos, "steps": steps,
               "convention": f"authors': per-dimension min-max to [-1, 1] over every step of every demo of every "
                             f"file, actions[:, :{action_dim}] (the checkpoints store no normaliser)"}
    return ActionNormalizer(low, high), summary


def import_policy(checkpoint: str | Path, out: str | Path, cfg, cameras: Sequence[str], normalizer=None,
                  stage: Optional[int] = None, extra: Optional[dict] = None) -> Path:
    """An authors' checkpoint -> a policy directory (``PolicyModel.save_pretrained``'s layout).

    Stage 2 gives a complete policy (U-Net, adapter, head). Stage 1 gives the video U-Net with a freshly
    initialised adapter and head (seeded by ``cfg.init_seed``, as our own stage 1 leaves them): a
    directory that stage 2 can ``--init-from``. The VAE and text encoder are not copied: the directory's
    config.json names their pretrained sources. `stage` (1 or 2) refuses a checkpoint of the other stage.
    """
    import dataclasses
    import json

    from safetensors.torch import save_file

    from videopolicy.models.model import VideoPolicyModel
    from videopolicy.models.text import TextEmbeddingCache
    from videopolicy.models.video_unet import build_video_unet

    path = Path(checkpoint).expanduser()
    cfg = cfg.checked()
    sd = read_checkpoint(path)
    found = checkpoint_stage(sd)
    if stage is not None and found != stage:
        what = {1: "the video U-Net alone (no vision_encoder / pose_pred_net)", 2: "U-Net, adapter and action head"}
        raise CheckpointError(f"{path}: is a stage-{found} checkpoint ({what[found]}), stage {stage} was asked for. "
                              f"Fix: pass stage_{stage}_trained_step_369k.ckpt, or --stage {found}")
    weights = convert(sd, cameras, str(path))
    parts = ("unet.",) if found == 1 else ("unet.", "adapter.", "action_head.")
    check_exact(weights, expected_shapes(cfg), str(path), parts)
    if found == 1:  # adapter and head as our stage 1 leaves them: the model's own seeded init
        from videopolicy.models.pretrained import without_weights

        bare = without_weights(cfg)
        with torch.device("meta"):
            unet = build_video_unet(bare)
        fresh = VideoPolicyModel(bare, unet=unet)
        weights.update({k: v for k, v in fresh.state_dict().items() if not k.startswith("unet.")})
    out = Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "model.safetensors.part"
    save_file({k: v.contiguous() for k, v in weights.items()}, str(tmp), metadata={"source": str(path)})
    tmp.replace(out / "model.safetensors")
    (out / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=1))
    TextEmbeddingCache().save(out / "text_cache.pt")
    info = {"cameras": list(cameras), "stage": f"stage{found}", "imported_from": {
        "checkpoint": str(path.resolve()), "bytes": path.stat().st_size, "network_stage": found,
        "camera_map": {c: f"*_{AUTHORS_CAMERAS.index(c) + 1}" for c in cameras}}, **(extra or {})}
    if normalizer is not None:
        info["normalizer"] = normalizer.to_dict()
    (out / "extra.json").write_text(json.dumps(info, indent=1))
    return out
