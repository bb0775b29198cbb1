"""Where the paper-scale model's pretrained parts come from, and the checks that they are there.

The paper starts from Stable Video Diffusion XT (U-Net + temporal VAE) and OpenCLIP ViT-H-14's text
tower. A source is a local directory or a Hugging Face hub id, optionally pinned as ``org/name@revision``:

    model.unet.pretrained: stabilityai/stable-video-diffusion-img2vid-xt@<commit>   # folder unet/
    model.vae.pretrained:  stabilityai/stable-video-diffusion-img2vid-xt@<commit>   # folder vae/
    model.text.pretrained: laion/CLIP-ViT-H-14-laion2B-s32B-b79K                    # transformers CLIP

``problems(cfg)`` says what is wrong before anything starts: a paper-scale row whose parts are not
given (random initialisation at 1.5B parameters is refused unless ``model.allow_random_init: true``),
or, with ``check_files``, not found or not in the expected layout. ``locate(source, subfolder)`` turns a
source into a local folder: hub files go to the node's Hugging Face cache (file-locked, so the worker
processes of one node download once and then read the same files).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from videopolicy.models.config import RANDOM_INIT_PRESETS

#: SVD-XT at the commit that added its diffusers weights (later commits touch README/LICENSE only).
SVD_XT = "stabilityai/stable-video-diffusion-img2vid-xt@9689bb5af8d6c0fd3394fed3598893564438191c"
#: OpenCLIP ViT-H-14 (laion2b_s32b_b79k), the text tower the authors load; its repo holds transformers weights.
OPEN_CLIP_VIT_H = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"


@dataclass(frozen=True)
class Part:
    name: str  # unet | vae | text
    classes: tuple[str, ...]  # accepted config.json `_class_name` / `architectures`
    weights: tuple[str, ...]  # accepted weight files (any one)
    default: str
    what: str

    @property
    def key(self) -> str:
        return f"model.{self.name}.pretrained"


PARTS = {
    "unet": Part("unet", ("UNetSpatioTemporalConditionModel",),
                 ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors.index.json",
                  "diffusion_pytorch_model.bin"), SVD_XT, "the SVD-XT video U-Net"),
    "vae": Part("vae", ("AutoencoderKLTemporalDecoder",),
                ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors.index.json",
                 "diffusion_pytorch_model.bin"), SVD_XT, "the SVD-XT temporal VAE"),
    "text": Part("text", ("CLIPModel", "CLIPTextModelWithProjection"),
                 ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"), OPEN_CLIP_VIT_H,
                 "the OpenCLIP ViT-H-14 text tower"),
}


def without_weights(cfg):
    """A copy of a model config that loads nothing (shape, cost and skeleton builds): sources removed."""
    import dataclasses

    return dataclasses.replace(cfg, allow_random_init=True, **{
        name: dataclasses.replace(getattr(cfg, name), pretrained=None) for name in PARTS})


def split_source(source: str) -> tuple[str, Optional[str]]:
    """``org/name@rev`` -> (org/name, rev); a local path or an unpinned id -> (source, None)."""
    if "@" in source and not is_local(source):
        repo, rev = source.rsplit("@", 1)
        return repo, rev or None
    return source, None


def is_local(source: str) -> bool:
    """A path (absolute, relative with ./ or ../, ~, or an existing directory) rather than a hub id."""
    return source.startswith(("/", "./", "../", "~")) or Path(source).expanduser().exists() or source.count("/") != 1


def parts_needed(cfg) -> list[str]:
    """The pretrained parts a model of this config builds (DP-ResNet only needs the text encoder)."""
    return ["text"] if cfg.kind == "dp_resnet" else ["unet", "vae", "text"]


def _subfolder(cfg, part: str) -> Optional[str]:
    section = getattr(cfg, part)
    return getattr(section, "pretrained_subfolder", None)


def unset_problems(cfg) -> list[str]:
    """Config-only: the parts a paper-scale (non-tiny) row would build from random initialisation."""
    if cfg.preset in RANDOM_INIT_PRESETS or cfg.allow_random_init:
        return []
    errs = []
    for name in parts_needed(cfg):
        part = PARTS[name]
        if not getattr(cfg, name).pretrained:
            sub = _subfolder(cfg, name)
            errs.append(f"{part.key}: not set, so the {cfg.preset} preset would train {part.what} from random "
                        f"initialisation. Fix: set it to {part.default}"
                        f"{f' (folder {sub}/)' if sub else ''} or a local copy of it; or set model.allow_random_init: "
                        f"true to train from scratch on purpose")
    return errs


def row_model_problems(row) -> list[str]:
    """Problems of the model a row (a `PlatformConfig`) would train, from its config alone: the model's
    shape (it comes from the clips) and paper-scale parts left unset. The sweep planner and train
    preflight ask; a data-only config, e.g. 8-px clips for a pipeline check, need not describe a
    trainable model."""
    if not row.train.kind.trains or row.train.policy_dir:
        return []  # no model trained (a policy_dir carries its own config, checked by the sweep driver)
    errs = [f"model: {e} (the model's shape comes from clips)" for e in row.model_config().validate()]
    if errs:
        return errs
    return unset_problems(row.model_config().resolve())  # paper-scale parts never silently random


def problems(cfg, check_files: bool = True, skip: tuple[str, ...] = ()) -> list[str]:
    """Everything wrong with the pretrained sources of a model config (resolved or not).

    Without `check_files` only the config is read; with it each given source is looked for: a local
    directory in the expected layout, or a hub id in the local cache or on the hub (config files only).
    `skip`: parts that come from elsewhere (the U-Net of a stage-1 checkpoint).
    """
    cfg = cfg.resolve()
    errs = [e for e in unset_problems(cfg) if not e.startswith(tuple(PARTS[n].key for n in skip))]
    if not check_files:
        return errs
    for name in parts_needed(cfg):
        source = getattr(cfg, name).pretrained
        if source and name not in skip:
            errs.extend(_cached_source_problems(cfg, name, source))
    return errs


_checked: dict[tuple, list[str]] = {}


def _cached_source_problems(cfg, name: str, source: str) -> list[str]:
    """source_problems; hub answers once per (part, source, folder, shape) in this process (rows share
    sources; each answer may cost a request), local directories every time (cheap, and they change)."""
    if is_local(source):
        return source_problems(cfg, name, source)
    section = getattr(cfg, name)
    key = (name, source, _subfolder(cfg, name), repr(section))
    if key not in _checked:
        _checked[key] = source_problems(cfg, name, source)
    return _checked[key]


def rows_problems(rows) -> list[str]:
    """Pretrained-source problems of a sweep's (name, PlatformConfig) rows, one line per distinct problem."""
    found: dict[str, list[str]] = {}
    for name, cfg in rows:
        if cfg.train.policy_dir:
            errs = policy_dir_problems(cfg.train.policy_dir)
        elif not row_model_problems(cfg) and cfg.train.kind.trains:  # sanity rows load no weights
            errs = problems(cfg.model_config())
        else:
            errs = []
        for e in errs:
            found.setdefault(e, []).append(name)
    return [f"rows[{','.join(names)}].{e}" for e, names in found.items()]


def source_problems(cfg, name: str, source: str) -> list[str]:
    part, sub = PARTS[name], _subfolder(cfg, name)
    if is_local(source):
        folder = Path(source).expanduser() / sub if sub else Path(source).expanduser()
        if not Path(source).expanduser().is_dir():
            return [f"{part.key}: {source} is not a directory. Fix: download {part.default} (e.g. `hf download "
                    f"{split_source(part.default)[0]}`) and point at it, or give the hub id"]
        config = folder / "config.json"
        if not config.is_file():
            return [f"{part.key}: {source} has no {config.relative_to(Path(source).expanduser())}: not the expected "
                    f"layout ({_layout(part, sub)}). Fix: point at the model's root directory"
                    + (f", or set model.{name}.pretrained_subfolder: null if {source} is the {sub} folder itself"
                       if sub else "")]
        errs = _config_problems(cfg, name, json.loads(config.read_text()), str(config))
        if not any((folder / w).is_file() for w in part.weights):
            errs.append(f"{part.key}: {folder} has no weights ({' or '.join(part.weights)}); expected layout: "
                        f"{_layout(part, sub)}")
        return errs
    return _hub_problems(cfg, name, source)


def _layout(part: Part, sub: Optional[str]) -> str:
    where = f"{sub}/" if sub else ""
    return f"{where}config.json and {where}{part.weights[0]}"


def _config_problems(cfg, name: str, config: dict, where: str) -> list[str]:
    part = PARTS[name]
    kind = config.get("_class_name") or (config.get("architectures") or [None])[0]
    if kind not in part.classes:
        return [f"{part.key}: {where} describes a {kind!r}, not {' / '.join(part.classes)} ({part.what})"]
    errs = []
    if name == "unet":
        want = tuple(cfg.unet.block_out_channels), cfg.unet.cross_attention_dim
        have = tuple(config.get("block_out_channels", ())), config.get("cross_attention_dim")
        if have != want:
            errs.append(f"{part.key}: {where} has block_out_channels/cross_attention_dim {have}, the "
                        f"{cfg.preset} preset {want}")
    elif name == "vae":
        if tuple(config.get("block_out_channels", ())) != tuple(cfg.vae.block_out_channels):
            errs.append(f"{part.key}: {where} has block_out_channels {config.get('block_out_channels')}, the "
                        f"{cfg.preset} preset {list(cfg.vae.block_out_channels)}")
    else:
        proj = config.get("projection_dim")
        if proj != cfg.text.projection_dim:
            errs.append(f"{part.key}: {where} projects text to {proj}-d, the U-Net's cross-attention needs "
                        f"{cfg.text.projection_dim} (OpenCLIP ViT-H-14: 1024)")
    return errs


def _hub_problems(cfg, name: str, source: str) -> list[str]:
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    part, sub = PARTS[name], _subfolder(cfg, name)
    repo, rev = split_source(source)
    filename = f"{sub}/config.json" if sub else "config.json"
    path = try_to_load_from_cache(repo, filename, revision=rev)
    if not isinstance(path, str):
        try:
            path = hf_hub_download(repo, filename, revision=rev, etag_timeout=10)
        except Exception as e:  # noqa: BLE001 - offline, gated (401/403), unknown repo or revision, no such file
            return [f"{part.key}: {source}: {filename} is not in this node's Hugging Face cache and could not be "
                    f"fetched ({type(e).__name__}: {str(e).splitlines()[0][:200]}). Fix: on a machine with access run "
                    f"`hf download {repo}{f' --revision {rev}' if rev else ''}` (SVD-XT is gated: accept its licence "
                    f"on huggingface.co and `hf auth login` first) and share HF_HOME, or point at a local directory"]
    return _config_problems(cfg, name, json.loads(Path(path).read_text()), f"{source}:{filename}")


def locate(source: str, subfolder: Optional[str], weights: tuple[str, ...] = ()) -> tuple[str, Optional[str]]:
    """(directory, subfolder) to pass to ``from_pretrained``: a local source as it is; a hub source
    downloaded once into this node's Hugging Face cache (only `subfolder`'s config and weights), so every
    worker process on the node reads the same files and none goes to the hub again."""
    if is_local(source):
        return str(Path(source).expanduser()), subfolder
    from huggingface_hub import snapshot_download

    repo, rev = split_source(source)
    where = f"{subfolder}/" if subfolder else ""
    local_only = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    # safetensors first (no duplicate .bin of several GB); .bin only when the repo has no safetensors
    safetensors = [w.replace(".safetensors", "*.safetensors") for w in weights if ".safetensors" in w]
    for files in (safetensors, [w for w in weights if w.endswith(".bin")]):
        root = snapshot_download(repo, revision=rev, allow_patterns=[f"{where}*.json"] + [where + f for f in files],
                                 local_files_only=local_only)
        if not weights or any((Path(root) / where / w).is_file() for w in weights):
            break
    return root, subfolder


def from_pretrained_args(source: str, subfolder: Optional[str], part: str) -> tuple[str, dict]:
    """Positional path and keyword arguments of ``X.from_pretrained`` for a source of `part`."""
    root, sub = locate(source, subfolder, PARTS[part].weights)
    return root, ({"subfolder": sub} if sub else {})


def policy_dir_problems(policy_dir: str, key: str = "train.policy_dir") -> list[str]:
    """A saved policy directory to evaluate: its files, then the pretrained parts its config names
    (its U-Net, adapter and head are in model.safetensors)."""
    from videopolicy.models.config import ModelConfig, from_dict

    d = Path(policy_dir).expanduser()
    missing = [n for n in ("config.json", "model.safetensors", "extra.json") if not (d / n).is_file()]
    if missing:
        return [f"{key}: {d} has no {', '.join(missing)}: not a policy directory (PolicyModel."
                f"save_pretrained or jobs/import_checkpoint.py output)"]
    cfg = from_dict(ModelConfig, json.loads((d / "config.json").read_text()))
    return [f"{key}: {d}/config.json: {e}" for e in problems(cfg, skip=("unet",))]
