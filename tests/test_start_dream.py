"""Dreaming a start scene (N, --image var:...) only where the VAR generator matches the world."""

from __future__ import annotations

import pytest

from app.start_images import StartImages, dream_start_image
from engine.config import load_preset


def test_dream_is_refused_in_one_line_for_a_world_the_generator_does_not_know():
    preset = load_preset("e1m1")  # freedoom1.wad E1M1; the VAR generator knows Freedoom 2 only
    images = StartImages(preset, log=lambda m: None)
    images.current()
    with pytest.raises(ValueError, match="no start-scene generator for e1m1") as e:
        images.dream(0)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="freedoom2.wad levels, not freedoom1.wad E1M1"):
        dream_start_image(preset, "E1M1", 0)
