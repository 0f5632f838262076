"""Shared fixtures: a seeded generator and PyTorch references in float64."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20150211)  # Ioffe & Szegedy's arXiv date
