"""CLIP vision tower: official names/shapes, preprocessing, attention equals nn.MultiheadAttention, loader."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from safetensors.torch import save_file

from engine.config import ImageEncoderConfig
from engine.model.clip import CLIP_MEAN, CLIP_STD, ClipVisionEncoder, load_clip_vision
from engine.vae.weights import WeightsFileError

TINY = ImageEncoderConfig(
    kind="clip", image_size=28, patch_size=14, width=32, layers=3, heads=2, use_layers=2
)


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def official_file_dict(cfg: ImageEncoderConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """What an official XLMRobertaCLIP checkpoint holds: all `layers` blocks, post_norm, head, text tower."""
    torch.manual_seed(seed)
    full = ClipVisionEncoder(replace(cfg, use_layers=cfg.layers))
    sd = {k: v.clone() for k, v in full.state_dict().items()}
    for v in sd.values():
        v.add_(0.02 * torch.randn_like(v))
    sd["visual.post_norm.weight"] = torch.ones(cfg.width)
    sd["visual.post_norm.bias"] = torch.zeros(cfg.width)
    sd["visual.head"] = torch.randn(cfg.width, 16)
    sd["textual.token_embedding.weight"] = torch.randn(10, 8)
    sd["log_scale"] = torch.tensor(2.6)
    return sd


def test_full_size_names_and_shapes_on_meta():
    with torch.device("meta"):
        enc = ClipVisionEncoder(ImageEncoderConfig(kind="clip"))
        tokens = enc.encode(torch.zeros(1, 3, 352, 640))
    assert tuple(tokens.shape) == (1, 257, 1280)
    shapes = {k: tuple(v.shape) for k, v in enc.state_dict().items()}
    expected = {
        "visual.patch_embedding.weight": (1280, 3, 14, 14),
        "visual.cls_embedding": (1, 1, 1280),
        "visual.pos_embedding": (1, 257, 1280),
        "visual.pre_norm.weight": (1280,),
        "visual.transformer.0.norm1.bias": (1280,),
        "visual.transformer.30.attn.to_qkv.weight": (3840, 1280),
        "visual.transformer.30.attn.proj.weight": (1280, 1280),
        "visual.transformer.30.norm2.weight": (1280,),
        "visual.transformer.30.mlp.0.weight": (5120, 1280),
        "visual.transformer.30.mlp.2.weight": (1280, 5120),
    }
    for k, s in expected.items():
        assert shapes.get(k) == s, (k, shapes.get(k), s)
    assert "visual.patch_embedding.bias" not in shapes  # pre-norm towers have no patch bias
    assert not any(k.startswith("visual.transformer.31.") for k in shapes)  # 31 of 32 blocks are used
    assert "visual.post_norm.weight" not in shapes and "visual.head" not in shapes


def test_preprocessing_is_bicubic_square_resize_and_clip_normalisation():
    enc = ClipVisionEncoder(TINY)
    image = torch.full((1, 3, 20, 36), 0.2)  # constant: bicubic keeps it
    x = enc.preprocess(image)
    assert x.shape == (1, 3, 28, 28)
    for c in range(3):
        torch.testing.assert_close(x[0, c], torch.full((28, 28), (0.6 - CLIP_MEAN[c]) / CLIP_STD[c]))


def test_attention_equals_torch_multihead_attention():
    enc = ClipVisionEncoder(TINY)
    attn = enc.visual.transformer[0].attn
    mha = torch.nn.MultiheadAttention(TINY.width, TINY.heads, batch_first=True)
    with torch.no_grad():
        mha.in_proj_weight.copy_(attn.to_qkv.weight)
        mha.in_proj_bias.copy_(attn.to_qkv.bias)
        mha.out_proj.weight.copy_(attn.proj.weight)
        mha.out_proj.bias.copy_(attn.proj.bias)
        x = torch.randn(2, 5, TINY.width)
        torch.testing.assert_close(attn(x), mha(x, x, x, need_weights=False)[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_loads_visual_tower_from_an_official_style_file(tmp_path, suffix):
    sd = official_file_dict(TINY)
    path = str(tmp_path / f"clip{suffix}")
    torch.save(sd, path) if suffix == ".pth" else save_file(sd, path)
    enc = load_clip_vision(TINY, path)
    for k, v in enc.state_dict().items():
        torch.testing.assert_close(v, sd[k], atol=0, rtol=0)
    tokens = enc.encode(torch.rand(2, 3, 16, 32) * 2 - 1)
    assert tokens.shape == (2, 5, TINY.width) and torch.isfinite(tokens).all()


def _one_line_error(path: str, cfg: ImageEncoderConfig = TINY) -> str:
    with pytest.raises(WeightsFileError) as e:
        load_clip_vision(cfg, path)
    msg = str(e.value)
    assert path in msg and "\n" not in msg and "vision tower" in msg
    return msg


def test_wrong_or_corrupt_files_give_one_clear_error(tmp_path):
    vae = tmp_path / "vae.pth"
    torch.save({"encoder.conv1.weight": torch.zeros(1), "decoder.conv1.weight": torch.zeros(1)}, vae)
    assert "video VAE" in _one_line_error(str(vae))
    corrupt = tmp_path / "clip.pth"
    corrupt.write_bytes(b"PK\x03\x04 truncated")
    assert "cannot read" in _one_line_error(str(corrupt))
    deeper = tmp_path / "deeper.pth"
    torch.save(official_file_dict(TINY), deeper)
    assert "3 blocks" in _one_line_error(str(deeper), replace(TINY, layers=4))
