"""The learning-rate schedule of a training run: a function of the step alone (so resuming continues it)."""

import pytest

from videopolicy.config import ConfigError, StageRunConfig, config_from_dict
from videopolicy.train.loop import lr_factor


def test_constant_cosine_and_warmup():
    const = StageRunConfig(steps=100)
    assert [lr_factor(const, s) for s in (1, 50, 100)] == [1.0, 1.0, 1.0]
    cos = StageRunConfig(steps=100, lr_schedule="cosine", warmup_steps=10)
    assert lr_factor(cos, 5) == pytest.approx(0.5 * 0.5 * (1 + __import__("math").cos(__import__("math").pi * 0.05)))
    assert lr_factor(cos, 50) == pytest.approx(0.5)
    assert lr_factor(cos, 100) == pytest.approx(0.0, abs=1e-12)
    factors = [lr_factor(cos, s) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(factors, factors[1:]))  # decays monotonically after warm-up


def test_schedule_is_validated():
    with pytest.raises(ConfigError, match="warmup_steps"):
        config_from_dict({"train": {"stage2": {"steps": 10, "warmup_steps": 10}}})
    with pytest.raises(ConfigError, match="lr_schedule"):
        config_from_dict({"train": {"stage2": {"lr_schedule": "cosin"}}})
