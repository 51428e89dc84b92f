"""Fixtures shared by the training tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory):
    """3 recorded episodes of the synthetic scrolling world, 61 frames at 64x64 (read-only for tests)."""
    from engine.worlds.synthetic import record_synthetic

    root = tmp_path_factory.mktemp("synthetic")
    record_synthetic(root, episodes=3, frames=61, height=64, width=64)
    return root
