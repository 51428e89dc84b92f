"""The last faults of issue 20: a stale DISPLAY, 16-bit grayscale start images, and recordings cut by a
failure after they started (they must say `complete: false` with the error)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.conditioning import load_image
from tests.test_faults import one_error_line

REPO = Path(__file__).resolve().parent.parent


def test_stale_display_fails_in_one_line_instead_of_running_offscreen(tmp_path):
    """DISPLAY points at no X server: SDL would fall back to its offscreen driver and play forever."""
    env = {k: v for k, v in os.environ.items() if k not in ("SDL_VIDEODRIVER", "WAYLAND_DISPLAY")}
    env.update(DISPLAY=":99", OMP_NUM_THREADS="1", SDL_AUDIODRIVER="dummy", XDG_RUNTIME_DIR=str(tmp_path))
    assert not Path("/tmp/.X11-unix/X99").exists(), "an X server runs on :99; the test needs none there"
    argv = [sys.executable, "main.py", "--preset", "tiny", "--device", "cpu"]
    try:
        proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        raise AssertionError("the window app ran on with no window for 60 s") from None
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    line = one_error_line(proc.stderr)
    assert ":99" in line and "--headless" in line, line


@pytest.mark.parametrize("mode", ["I;16", "I"])
def test_16_bit_grayscale_start_image_matches_its_8_bit_version(tmp_path, mode):
    """A 16-bit grayscale PNG (PIL mode I;16) used to load almost all white; mode I (a 32-bit integer
    TIFF holding 16-bit values, and what older Pillow versions open such a PNG as) likewise."""
    rng = np.random.default_rng(0)
    gray16 = rng.integers(0, 65536, (96, 160), dtype=np.uint16)  # [H, W]
    gray16[:, :40] = 0  # a dark band, as in a real frame
    gray8 = np.round(gray16 / 257).astype(np.uint8)
    path16 = tmp_path / "g16.png"
    Image.fromarray(gray16).save(path16)
    with Image.open(path16) as im:
        assert im.mode == "I;16"
        if mode == "I":
            path16 = tmp_path / "g16.tif"
            im.convert("I").save(path16)
    Image.fromarray(gray8).save(tmp_path / "g8.png")
    loaded16 = load_image(str(path16), 96, 160).astype(np.float64)
    loaded8 = load_image(str(tmp_path / "g8.png"), 96, 160).astype(np.float64)
    assert np.abs(loaded16 - loaded8).mean() < 1, (loaded16.mean(), loaded8.mean())


def test_8_bit_rgb_and_gray_start_images_are_unchanged(tmp_path):
    rng = np.random.default_rng(1)
    rgb8 = rng.integers(0, 256, (96, 160, 3), dtype=np.uint8)
    Image.fromarray(rgb8).save(tmp_path / "rgb8.png")
    assert np.array_equal(load_image(str(tmp_path / "rgb8.png"), 96, 160), rgb8)
    Image.fromarray(rgb8[..., 0]).save(tmp_path / "gray8.png")
    assert np.array_equal(load_image(str(tmp_path / "gray8.png"), 96, 160), np.repeat(rgb8[..., :1], 3, 2))
