"""Split screen: the real game (ViZDoom world) and the dream (neural world) side by side.

`CompareWorld` is itself a World: both worlds take the same actions every block and its frames are
[T, H, 2W, 3] with the real game on the left and the dream on the right, so the window, the HUD,
recording, headless runs and replay all work on it unchanged. The dream starts from the real game's
first frame. `record_sides(DIR)` also writes `real.mp4` and `dream.mp4` (headless `--compare`).
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np
from PIL import Image

from app.recorder import open_mp4_writer
from engine.actions import ActionBlock
from engine.config import Preset
from engine.worlds import World, WorldSpec


def resize_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 [T, h, w, 3] -> [T, height, width, 3] (bicubic), unchanged when the size already matches."""
    if frames.shape[1:3] == (height, width):
        return frames
    return np.stack([np.asarray(Image.fromarray(f).resize((width, height), Image.BICUBIC)) for f in frames])


class CompareWorld:
    def __init__(self, real: World, dream: World):
        r, d = real.spec, dream.spec
        if (r.mode, r.keyboard_dim, r.has_mouse) != (d.mode, d.keyboard_dim, d.has_mouse):
            raise ValueError(
                f"--compare needs worlds with the same action space: {r.name} is {r.mode} "
                f"({r.keyboard_dim} keys, mouse {r.has_mouse}), {d.name} is {d.mode} "
                f"({d.keyboard_dim} keys, mouse {d.has_mouse})"
            )
        self.real, self.dream = real, dream
        self.spec = WorldSpec(
            f"{r.name}|{d.name}", r.mode, r.height, 2 * r.width, r.fps, r.keyboard_dim, r.has_mouse
        )
        self.split_labels = (f"real: {r.name}", f"dream: {d.name}")  # left half, right half (window)
        self._writers: list = []
        self._side_frames = 0
        self._max_side_frames: Optional[int] = None

    @property
    def actions_needed(self) -> int:
        if self.real.actions_needed != self.dream.actions_needed:
            raise RuntimeError(
                f"worlds disagree on block size: {self.real.actions_needed} vs {self.dream.actions_needed}"
            )
        return self.real.actions_needed

    @property
    def block_index(self) -> int:
        return self.dream.block_index

    def start(self, image: Optional[np.ndarray], seed: int = 0) -> None:
        """Start the real game, then the dream from the game's current frame (`image` is not used)."""
        self.real.start(None, seed=seed)
        first = getattr(self.real, "frame", None)
        if first is None:
            first = image
        d = self.dream.spec
        self.dream.start(resize_frames(first[None], d.height, d.width)[0], seed=seed)

    def step(self, actions: ActionBlock) -> np.ndarray:
        real = self.real.step(actions)  # [T, H, W, 3]
        dream = resize_frames(self.dream.step(actions), self.real.spec.height, self.real.spec.width)
        for frame_r, frame_d in zip(real, dream, strict=True):
            if self._max_side_frames is not None and self._side_frames >= self._max_side_frames:
                break
            for writer, frame in zip(self._writers, (frame_r, frame_d), strict=False):
                writer.send(np.ascontiguousarray(frame))
            self._side_frames += 1 if self._writers else 0
        return np.concatenate([real, dream], axis=2)  # [T, H, 2W, 3]

    def record_sides(self, out_dir: str, max_frames: Optional[int] = None) -> None:
        """Also write the two halves to out_dir/real.mp4 and out_dir/dream.mp4."""
        os.makedirs(out_dir, exist_ok=True)
        r = self.real.spec
        for name in ("real.mp4", "dream.mp4"):
            self._writers.append(open_mp4_writer(os.path.join(out_dir, name), r.width, r.height, r.fps))
        self._max_side_frames = max_frames

    def close(self) -> None:
        for writer in self._writers:
            writer.close()
        self._writers = []
        self.real.close()
        self.dream.close()


def compare_world(dream_preset: Preset, real_preset: Preset, device: str, dtype: str) -> CompareWorld:
    """The --compare world: `real_preset` (normally vizdoom) beside the neural `dream_preset` (its
    weight overrides folded in, `engine.config.with_weights`)."""
    from engine.worlds import build_world

    if real_preset.world != "vizdoom":
        raise ValueError(f"--compare-preset {real_preset.name!r} is not a real game (world: vizdoom)")
    if dream_preset.world == "vizdoom":
        raise ValueError(
            f"--compare needs a neural world model as --preset, got the game preset {dream_preset.name!r}"
        )
    real = build_world(real_preset)
    try:
        dream = build_world(dream_preset, device=device, dtype=dtype)
    except BaseException:
        real.close()
        raise
    return CompareWorld(real, dream)
