"""Replay: a recorded live session regenerates frame for frame."""

import json

import imageio_ffmpeg
import numpy as np

from app.replay import replay_recording
from tests.test_app_support import FakeWorld
from tests.test_app_window import make_app, play_script


def decoded(path):
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    w, h = meta["size"]
    return np.stack([np.frombuffer(f, np.uint8).reshape(h, w, 3) for f in reader])


def test_live_recording_replays_frame_for_frame(tmp_path):
    world = FakeWorld()
    app = make_app(world, tmp_path)
    assert app.run(max_frames=40, script=play_script) == 0
    rec = tmp_path / "rec"
    result = replay_recording(
        str(rec), str(tmp_path / "replay"), progress=False, world_factory=lambda preset: FakeWorld()
    )
    assert result.identical and result.compared == len(world.received)
    original = [b.keyboard for b in world.received]
    assert result.frames == sum(len(k) for k in original)
    a, b = decoded(rec / "video.mp4"), decoded(tmp_path / "replay" / "video.mp4")
    assert a.shape == b.shape and np.abs(a.astype(int) - b.astype(int)).max() <= 2
    meta = json.loads((tmp_path / "replay" / "meta.json").read_text())
    assert meta["replay_of"].endswith("rec") and meta["complete"]


def test_replay_detects_a_different_world(tmp_path):
    app = make_app(FakeWorld(), tmp_path)
    app.run(max_frames=25, script=play_script)

    class Other(FakeWorld):
        def step(self, actions):
            return 255 - super().step(actions)

    result = replay_recording(
        str(tmp_path / "rec"), str(tmp_path / "replay"), progress=False, world_factory=lambda preset: Other()
    )
    assert not result.identical and result.matched == 0
