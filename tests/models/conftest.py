"""Model tests: one CPU thread (step budgets, not wall-clock: CI shares 2 cores with everything else)."""

from __future__ import annotations

import pytest
import torch

from videopolicy.models.config import ModelConfig
from model_fixtures import tiny_config

torch.set_num_threads(1)


@pytest.fixture
def tiny_cfg() -> ModelConfig:
    return tiny_config()
