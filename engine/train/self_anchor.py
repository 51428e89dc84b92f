"""Train on the model's own predictions as context (a cheap cure for exposure bias in autoregressive runs).

At play time a block's context (the KV cache) is the model's own last block, which is never as sharp as
the data; a model trained only on real context fades a little more every block. For a share of the
samples of an autoregressive batch, this replaces the clean context block by the model's one-pass x0
prediction of it from a sampler timestep (no gradient). Under `condition: last_latent` the target
blocks' anchor (the latent just before them) is that prediction's last latent too, as in a session.
The target stays the real latent, so the model learns to pull its own output back to the data.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from engine.conditioning import MASK_CHANNELS
from engine.scheduler import add_noise, x0_from_velocity
from engine.train.world_batch import WorldBatch


@torch.no_grad()
def own_context(
    model: torch.nn.Module,
    batch: WorldBatch,
    fpb: int,
    share: float,
    timesteps: torch.Tensor,
    gen: torch.Generator,
    anchors: bool = False,
) -> WorldBatch:
    """`batch` with the first block replaced by the model's prediction for a `share` of samples.

    batch: an autoregressive sequence whose first block (fpb latents) is the clean context;
    timesteps: the sampler's timesteps (one is drawn per sample); anchors: the batch is
    `condition: last_latent`, so the later blocks' anchors become the prediction's last latent.
    """
    b = batch.x0.shape[0]
    pick = torch.rand(b, generator=gen) < share
    if not bool(pick.any()) or batch.x0.shape[1] <= fpb:
        return batch
    ctx = slice(0, fpb)
    t = timesteps[torch.randint(len(timesteps), (b,), generator=gen)].float()
    t = t[:, None].expand(b, fpb).to(batch.x0.device)
    noise = torch.randn(batch.x0[:, ctx].shape, generator=gen).to(batch.x0.device)
    x_t = add_noise(batch.x0[:, ctx], noise, t)
    v = model(x_t, batch.cond[:, ctx], t, None, batch.mouse[:, ctx], batch.keyboard[:, ctx], cache=None,
              start_frame=batch.start)  # fmt: skip
    own = x0_from_velocity(x_t, v.float(), t).to(batch.x0.dtype)  # [B, fpb, C, h, w]
    m = pick.to(batch.x0.device).view(b, 1, 1, 1, 1)
    x0 = batch.x0.clone()
    x0[:, ctx] = torch.where(m, own, batch.x0[:, ctx])
    if not anchors:
        return replace(batch, x0=x0)
    target_lat = batch.cond[:, fpb:, MASK_CHANNELS:]  # [B, F - fpb, C, h, w]
    cond = batch.cond.clone()
    anchor = own[:, -1:].expand_as(target_lat).to(cond.dtype)
    cond[:, fpb:, MASK_CHANNELS:] = torch.where(m, anchor, target_lat)
    return replace(batch, x0=x0, cond=cond)
