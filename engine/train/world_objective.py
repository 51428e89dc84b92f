"""The world-model training step: per-frame noise levels in one block-causal sequence.

Matches inference exactly: the model's full-sequence path applies the same block-causal local-window
mask as the streaming path; cond is the pipeline's cond_concat; timesteps go through the scheduler's
`add_noise` / `training_target`. Frames with t = 0 are clean context (as the KV cache holds after a
context pass); frames with t > 0 are denoising targets. Loss = per-frame velocity MSE weighted by
`frame_weight` [B, F] (0 = not trained).
"""

from __future__ import annotations

import torch

from engine.scheduler import add_noise, training_target, training_weight
from engine.train.losses import flow_matching_loss
from engine.train.world_batch import WorldBatch


class WorldObjective(torch.nn.Module):
    """Wraps the model so that DDP sees one forward per step."""

    def __init__(self, model: torch.nn.Module, shift: float, use_timestep_weight: bool):
        super().__init__()
        self.model, self.shift, self.use_timestep_weight = model, shift, use_timestep_weight

    def forward(
        self,
        batch: WorldBatch,
        t: torch.Tensor,
        noise: torch.Tensor,
        frame_weight: torch.Tensor,
        keep_actions: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, per-frame MSE [B, F]). t, frame_weight: [B, F]; keep_actions [B] (0 = action dropout)."""
        x_t = add_noise(batch.x0, noise, t)  # [B, F, C, h, w]; t = 0 frames stay clean
        k = keep_actions[:, None, None, None].to(batch.keyboard.dtype)
        v = self.model(
            x_t, batch.cond, t, None, batch.mouse * k, batch.keyboard * k, cache=None, start_frame=batch.start
        )
        w = frame_weight
        if self.use_timestep_weight:
            w = w * training_weight(t, self.shift)
        return flow_matching_loss(v, training_target(batch.x0, noise), w)
