"""The policy: camera images + instruction -> an unnormalised action chunk, in a suite's action space.

The model predicts a chunk of ``horizon`` (32) normalised 7-D actions; the evaluation loop executes the
first 16 and replans. Actions are normalised per dimension, min-max to [-1, 1] over every step of
every training demo (the authors' convention). RoboCasa's PandaMobile expects 12-D commands: the
7-D arm/gripper action followed by ``[0, 0, 0, 0, -1]`` (base motion off, arm mode).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np
import torch

from videopolicy.catalog import ACTION_SUFFIX
from videopolicy.models import edm
from videopolicy.models.config import ModelConfig, SamplerConfig
from videopolicy.models.build import PolicyModel, build_model
from videopolicy.normalize import ActionNormalizer


def to_suite_actions(chunk: np.ndarray, suite: str) -> np.ndarray:
    """(..., 7) model actions -> (..., D) commands of `suite` (its ``Suite.action_suffix`` appended,
    read from the suites' static catalog: no simulator module is imported)."""
    suffix = ACTION_SUFFIX.get(suite, ())
    if not suffix:
        return chunk
    tail = np.broadcast_to(np.asarray(suffix, dtype=chunk.dtype), chunk.shape[:-1] + (len(suffix),))
    return np.concatenate([chunk, tail], axis=-1)


class VideoPolicy:
    """``act(observations, task_text) -> action chunk`` around a trained model (either kind).

    observations: uint8 images, (V, H, W, 3) for one environment or (B, V, H, W, 3) for a batch, or a
    mapping camera name -> (H, W, 3) / (B, H, W, 3) ordered by ``cameras``. Camera order must be the
    training clips' order. Returns (horizon, D) or (B, horizon, D) unnormalised, in the suite's space.
    """

    def __init__(self, model: PolicyModel, normalizer: ActionNormalizer, suite: str = "robosuite",
                 sampler: Optional[SamplerConfig] = None, cameras: Optional[Sequence[str]] = None, seed: int = 0):
        self.model = model.eval()
        self.normalizer = normalizer
        self.suite = suite
        self.sampler = sampler or model.cfg.sampler
        self.cameras = list(cameras) if cameras else None
        self.generator: edm.Noise = torch.Generator(device=model.device).manual_seed(seed)
        self.task_text: Optional[str] = None

    def reset(self, task_text: Optional[str] = None) -> None:
        self.task_text = task_text

    def _stack(self, observations) -> tuple[np.ndarray, bool]:
        if isinstance(observations, Mapping):
            if not self.cameras:
                raise ValueError("observations given by camera name but the policy has no camera order")
            observations = np.stack([np.asarray(observations[c]) for c in self.cameras], axis=-4)
        obs = np.asarray(observations)
        if obs.ndim == 4:
            return obs[None], False
        if obs.ndim == 5:
            return obs, True
        raise ValueError(f"observations must be (V, H, W, 3) or (B, V, H, W, 3), got {obs.shape}")

    def act(self, observations, task_text: Optional[str | Sequence[str]] = None) -> np.ndarray:
        obs, batched = self._stack(observations)
        text = task_text if task_text is not None else self.task_text
        if text is None:
            raise ValueError("no task text: pass task_text or call reset(task_text)")
        texts = [text] * len(obs) if isinstance(text, str) else list(text)
        out = self.model.sample_actions(obs, texts, self.sampler, self.generator)
        chunk = to_suite_actions(self.normalizer.unnormalize(out.actions.float().cpu().numpy()), self.suite)
        return chunk if batched else chunk[0]

    @classmethod
    def from_pretrained(cls, directory: str | Path, suite: str = "robosuite", sampler: Optional[SamplerConfig] = None,
                        normalizer: Optional[ActionNormalizer] = None, device: str = "cpu", seed: int = 0
                        ) -> "VideoPolicy":
        """From ``model.save_pretrained(dir, extra={"normalizer": ..., "cameras": [...]})``."""
        model = PolicyModel.from_pretrained(directory).to(device)
        extra = PolicyModel.read_extra(directory) or {}
        if normalizer is None:
            if "normalizer" not in extra:
                raise ValueError(f"{directory} stores no action normaliser; pass one")
            normalizer = ActionNormalizer.from_dict(extra["normalizer"])
        return cls(model, normalizer, suite, sampler, extra.get("cameras"), seed)

    @classmethod
    def from_config(cls, cfg: ModelConfig, normalizer: ActionNormalizer, suite: str = "robosuite",
                    cameras: Optional[Sequence[str]] = None, device: str = "cpu", seed: int = 0) -> "VideoPolicy":
        """An untrained policy (random or `pretrained` weights), e.g. for pipeline smoke tests."""
        return cls(build_model(cfg).to(device), normalizer, suite, None, cameras, seed)
