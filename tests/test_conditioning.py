"""Image loading and the image <-> tensor adapters; cond_concat and visual_context from a start image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from engine.conditioning import (
    ImageFileError,
    build_condition,
    center_crop_box,
    frames_to_uint8,
    image_to_tensor,
    load_image,
)
from engine.config import ImageEncoderConfig, VAEConfig
from engine.model.clip import ClipVisionEncoder
from engine.vae.wan_vae import WanVAE


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_center_crop_box_matches_the_official_resizecrop():
    assert center_crop_box(640, 480, 352, 640) == (0, 64, 640, 416)  # too tall: crop rows
    assert center_crop_box(1000, 352, 352, 640) == (180, 0, 820, 352)  # too wide: crop columns
    assert center_crop_box(640, 352, 352, 640) == (0, 0, 640, 352)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP"])
def test_load_image_any_format_crops_and_resizes(tmp_path, fmt):
    rgb = np.zeros((120, 100, 3), np.uint8)  # tall image; a red band in the rows the crop removes
    rgb[:30] = (255, 0, 0)
    rgb[30:] = (0, 0, 255)
    path = tmp_path / f"start.{fmt.lower()}"
    Image.fromarray(rgb).save(path, format=fmt)
    img = load_image(str(path), 36, 64)
    assert img.shape == (36, 64, 3) and img.dtype == np.uint8
    assert img[..., 2].min() > 200 and img[..., 0].max() < 60  # only the blue part survives the crop


def test_load_image_keeps_an_exact_size_image_unchanged(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (36, 64, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "exact.png")
    np.testing.assert_array_equal(load_image(str(tmp_path / "exact.png"), 36, 64), rgb)


def _one_line_error(path: str, words: str) -> None:
    with pytest.raises(ImageFileError) as e:
        load_image(path, 36, 64)
    msg = str(e.value)
    assert path in msg and words in msg and "\n" not in msg


def test_missing_unreadable_and_tiny_images_give_one_clear_error(tmp_path):
    _one_line_error(str(tmp_path / "absent.png"), "not found")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n but then garbage")
    _one_line_error(str(tmp_path / "broken.png"), "cannot read")
    (tmp_path / "notes.jpg").write_text("hello")
    _one_line_error(str(tmp_path / "notes.jpg"), "cannot read")
    Image.fromarray(np.zeros((10, 200, 3), np.uint8)).save(tmp_path / "strip.png")
    _one_line_error(str(tmp_path / "strip.png"), "at least")


def test_uint8_tensor_round_trip():
    img = np.random.default_rng(1).integers(0, 256, (8, 16, 3), dtype=np.uint8)
    img[0, 0], img[0, 1] = 0, 255
    x = image_to_tensor(img)
    assert x.shape == (1, 3, 8, 16) and x.dtype == torch.float32
    assert x.min() == -1.0 and x.max() == 1.0
    frames = frames_to_uint8(torch.cat([x[:, None], x[:, None]], dim=1))  # [1, 2, 3, H, W]
    assert frames.shape == (2, 8, 16, 3) and frames.dtype == np.uint8
    np.testing.assert_array_equal(frames[1], img)
    np.testing.assert_array_equal(frames_to_uint8(torch.full((1, 3, 2, 2), 3.0))[0], 255)  # clipped


def test_build_condition_blocks_and_visual_context():
    torch.manual_seed(0)
    vae = WanVAE(VAEConfig(base_dim=8)).eval()
    clip = ClipVisionEncoder(
        ImageEncoderConfig(
            kind="clip", image_size=28, patch_size=14, width=32, layers=2, heads=2, use_layers=1
        )
    )
    image = torch.rand(1, 3, 16, 24) * 2 - 1
    cond = build_condition(vae, image, clip)
    assert cond.visual_context.shape == (1, 5, 32)
    first, second = cond.next(3), cond.next(3)
    assert first.shape == second.shape == (1, 3, 20, 2, 3)
    assert (first[:, 0, :4] == 1).all() and (first[:, 1:, :4] == 0).all() and (second[:, :, :4] == 0).all()
    video = torch.cat([image[:, None], torch.zeros(1, 20, 3, 16, 24)], dim=1)  # [image, 4 * 5 gray]
    torch.testing.assert_close(
        torch.cat([first, second], 1)[:, :, 4:], vae.encode(video), atol=1e-5, rtol=1e-5
    )
    assert build_condition(vae, image, None).visual_context is None
