"""dream_start_image: the app-facing contract (uint8 [H, W, 3], deterministic per seed, clear errors)."""

from types import SimpleNamespace

import numpy as np
import pytest

import engine.var as var
from engine.var.config import TokenizerConfig, VARConfig
from engine.var.dream import dream_start_image, level_class
from engine.var.train import save
from engine.var.transformer import VAR
from engine.var.vqvae import VQVAE


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    d = tmp_path_factory.mktemp("var_assets")
    tok = TokenizerConfig(ch=16)
    save(VQVAE(tok), tok, d / "tokenizer.safetensors")
    for name, depth in (("var_target", 2), ("var_draft", 1)):
        cfg = VARConfig(depth=depth, width=32, head_dim=16)
        save(VAR(cfg), cfg, d / f"{name}.safetensors")
    return d


def test_level_class():
    assert level_class("MAP07") == 6 and level_class("map20") == 19
    for bad in ("MAP21", "E1M1", "var:MAP07"):
        with pytest.raises(ValueError, match="unknown level"):
            level_class(bad)


def test_missing_weights_is_one_line_value_error(tmp_path):
    with pytest.raises(ValueError, match="VAR weights missing") as e:
        dream_start_image("MAP01", 0, assets_dir=tmp_path)
    assert "\n" not in str(e.value)


def test_dream_shape_and_determinism(assets):
    a = dream_start_image("MAP07", 3, assets_dir=assets)
    b = dream_start_image("MAP07", 3, assets_dir=assets)
    spec = dream_start_image("MAP07", 3, assets_dir=assets, speculative=True)
    assert a.shape == (144, 256, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert spec.shape == a.shape and spec.dtype == np.uint8


def test_app_call_form(assets):
    preset = SimpleNamespace(height=72, width=128)
    img = var.dream_start_image(preset, "MAP02", 1, assets_dir=assets)
    assert img.shape == (72, 128, 3) and img.dtype == np.uint8
