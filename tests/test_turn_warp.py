"""The camera-turn warp against a rendered pinhole view, and its place as a residual world's base."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from engine.config import UNetConfig
from engine.model.turn_warp import turn_warp

FOV = 100.0


def cylinder_view(yaw: float, height: int = 48, width: int = 96) -> torch.Tensor:
    """[1, 3, H, W] view of a textured cylinder around a level pinhole camera turned by yaw (radians,
    right positive): the colour depends on the world angle and the height on the wall."""
    t = math.tan(math.radians(FOV) / 2)
    xn = (2 * torch.arange(width) + 1) / width - 1
    yn = (2 * torch.arange(height) + 1) / height - 1
    phi = torch.atan(xn * t)  # [W], angle from the view axis
    angle = (phi + yaw)[None, :]
    h = yn[:, None] * torch.cos(phi)[None, :]  # height on the wall (distance 1, unit focal scale)
    chans = [torch.sin(3 * angle + 2 * h), torch.cos(5 * angle - h), torch.sin(2 * angle) * torch.cos(4 * h)]
    return torch.stack(chans)[None]


def interior_error(a: torch.Tensor, b: torch.Tensor, margin: int) -> float:
    return float((a - b)[..., 4:-4, margin:-margin].abs().max())


def test_no_turn_is_the_identity():
    img = cylinder_view(0.3)
    torch.testing.assert_close(turn_warp(img, torch.zeros(1), FOV), img, atol=1e-5, rtol=0)


def test_a_turn_warps_the_view_into_the_view_after_the_turn():
    """Both ways, several angles: the warped view matches the rendered one away from the columns
    that come into view (only sampling error is left), and it beats copying the old view by far."""
    for turn in (-0.15, -0.05, 0.04, 0.12):
        before, after = cylinder_view(0.3), cylinder_view(0.3 + turn)
        warped = turn_warp(before, torch.tensor([turn]), FOV)
        margin = 22  # columns that enter the view at 0.15 rad on a 96-column, 100-degree view
        err, copy = interior_error(warped, after, margin), interior_error(before, after, margin)
        assert err < 0.08 and err < copy / 5, (turn, err, copy)


def test_folded_latents_warp_as_the_picture_does():
    """patch 2: latents that are pixel_unshuffle(picture, 2) warp as the unfolded picture warps."""
    img, yaw = cylinder_view(0.1), torch.tensor([0.07])
    folded = turn_warp(F.pixel_unshuffle(img, 2), yaw, FOV, patch=2)
    torch.testing.assert_close(F.pixel_shuffle(folded, 2), turn_warp(img, yaw, FOV), atol=1e-6, rtol=0)


def test_residual_base_is_the_newest_latent_turned_by_the_newest_yaw():
    from engine.edm import residual_base

    g = torch.Generator().manual_seed(0)
    context = torch.randn(2, 3, 4, 6, 8, generator=g)
    actions = torch.zeros(2, 3, 6)
    actions[:, -1, 5] = torch.tensor([0.2, -0.4])  # mouse [pitch, yaw] after 4 keys
    actions[:, 0, 5] = 1.0  # older actions do not matter
    cfg = UNetConfig(residual=True, turn_fov=FOV, turn_degrees=15.0)
    want = turn_warp(context[:, -1], torch.tensor([0.2, -0.4]) * math.radians(15.0), FOV)
    torch.testing.assert_close(residual_base(context, actions, cfg), want)
    plain = residual_base(context, actions, UNetConfig(residual=True))
    torch.testing.assert_close(plain, context[:, -1])
