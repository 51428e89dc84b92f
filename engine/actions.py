"""Actions at video-frame rate, and their windowing onto latent frames.

Convention (whole project): `actions[i]` is the input held while video frame i is shown; it is what
takes the world from frame i to frame i+1. Keyboard rows are multi-hot in the mode's key order
(universal: [W, S, A, D] = forward, back, left, right); mouse rows are [pitch, yaw] in model units
(1.0 = 15 degrees per video frame; up and right positive).

Matrix-Game 2.0 gives latent frame f the video-rate actions of frames [4f - 12, 4f) (indices below 0
clamped to frame 0): `window_indices` computes exactly that rule and both the training path and the
streaming path use it, so the two cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch


@dataclass
class ActionBlock:
    """Per-video-frame actions for one block. keyboard: float32 [T, K]; mouse: float32 [T, 2] or None."""

    keyboard: np.ndarray
    mouse: Optional[np.ndarray] = None

    def __post_init__(self):
        self.keyboard = np.asarray(self.keyboard, dtype=np.float32)
        if self.keyboard.ndim != 2:
            raise ValueError(f"keyboard actions must be [T, K], got shape {self.keyboard.shape}")
        if self.mouse is not None:
            self.mouse = np.asarray(self.mouse, dtype=np.float32)
            if self.mouse.shape != (len(self.keyboard), 2):
                raise ValueError(
                    f"mouse actions must be [T, 2] with T={len(self.keyboard)}, got {self.mouse.shape}"
                )

    def __len__(self) -> int:
        return len(self.keyboard)

    def check(self, keyboard_dim: int, has_mouse: bool, frames: Optional[int] = None) -> None:
        """Raise ValueError unless this block fits a world with `keyboard_dim` keys and (no) mouse."""
        if self.keyboard.shape[1] != keyboard_dim:
            raise ValueError(
                f"expected {keyboard_dim} keyboard values per frame, got {self.keyboard.shape[1]}"
            )
        if has_mouse and self.mouse is None:
            raise ValueError("this world needs mouse actions [pitch, yaw] per frame")
        if not has_mouse and self.mouse is not None:
            raise ValueError("this world has no mouse input; drop the mouse actions")
        if frames is not None and len(self) != frames:
            raise ValueError(f"expected actions for {frames} video frames, got {len(self)}")

    @staticmethod
    def idle(frames: int, keyboard_dim: int, has_mouse: bool) -> "ActionBlock":
        mouse = np.zeros((frames, 2), np.float32) if has_mouse else None
        return ActionBlock(np.zeros((frames, keyboard_dim), np.float32), mouse)

    @staticmethod
    def concat(blocks: list["ActionBlock"]) -> "ActionBlock":
        mouse = None if blocks[0].mouse is None else np.concatenate([b.mouse for b in blocks])
        return ActionBlock(np.concatenate([b.keyboard for b in blocks]), mouse)

    def slice(self, start: int, stop: int) -> "ActionBlock":
        mouse = None if self.mouse is None else self.mouse[start:stop]
        return ActionBlock(self.keyboard[start:stop], mouse)


def video_frames(num_latents: int, temporal: int = 4) -> int:
    """Video frames decoded from `num_latents` latent frames: 1 + 4 (n - 1)."""
    return 1 + temporal * (num_latents - 1) if num_latents > 0 else 0


def block_video_frames(block_index: int, frames_per_block: int = 3, temporal: int = 4) -> int:
    """Video frames (and actions) of block `block_index`: 9 for block 0, 12 after (3 latents per block)."""
    return 1 + temporal * (frames_per_block - 1) if block_index == 0 else temporal * frames_per_block


def window_indices(start_frame: int, num_frames: int, temporal: int = 4, windows: int = 3) -> torch.Tensor:
    """Absolute video-frame indices of the action window of each latent frame.

    Returns LongTensor [F, temporal * windows]: row f is frames [4(s+f) - 12, 4(s+f)) clamped to >= 0.
    """
    pad = temporal * windows
    latents = torch.arange(start_frame, start_frame + num_frames)
    idx = temporal * latents[:, None] - pad + torch.arange(pad)[None, :]  # [F, 12]
    return idx.clamp_(min=0)


def gather_windows(
    actions: torch.Tensor,
    first_index: int,
    start_frame: int,
    num_frames: int,
    temporal: int = 4,
    windows: int = 3,
) -> torch.Tensor:
    """Action windows for latent frames [start_frame, start_frame + num_frames).

    actions: [B, M, C] holding video frames first_index .. first_index + M - 1 (a history that may have
    dropped old frames). Returns [B, F, temporal * windows, C].
    """
    idx = window_indices(start_frame, num_frames, temporal, windows) - first_index  # [F, 12]
    if idx.min() < 0 or idx.max() >= actions.shape[1]:
        raise ValueError(
            f"action history covers frames [{first_index}, {first_index + actions.shape[1]}) but latent "
            f"frames [{start_frame}, {start_frame + num_frames}) need [{int(idx.min()) + first_index}, "
            f"{int(idx.max()) + first_index}]"
        )
    return actions[:, idx]  # [B, F, 12, C]
