"""Carrying a world model to a new VAE: the rotated model is the old one in the new latent coordinates."""

from __future__ import annotations

import pytest
import torch

from engine.conditioning import MASK_CHANNELS
from engine.model.causal_wan import CausalWanModel
from engine.train.latent_transfer import fit_rotation, rotate_world_model
from tests._model_helpers import one_thread, tiny_inputs, tiny_model  # noqa: F401

C = 16


def rotate(x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Apply r to the channel dim of latents [B, F, C, h, w]."""
    return torch.einsum("ij,bfjhw->bfihw", r, x)


def test_rotated_model_on_new_latents_is_the_old_model_in_new_coordinates():
    model = tiny_model("tiny")
    r, _ = torch.linalg.qr(torch.randn(C, C, generator=torch.Generator().manual_seed(3)))
    rotated = CausalWanModel(model.cfg).eval()
    rotated.load_state_dict(rotate_world_model(model.state_dict(), r))
    inp = tiny_inputs(model, batch=1, num_frames=3)
    x_old, cond_old = inp["clean"], inp["cond"]  # z_old = R z_new, so z_new = R^T z_old
    cond_new = cond_old.clone()
    cond_new[:, :, MASK_CHANNELS:] = rotate(cond_old[:, :, MASK_CHANNELS:], r.t())
    t = torch.full((1, 3), 700.0)
    rest = (inp["context"], inp["mouse"], inp["keyboard"])
    with torch.no_grad():
        v_old = model(x_old, cond_old, t, *rest)
        v_new = rotated(rotate(x_old, r.t()), cond_new, t, *rest)
    torch.testing.assert_close(v_new, rotate(v_old, r.t()), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(v_new, v_old, atol=1e-2)  # the rotation mattered


def test_fit_rotation_recovers_a_rotation_and_reports_the_residual():
    g = torch.Generator().manual_seed(0)
    r, _ = torch.linalg.qr(torch.randn(C, C, generator=g))
    new = torch.randn(5000, C, generator=g)
    fitted, residual = fit_rotation(new @ r.t(), new)
    torch.testing.assert_close(fitted, r, atol=1e-4, rtol=0)
    assert residual < 1e-8
    _, noisy = fit_rotation(new @ r.t() + 0.5 * torch.randn(5000, C, generator=g), new)
    assert 0.15 < noisy < 0.3  # noise variance 0.25 against old variance ~1.25


def test_wrong_channel_count_is_an_error():
    state = {"patch_embedding.weight": torch.zeros(8, 20, 1, 2, 2)}
    with pytest.raises(ValueError, match="20 input channels"):
        rotate_world_model(state, torch.eye(C))
