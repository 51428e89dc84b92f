"""A tiny deterministic action-driven world for tests: a periodic texture seen through a moving window.

The camera position (y, x) in texture pixels moves by `shift(keyboard, mouse)` per video frame:
  D / A (strafe right / left): x += key_speed / x -= key_speed  -> the image content moves left / right
  W / S (forward / back):      y -= key_speed / y += key_speed  -> the content moves down / up
  mouse yaw (right +):         x += mouse_speed * yaw
  mouse pitch (up +):          y -= mouse_speed * pitch
So frame_{i+1}[y, x] == frame_i[y + dy, x + dx] wherever both are in view, exactly when the shift is
whole pixels (the texture wraps around; it is texture_scale times the frame size).
Frame: the texture window at (round(y), round(x)), uint8 [H, W, 3].

Blocks and actions follow engine.worlds / engine.actions exactly like the ViZDoom world: `step` returns the
current frame first, and each action takes frame i to frame i+1. `start(image)` uses the image itself
as the (wrapping) texture; without one the texture is smooth periodic colour noise from the seed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from engine.actions import ActionBlock, block_video_frames
from engine.worlds import WorldSpec


def periodic_texture(height: int, width: int, seed: int, max_freq: int = 5) -> np.ndarray:
    """Smooth colour noise that wraps around: uint8 [height, width, 3]."""
    rng = np.random.default_rng(seed)
    spec = np.zeros((3, height, width // 2 + 1), np.complex128)
    f = max_freq + 1
    spec[:, :f, :f] = rng.normal(size=(3, f, f)) + 1j * rng.normal(size=(3, f, f))
    spec[:, -max_freq:, :f] = rng.normal(size=(3, max_freq, f)) + 1j * rng.normal(size=(3, max_freq, f))
    spec[:, 0, 0] = 0
    field = np.fft.irfft2(spec, s=(height, width))  # [3, H, W]
    field /= np.abs(field).max(axis=(1, 2), keepdims=True) + 1e-8
    return np.clip(127.5 + 120 * field, 0, 255).astype(np.uint8).transpose(1, 2, 0)  # [H, W, 3]


class SyntheticWorld:
    """World protocol over a scrolling periodic texture; see the module docstring."""

    def __init__(
        self,
        height: int = 32,
        width: int = 32,
        key_speed: float = 2.0,
        mouse_speed: float = 8.0,
        fps: float = 17.5,
        texture_scale: int = 2,
    ):
        self.spec = WorldSpec("synthetic", "universal", height, width, fps, 4, True)
        self.key_speed, self.mouse_speed, self.texture_scale = key_speed, mouse_speed, texture_scale
        self.texture = np.zeros((height, width, 3), np.uint8)
        self.pos = np.zeros(2)  # (y, x) in texture pixels
        self.tic = 0
        self.reset_pending = False
        self.last_resets: list[int] = []
        self._block = 0

    @property
    def actions_needed(self) -> int:
        return block_video_frames(self._block)

    @property
    def block_index(self) -> int:
        return self._block

    def shift(self, keyboard: np.ndarray, mouse: np.ndarray) -> tuple[float, float]:
        """(dy, dx) camera motion for one frame's action; the content moves by (-dy, -dx)."""
        w, s, a, d = (float(k > 0.5) for k in keyboard)
        dy = self.key_speed * (s - w) - self.mouse_speed * float(mouse[0])
        dx = self.key_speed * (d - a) + self.mouse_speed * float(mouse[1])
        return dy, dx

    def start(self, image: Optional[np.ndarray] = None, seed: int = 0) -> None:
        h, w = self.spec.height, self.spec.width
        if image is not None:
            if image.shape != (h, w, 3) or image.dtype != np.uint8:
                raise ValueError(f"start image must be uint8 [{h}, {w}, 3], got {image.dtype} {image.shape}")
            self.texture = image.copy()
        else:
            self.texture = periodic_texture(h * self.texture_scale, w * self.texture_scale, seed)
        rng = np.random.default_rng(seed)
        self.pos = np.array([rng.integers(self.texture.shape[0]), rng.integers(self.texture.shape[1])], float)
        self.tic = 0
        self._block = 0

    @property
    def frame(self) -> np.ndarray:
        """uint8 [H, W, 3]: the texture window at the rounded camera position."""
        y, x = (int(np.round(p)) for p in self.pos)
        th, tw = self.texture.shape[:2]
        rows = (y + np.arange(self.spec.height)) % th
        cols = (x + np.arange(self.spec.width)) % tw
        return self.texture[rows][:, cols]

    @property
    def depth(self) -> np.ndarray:
        """Open space everywhere (so the explorer can drive this world)."""
        return np.full((self.spec.height, self.spec.width), 255, np.uint8)

    @property
    def pose(self) -> np.ndarray:
        return np.array([self.pos[1], self.pos[0], 0.0, 0.0, 0.0], np.float32)

    def advance(self, keyboard: np.ndarray, mouse: np.ndarray) -> np.ndarray:
        self.pos += self.shift(keyboard, mouse)
        self.tic += 1
        return self.frame

    def step(self, actions: ActionBlock) -> np.ndarray:
        """uint8 [T, H, W, 3], T == actions_needed: the current frame, then the result of each action but
        the last (which produces the next block's first frame)."""
        actions.check(4, True, self.actions_needed)
        frames = []
        for i in range(len(actions)):
            frames.append(self.frame)
            self.advance(actions.keyboard[i], actions.mouse[i])
        self._block += 1
        return np.stack(frames)

    def close(self) -> None:
        pass


def random_actions(frames: int, seed: int, mouse_scale: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """Random actions held for 2-8 frames: keyboard float32 [N, 4] with one key (or none) pressed, mouse
    float32 [N, 2] with pitch or yaw in mouse_scale * {-2..2}: whole-pixel shifts with the default speeds."""
    rng = np.random.default_rng(seed)
    keyboard, mouse = np.zeros((frames, 4), np.float32), np.zeros((frames, 2), np.float32)
    i = 0
    while i < frames:
        n = int(rng.integers(2, 9))
        k = int(rng.integers(0, 5))
        if k < 4:
            keyboard[i : i + n, k] = 1.0
        mouse[i : i + n, int(rng.integers(0, 2))] = mouse_scale * int(rng.integers(-2, 3))
        i += n
    return keyboard, mouse


def record_synthetic(
    out: str | Path,
    episodes: int = 2,
    frames: int = 65,
    seed: int = 0,
    height: int = 32,
    width: int = 32,
    **world_kwargs,
) -> Path:
    """Write a small synthetic dataset (one shard per episode, random actions) in the shard format."""
    from engine.data.shards import write_index, write_shard

    world = SyntheticWorld(height, width, **world_kwargs)
    entries = []
    for ep in range(episodes):
        world.start(seed=seed + ep)
        keyboard, mouse = random_actions(frames, seed * 1000 + ep)
        video = []
        for i in range(frames):
            video.append(world.frame)
            world.advance(keyboard[i], mouse[i])
        meta = dict(map="synthetic", seed=seed + ep)
        entries.append(
            write_shard(
                out,
                f"shard-{ep:05d}",
                np.stack(video),
                keyboard,
                mouse,
                episode=np.full(frames, ep),
                meta=meta,
            )
        )
    header = dict(
        height=height,
        width=width,
        fps=world.spec.fps,
        mode="universal",
        keys=["W", "S", "A", "D"],
        source=dict(world="synthetic", **world_kwargs),
    )
    return write_index(out, header, entries)
