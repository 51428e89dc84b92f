"""Losses: VAE reconstruction (L1, L2, Sobel edges), PSNR, and the per-frame flow-matching loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange


def sobel(x: torch.Tensor) -> torch.Tensor:
    """Image gradients (gx, gy) per channel. x: [N, C, H, W] -> [N, 2C, H, W]."""
    k = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=x.device, dtype=x.dtype)
    c = x.shape[1]
    weight = torch.stack([k, k.t()])[:, None].repeat(c, 1, 1, 1)  # [2C, 1, 3, 3]
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), weight, groups=c)


def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor, l1: float, l2: float, edge: float) -> dict:
    """pred/target: [B, T, 3, H, W] in [-1, 1]. Returns dict with 'loss' and its parts (float32)."""
    pred, target = pred.float(), target.float()
    parts = {"l1": (pred - target).abs().mean(), "l2": F.mse_loss(pred, target)}
    if edge > 0:
        p = sobel(rearrange(pred, "b t c h w -> (b t) c h w"))
        t = sobel(rearrange(target, "b t c h w -> (b t) c h w"))
        parts["edge"] = (p - t).abs().mean()
    else:
        parts["edge"] = torch.zeros((), device=pred.device)
    parts["loss"] = l1 * parts["l1"] + l2 * parts["l2"] + edge * parts["edge"]
    return parts


def psnr(pred: torch.Tensor, target: torch.Tensor) -> float:
    """PSNR in dB for images in [-1, 1] (peak-to-peak 2), over the whole tensor."""
    mse = F.mse_loss(pred.float().clamp(-1, 1), target.float()).item()
    return 10 * torch.log10(torch.tensor(4.0 / max(mse, 1e-10))).item()


def flow_matching_loss(
    v_pred: torch.Tensor, target: torch.Tensor, frame_weight: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted per-frame MSE. v_pred/target: [B, F, C, h, w]; frame_weight: [B, F] (0 = not trained).

    Returns (loss, per-frame MSE [B, F]); loss = sum(w * mse) / sum(w).
    """
    per_frame = (v_pred.float() - target.float()).pow(2).mean(dim=(2, 3, 4))  # [B, F]
    loss = (per_frame * frame_weight).sum() / frame_weight.sum().clamp(min=1e-8)
    return loss, per_frame.detach()
