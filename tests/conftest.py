"""Shared fixtures. Nothing is built at import or collection time; models are made inside fixtures."""

from __future__ import annotations

import pytest
import torch

TINY = "nextvit_test_tiny"


@pytest.fixture(scope="session")
def tiny_model():
    """The tiny Next-ViT with deterministic random weights and measured BatchNorm statistics (do not mutate)."""
    from edgevit.models import create_model, randomize_

    return randomize_(create_model(TINY), seed=0)


@pytest.fixture
def tiny_input():
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(123))
