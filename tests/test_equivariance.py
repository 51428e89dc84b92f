"""The shift-equivariance term of the VAE trainer: the resampling, the shifted crops, and what it scores."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from engine.train.equivariance import equivariance_error, equivariance_loss, shift_latents, shifted_pair


def test_whole_latent_pixel_shifts_are_exact_and_zero_is_the_identity():
    z = torch.randn(2, 3, 4, 6, 10)
    assert torch.allclose(shift_latents(z, torch.zeros(2, 2, dtype=torch.long)), z, atol=1e-5)
    moved = shift_latents(z, torch.tensor([[8, 16], [0, 8]]))
    assert torch.allclose(moved[0, :, :, :-1, :-2], z[0, :, :, 1:, 2:], atol=1e-5)
    assert torch.allclose(moved[1, :, :, :, :-1], z[1, :, :, :, 1:], atol=1e-5)


def test_half_pixel_shift_is_the_neighbour_average():
    z = torch.randn(1, 1, 2, 5, 7)
    moved = shift_latents(z, torch.tensor([[4, 4]]))
    expect = (z[..., :-1, :-1] + z[..., 1:, :-1] + z[..., :-1, 1:] + z[..., 1:, 1:]) / 4
    assert torch.allclose(moved[..., :-1, :-1], expect, atol=1e-5)


def test_shifted_pair_cuts_the_crop_at_its_offsets():
    video = torch.randn(3, 2, 3, 24, 40)
    x, xs, off = shifted_pair(video, torch.Generator().manual_seed(0))
    assert x.shape == xs.shape == (3, 2, 3, 16, 32)
    assert torch.equal(x, video[..., :16, :32])
    for i, (dy, dx) in enumerate(off.tolist()):
        assert 0 <= dy <= 8 and 0 <= dx <= 8
        assert torch.equal(xs[i], video[i, ..., dy : dy + 16, dx : dx + 32])


def ramp_and_stripes(width: int) -> tuple[torch.Tensor, torch.Tensor]:
    j = torch.arange(width, dtype=torch.float32)
    ramp = (j / width).expand(1, 3, 32, width).clone()
    stripes = torch.sin(j * 2 * torch.pi / 6).expand(1, 3, 32, width).clone()  # period 6 px < 8
    return ramp, stripes


def test_error_is_zero_for_a_smooth_encoder_of_a_smooth_image_and_large_for_aliasing():
    def pool(x):  # an 8x8 average: exactly equivariant on a linear ramp under bilinear resampling
        return F.avg_pool2d(x, 8)

    def sample(x):  # keeps one pixel per 8x8 patch: aliases anything finer than 8 px
        return x[..., ::8, ::8]

    ramp, stripes = ramp_and_stripes(80)
    assert equivariance_error(pool, ramp, shift=4) == pytest.approx(0.0, abs=1e-6)
    assert equivariance_error(sample, stripes, shift=4) > 0.5
    assert equivariance_error(sample, stripes, shift=8) == pytest.approx(0.0, abs=1e-6)


def test_loss_ignores_the_borders_it_cannot_interpolate():
    z = torch.randn(1, 1, 2, 6, 9)
    off = torch.tensor([[0, 4]])
    z_shift = shift_latents(z, off)
    z_shift[..., 0, :] += 5  # the first row and last two columns are left out
    z_shift[..., :, -2:] -= 5
    assert equivariance_loss(z, z_shift, off) == pytest.approx(0.0, abs=1e-8)
