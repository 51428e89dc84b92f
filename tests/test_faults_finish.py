"""The last faults of issue 20: a stale DISPLAY, 16-bit grayscale start images, and recordings cut by a
failure after they started (they must say `complete: false` with the error)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.headless import run_headless
from app.recorder import Recorder
from app.replay import replay_recording
from engine.actions import ActionBlock
from engine.conditioning import load_image
from tests.test_app_support import FakeWorld, gradient_image
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


# --- a failure after recording started marks the folder incomplete, in every path ---


def meta_of(folder: Path) -> dict:
    return json.loads((folder / "meta.json").read_text())


def test_window_loop_failure_marks_the_recording_incomplete(tmp_path):
    """A failure on the display side (not the generation thread) ends the session: not `complete`."""
    from tests.test_app_window import make_app

    def script(app, tick):
        if app.gen.blocks_done >= 2:
            raise RuntimeError("the display loop broke")

    app = make_app(FakeWorld(), tmp_path)
    with pytest.raises(RuntimeError, match="display loop broke"):
        app.run(max_seconds=20, script=script)
    meta = meta_of(tmp_path / "rec")
    assert meta["complete"] is False and "display loop broke" in meta["session_error"], meta
    assert app.exit_code == 1


def test_failed_screenshot_is_a_notice_not_the_end_of_the_session(tmp_path):
    from tests.test_app_window import make_app

    app = make_app(FakeWorld(), tmp_path, record=False)
    app.options.screenshot_dir = str(tmp_path / "a_file")
    (tmp_path / "a_file").write_text("not a folder")
    notices = []

    def script(app, tick):
        if tick == 3:
            app._on_key("f12")
            notices.append(app.stats().notice)

    assert app.run(max_frames=30, script=script) == 0
    assert app.frames_shown == 30 and "screenshot not saved" in notices[0], notices


def fake_recording(folder: Path, frames: int = 33) -> None:
    rng = np.random.default_rng(0)
    actions = ActionBlock(
        rng.integers(0, 2, (frames, 4)).astype(np.float32), rng.normal(0, 0.1, (frames, 2)).astype(np.float32)
    )
    meta = {"preset": "tiny", "device": "cpu", "dtype": "bf16"}
    run_headless(FakeWorld(), gradient_image(), actions, frames, str(folder), 0, meta, progress=False)


def test_replay_that_fails_midway_leaves_an_incomplete_folder(tmp_path):
    rec, out = tmp_path / "rec", tmp_path / "replay"
    fake_recording(rec)
    with pytest.raises(RuntimeError, match="simulated failure"):
        replay_recording(
            str(rec), str(out), progress=False, world_factory=lambda p: FakeWorld(fail_at_block=2)
        )
    meta = meta_of(out)
    assert meta["complete"] is False and "simulated failure" in meta["session_error"], meta


def test_replay_of_an_incomplete_recording_does_not_inherit_its_error(tmp_path):
    """A replay's meta.json speaks of the replay: the original's error would read as the replay's own."""
    rec, out = tmp_path / "rec", tmp_path / "replay"
    fake_recording(rec)
    cut = dict(meta_of(rec), complete=False, error="OSError: disk full", frames_lost=3, session_error="x")
    (rec / "meta.json").write_text(json.dumps(cut))
    result = replay_recording(str(rec), str(out), progress=False, world_factory=lambda p: FakeWorld())
    assert result.identical and not result.recording_error
    meta = meta_of(out)
    assert meta["complete"] is True, meta
    assert not {"error", "frames_lost", "session_error"} & set(meta), meta
    assert meta["replayed_recording_complete"] is False


def test_recorder_that_fails_while_opening_says_so_in_meta(tmp_path, monkeypatch):
    """The disk fills up while the folder is being set up (start.png): meta.json still says why."""

    def full_disk(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        Recorder(str(tmp_path / "rec"), 48, 32, 12.0, {"preset": "fake"}, start_image=gradient_image())
    meta = meta_of(tmp_path / "rec")
    assert meta["complete"] is False and "No space left" in meta["error"], meta
