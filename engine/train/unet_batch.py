"""Training samples for the latent U-Net world from a `LatentCache` (VAE temporal ratio 1: latent j of
an episode is video frame j).

A sample is (context [K, C, h, w], actions [K, A], target [C, h, w]) for a frame p of an episode: the
latents of frames p - K .. p - 1, the actions held on them, and the latent of frame p. Most samples
take p anywhere with p >= K; a share `start_share` reproduces the first frames of a session instead:
a cached clip start (the start frame encoded alone, as a session encodes its start image), p = 1 .. K
frames after it, the context padded with the start latent and the actions before it zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.train.latent_cache import LatentCache


@dataclass
class UNetBatch:
    context: torch.Tensor  # [B, K, C, h, w] float32
    actions: torch.Tensor  # [B, K, A] float32
    target: torch.Tensor  # [B, C, h, w] float32

    def to(self, device) -> "UNetBatch":
        return UNetBatch(self.context.to(device), self.actions.to(device), self.target.to(device))

    def rows(self, rows: slice) -> "UNetBatch":
        return UNetBatch(self.context[rows], self.actions[rows], self.target[rows])


class UNetSampler:
    """Draws `UNetBatch`es; `mouse` False drops the mouse columns (a keyboard-only world). With `history`
    h > 0 each sample's context holds h more (older) frames, K + h in all, for `own_context`."""

    def __init__(self, cache: LatentCache, context_frames: int, mouse: bool = True, history: int = 0):
        if cache.temporal != 1:
            raise ValueError(
                f"the U-Net world trains on a temporal-1 latent cache, this one has {cache.temporal}"
            )
        self.cache, self.mouse = cache, mouse
        self.k = context_frames + history  # frames of context a sample carries
        n = cache.ep_latents
        if int(n.min()) <= self.k:
            raise ValueError(f"every episode needs more than {self.k} frames")
        # every frame with a full context inside its episode: (global latent index, global frame index)
        self.latent_index = torch.cat(
            [cache.ep_latent0[e] + torch.arange(self.k, int(n[e])) for e in range(len(n))]
        )
        self.frame_index = torch.cat(
            [cache.ep_frame0[e] + torch.arange(self.k, int(n[e])) for e in range(len(n))]
        )

    def __len__(self) -> int:
        return len(self.latent_index)

    def _actions(self, frames: torch.Tensor) -> torch.Tensor:
        """Action rows of global frame indices [..., K]; index -1 = before the session (zeros)."""
        rows = self.cache.keyboard.float()
        if self.mouse:
            rows = torch.cat([rows, self.cache.mouse.float()], dim=1)
        rows = torch.cat([rows, torch.zeros(1, rows.shape[1])])  # row -1: zeros
        return rows[frames]

    def sample(self, batch: int, gen: torch.Generator, start_share: float = 0.0) -> UNetBatch:
        starts = int((torch.rand(batch, generator=gen) < start_share).sum())
        parts = [self._anywhere(batch - starts, gen)]
        if starts:
            parts.append(self._after_start(starts, gen))
        return UNetBatch(
            *(torch.cat([getattr(p, f) for p in parts]) for f in ("context", "actions", "target"))
        )

    def _anywhere(self, n: int, gen: torch.Generator) -> UNetBatch:
        pick = torch.randint(len(self), (n,), generator=gen)
        lat, fr = self.latent_index[pick], self.frame_index[pick]
        back = torch.arange(-self.k, 0)
        latents = self.cache.latents
        return UNetBatch(
            context=latents[lat[:, None] + back].float(),
            actions=self._actions(fr[:, None] + back),
            target=latents[lat].float(),
        )

    def _after_start(self, n: int, gen: torch.Generator) -> UNetBatch:
        c = self.cache
        clips = torch.randint(c.num_clips, (n,), generator=gen)
        ep, j0 = c.starts[clips, 0], c.starts[clips, 1]
        room = (c.ep_latents[ep] - 1 - j0).clamp(max=self.k)  # frames after the start inside the episode
        p = 1 + (torch.rand(n, generator=gen) * room).long().minimum(room - 1)  # 1 .. room
        pos = p[:, None] + torch.arange(-self.k, 0)  # [n, K] positions relative to the start
        first = c.ep_latent0[ep] + j0  # global latent index of the start frame
        lat = c.latents[(first[:, None] + pos.clamp(min=0))].float()
        start = c.start_cond[clips, 0].float()  # the start frame encoded alone
        lat = torch.where((pos <= 0)[:, :, None, None, None], start[:, None], lat)
        frames = c.ep_frame0[ep][:, None] + j0[:, None] + pos
        frames = torch.where(pos < 0, torch.full_like(frames, -1), frames)
        return UNetBatch(context=lat, actions=self._actions(frames), target=c.latents[first + p].float())


@torch.no_grad()
def own_context(
    model,
    batch: UNetBatch,
    context_frames: int,
    share: float,
    cfg,
    sigmas: torch.Tensor,
    gen: torch.Generator,
) -> UNetBatch:
    """Train on the model's own frames as context (DIAMOND's remedy for drift, over several frames).

    batch: drawn with `history` n, so its context holds K + n frames. For a `share` of the samples the
    newest n of them are replaced by the model's own rollout (`engine.edm.sample_next`, the play-time
    sampler, clean context) from the K frames before them under the recorded actions; the target stays
    the real frame, so the model learns to pull its own drift back to the data. Returns a batch with
    K context frames. cfg: the preset's `UNetConfig`; sigmas: `karras_sigmas(cfg)`.
    """
    from engine.edm import sample_next

    k = context_frames
    n = batch.context.shape[1] - k
    if n == 0 or share <= 0:  # nothing drawn: the random stream is that of a run without own context
        return UNetBatch(batch.context[:, n:], batch.actions[:, n:], batch.target)
    context = batch.context.clone()
    pick = torch.rand(len(context), generator=gen) < share
    if bool(pick.any()):
        sub, act = context[pick], batch.actions[pick]
        level = torch.zeros(len(sub), device=sub.device)
        for j in range(n):
            sub[:, k + j] = sample_next(model, sub[:, j : j + k], level, act[:, j : j + k], cfg, sigmas, gen)
        context[pick] = sub
    return UNetBatch(context[:, n:], batch.actions[:, n:], batch.target)
