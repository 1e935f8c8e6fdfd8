"""Fixtures for the gradient-engine tests; the helpers live in gradient_testkit.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gradient_testkit import MODELS, Tiny


@pytest.fixture(params=sorted(MODELS))
def tiny(request: pytest.FixtureRequest) -> Tiny:
    return MODELS[str(request.param)]()
