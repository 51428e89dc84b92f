"""A window recording is one session: Backspace continues the recording in DIR_2, and the trainers read
the parent folder as one episode per session (README, "One folder per session")."""

import json

import pygame

from engine.train.episodes import load_frame_episodes
from tests.test_app_support import FakeWorld
from tests.test_app_window import key, make_app


def test_backspace_continues_the_recording_in_dir_2(tmp_path):
    app = make_app(FakeWorld(), tmp_path)  # records into tmp_path/rec

    def script(app, tick):
        if tick == 30:
            key(pygame.KEYDOWN, pygame.K_BACKSPACE)

    assert app.run(max_frames=70, script=script) == 0
    folders = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("rec"))
    assert folders == ["rec", "rec_2"]
    for name in folders:
        assert json.loads((tmp_path / name / "meta.json").read_text())["complete"]
    episodes = load_frame_episodes([str(tmp_path)])
    assert len(episodes) == 2 and all(len(e) > 0 for e in episodes)
