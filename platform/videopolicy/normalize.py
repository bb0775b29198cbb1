"""Action normalisation shared by the data stages (clips) and the policy (unnormalising its output):
per-dimension min-max to [-1, 1] over every step of every training demo, as the authors do."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np


class ActionNormalizer:
    """Per-dimension min-max map to [-1, 1]; constant dimensions map to 0 and back to their value."""

    def __init__(self, low: Sequence[float], high: Sequence[float]):
        self.low = np.asarray(low, dtype=np.float64)
        self.high = np.asarray(high, dtype=np.float64)
        if self.low.shape != self.high.shape or np.any(self.high < self.low):
            raise ValueError("need low <= high, of one shape")

    @property
    def _span(self) -> np.ndarray:
        return np.where(self.high > self.low, self.high - self.low, 1.0)

    def normalize(self, actions: np.ndarray) -> np.ndarray:
        out = 2.0 * (np.asarray(actions) - self.low) / self._span - 1.0
        return np.where(self.high > self.low, out, 0.0).astype(np.float32)

    def unnormalize(self, actions: np.ndarray) -> np.ndarray:
        out = (np.asarray(actions, dtype=np.float64) + 1.0) / 2.0 * self._span + self.low
        return np.where(self.high > self.low, out, self.low).astype(np.float32)

    @classmethod
    def fit(cls, actions: np.ndarray) -> "ActionNormalizer":
        """From every step of every training demo: (N, A)."""
        flat = np.asarray(actions).reshape(-1, np.asarray(actions).shape[-1])
        return cls(flat.min(0), flat.max(0))

    def to_dict(self) -> dict:
        return {"low": self.low.tolist(), "high": self.high.tolist()}

    @classmethod
    def from_dict(cls, d: Mapping) -> "ActionNormalizer":
        return cls(d["low"], d["high"])
