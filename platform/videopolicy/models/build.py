"""Every model kind, and ``build_model``: the model a ``ModelConfig`` names.

Importing this module defines (and so registers, see `base.PolicyModel.kinds`) each kind, so
``PolicyModel.from_pretrained`` can rebuild any checkpoint; ``videopolicy.models.PolicyModel`` and
``videopolicy.models.build_model`` come from here. Adding a model kind = its module + one line in `KINDS`.
"""

from __future__ import annotations

from videopolicy.models.base import PolicyModel
from videopolicy.models.baseline import DPResNetModel
from videopolicy.models.config import ModelConfig
from videopolicy.models.model import VideoPolicyModel

__all__ = ["KINDS", "PolicyModel", "build_model"]

#: ``ModelConfig.kind`` -> class (the values ``ModelConfig.kind`` allows)
KINDS: dict[str, type[PolicyModel]] = {cls.kind: cls for cls in (VideoPolicyModel, DPResNetModel)}


def build_model(cfg: ModelConfig, with_encoders: bool = True) -> PolicyModel:
    """The model named by ``cfg.kind``, with its frozen VAE / text encoder attached if `with_encoders`."""
    cfg = cfg.checked()
    return KINDS[cfg.kind].build(cfg, with_encoders)
