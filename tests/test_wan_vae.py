"""Wan 2.1 VAE: streamed == whole, official names and cache layout, loader errors. Tiny widths, CPU."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from engine.config import VAEConfig
from engine.vae.wan_vae import LATENT_MEAN, LATENT_STD, WanVAE, load_wan_vae
from engine.vae.weights import WeightsFileError

TINY = VAEConfig(base_dim=8)
H, W = 16, 24  # pixels; latents 2 x 3


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # many tiny ops: threads only contend on a shared CPU
    yield
    torch.set_num_threads(n)


def tiny_vae(cfg: VAEConfig = TINY, seed: int = 0) -> WanVAE:
    torch.manual_seed(seed)
    vae = WanVAE(cfg).eval()
    with torch.no_grad():  # default init zeroes nothing, but make every layer matter
        for p in vae.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return vae


def gray_video(image: torch.Tensor, num_latents: int) -> torch.Tensor:
    """[image, 4(N-1) zero frames]: [B, 1 + 4(N-1), 3, H, W]."""
    b, c, h, w = image.shape
    return torch.cat([image[:, None], image.new_zeros(b, 4 * (num_latents - 1), c, h, w)], dim=1)


def test_stream_decode_equals_whole_and_frame_counts():
    vae = tiny_vae()
    z = torch.randn(1, 9, 16, H // 8, W // 8)
    whole = vae.decode(z)
    assert whole.shape == (1, 1 + 4 * 8, 3, H, W)
    cache, parts = vae.new_decode_cache(), []
    for s in range(0, 9, 3):
        video, cache = vae.decode_stream(z[:, s : s + 3], cache)
        parts.append(video)
    assert [p.shape[1] for p in parts] == [9, 12, 12]
    torch.testing.assert_close(torch.cat(parts, dim=1), whole, atol=1e-5, rtol=1e-5)
    assert whole.abs().max() <= 1.0


def test_decode_several_latents_per_pass_equals_one_per_pass():
    vae = tiny_vae()
    z = torch.randn(1, 5, 16, H // 8, W // 8)
    one = vae.decode(z)
    vae.latents_per_pass = 3
    torch.testing.assert_close(vae.decode(z), one, atol=1e-5, rtol=1e-5)


def test_decode_stream_leaves_the_given_cache_unchanged():
    vae = tiny_vae()
    z = torch.randn(1, 4, 16, H // 8, W // 8)
    _, cache = vae.decode_stream(z[:, :1], vae.new_decode_cache())
    a, _ = vae.decode_stream(z[:, 1:], cache)
    b, _ = vae.decode_stream(z[:, 1:], cache)
    assert cache.latents_seen == 1
    torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_condition_stream_equals_one_shot_encode():
    vae = tiny_vae()
    image = torch.rand(1, 3, H, W) * 2 - 1
    full = vae.encode(gray_video(image, 8))  # [1, 8, 16, 2, 3]
    assert full.shape == (1, 8, 16, H // 8, W // 8)
    stream = vae.condition_stream(image)
    streamed = torch.cat([stream.next(3), stream.next(3), stream.next(2)], dim=1)
    torch.testing.assert_close(streamed, full, atol=1e-5, rtol=1e-5)


def test_condition_stream_fixed_point_of_the_gray_tail():
    cfg = VAEConfig(base_dim=8, num_res_blocks=1)  # shallower: the gray tail settles after ~22 latents
    vae = tiny_vae(cfg)
    image = torch.rand(1, 3, 8, 8) * 2 - 1
    n = 27
    stream = vae.condition_stream(image)
    streamed = torch.cat([stream.next(3) for _ in range(n // 3)], dim=1)
    assert stream.steady is not None  # later latents were returned without running the encoder
    torch.testing.assert_close(streamed, vae.encode(gray_video(image, n)), atol=1e-5, rtol=1e-5)


def test_latent_normalisation_round_trips_with_official_stats():
    vae = WanVAE(VAEConfig(base_dim=8))
    mu = torch.randn(2, 3, 16, 2, 2) * 3
    z = vae.normalize(mu)
    torch.testing.assert_close(z[:, :, 7], (mu[:, :, 7] - LATENT_MEAN[7]) / LATENT_STD[7])
    torch.testing.assert_close(vae.denormalize(z), mu, atol=1e-5, rtol=1e-5)


def test_bad_shapes_raise_value_errors():
    vae = tiny_vae()
    with pytest.raises(ValueError, match="1 \\+ 4k"):
        vae.encode(torch.zeros(1, 4, 3, H, W))
    with pytest.raises(ValueError, match="multiples of 8"):
        vae.encode(torch.zeros(1, 1, 3, 12, W))
    with pytest.raises(ValueError, match="latents must be"):
        vae.decode(torch.zeros(1, 2, 8, 2, 3))


def test_full_size_names_shapes_and_decoder_cache_layout_on_meta():
    with torch.device("meta"):
        vae = WanVAE(VAEConfig())
    shapes = {k: tuple(v.shape) for k, v in vae.state_dict().items()}
    expected = {
        "encoder.conv1.weight": (96, 3, 3, 3, 3),
        "encoder.downsamples.0.residual.0.gamma": (96, 1, 1, 1),
        "encoder.downsamples.2.resample.1.weight": (96, 96, 3, 3),
        "encoder.downsamples.3.shortcut.weight": (192, 96, 1, 1, 1),
        "encoder.downsamples.5.time_conv.weight": (192, 192, 3, 1, 1),
        "encoder.downsamples.8.time_conv.bias": (384,),
        "encoder.middle.1.norm.gamma": (384, 1, 1),
        "encoder.middle.1.to_qkv.weight": (1152, 384, 1, 1),
        "encoder.head.2.weight": (32, 384, 3, 3, 3),
        "conv1.weight": (32, 32, 1, 1, 1),
        "conv2.weight": (16, 16, 1, 1, 1),
        "decoder.conv1.weight": (384, 16, 3, 3, 3),
        "decoder.middle.2.residual.6.weight": (384, 384, 3, 3, 3),
        "decoder.upsamples.3.time_conv.weight": (768, 384, 3, 1, 1),
        "decoder.upsamples.3.resample.1.weight": (192, 384, 3, 3),
        "decoder.upsamples.4.shortcut.weight": (384, 192, 1, 1, 1),
        "decoder.upsamples.11.resample.1.weight": (96, 192, 3, 3),
        "decoder.upsamples.14.residual.3.gamma": (96, 1, 1, 1),
        "decoder.head.2.weight": (3, 96, 3, 3, 3),
    }
    for k, s in expected.items():
        assert shapes.get(k) == s, (k, shapes.get(k), s)
    assert all(k.split(".")[0] in ("encoder", "conv1", "conv2", "decoder") for k in shapes)
    assert "decoder.upsamples.15.residual.0.gamma" not in shapes
    # decoder cache: 32 slots (official decoder_conv_num) with the official ZERO_VAE_CACHE shapes
    assert vae.decoder.num_slots == 32
    _, cache = vae.decode_stream(torch.zeros(1, 3, 16, 44, 80, device="meta"), vae.new_decode_cache())
    got = sorted(tuple(s.shape) for s in cache.causal.slots)
    want = sorted(
        [(1, 16, 2, 44, 80)]
        + [(1, 384, 2, 44, 80)] * 11
        + [(1, 192, 2, 88, 160)]
        + [(1, 384, 2, 88, 160)] * 6
        + [(1, 192, 2, 176, 320)] * 6
        + [(1, 96, 2, 352, 640)] * 7
    )
    assert got == want


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_load_round_trip(tmp_path, suffix):
    vae = tiny_vae()
    sd = {k: v.contiguous() for k, v in vae.state_dict().items()}
    path = str(tmp_path / f"vae{suffix}")
    torch.save(sd, path) if suffix == ".pth" else save_file(sd, path)
    loaded = load_wan_vae(TINY, path)
    z = torch.randn(1, 2, 16, H // 8, W // 8)
    torch.testing.assert_close(loaded.decode(z), vae.decode(z), atol=0, rtol=0)


def _one_line_error(path: str, cfg: VAEConfig = TINY) -> str:
    with pytest.raises(WeightsFileError) as e:
        load_wan_vae(cfg, path)
    msg = str(e.value)
    assert path in msg and "\n" not in msg and "Wan 2.1 VAE" in msg
    return msg


def test_corrupt_and_missing_files_give_one_clear_error(tmp_path):
    for name in ("corrupt.pth", "corrupt.safetensors"):
        (tmp_path / name).write_bytes(b"\x00not a weights file" * 10)
        assert "cannot read" in _one_line_error(str(tmp_path / name))
    assert "not found" in _one_line_error(str(tmp_path / "absent.pth"))


def test_wrong_model_files_are_named(tmp_path):
    dit = tmp_path / "dit.safetensors"
    save_file({"model.blocks.0.self_attn.q.weight": torch.zeros(4, 4)}, str(dit))
    assert "diffusion transformer" in _one_line_error(str(dit))
    clip = tmp_path / "clip.pth"
    torch.save({"visual.patch_embedding.weight": torch.zeros(2), "textual.head.weight": torch.zeros(2)}, clip)
    assert "CLIP" in _one_line_error(str(clip))
    small = tmp_path / "tiny.pth"
    torch.save(tiny_vae().state_dict(), small)
    assert "shape" in _one_line_error(str(small), VAEConfig(base_dim=16))
