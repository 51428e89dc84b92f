"""Training batches for the world model from a `LatentCache`, built with the pipeline's own functions.

A batch is one sequence of latent frames per sample at absolute positions start .. start + F - 1 of a
clip (position 0 = the start image): clean latents, cond_concat = `engine.conditioning.mask_latents`
of the condition-stream latents (exactly what the streaming session feeds the model), and action
windows from `engine.actions.gather_windows`. Per-block timesteps and loss weights are drawn here too.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import torch

from engine.actions import Windowing, gather_windows, window_indices
from engine.conditioning import MASK_CHANNELS, mask_latents
from engine.scheduler import sample_train_timesteps
from engine.train.latent_cache import LatentCache


@dataclass
class WorldBatch:
    x0: torch.Tensor  # [B, F, C, h, w] clean latents
    cond: torch.Tensor  # [B, F, 4 + C, h, w] mask + image latents
    keyboard: torch.Tensor  # [B, F, r w, K] windows (12 frames for r = 4, w = 3)
    mouse: torch.Tensor  # [B, F, r w, 2] windows
    start: int  # absolute latent position of frame 0 of the sequence

    def to(self, device) -> "WorldBatch":
        tensors = (self.x0, self.cond, self.keyboard, self.mouse)
        return WorldBatch(*(t.to(device) for t in tensors), self.start)


def sample_batch(
    cache: LatentCache,
    batch: int,
    num_latents: int,
    start: int,
    gen: torch.Generator,
    clips: Optional[list] = None,
    condition: str = "image",
    frames_per_block: int = 3,
    windowing: Optional[Windowing] = None,
) -> WorldBatch:
    """`batch` sequences of `num_latents` latents at positions start.. (clip indices from gen or `clips`).

    condition: the preset's; "last_latent" conditions each block on the clean latent just before it
    (`engine.conditioning.anchor_latents`); "image" on the condition stream of [start frame, gray...].
    windowing: the preset's (`engine.actions.preset_windowing`); default the cache's temporal ratio with
    the official 3 latent windows. Its ratio must be the cache's.
    """
    w = windowing or Windowing(cache.temporal)
    if w.temporal != cache.temporal:
        raise ValueError(f"windowing ratio {w.temporal} != the latent cache's {cache.temporal}")
    r = cache.start_cond.shape[1]
    needed = int(window_indices(start, num_latents, w).max()) + 1
    xs, conds, kbs, mss = [], [], [], []
    picks = clips if clips is not None else torch.randint(cache.num_clips, (batch,), generator=gen).tolist()
    for c in picks:
        ep, j0 = cache.starts[c].tolist()
        l0 = int(cache.ep_latent0[ep])
        pos = range(start, start + num_latents)

        def latent(p: int, c=c, first=l0 + j0) -> torch.Tensor:
            return cache.start_cond[c, 0] if p == 0 else cache.latents[first + p]

        x = [latent(p) for p in pos]
        if condition == "last_latent":
            cd = [latent(max(0, p // frames_per_block * frames_per_block - 1)) for p in pos]
        else:
            cd = [cache.start_cond[c, p] if p < r else cache.gray_cond for p in pos]
        xs.append(torch.stack(x))
        conds.append(torch.stack(cd))
        f0 = cache.clip_frame0(c)
        frames = slice(f0, f0 + needed)  # clip frames the action windows read
        kbs.append(cache.keyboard[frames])
        mss.append(cache.mouse[frames])
    cond = torch.stack(conds).float()  # [B, F, C, h, w]
    keyboard, mouse = torch.stack(kbs), torch.stack(mss)  # [B, T, K], [B, T, 2] from clip frame 0
    return WorldBatch(
        x0=torch.stack(xs).float(),
        cond=mask_latents(cond, start),
        keyboard=gather_windows(keyboard, 0, start, num_latents, w),
        mouse=gather_windows(mouse, 0, start, num_latents, w),
        start=start,
    )


def noisy_anchors(
    batch: WorldBatch, frames_per_block: int, sigma_max: float, gen: torch.Generator
) -> WorldBatch:
    """Blend the anchors of blocks after block 0 with noise, sigma ~ U(0, sigma_max) per sample.

    At play time those anchors are the model's own last latents, never exact; block 0's anchor is the
    start image's latent, exact in both places, and stays clean.
    """
    b, n = batch.cond.shape[:2]
    sigma = torch.rand(b, generator=gen) * sigma_max
    later = (torch.arange(batch.start, batch.start + n) >= frames_per_block).float()  # [F]
    s = (sigma[:, None] * later[None]).view(b, n, 1, 1, 1)
    noise = torch.randn(batch.cond[:, :, MASK_CHANNELS:].shape, generator=gen).to(batch.cond.device)
    s = s.to(batch.cond.device)
    lat = (1 - s) * batch.cond[:, :, MASK_CHANNELS:] + s * noise
    return replace(batch, cond=torch.cat([batch.cond[:, :, :MASK_CHANNELS], lat], dim=2))


def max_start_block(cache: LatentCache, num_latents: int, frames_per_block: int) -> int:
    """Largest block offset whose sequence of `num_latents` fits in every cached clip."""
    clip_len = int(cache.meta["clip_latents"])
    if num_latents > clip_len:
        raise ValueError(
            f"sequences of {num_latents} latents need a cache of clips >= that; it has {clip_len}"
        )
    return (clip_len - num_latents) // frames_per_block


def block_timesteps(
    batch: int,
    blocks: int,
    frames_per_block: int,
    shift: float,
    few_step: float,
    few_step_t: torch.Tensor,
    gen: torch.Generator,
) -> torch.Tensor:
    """One timestep per block, [B, blocks * frames_per_block]: a sampler step (prob `few_step`) or table."""
    table = sample_train_timesteps((batch, blocks), shift, gen)
    pick = few_step_t[torch.randint(len(few_step_t), (batch, blocks), generator=gen)]
    use = torch.rand(batch, blocks, generator=gen) < few_step
    t = torch.where(use, pick, table)
    return t.repeat_interleave(frames_per_block, dim=1)
