"""Helpers for the app tests: a tiny deterministic World whose frames depend on the actions."""

from __future__ import annotations

import os

import numpy as np

from engine.actions import ActionBlock, block_video_frames
from engine.worlds import WorldSpec

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")


class FakeWorld:
    """Frames: the start image scrolled by the cumulative yaw, brightened by W, plus seeded noise."""

    def __init__(
        self,
        height: int = 32,
        width: int = 48,
        fps: float = 12.0,
        fail_at_block: int = -1,
        mode: str = "universal",
        keyboard_dim: int = 4,
        has_mouse: bool = True,
    ):
        self.spec = WorldSpec("fake", mode, height, width, fps, keyboard_dim, has_mouse)
        self.fail_at_block = fail_at_block
        self.received: list[ActionBlock] = []
        self._block = -1

    @property
    def actions_needed(self) -> int:
        return block_video_frames(max(self._block, 0))

    @property
    def block_index(self) -> int:
        return max(self._block, 0)

    def start(self, image, seed: int = 0) -> None:
        self._image = np.zeros((self.spec.height, self.spec.width, 3), np.uint8) if image is None else image
        self._rng = np.random.default_rng(seed)
        self._yaw = 0.0
        self._bright = 0.0
        self._block = 0

    def step(self, actions: ActionBlock) -> np.ndarray:
        actions.check(self.spec.keyboard_dim, self.spec.has_mouse, self.actions_needed)
        if self._block == self.fail_at_block:
            raise RuntimeError("simulated failure inside the world")
        self.received.append(actions)
        frames = []
        for i in range(len(actions)):
            if actions.mouse is not None:
                self._yaw += float(actions.mouse[i, 1])
            self._bright += float(actions.keyboard[i, 0])
            img = np.roll(self._image.astype(np.int16), int(round(self._yaw * 20)), axis=1) + int(
                self._bright
            )
            img = img + self._rng.integers(0, 4, img.shape)
            frames.append(np.clip(img, 0, 255).astype(np.uint8))
        self._block += 1
        return np.stack(frames)

    def close(self) -> None:
        pass


def gradient_image(height: int = 32, width: int = 48) -> np.ndarray:
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None, None]
    return np.concatenate(
        [
            np.broadcast_to(x, (height, width, 1)),
            np.broadcast_to(y, (height, width, 1)),
            np.full((height, width, 1), 90.0),
        ],
        axis=2,
    ).astype(np.uint8)
