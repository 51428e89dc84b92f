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


def test_oracle_shows_what_a_session_decodes_from_the_real_latents():
    """eval_doom --oracle stands in for a perfect world model: its frames must be the session's decode
    (streamed block by block) of the real frames' latents."""
    import os
    import sys

    import torch

    from engine.conditioning import frames_to_uint8
    from engine.config import load_preset
    from engine.vae.factory import build_vae

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks"))
    from eval_doom import vae_round_trip

    torch.manual_seed(0)
    vae = build_vae(load_preset("configs/train/presets/synthetic.yaml").vae).eval()
    frames = np.stack([np.roll(_texture(64, 64, seed=2), 3 * i, axis=1) for i in range(13)])  # 1 + 4*3
    oracle = vae_round_trip(vae, frames)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2)[None].float() / 127.5 - 1.0
    z = vae.encode(x)  # [1, 4, C, h, w]
    cache, shown = vae.new_decode_cache(), []
    for a, b in ((0, 1), (1, 4)):  # the first latent, then a block of 3, as a session decodes
        video, cache = vae.decode_stream(z[:, a:b], cache)
        shown.append(frames_to_uint8(video))
    assert oracle.shape == frames.shape and oracle.dtype == np.uint8
    assert np.array_equal(oracle, np.concatenate(shown))
    assert not np.array_equal(oracle, frames)  # a random VAE does not reproduce its input
