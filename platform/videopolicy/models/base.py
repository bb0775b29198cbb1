"""What every model kind shares: the loss and sample outputs, and `PolicyModel`, the plumbing (frozen
encoders, training parts, checkpoints) under Video Policy (`model.VideoPolicyModel`) and the DP-ResNet
baseline (`baseline.DPResNetModel`).

Each subclass registers itself under its ``kind`` (``ModelConfig.kind``) when it is defined, so
``PolicyModel.from_pretrained`` builds the kind a checkpoint's config names; `videopolicy.models.build`
imports every kind and is where ``build_model`` lives. Adding a model kind = a subclass in its own module
(its ``kind``, ``modes``, ``frozen_encoders``, ``trainable_parts``, forward and ``sample_actions``), imported in `build`.
No module of this package imports that subclass's module back: the samplers take any model with the
`sampler.JointDenoiser` methods, and the outputs live here.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Optional

import torch
from safetensors.torch import load_model, save_model
from torch import nn

from videopolicy.models.config import ModelConfig, from_dict
from videopolicy.models.text import TextEmbeddingCache, TextEncoder, build_text_encoder
from videopolicy.models.vae import build_vae


@dataclass
class LossOutput:
    """loss: scalar to backpropagate; the rest are detached diagnostics."""

    loss: torch.Tensor
    video_loss: Optional[torch.Tensor] = None  # mean per-frame video loss
    action_loss: Optional[torch.Tensor] = None  # mean per-step action loss
    video_sigma: Optional[torch.Tensor] = None  # (B,)

    def metrics(self) -> dict[str, float]:
        out = {"loss": float(self.loss.detach())}
        if self.video_loss is not None:
            out["video_loss"] = float(self.video_loss)
        if self.action_loss is not None:
            out["action_loss"] = float(self.action_loss)
        return out


@dataclass
class SampleOutput:
    """actions: (B, horizon, action_dim) in the normalised [-1, 1] space.

    video: (B, F, C, h, w) scaled latents (joint mode); frames: uint8 (B, F, H, W, 3) when decoded.
    """

    actions: torch.Tensor
    video: Optional[torch.Tensor] = None
    frames: Optional[torch.Tensor] = None


def as_tensor(x: Any, device) -> torch.Tensor:
    """An array, tensor or list as a tensor on `device`."""
    return torch.as_tensor(x).to(device)


class PolicyModel(nn.Module):
    """Plumbing shared by Video Policy and the DP-ResNet baseline.

    Frozen encoders (VAE, text encoder) are held outside the module tree: they are not parameters,
    not in ``state_dict`` and not wrapped by DDP, but ``.to()`` moves them along.
    """

    kind = "base"
    modes: tuple[str, ...] = ()  # training modes `forward` accepts
    #: ``ModelConfig.kind`` -> class, filled as each subclass is defined (`__init_subclass__`)
    kinds: ClassVar[dict[str, type["PolicyModel"]]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        PolicyModel.kinds[cls.kind] = cls

    frozen_encoders: tuple[str, ...] = ()  # the frozen encoders this kind uses: "vae", "text"

    @classmethod
    def build(cls, cfg: ModelConfig, with_encoders: bool = True) -> "PolicyModel":
        """A fresh model of this kind, with the frozen encoders it uses (`frozen_encoders`) attached if `with_encoders`."""
        model = cls(cfg)
        if with_encoders:
            model.attach_encoders(vae=build_vae(cfg) if "vae" in cls.frozen_encoders else None,
                                  text_encoder=build_text_encoder(cfg) if "text" in cls.frozen_encoders else None)
        return model

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg.checked()
        self.__dict__["_frozen"] = {}
        self.text_cache = TextEmbeddingCache()
        self.calls: Counter = Counter()  # samples through each network since the last reset (costs)

    # -- frozen encoders -------------------------------------------------------------------------
    @property
    def vae(self):
        return self._frozen.get("vae")

    @property
    def text_encoder(self) -> Optional[TextEncoder]:
        return self._frozen.get("text")

    def attach_encoders(self, vae=None, text_encoder: Optional[TextEncoder] = None) -> "PolicyModel":
        device = self.device
        if vae is not None:
            self._frozen["vae"] = vae.to(device)
        if text_encoder is not None:
            self._frozen["text"] = text_encoder.to(device)
        return self

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        for module in self._frozen.values():
            module._apply(fn, recurse)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def embed_text(self, texts: list[str]) -> torch.Tensor:
        """(B, D) text embeddings from the cache, encoding unseen instructions if an encoder is attached."""
        return self.text_cache.get(list(texts), self.text_encoder).to(self.device)

    # -- training API ----------------------------------------------------------------------------
    def trainable_parts(self, mode: str) -> dict[str, tuple[nn.Module, float]]:
        """name -> (module, lr multiplier) of the parts that train in `mode`."""
        raise NotImplementedError

    def set_mode(self, mode: str) -> "PolicyModel":
        """requires_grad on exactly the parts that train in `mode`; every other parameter is frozen."""
        self.requires_grad_(False)
        for module, _ in self.trainable_parts(mode).values():
            module.requires_grad_(True)
        return self

    def param_groups(self, mode: str) -> list[dict]:
        """Optimizer parameter groups for `mode` (call ``set_mode(mode)`` first): [{name, params, lr, weight_decay}]."""
        o = self.cfg.optim
        return [{"name": name, "params": [p for p in module.parameters() if p.requires_grad],
                 "lr": o.lr * scale, "weight_decay": o.weight_decay}
                for name, (module, scale) in self.trainable_parts(mode).items()]

    def loss(self, batch: dict, mode: str, generator: Optional[torch.Generator] = None) -> LossOutput:
        """Same as calling the model: ``model(batch, mode)``."""
        return self(batch, mode, generator)

    # -- checkpoints -----------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path, extra: Optional[dict] = None) -> Path:
        """config.json, model.safetensors, text_cache.pt, and the encoders unless loaded from `pretrained`.

        `extra` (e.g. the action normaliser's statistics) is stored as extra.json.
        """
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.json").write_text(json.dumps(dataclasses.asdict(self.cfg), indent=1))
        save_model(self, str(d / "model.safetensors"))
        self.text_cache.save(d / "text_cache.pt")
        if self.vae is not None and not self.cfg.vae.pretrained:
            save_model(self.vae, str(d / "vae.safetensors"))
        if self.text_encoder is not None and not self.cfg.text.pretrained:
            save_model(self.text_encoder.model, str(d / "text_encoder.safetensors"))
        if extra is not None:
            (d / "extra.json").write_text(json.dumps(extra, indent=1))
        return d

    @staticmethod
    def from_pretrained(directory: str | Path, with_encoders: bool = True) -> "PolicyModel":
        """Rebuild from ``save_pretrained`` output (the kind its config names)."""
        d = Path(directory)
        cfg = from_dict(ModelConfig, json.loads((d / "config.json").read_text()))
        kind = PolicyModel.kinds.get(cfg.kind)
        if kind is None:
            raise ValueError(f"{d}: model kind {cfg.kind!r} is not loaded (loaded: {sorted(PolicyModel.kinds)}); "
                             f"import it through videopolicy.models.build, which imports every kind")
        # the checkpoint holds every U-Net weight: do not load the base model first
        model = kind.build(dataclasses.replace(cfg, unet=dataclasses.replace(cfg.unet, pretrained=None)).checked(),
                           with_encoders=with_encoders)
        model.cfg = cfg.checked()  # keep the provenance of the base weights
        load_model(model, str(d / "model.safetensors"))
        if (d / "text_cache.pt").exists():
            model.text_cache = TextEmbeddingCache.load(d / "text_cache.pt")
        if model.vae is not None and (d / "vae.safetensors").exists():
            load_model(model.vae, str(d / "vae.safetensors"))
        if model.text_encoder is not None and (d / "text_encoder.safetensors").exists():
            load_model(model.text_encoder.model, str(d / "text_encoder.safetensors"))
        return model

    @staticmethod
    def read_extra(directory: str | Path) -> Optional[dict]:
        path = Path(directory) / "extra.json"
        return json.loads(path.read_text()) if path.exists() else None
