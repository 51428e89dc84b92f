"""The adversarial term: its adaptive weight sets the gradient ratio; the critic learns blur from detail."""

from __future__ import annotations

import torch

from engine.scheduler import x0_from_velocity
from engine.train.adversarial import Adversary
from engine.train.world_batch import WorldBatch


def batch_of(x0: torch.Tensor) -> WorldBatch:
    b, f, c, h, w = x0.shape
    cond = torch.cat([torch.ones(b, f, 4, h, w), torch.roll(x0, 1, dims=1)], dim=2)
    return WorldBatch(x0, cond, torch.zeros(b, f, 12, 4), torch.zeros(b, f, 12, 2), start=0)


def blur(x: torch.Tensor) -> torch.Tensor:
    b, f, c, h, w = x.shape
    flat = torch.nn.functional.avg_pool2d(x.reshape(b * f, c, h, w), 4)
    return torch.nn.functional.interpolate(flat, size=(h, w), mode="nearest").reshape(x.shape)


def test_adaptive_weight_sets_the_adversarial_gradient_to_weight_times_the_mse_gradient():
    torch.manual_seed(0)
    x0 = torch.randn(2, 3, 4, 8, 16)
    adv = Adversary(4, 12 * 6, weight=0.3, lr=1e-3, start=0, device=torch.device("cpu"))
    v = torch.randn_like(x0, requires_grad=True)
    x_t = torch.randn_like(x0)
    t = torch.tensor([[1000.0, 750.0, 500.0], [250.0, 0.0, 1000.0]])
    w = torch.ones(2, 3)
    mse = (v - x0).pow(2).mean()
    pred = x0_from_velocity(x_t, v, t)
    total, log = adv.model_loss(mse, v, pred, batch_of(x0), t, w, step=0)
    g_mse = torch.autograd.grad(mse, v, retain_graph=True)[0]
    g_adv = torch.autograd.grad(total - mse, v)[0]
    assert abs(float(g_adv.norm() / g_mse.norm()) - 0.3) < 1e-3
    assert log["adv_lambda"] > 0
    before, _ = adv.model_loss(mse, v, pred, batch_of(x0), t, w, step=-1)  # before `start`: plain MSE
    assert before is mse


def test_critic_learns_to_score_detailed_latents_above_blurred_ones():
    torch.manual_seed(0)
    adv = Adversary(4, 12 * 6, weight=0.3, lr=2e-3, start=0, device=torch.device("cpu"))
    t, w = torch.full((4, 3), 500.0), torch.ones(4, 3)
    scores = []
    for _ in range(60):
        real = torch.randn(4, 3, 4, 16, 16)
        log = adv.critic_step(blur(real), batch_of(real), t, w)
        scores.append(log["adv_real"] - log["adv_fake"])
    assert sum(scores[:5]) / 5 < 0.5 < sum(scores[-5:]) / 5
