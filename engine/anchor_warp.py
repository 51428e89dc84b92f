"""A camera-motion prior for `condition: last_latent`: warp the anchor by the commanded motion.

A last_latent block sees the clean latent just before it (the anchor) in its input channels. When the
player turns, every latent of the block shows the scene shifted sideways; when they walk, zoomed. With
`anchor_warp` set, latent p of a block sees the anchor shifted by `yaw_px` latent pixels per yaw unit
and zoomed by (1 + zoom) per frame of net forward key, summed over the actions between the anchor's
frame and p's frame (latent p's last video frame is 4p, latent 0's is frame 0). The model then only has
to correct and sharpen a prediction that already moves with the input, instead of learning camera
geometry from scratch. The fit on 48k cached Freedoom 2 latents (docs/training.md): copying the anchor
has MSE 0.74 against the true latent, the warp 0.59 (turning blocks 0.91 -> 0.70).

Session and training batches call the same two functions, so the warp is identical in both.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from engine.config import AnchorWarpConfig


def is_identity(cfg: AnchorWarpConfig) -> bool:
    return cfg.yaw_px == 0.0 and cfg.zoom == 0.0


def check_anchor_warp(preset) -> None:
    """A warp needs `condition: last_latent` and the universal action space (mouse yaw, W/S keys);
    so does `sampler.start_from_anchor`."""
    if preset.sampler.start_from_anchor and preset.condition != "last_latent":
        raise ValueError(f"preset {preset.name}: sampler.start_from_anchor needs condition: last_latent")
    if is_identity(preset.anchor_warp):
        return
    act = preset.model.action
    if preset.condition != "last_latent":
        raise ValueError(
            f"preset {preset.name}: anchor_warp needs condition: last_latent, not {preset.condition!r}"
        )
    if preset.mode != "universal" or act is None or not act.enable_mouse or not act.enable_keyboard:
        raise ValueError(
            f"preset {preset.name}: anchor_warp needs the universal action space with mouse and keys"
        )


def latent_frame(p: int, temporal: int = 4) -> int:
    """The last video frame of latent p (frame 0 for latent 0)."""
    return temporal * p


def anchor_spans(start: int, n: int, fpb: int, temporal: int = 4, offset: int = 0) -> list[tuple[int, int]]:
    """Frame spans [anchor's frame, p's frame) for latents p = start..start+n-1, minus `offset`.

    A latent's anchor is the last latent before its block (latent 0 for block 0)."""
    spans = []
    for p in range(start, start + n):
        anchor = max(0, p // fpb * fpb - 1)
        spans.append((latent_frame(anchor, temporal) - offset, latent_frame(p, temporal) - offset))
    return spans


def warp_motion(
    keyboard: torch.Tensor, mouse: torch.Tensor, spans: list[tuple[int, int]], cfg: AnchorWarpConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """(dx [B, n] latent pixels, scale [B, n]) for n frame spans [a, e) of per-frame actions.

    keyboard [B, T, K] ([W, S, ...] universal order), mouse [B, T, 2] = [pitch, yaw]. Turning right
    (yaw > 0) moves the image left (dx < 0); walking forward zooms in (scale > 1).
    """
    yaw = torch.stack([mouse[:, a:e, 1].sum(1) for a, e in spans], dim=1).float()
    fwd = torch.stack([(keyboard[:, a:e, 0] - keyboard[:, a:e, 1]).sum(1) for a, e in spans], dim=1)
    return -cfg.yaw_px * yaw, (1.0 + cfg.zoom) ** fwd.float()


def warp_anchor(anchor: torch.Tensor, dx: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """anchor [B, 1, C, h, w] -> [B, n, C, h, w]: shifted right by dx and zoomed by scale about the centre.

    Bilinear, edges replicated (the strip a turn reveals starts as the nearest column).
    """
    b, n = dx.shape
    _, _, c, h, w = anchor.shape
    theta = torch.zeros(b * n, 2, 3, dtype=torch.float32, device=anchor.device)
    inv = 1.0 / scale.reshape(-1).float().to(anchor.device)
    theta[:, 0, 0] = theta[:, 1, 1] = inv
    theta[:, 0, 2] = -dx.reshape(-1).float().to(anchor.device) * 2.0 / w * inv
    grid = F.affine_grid(theta, [b * n, c, h, w], align_corners=False)
    src = anchor.expand(-1, n, -1, -1, -1).reshape(b * n, c, h, w)
    out = F.grid_sample(src.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.to(anchor.dtype).reshape(b, n, c, h, w)
