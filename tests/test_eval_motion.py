"""The motion estimators used by benchmarks/eval_doom.py recover known shifts and zooms."""

import numpy as np
import pytest

from engine.eval.motion import _zoom, block_motion, frame_health, horizontal_shift, psnr, zoom_factor


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


@pytest.mark.parametrize("per_frame", [0.985, 1.0, 1.02])
def test_block_motion_sums_small_per_frame_zooms(per_frame):
    """Walking zooms 1-3% per frame: below a block-wide search's grid, recovered by summing pairs."""
    g = _texture(seed=3)[..., 0].astype(np.float64)
    frames = [np.clip(_zoom(g, per_frame**i), 0, 255).astype(np.uint8) for i in range(8)]
    frames = np.stack([np.repeat(f[..., None], 3, axis=2) for f in frames])
    dx, dz = block_motion(frames)
    assert abs(dz - 7 * np.log(per_frame)) < 0.02 and abs(dx) < 1.5


def test_eval_judges_clear_blocks_by_the_pose():
    """eval_doom's ground truth: walking and turning measured from the game's pose [x, y, z, angle, pitch]."""
    import os
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks"))
    from eval_doom import did_command, pose_motion

    facing_north = np.array([[0, 0, 0, 90, 0], [0, 30, 0, 90, 0], [0, 60, 0, 90, 0]], np.float32)
    walked, turned = pose_motion(facing_north)
    assert walked == pytest.approx(60) and turned == 0
    assert did_command("forward", walked, turned) and not did_command("back", walked, turned)
    assert not did_command("forward", *pose_motion(facing_north[:2]))  # 30 units: into a wall, not clear
    right_turn = np.array([[0, 0, 0, 5, 0], [0, 0, 0, 350, 0]], np.float32)  # across 0 degrees
    assert pose_motion(right_turn)[1] == pytest.approx(-15)
    assert did_command("turn_right", *pose_motion(right_turn)) and not did_command(
        "turn_left", *pose_motion(right_turn)
    )
    assert did_command("strafe_left", 0.0, 0.0) is None


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
