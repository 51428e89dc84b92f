"""Train the sampler that starts from the anchor (`sampler.start_from_anchor`), in the regime it plays.

With `start_from_anchor`, a session does not denoise a block from pure noise: it noises the block's
(warped) anchor latents to the first sampler timestep and denoises from there (SDEdit). A model trained
only on x_t = add_noise(x0, noise, t) has never seen that input: at play time x_t is built from the
anchor, which is the real latent moved by a fixed camera prior, not the real latent. For a `share` of
the samples, this builds the target frames' x_t from the anchor channels of cond_concat, exactly as
the session does, at one of the sampler's timesteps, and keeps the real latent as the answer.

It needs no change to the objective. x_t = (1 - s) a + s e equals add_noise(x0, n, t) for
n = e + (1 - s) / s (a - x0), and the flow-matching target n - x0 is then (x_t - x0) / s: the velocity
whose one-step x0 is the real latent. So the function returns new `(t, noise)` and the rest of the
training step (MSE, adversarial critic on the one-pass x0) is unchanged.
"""

from __future__ import annotations

import torch

from engine.conditioning import MASK_CHANNELS
from engine.scheduler import sigma_of
from engine.train.world_batch import WorldBatch


def start_from_anchors(
    batch: WorldBatch,
    t: torch.Tensor,
    noise: torch.Tensor,
    frame_weight: torch.Tensor,
    timesteps: torch.Tensor,
    share: float,
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(t, noise) with the trained frames of a `share` of samples noised from their anchors.

    t, frame_weight: [B, F]; noise: [B, F, C, h, w] (what add_noise would mix with x0), all on the
    batch's device; timesteps: the sampler's [n] (one drawn per sample, from the CPU generator `gen`).
    Frames with weight 0 (clean context) are left alone.
    """
    b = t.shape[0]
    pick = torch.rand(b, generator=gen) < share  # [B]
    step_t = timesteps[torch.randint(len(timesteps), (b,), generator=gen)].float()  # [B]
    chosen = pick.to(t.device)[:, None] & (frame_weight > 0)  # [B, F]
    t = torch.where(chosen, step_t.to(t.device)[:, None].expand_as(t), t)
    anchor = batch.cond[:, :, MASK_CHANNELS:].to(noise.dtype)  # [B, F, C, h, w]
    s = sigma_of(t).clamp_min(1e-3).to(noise.dtype)[:, :, None, None, None]
    moved = noise + (1 - s) / s * (anchor - batch.x0.to(noise.dtype))
    return t, torch.where(chosen[:, :, None, None, None], moved, noise)
