"""Random consecutive-frame clips for VAE training, from episode frames (`episodes.load_frame_episodes`).

Clips are drawn with an explicit `torch.Generator`, so the data position is part of the RNG state and
a resumed run sees exactly the clips an uninterrupted one would.
"""

from __future__ import annotations

import numpy as np
import torch


class FrameClips:
    """Random clips [B, T, 3, h, w] in [-1, 1] (optionally random crops) from a list of episodes."""

    def __init__(self, episodes: list[np.ndarray], clip_frames: int, crop: tuple[int, int] = (0, 0)):
        self.episodes = [e for e in episodes if len(e) >= clip_frames]
        if not self.episodes:
            raise ValueError(f"no episode has {clip_frames} frames")
        self.clip_frames, self.crop = clip_frames, crop
        h, w = self.episodes[0].shape[1:3]
        if crop[0] and (crop[0] > h or crop[1] > w or crop[0] % 8 or crop[1] % 8):
            raise ValueError(f"crop {crop} must be multiples of 8 within the frame size {(h, w)}")

    def sample(self, batch: int, gen: torch.Generator) -> torch.Tensor:
        clips = []
        for _ in range(batch):
            e = self.episodes[int(torch.randint(len(self.episodes), (1,), generator=gen))]
            s = int(torch.randint(len(e) - self.clip_frames + 1, (1,), generator=gen))
            x = e[s : s + self.clip_frames]  # [T, H, W, 3]
            if self.crop[0]:
                ch, cw = self.crop
                y0 = int(torch.randint(x.shape[1] - ch + 1, (1,), generator=gen))
                x0 = int(torch.randint(x.shape[2] - cw + 1, (1,), generator=gen))
                x = x[:, y0 : y0 + ch, x0 : x0 + cw]
            clips.append(torch.from_numpy(np.array(x)))  # a copy: memory-mapped frames are read-only
        v = torch.stack(clips).permute(0, 1, 4, 2, 3).float()  # [B, T, 3, H, W]
        return v / 127.5 - 1.0

    def fixed(self, count: int, seed: int = 1234) -> torch.Tensor:
        """A deterministic set of full-frame clips (for held-out evaluation)."""
        gen = torch.Generator().manual_seed(seed)
        saved, self.crop = self.crop, (0, 0)
        try:
            return self.sample(count, gen)
        finally:
            self.crop = saved
