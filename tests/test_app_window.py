"""The live window under SDL's dummy video driver, driven by synthetic key and mouse events."""

import json
import logging
import os

import imageio_ffmpeg
import numpy as np
import pygame
import pytest

from app.frame_queue import FrameQueue
from app.start_images import StartImage, StartImages
from app.window import App, AppOptions, letterbox
from engine.config import Preset, preset_to_dict
from tests.test_app_support import FakeWorld, gradient_image


def make_app(world, tmp_path, record=True, fps=100.0, **options):
    spec = world.spec
    preset = Preset(name=spec.name, mode=spec.mode, height=spec.height, width=spec.width, fps=spec.fps)
    images = StartImages(preset)
    images.choices = [StartImage("gradient", image=gradient_image(spec.height, spec.width))]
    opts = AppOptions(
        fps=fps,
        record_dir=str(tmp_path / "rec") if record else None,
        screenshot_dir=str(tmp_path / "shots"),
        error_hold_s=0.0,
        **options,
    )
    meta = {"preset": spec.name, "preset_config": preset_to_dict(preset), "device": "cpu", "dtype": "bf16"}
    return App(world, preset, images, 0, opts, meta)


def key(kind, k):
    pygame.event.post(pygame.event.Event(kind, key=k, mod=0, unicode="", scancode=0))


def play_script(app, tick):
    if tick == 1:
        key(pygame.KEYDOWN, pygame.K_w)
    if tick == 2:
        key(pygame.KEYDOWN, pygame.K_TAB)  # capture the mouse (relative mode)
    if tick in (3, 4):
        pygame.event.post(pygame.event.Event(pygame.MOUSEMOTION, rel=(40, 0), pos=(5, 5), buttons=(0, 0, 0)))
    if tick == 30:
        key(pygame.KEYUP, pygame.K_w)


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def test_events_become_actions_frames_reach_display_and_recording(tmp_path):
    world = FakeWorld()
    app = make_app(world, tmp_path)
    app.gen.keep_inputs = True
    assert app.run(max_frames=45, script=play_script) == 0
    # the generation thread received exactly the actions the input state produced from the events
    assert len(world.received) == len(app.gen._inputs_seen) >= 4
    for got, sample in zip(world.received, app.gen._inputs_seen, strict=True):
        assert np.array_equal(got.keyboard, sample.actions.keyboard)
        assert np.array_equal(got.mouse, sample.actions.mouse)
    forward = [b.keyboard[0, 0] for b in world.received]
    yaw = [b.mouse[0, 1] for b in world.received]
    assert 1.0 in forward
    assert min(yaw) >= 0 and max(yaw) > 0  # mouse moved right -> positive yaw
    assert any("w" in s.keys for s in app.gen._inputs_seen)
    # frames reached the display at the requested rate, in order
    summary = app.summary()
    assert summary["frames_shown"] == 45 and summary["latency_ms_mean"] is not None
    # recording: a valid MP4 with every generated frame and a matching actions file
    rec = tmp_path / "rec"
    meta = json.loads((rec / "meta.json").read_text())
    rows = read_jsonl(rec / "actions.jsonl")
    total = sum(len(b) for b in world.received)
    assert meta["complete"] and meta["frames"] == total == len(rows)
    assert imageio_ffmpeg.count_frames_and_secs(str(rec / "video.mp4"))[0] == total
    sent = np.concatenate([b.keyboard for b in world.received])
    assert np.array_equal(np.array([r["keyboard"] for r in rows], np.float32), sent)
    assert [r["frame"] for r in rows] == list(range(total))
    assert len(read_jsonl(rec / "blocks.jsonl")) == len(world.received)


def test_generation_error_is_shown_logged_and_recording_finalised(tmp_path, caplog):
    world = FakeWorld(fail_at_block=2)
    app = make_app(world, tmp_path)
    with caplog.at_level(logging.ERROR, logger="worldplayer"):
        code = app.run(max_seconds=20)
    assert code == 1
    assert "simulated failure" in app.stats().error
    assert "generation thread failed" in caplog.text and "Traceback" in caplog.text
    rec = tmp_path / "rec"
    meta = json.loads((rec / "meta.json").read_text())
    assert meta["frames"] == 21 and "simulated failure" in meta["session_error"]
    assert imageio_ffmpeg.count_frames_and_secs(str(rec / "video.mp4"))[0] == 21


def test_window_keys_pause_hud_screenshot_record_toggle(tmp_path):
    world = FakeWorld()
    app = make_app(world, tmp_path, record=False)
    seen = {}

    def script(app, tick):
        if tick == 5:
            key(pygame.KEYDOWN, pygame.K_r)  # start recording mid-session
        if tick == 15:
            key(pygame.KEYDOWN, pygame.K_h)  # HUD off
            key(pygame.KEYDOWN, pygame.K_EQUALS)  # sensitivity up
        if tick == 16:
            seen["hud"] = app.show_hud
            key(pygame.KEYDOWN, pygame.K_h)
            key(pygame.KEYDOWN, pygame.K_F12)
            key(pygame.KEYDOWN, pygame.K_p)
        if tick == 20:
            seen["paused_at"] = app.frames_shown
        if tick == 30:
            seen["still"] = app.frames_shown
            seen["rec"] = app.stats().recording
            key(pygame.KEYDOWN, pygame.K_p)
        if tick == 60:
            key(pygame.KEYDOWN, pygame.K_ESCAPE)  # mouse not captured: quit

    app.options.recordings_root = str(tmp_path / "recs")
    assert app.run(max_seconds=20, script=script) == 0
    assert seen["hud"] is False and app.show_hud is True
    assert seen["paused_at"] == seen["still"]  # nothing advances while paused
    assert seen["rec"] is True and app.input.sensitivity == pytest.approx(1.25)
    assert len(app.screenshots) == 1 and os.path.isfile(app.screenshots[0])
    recs = os.listdir(tmp_path / "recs")
    assert len(recs) == 1
    meta = json.loads((tmp_path / "recs" / recs[0] / "meta.json").read_text())
    assert meta["complete"] and meta["video_start_frame"] > 0 and meta["frames"] > 0
    rows = read_jsonl(tmp_path / "recs" / recs[0] / "actions.jsonl")
    assert rows[0]["frame"] == 0  # actions from the session start, so the recording replays
    assert meta["frames"] == len(rows) - meta["video_start_frame"]
    from app.replay import replay_recording

    result = replay_recording(
        str(tmp_path / "recs" / recs[0]),
        str(tmp_path / "again"),
        progress=False,
        world_factory=lambda preset: FakeWorld(),
    )
    assert result.identical
    assert imageio_ffmpeg.count_frames_and_secs(str(tmp_path / "again" / "video.mp4"))[0] == meta["frames"]


def test_restart_clears_queue_and_starts_new_session(tmp_path):
    world = FakeWorld()
    app = make_app(world, tmp_path, record=False)

    def script(app, tick):
        if tick == 12:
            key(pygame.KEYDOWN, pygame.K_BACKSPACE)

    app.run(max_frames=40, script=script)
    assert app.gen.session == 2
    assert app.current.session == 2


def test_frame_queue_is_bounded_and_stoppable():
    import threading

    q = FrameQueue(capacity=5)
    frames = np.zeros((9, 2, 2, 3), np.uint8)
    stop = threading.Event()
    t = threading.Thread(target=lambda: q.put_block(frames, 0, 0.0, stop=stop))
    t.start()
    t.join(0.3)
    assert t.is_alive() and len(q) == 5  # blocked on a full queue
    assert q.pop().index_in_block == 0
    stop.set()
    t.join(2)
    assert not t.is_alive() and len(q) <= 5


def test_letterbox_keeps_aspect():
    r = letterbox((64, 32), (1000, 1000))
    assert r.width == 1000 and r.height == 500 and r.y == 250


def test_start_threshold_policy():
    from app.generation_thread import start_threshold

    assert start_threshold(12, [], 17.5) == 12  # no estimate yet: one block
    assert start_threshold(12, [2.0, 2.0, 2.0], 17.5) == 12  # slower than real time: one block
    assert start_threshold(12, [0.05, 0.05, 0.9], 17.5) == 3  # fast: just in time (median 50 ms)
    assert start_threshold(9, [0.01], 0.0) == 9  # no display rate: one block


def test_dream_key_restarts_from_a_dreamed_scene(tmp_path, monkeypatch):
    import engine.var

    world = FakeWorld()
    app = make_app(world, tmp_path, record=False)
    seen = {}

    def script(app, tick):
        if tick == 3:
            key(pygame.KEYDOWN, pygame.K_n)  # the generator cannot run: a notice, the session goes on
        if tick == 12:
            seen["notice"] = app.gen.notice
            monkeypatch.setattr(
                engine.var,
                "dream_start_image",
                lambda preset, level, seed: np.full((preset.height, preset.width, 3), 200, np.uint8),
                raising=False,
            )
            key(pygame.KEYDOWN, pygame.K_n)

    def unavailable(preset, level, seed):
        raise ImportError("no VAR weights")

    monkeypatch.setattr(engine.var, "dream_start_image", unavailable)
    app.run(max_frames=40, script=script)
    assert "not available: no VAR weights" in seen["notice"] and app.gen.error is None
    assert app.gen.session == 2 and app.gen.start_label == "var:MAP01" and app.gen.dream_ms is not None
    assert app.current.image.mean() > 150  # frames now come from the dreamed (bright) start image


def test_generation_thread_steps_with_the_requested_torch_threads(tmp_path):
    """The world is built with one thread and stepped on the generation thread with `threads`."""
    import torch

    seen = []

    class Counting(FakeWorld):
        def step(self, actions):
            seen.append(torch.get_num_threads())
            return super().step(actions)

    main_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        app = make_app(Counting(), tmp_path, record=False, threads=3)
        assert app.run(max_frames=20) == 0
        assert seen and set(seen) == {3}
        assert torch.get_num_threads() == 1  # the main thread keeps its own setting
    finally:
        torch.set_num_threads(main_threads)


class SlowWorld(FakeWorld):
    """Every block after the first takes `seconds` (a heavy model on a loaded machine)."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds

    def step(self, actions):
        if self.block_index > 0:
            import time

            time.sleep(self.seconds)
        return super().step(actions)


@pytest.mark.parametrize("record", [False, True])
def test_escape_closes_the_window_at_once_and_a_recording_keeps_the_block_in_progress(tmp_path, record):
    import time

    app = make_app(SlowWorld(4.0), tmp_path, record=record)
    quit_at = []

    def press_escape(app, tick):
        if app.gen.blocks_done >= 1 and not quit_at:  # block 1 (4 s) is in progress now
            time.sleep(0.3)
            quit_at.append(time.perf_counter())
            key(pygame.KEYDOWN, pygame.K_ESCAPE)

    closed = []
    real_quit = pygame.display.quit
    pygame.display.quit = lambda: (closed.append(time.perf_counter()), real_quit())
    try:
        assert app.run(max_seconds=30, script=press_escape) == 0
    finally:
        pygame.display.quit = real_quit
    done = time.perf_counter()
    assert quit_at and closed[0] - quit_at[0] < 0.5  # the window went at once
    if record:  # the recording waited for block 1 and holds its frames
        meta = json.load(open(tmp_path / "rec" / "meta.json"))
        blocks = read_jsonl(tmp_path / "rec" / "blocks.jsonl")
        assert len(blocks) == 2 and meta["frames"] == sum(b["frames"] for b in blocks), (meta, blocks)
    else:  # nothing to keep: the app did not wait out the 4-second block
        assert done - quit_at[0] < 2.0
