"""Checkpoint contracts: save == load, the official `model.` format loads strictly, and every failure raises
CheckpointError with one line that names the file and the problem."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from engine.checkpoint import CheckpointError, load_model_state, load_weights_into, save_checkpoint
from engine.config import load_preset, preset_from_dict
from engine.model.causal_wan import CausalWanModel
from tests._model_helpers import (
    one_thread,  # noqa: F401 (autouse fixture)
    tiny_inputs,
    tiny_model,
)


def _outputs(model):
    inp = tiny_inputs(model, 1, 3)
    with torch.no_grad():
        return model(
            inp["clean"],
            inp["cond"],
            torch.full((1, 3), 700.0),
            inp["context"],
            inp["mouse"],
            inp["keyboard"],
        )


def test_save_load_round_trip(tmp_path):
    preset = load_preset("tiny")
    src = tiny_model("tiny", seed=0)
    path = tmp_path / "ours.safetensors"
    save_checkpoint(path, src, preset)
    dst = tiny_model("tiny", seed=5)
    assert not torch.equal(_outputs(src), _outputs(dst))
    embedded = load_weights_into(dst, path, preset)
    assert preset_from_dict(embedded) == preset
    torch.testing.assert_close(_outputs(dst), _outputs(src), rtol=0, atol=0)
    state, meta = load_model_state(path)
    assert "blocks.0.self_attn.q.weight" in state and meta["model"]["dim"] == preset.model.dim


def test_official_prefixed_format_loads(tmp_path):
    preset = load_preset("tiny")
    src = tiny_model("tiny", seed=0)
    path = tmp_path / "base_distill.safetensors"
    save_file({f"model.{k}": v.contiguous() for k, v in src.state_dict().items()}, str(path))
    dst = tiny_model("tiny", seed=3)
    assert load_weights_into(dst, path, preset) is None
    torch.testing.assert_close(_outputs(dst), _outputs(src), rtol=0, atol=0)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match=r"nope\.safetensors: no such file"):
        load_model_state(tmp_path / "nope.safetensors")


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(CheckpointError, match="is a directory"):
        load_model_state(tmp_path)


@pytest.mark.parametrize("content", [b"", b"\x00" * 3, b"definitely not safetensors" * 10])
def test_corrupt_file(tmp_path, content):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=r"^broken\.safetensors: not a readable safetensors file") as e:
        load_model_state(path)
    assert "\n" not in str(e.value)


def test_truncated_file(tmp_path):
    path = tmp_path / "cut.safetensors"
    save_checkpoint(path, tiny_model("tiny"), load_preset("tiny"))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.safetensors: not a readable"):
        load_model_state(path)


def test_wrong_mode_names_the_mismatch(tmp_path):
    path = tmp_path / "templerun.safetensors"
    src = CausalWanModel(load_preset("tiny-templerun").model)
    save_file({f"model.{k}": v.contiguous() for k, v in src.state_dict().items()}, str(path))
    preset = load_preset("tiny")
    with pytest.raises(CheckpointError) as e:
        load_weights_into(CausalWanModel(preset.model), path, preset)
    msg = str(e.value)
    assert msg.startswith("templerun.safetensors does not fit preset tiny: keyboard_dim_in 7 != 4; ")
    assert "mouse absent != present" in msg and "missing keys" in msg and "\n" not in msg
    listed = msg.split("missing keys: ")[1].split(";")[0]
    assert listed.count("blocks.") <= 10 and "more)" in listed


def test_wrong_size_names_dim_and_layers(tmp_path):
    path = tmp_path / "big.safetensors"
    big = load_preset("tiny-gta-drive")
    save_checkpoint(path, CausalWanModel(big.model), big)
    preset = load_preset("tiny")
    with pytest.raises(CheckpointError, match=r"keyboard_dim_in 2 != 4"):
        load_weights_into(CausalWanModel(preset.model), path, preset)
