"""An adversarial term on the world model's x0 predictions: samples instead of conditional means.

An MSE-trained model predicts the conditional mean of the next latents; at high noise that mean is
blur, and the few-step sampler (x0_renoise) re-noises that blur at every step, so rollouts fade
(docs/training.md, fourth stop on issue 6). Here a small patch critic on clean latent frames learns to
tell real target latents from the model's one-pass x0 predictions of them, given what the model was
given: the frame's anchor latent (cond_concat's latent channels), its action window and its noise
level. The model gets the critic's hinge loss as an extra term, so its x0 at every sampler timestep is
pushed towards a sharp latent that moves with the actions, while the flow-matching MSE keeps it on
the data.

The term's weight is adaptive, as in VQGAN: `weight` x |grad_v MSE| / |grad_v adv|, measured on the
model output v, so `weight` reads as the adversarial gradient's size relative to the MSE's.
Under DDP every rank trains its own critic on its own batches (not synchronised); the model's
gradients are averaged as usual.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from engine.train.world_batch import WorldBatch


class LatentCritic(nn.Module):
    """Patch logits [N, 1, h/4, w/4] for latent frames x [N, C, h, w] given anchor, actions [N, A], t [N]."""

    def __init__(self, channels: int, action_dim: int, width: int = 64):
        super().__init__()
        self.inp = spectral_norm(nn.Conv2d(2 * channels + 1, width, 3, padding=1))
        self.actions = nn.Linear(action_dim, width)
        self.body = nn.Sequential(
            nn.LeakyReLU(0.2),
            spectral_norm(nn.Conv2d(width, 2 * width, 4, stride=2, padding=1)),
            nn.LeakyReLU(0.2),
            spectral_norm(nn.Conv2d(2 * width, 2 * width, 4, stride=2, padding=1)),
            nn.LeakyReLU(0.2),
            spectral_norm(nn.Conv2d(2 * width, 1, 3, padding=1)),
        )

    def forward(self, x: torch.Tensor, anchor: torch.Tensor, actions: torch.Tensor, t: torch.Tensor):
        level = (t.float() / 1000.0)[:, None, None, None].expand(-1, 1, *x.shape[-2:])
        h = self.inp(torch.cat([x.float(), anchor.float(), level], dim=1))
        return self.body(h + self.actions(actions.float())[:, :, None, None])


def judged_frames(batch: WorldBatch, t: torch.Tensor, frame_weight: torch.Tensor):
    """The trained noisy frames' (mask [B, F], anchors [N, C, h, w], actions [N, A], t [N])."""
    mask = (frame_weight > 0) & (t > 0)
    latent_c = batch.x0.shape[2]
    anchors = batch.cond[:, :, -latent_c:][mask]
    actions = torch.cat([batch.keyboard[mask].flatten(1), batch.mouse[mask].flatten(1)], dim=1)
    return mask, anchors, actions, t[mask]


class Adversary:
    """The critic, its optimiser and the model's adversarial term (see the module docstring)."""

    def __init__(
        self,
        channels: int,
        action_dim: int,
        weight: float,
        lr: float,
        start: int,
        device: torch.device,
        max_weight: float = 10.0,
    ):
        self.critic = LatentCritic(channels, action_dim).to(device)
        self.opt = torch.optim.AdamW(self.critic.parameters(), lr=lr, betas=(0.0, 0.99), weight_decay=0.0)
        self.weight, self.start, self.max_weight = weight, start, max_weight

    def model_loss(
        self,
        mse: torch.Tensor,
        v: torch.Tensor,
        x0: torch.Tensor,
        batch: WorldBatch,
        t: torch.Tensor,
        frame_weight: torch.Tensor,
        step: int,
    ) -> tuple[torch.Tensor, dict]:
        """mse + adaptive weight x hinge generator loss on x0 (the model's prediction, a function of v);
        just mse before `start` or with no judged frames."""
        mask, anchors, actions, tj = judged_frames(batch, t, frame_weight)
        if step < self.start or not bool(mask.any()):
            return mse, {}
        self.critic.requires_grad_(False)
        adv = -self.critic(x0[mask], anchors, actions, tj).mean()
        self.critic.requires_grad_(True)
        g_mse = torch.autograd.grad(mse, v, retain_graph=True)[0]
        g_adv = torch.autograd.grad(adv, v, retain_graph=True)[0]
        lam = (self.weight * g_mse.float().norm() / (g_adv.float().norm() + 1e-8)).clamp(max=self.max_weight)
        lam = lam.detach()
        log = {"mse": float(mse.detach()), "adv_g": float(adv.detach()), "adv_lambda": float(lam)}
        return mse + lam * adv, log

    def critic_step(
        self, x0_fake: torch.Tensor, batch: WorldBatch, t: torch.Tensor, frame_weight: torch.Tensor
    ) -> dict:
        """One hinge-loss step of the critic: real target latents against the model's x0 (detached)."""
        mask, anchors, actions, tj = judged_frames(batch, t, frame_weight)
        if not bool(mask.any()):
            return {}
        real = self.critic(batch.x0[mask], anchors, actions, tj)
        fake = self.critic(x0_fake.detach()[mask], anchors, actions, tj)
        loss = F.relu(1 - real).mean() + F.relu(1 + fake).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {
            "adv_d": float(loss.detach()),
            "adv_real": float(real.detach().mean()),
            "adv_fake": float(fake.detach().mean()),
        }

    def state_dict(self) -> dict:
        return {"critic": self.critic.state_dict(), "opt": self.opt.state_dict()}

    def load_state_dict(self, state: Optional[dict]) -> None:
        if state:
            self.critic.load_state_dict(state["critic"])
            self.opt.load_state_dict(state["opt"])
