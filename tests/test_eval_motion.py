"""The motion estimators used by benchmarks/eval_doom.py recover known shifts and zooms."""

import numpy as np
import pytest

from engine.eval.motion import _zoom, frame_health, horizontal_shift, psnr, zoom_factor


def _texture(h=72, w=128, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.random((h // 4, w // 4))
    img = np.kron(base, np.ones((4, 4)))  # blocky texture with structure at several scales
    img = (img * 200 + 20).astype(np.uint8)
    return np.repeat(img[..., None], 3, axis=2)


@pytest.mark.parametrize("dx", [-7, -2, 3, 9])
def test_horizontal_shift_recovers_roll(dx):
    a = _texture(w=160)
    b = np.roll(a, dx, axis=1)
    assert abs(horizontal_shift(a[:, 16:-16], b[:, 16:-16]) - dx) < 0.6


@pytest.mark.parametrize("s", [0.95, 1.0, 1.04])
def test_zoom_factor_recovers_zoom(s):
    a = _texture(seed=1)
    g = a[..., 0].astype(np.float64)
    b = np.clip(_zoom(g, s), 0, 255).astype(np.uint8)
    b = np.repeat(b[..., None], 3, axis=2)
    assert abs(zoom_factor(a, b) - s) < 0.011


def test_psnr_and_health():
    a = _texture()
    assert psnr(a, a) > 90
    assert 5 < psnr(a, np.zeros_like(a)) < 15
    flat = np.full((4, 8, 8, 3), 128, np.uint8)
    h = frame_health(flat)
    assert h["spatial_std_min"] == 0 and h["motion_mean"] == 0
    assert frame_health(np.stack([a, np.roll(a, 3, 1)]))["motion_mean"] > 1
