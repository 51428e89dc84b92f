"""A world with its own start state (the game) still gets the start.png a recording promises: its
first frame."""

import json

import numpy as np
from PIL import Image

from app.bench_actions import ScriptedActions
from app.headless import run_headless
from tests.test_app_support import FakeWorld, gradient_image


class OwnStartWorld(FakeWorld):
    """Ignores the start image, like the ViZDoom world, and exposes its current frame as `frame`."""

    def start(self, image, seed: int = 0) -> None:
        super().start(gradient_image(self.spec.height, self.spec.width), seed)

    @property
    def frame(self) -> np.ndarray:
        return self._image


def test_headless_run_of_own_start_world_writes_start_png(tmp_path):
    world = OwnStartWorld()
    actions = ScriptedActions("random", "universal", 9, 4, True)
    run_headless(world, None, actions, 9, str(tmp_path / "run"), 0, {"preset": "fake"}, progress=False)
    start = np.asarray(Image.open(tmp_path / "run" / "start.png"))
    assert np.array_equal(start, world.frame)
    assert json.loads((tmp_path / "run" / "meta.json").read_text())["start_image_file"] == "start.png"
