"""The world-model training step: per-frame noise levels in one block-causal sequence.

Matches inference exactly: the model's full-sequence path applies the same block-causal local-window
mask as the streaming path; cond is the pipeline's cond_concat; timesteps go through the scheduler's
`add_noise` / `training_target`. Frames with t = 0 are clean context (as the KV cache holds after a
context pass); frames with t > 0 are denoising targets. Loss = per-frame velocity MSE weighted by
`frame_weight` [B, F] (0 = not trained). With `anchor_inputs` (last_latent presets) each block after
the sequence's first is anchored on the previous frame exactly as the model is fed it, noise and level
included (`engine.conditioning.anchors_from_inputs`), which is what a session with `context_noise`
does; context noise on the context frames then reaches the anchors too.
"""

from __future__ import annotations

import torch

from engine.conditioning import anchors_from_inputs
from engine.scheduler import add_noise, training_target, training_weight
from engine.train.losses import flow_matching_loss
from engine.train.world_batch import WorldBatch


class WorldObjective(torch.nn.Module):
    """Wraps the model so that DDP sees one forward per step."""

    def __init__(
        self, model: torch.nn.Module, shift: float, use_timestep_weight: bool, anchor_inputs: int = 0
    ):
        """anchor_inputs: frames per block when anchors come from the model's inputs; 0 = off."""
        super().__init__()
        self.model, self.shift, self.use_timestep_weight = model, shift, use_timestep_weight
        self.anchor_inputs = anchor_inputs

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
        cond = batch.cond
        if self.anchor_inputs:
            cond = anchors_from_inputs(cond, x_t, t, self.anchor_inputs)
        k = keep_actions[:, None, None, None].to(batch.keyboard.dtype)
        mouse, keyboard = batch.mouse * k, batch.keyboard * k
        v = self.model(x_t, cond, t, None, mouse, keyboard, cache=None, start_frame=batch.start)
        w = frame_weight
        if self.use_timestep_weight:
            w = w * training_weight(t, self.shift)
        return flow_matching_loss(v, training_target(batch.x0, noise), w)
