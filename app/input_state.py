"""Live input shared between the display loop (writer) and the generation thread (reader).

The display loop reports key presses/releases and relative mouse motion as they arrive and closes one
*video frame* of input per display tick (`end_frame`): the mouse motion of that tick becomes one per-frame
mouse value. When the generation thread starts a block it calls `take_block(T)`, which turns the input
*at that moment* into T identical action rows:

- keyboard: the keys held now, plus keys that were pressed and released since the last block (a quick
  tap still counts for one block);
- mouse: the mean per-frame mouse motion over the frames closed since the last block (so the total
  camera rotation the user made between two blocks is kept), scaled by the sensitivity, plus the
  keyboard camera keys, clamped to +-`mouse_clamp` per frame.

All methods are thread-safe.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from app.keymaps import KeyMap
from engine.actions import ActionBlock

MOUSE_UNITS_PER_PIXEL = 0.004  # model units per pixel of motion per frame at sensitivity 1


@dataclass
class InputSample:
    """What one block was generated with: the action rows and the raw key names behind them."""

    actions: ActionBlock
    keys: list[str]  # raw key names held (or tapped) when the block started
    mouse_pixels: tuple[float, float]  # raw relative motion (dx, dy) since the previous block


class InputState:
    def __init__(self, keymap: KeyMap, sensitivity: float = 1.0, mouse_clamp: float = 0.5):
        self.keymap = keymap
        self.sensitivity = sensitivity
        self.mouse_clamp = mouse_clamp
        self._lock = threading.Lock()
        self._held: set[str] = set()
        self._tapped: set[str] = set()  # pressed since the last take_block
        self._frame_motion = np.zeros(2, np.float64)  # (dx, dy) pixels in the open frame
        self._block_motion = np.zeros(2, np.float64)  # pixels over the frames closed since last block
        self._block_frames = 0
        self._last_frame_mouse = np.zeros(2, np.float32)  # for the HUD

    # --- writer side (display loop) ---
    def key_down(self, name: str) -> None:
        with self._lock:
            self._held.add(name)
            self._tapped.add(name)

    def key_up(self, name: str) -> None:
        with self._lock:
            self._held.discard(name)

    def release_all(self) -> None:
        """Forget held keys (window lost focus)."""
        with self._lock:
            self._held.clear()

    def mouse_motion(self, dx: float, dy: float) -> None:
        """Relative mouse motion in pixels (right and down positive, as pygame reports it)."""
        with self._lock:
            self._frame_motion += (dx, dy)

    def end_frame(self) -> None:
        """Close one video frame of input (called once per display tick)."""
        with self._lock:
            self._last_frame_mouse = self._pixels_to_mouse(self._frame_motion, 1)
            self._block_motion += self._frame_motion
            self._block_frames += 1
            self._frame_motion[:] = 0.0

    def scale_sensitivity(self, factor: float) -> float:
        with self._lock:
            self.sensitivity = float(np.clip(self.sensitivity * factor, 0.05, 20.0))
            return self.sensitivity

    # --- reader side (generation thread) ---
    def take_block(self, frames: int) -> InputSample:
        """Action rows for the next block of `frames` video frames, from the input at this moment."""
        with self._lock:
            keys = sorted(self._held | self._tapped)
            self._tapped.clear()
            motion = self._block_motion + self._frame_motion
            n = self._block_frames + (1 if self._frame_motion.any() else 0)
            self._block_motion[:] = 0.0
            self._frame_motion[:] = 0.0
            self._block_frames = 0
            keyboard = np.tile(self.keymap.keyboard_row(keys), (frames, 1))
            mouse = None
            if self.keymap.has_mouse:
                row = self.keymap.camera_row(keys) * self.sensitivity
                if self.keymap.mouse_look:
                    row = row + self._pixels_to_mouse(motion, max(n, 1))
                row = np.clip(row, -self.mouse_clamp, self.mouse_clamp)
                mouse = np.tile(row, (frames, 1))
            return InputSample(ActionBlock(keyboard, mouse), keys, (float(motion[0]), float(motion[1])))

    # --- HUD ---
    def snapshot(self) -> tuple[list[str], np.ndarray]:
        """(held keys, last frame's mouse [pitch, yaw]) for display."""
        with self._lock:
            return sorted(self._held), self._last_frame_mouse.copy()

    def _pixels_to_mouse(self, motion: np.ndarray, frames: int) -> np.ndarray:
        """Pixels (dx, dy) over `frames` frames -> per-frame [pitch, yaw]; mouse up = pitch up."""
        if not self.keymap.mouse_look:
            return np.zeros(2, np.float32)
        scale = MOUSE_UNITS_PER_PIXEL * self.sensitivity / frames
        return np.array([-motion[1] * scale, motion[0] * scale], np.float32) + 0.0  # no -0.0
