"""Tiny VAE: shapes, causality, streamed == batch, condition stream == encode, save/load."""

from __future__ import annotations

import pytest
import torch

from engine.config import VAEConfig
from engine.vae.tiny_vae import TinyVAE, load_tiny_vae, save_tiny_vae

CFG = VAEConfig(kind="tiny", z_dim=16, base_dim=8, dim_mult=(1, 2, 4), num_res_blocks=1)


@pytest.fixture(scope="module")
def vae() -> TinyVAE:
    torch.manual_seed(0)
    return TinyVAE(CFG).eval()


def video(frames: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(2, frames, 3, 32, 48, generator=g) * 2 - 1  # [B, T, 3, H, W]


@torch.no_grad()
def test_shapes(vae):
    z = vae.encode(video(9))
    assert z.shape == (2, 3, 16, 4, 6)
    assert vae.decode(z).shape == (2, 9, 3, 32, 48)


@torch.no_grad()
def test_encoder_is_causal(vae):
    a, b = video(9), video(9, seed=1)
    b[:, :5] = a[:, :5]  # same frames 0..4 -> same latents 0 and 1
    za, zb = vae.encode(a), vae.encode(b)
    assert torch.allclose(za[:, :2], zb[:, :2], atol=1e-6)
    assert not torch.allclose(za[:, 2], zb[:, 2], atol=1e-3)


@torch.no_grad()
def test_streamed_decode_equals_batch_decode(vae):
    z = vae.encode(video(17))  # 5 latents
    batch = vae.decode(z)
    cache, parts = vae.new_decode_cache(), []
    for chunk in (z[:, :3], z[:, 3:4], z[:, 4:]):  # a block of 3, then single latents
        out, cache = vae.decode_stream(chunk, cache)
        parts.append(out)
    assert [p.shape[1] for p in parts] == [9, 4, 4]
    assert torch.allclose(torch.cat(parts, 1), batch, atol=1e-5)


@torch.no_grad()
def test_condition_stream_equals_encode_of_gray_video(vae):
    image = video(1)[:, 0]  # [B, 3, H, W]
    gray = torch.zeros(2, 12, 3, 32, 48)
    whole = vae.encode(torch.cat([image[:, None], gray], 1))  # [B, 4, C, h, w]
    stream = vae.condition_stream(image)
    assert torch.allclose(torch.cat([stream.next(1), stream.next(3)], 1), whole, atol=1e-5)


def test_bad_frame_count_is_an_error(vae):
    with pytest.raises(ValueError, match="1 \\+ 4k"):
        vae.encode(video(8))
    with pytest.raises(ValueError, match="multiples of 8"):
        vae.encode(torch.zeros(1, 5, 3, 30, 48))


@torch.no_grad()
def test_save_load_roundtrip_and_config_mismatch(vae, tmp_path):
    path = tmp_path / "vae.safetensors"
    vae.latent_std.fill_(2.0)
    save_tiny_vae(vae, str(path))
    loaded = load_tiny_vae(CFG, str(path))
    x = video(5)
    assert torch.allclose(loaded.decode(loaded.encode(x)), vae.decode(vae.encode(x)), atol=1e-5)
    other = VAEConfig(kind="tiny", z_dim=16, base_dim=16, dim_mult=(1, 2, 4), num_res_blocks=1)
    with pytest.raises(ValueError, match="base_dim"):
        load_tiny_vae(other, str(path))
    vae.latent_std.fill_(1.0)


FRAME_CFG = VAEConfig(kind="tiny", z_dim=16, base_dim=8, dim_mult=(1, 2, 4), num_res_blocks=1, temporal=1)


@torch.no_grad()
def test_ratio_one_is_one_latent_per_frame_streamed_equals_batch():
    torch.manual_seed(1)
    vae = TinyVAE(FRAME_CFG).eval()
    x = video(7)
    z = vae.encode(x)
    assert z.shape == (2, 7, 16, 4, 6)  # one latent per video frame
    a, b = video(7), video(7, seed=1)
    b[:, :4] = a[:, :4]
    za, zb = vae.encode(a), vae.encode(b)
    assert torch.allclose(za[:, :4], zb[:, :4], atol=1e-6)  # causal, frame by frame
    assert not torch.allclose(za[:, 4], zb[:, 4], atol=1e-3)
    batch = vae.decode(z)
    assert batch.shape == x.shape
    cache, parts = vae.new_decode_cache(), []
    for chunk in (z[:, :3], z[:, 3:4], z[:, 4:]):
        out, cache = vae.decode_stream(chunk, cache)
        parts.append(out)
    assert [p.shape[1] for p in parts] == [3, 1, 3]
    assert torch.allclose(torch.cat(parts, 1), batch, atol=1e-5)
    image = x[:, 0]
    whole = vae.encode(torch.cat([image[:, None], torch.zeros(2, 3, 3, 32, 48)], 1))
    stream = vae.condition_stream(image)
    assert torch.allclose(torch.cat([stream.next(1), stream.next(3)], 1), whole, atol=1e-5)


def test_ratio_mismatch_with_checkpoint_is_an_error(vae, tmp_path):
    path = tmp_path / "vae4.safetensors"
    save_tiny_vae(vae, str(path))
    with pytest.raises(ValueError, match="temporal"):
        load_tiny_vae(FRAME_CFG, str(path))
    with pytest.raises(ValueError, match="1, 2 or 4"):
        TinyVAE(VAEConfig(kind="tiny", base_dim=8, dim_mult=(1, 2, 4), temporal=3))


@torch.no_grad()
def test_long_encode_streams_in_chunks_for_ratio_one():
    """The latent cache encodes long episodes in chunks; for a ratio-1 VAE too, equal to one encode."""
    from engine.train.latent_cache import encode_long

    torch.manual_seed(2)
    vae = TinyVAE(FRAME_CFG).eval()
    x = video(21)
    assert torch.allclose(encode_long(vae, x, chunk=4), vae.encode(x), atol=1e-5)


def test_pooled_encoder_latents_are_the_coarse_picture_and_the_nearest_decoder_redraws_it():
    """encoder "pool": latents are the 4x-pooled frame folded onto the x8 grid, normalised by the
    config's statistics; a decoder started by `nearest_shortcut` draws it back upsampled (nearest)."""
    import torch.nn.functional as F

    from engine.vae.tiny_vae_blocks import nearest_shortcut, soft_clamp

    cfg = VAEConfig(
        kind="tiny", z_dim=12, base_dim=8, dim_mult=(1, 2, 2), num_res_blocks=1, temporal=1,
        encoder="pool", pool=4, pool_mean=(-0.5, -0.4, -0.3), pool_std=0.25,
    )  # fmt: skip
    vae = TinyVAE(cfg).eval()
    nearest_shortcut(vae.decoder, 4)
    g = torch.Generator().manual_seed(0)
    coarse = torch.rand(2, 3, 6, 8, generator=g) * 2 - 1  # a picture of 4x4 blocks
    video = F.interpolate(coarse, scale_factor=4.0, mode="nearest")[:, None]  # [2, 1, 3, 24, 32]
    with torch.no_grad():
        z = vae.encode(video)
        mean = torch.tensor(cfg.pool_mean).repeat_interleave(4)[:, None, None]
        want = (F.pixel_unshuffle(soft_clamp(coarse), 2) - mean) / 0.25
        torch.testing.assert_close(z[:, 0], want, atol=1e-5, rtol=0)
        out = vae.decode(z)
    torch.testing.assert_close(out, soft_clamp(video).clamp(-1, 1), atol=1e-5, rtol=0)
    # its memory starts off: with every other weight random, streaming three frames decodes each alone
    for p in vae.decoder.parameters():
        p.data.add_(0.05 * torch.randn(p.shape, generator=g))
    nearest_shortcut(vae.decoder, 4)
    for p in vae.decoder.head[1].parameters():
        p.data.add_(0.05 * torch.randn(p.shape, generator=g))
    z3 = torch.randn(1, 3, 12, 6, 8, generator=g)
    with torch.no_grad():
        streamed, _ = vae.decode_frames(z3, None)
        alone = torch.cat([vae.decode_frames(z3[:, i : i + 1], None)[0] for i in range(3)], dim=1)
    torch.testing.assert_close(streamed, alone, atol=1e-5, rtol=0)


def test_pooled_encoder_config_must_agree_with_itself(tmp_path):
    with pytest.raises(ValueError, match="z_dim 3"):
        TinyVAE(VAEConfig(kind="tiny", z_dim=16, temporal=1, encoder="pool", pool=4))
    with pytest.raises(ValueError, match="encoder must be"):
        TinyVAE(VAEConfig(kind="tiny", z_dim=16, temporal=1, encoder="pooled"))
    small = dict(kind="tiny", base_dim=8, dim_mult=(1, 2, 2), num_res_blocks=1, temporal=1)
    path = str(tmp_path / "pool.safetensors")
    save_tiny_vae(TinyVAE(VAEConfig(z_dim=12, encoder="pool", **small)), path)
    with pytest.raises(ValueError, match="vae.encoder"):
        load_tiny_vae(VAEConfig(z_dim=12, encoder="learned", **small), path)
