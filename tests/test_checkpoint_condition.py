"""A checkpoint played under another conditioning is refused in one line naming the preset to use."""

from __future__ import annotations

from dataclasses import replace

import pytest

from engine.checkpoint import CheckpointError, check_conditioning, save_checkpoint
from engine.config import load_preset


def test_conditioning_mismatch_names_the_preset_the_file_was_trained_with(tmp_path):
    from engine.checkpoint import load_model_state
    from engine.model.causal_wan import CausalWanModel

    tiny = load_preset("tiny")
    assert tiny.condition == "image"
    save_checkpoint(tmp_path / "w.safetensors", CausalWanModel(tiny.model), tiny)
    _, file_preset = load_model_state(tmp_path / "w.safetensors")
    check_conditioning(file_preset, tiny, tmp_path / "w.safetensors")  # the same conditioning: fine
    other = replace(tiny, name="mine", condition="last_latent")
    with pytest.raises(CheckpointError, match=r"condition image != last_latent.*--preset tiny$") as e:
        check_conditioning(file_preset, other, tmp_path / "w.safetensors")
    assert "\n" not in str(e.value)
