"""Actions at video-frame rate, and their windowing onto latent frames.

Convention (whole project): `actions[i]` is the input held while video frame i is shown; it is what
takes the world from frame i to frame i+1. Keyboard rows are multi-hot in the mode's key order
(universal: [W, S, A, D] = forward, back, left, right); mouse rows are [pitch, yaw] in model units
(1.0 = 15 degrees per video frame; up and right positive).

Matrix-Game 2.0 gives latent frame f the video-rate actions of frames [4f - 12, 4f) (indices below 0
clamped to frame 0); in general, with the VAE's temporal ratio r and `windows_size` w, frames
[r f - r w, r f) (`Windowing`, built from the preset by `preset_windowing`). `window_indices` computes
that rule and both the training path and the streaming path use it, so the two cannot disagree.
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


@dataclass(frozen=True)
class Windowing:
    """How video-rate actions map onto latent frames, from the preset (never literals).

    temporal: video frames per latent frame (the VAE's ratio r: 4 for Wan and the official rule, 1 for
    a per-frame VAE); windows: latent frames of actions each latent sees (`windows_size`, w). Latent
    frame f ends at video frame r f and sees the actions of frames [r f - r w, r f), clamped to >= 0.
    """

    temporal: int = 4
    windows: int = 3

    @property
    def window_frames(self) -> int:
        """Video frames in one latent's action window: r w (12 for the official 4 x 3)."""
        return self.temporal * self.windows

    def video_frames(self, num_latents: int) -> int:
        """Video frames decoded from `num_latents` latent frames: 1 + r (n - 1)."""
        return 1 + self.temporal * (num_latents - 1) if num_latents > 0 else 0

    def block_frames(self, block_index: int, frames_per_block: int) -> int:
        """Video frames (and actions) of a block: 1 + r (F - 1) for block 0, r F after (9, 12 for r = 4,
        F = 3; F, F for r = 1)."""
        return self.video_frames(frames_per_block) if block_index == 0 else self.temporal * frames_per_block

    def history_frames(self, frames_per_block: int) -> int:
        """Video frames of actions a streaming session keeps: one block plus one window's reach, r (F + w)."""
        return self.temporal * (frames_per_block + self.windows)


def preset_windowing(preset) -> Windowing:
    """The preset's windowing: its VAE's temporal ratio and its action config's `windows_size`.

    The action module reads windows of `vae_time_compression_ratio * windows_size` frames, so that ratio
    must be the VAE's (`engine.config` checks it when a preset is loaded)."""
    act = preset.model.action
    return Windowing(preset.vae.temporal, act.windows_size if act is not None else Windowing.windows)


def window_indices(start_frame: int, num_frames: int, w: Windowing) -> torch.Tensor:
    """Absolute video-frame indices of the action window of each latent frame.

    Returns LongTensor [F, r w]: row f is frames [r(s+f) - r w, r(s+f)) clamped to >= 0.
    """
    pad = w.window_frames
    latents = torch.arange(start_frame, start_frame + num_frames)
    idx = w.temporal * latents[:, None] - pad + torch.arange(pad)[None, :]  # [F, r w]
    return idx.clamp_(min=0)


def gather_windows(
    actions: torch.Tensor, first_index: int, start_frame: int, num_frames: int, w: Windowing
) -> torch.Tensor:
    """Action windows for latent frames [start_frame, start_frame + num_frames).

    actions: [B, M, C] holding video frames first_index .. first_index + M - 1 (a history that may have
    dropped old frames). Returns [B, F, r w, C].
    """
    idx = window_indices(start_frame, num_frames, w) - first_index  # [F, r w]
    if idx.min() < 0 or idx.max() >= actions.shape[1]:
        raise ValueError(
            f"action history covers frames [{first_index}, {first_index + actions.shape[1]}) but latent "
            f"frames [{start_frame}, {start_frame + num_frames}) need [{int(idx.min()) + first_index}, "
            f"{int(idx.max()) + first_index}]"
        )
    return actions[:, idx]  # [B, F, r w, C]


OFFICIAL = Windowing(4, 3)  # Matrix-Game 2.0: 4 video frames per latent, 3 latents of actions


def block_video_frames(block_index: int, frames_per_block: int = 3, w: Windowing = OFFICIAL) -> int:
    """Video frames of block `block_index` (see `Windowing.block_frames`); the default is the
    official 9 / 12, which the ViZDoom and synthetic worlds use to match a Matrix-Game-style model."""
    return w.block_frames(block_index, frames_per_block)
