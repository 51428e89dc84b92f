"""The one adapter between app images and engine tensors, and the world model's image conditioning.

Layouts: app images uint8 [H, W, 3] (numpy); engine pixels [B, 3, H, W] / [B, T, 3, H, W] float in
[-1, 1]; app video uint8 [T, H, W, 3]. The start image conditions the model twice (Matrix-Game 2.0):
- `cond_concat` [B, n, 4 + C, h, w] per block: a 4-channel mask (1 at latent 0, else 0) followed by
  the VAE latents of [image, gray, gray, ...], streamed block by block;
- `visual_context` [B, 257, 1280]: CLIP tokens of the image, or None for presets without CLIP.
Presets with `condition: last_latent` fill the latent channels with the latest latent before each
block instead (`anchor_latents`), exactly as the model saw it in its context pass: clean, or noised to
the sampler's `context_noise` (GameNGen-style context noise), and mask channel `LEVEL_CHANNEL` holds
that noise level sigma = t / 1000 (0 for a clean anchor), so the model knows how far to trust it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from engine.vae.protocol import ConditionStream, VideoVAE

MIN_IMAGE_SIDE = 32  # pixels; smaller start images are refused
MASK_CHANNELS = 4
LEVEL_CHANNEL = 1  # mask channel of a last_latent anchor's noise level (latent 0 has an all-1 mask)


class ImageFileError(ValueError):
    """A start image that is missing, unreadable or too small."""


def center_crop_box(width: int, height: int, target_h: int, target_w: int) -> tuple[int, int, int, int]:
    """The official `_resizecrop` box: largest centred crop with the target aspect ratio (PIL rounding)."""
    if height / width > target_h / target_w:
        new_w, new_h = width, int(width * target_h / target_w)
    else:
        new_w, new_h = int(height * target_w / target_h), height
    box = ((width - new_w) / 2, (height - new_h) / 2, (width + new_w) / 2, (height + new_h) / 2)
    return tuple(int(round(v)) for v in box)  # type: ignore[return-value]


def _to_8_bit(im: Image.Image) -> Image.Image:
    """16-bit grayscale (PIL modes I;16*, or I holding 16-bit values) -> mode L, scaled by 255 / 65535.

    PIL's own convert("RGB") clips these modes at 255, which turns a 16-bit image almost all white."""
    if not (im.mode.startswith("I;16") or im.mode == "I"):
        return im
    gray = np.asarray(im, dtype=np.float64)  # [H, W]
    return Image.fromarray(np.clip(np.round(gray / 257.0), 0, 255).astype(np.uint8))  # mode L


def load_image(path: str, height: int, width: int) -> np.ndarray:
    """Any image file PIL reads -> uint8 [height, width, 3]: centre crop to the aspect, antialiased resize."""
    if not os.path.isfile(path):
        raise ImageFileError(f"{path}: image file not found; expected a PNG/JPEG/WebP/... start image")
    try:
        with Image.open(path) as im:
            im.load()
            image = _to_8_bit(im).convert("RGB")
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as e:
        reason = (str(e).splitlines() or [type(e).__name__])[0][:120]
        raise ImageFileError(
            f"{path}: cannot read as an image ({reason}); expected a PNG/JPEG/WebP/... file"
        ) from None
    w, h = image.size
    if min(w, h) < MIN_IMAGE_SIDE:
        raise ImageFileError(f"{path}: image is {w}x{h}; expected at least {MIN_IMAGE_SIDE} px on each side")
    image = image.crop(center_crop_box(w, h, height, width))
    if image.size != (width, height):
        image = image.resize((width, height), Image.BILINEAR)  # PIL's bilinear is antialiased (v2.Resize)
    return np.asarray(image, dtype=np.uint8).copy()


def image_to_tensor(image: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
    """uint8 [H, W, 3] -> float32 [1, 3, H, W] in [-1, 1]."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be uint8 [H, W, 3], got {image.dtype} {image.shape}")
    x = torch.from_numpy(np.array(image)).to(device)  # a copy: the array may be read-only
    return (x.permute(2, 0, 1)[None].float() / 127.5 - 1.0).contiguous()


def frames_to_uint8(video: torch.Tensor) -> np.ndarray:
    """[1, T, 3, H, W] (or [T, 3, H, W]) in [-1, 1] -> uint8 [T, H, W, 3] = round(clip((v + 1) * 127.5)).

    Rounds where the official truncates (at most 1 step apart) so uint8 -> tensor -> uint8 is lossless.
    """
    if video.ndim == 5:
        if video.shape[0] != 1:
            raise ValueError(
                f"frames_to_uint8 takes one video, got batch of {video.shape[0]}: {tuple(video.shape)}"
            )
        video = video[0]
    if video.ndim != 4 or video.shape[1] != 3:
        raise ValueError(f"video must be [1, T, 3, H, W] or [T, 3, H, W], got {tuple(video.shape)}")
    x = ((video.detach().float() + 1.0) * 127.5).round_().clamp_(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).contiguous().cpu().numpy()


def mask_latents(image_latents: torch.Tensor, start: int) -> torch.Tensor:
    """cond_concat for latents [B, n, C, h, w] at positions start..start+n-1 -> [B, n, 4 + C, h, w]."""
    b, n, _, h, w = image_latents.shape
    mask = torch.zeros(b, n, MASK_CHANNELS, h, w, device=image_latents.device, dtype=image_latents.dtype)
    if start == 0:
        mask[:, 0] = 1.0
    return torch.cat([mask, image_latents], dim=2)


CONDITIONS = ("image", "last_latent")


def check_condition(kind: str) -> None:
    if kind not in CONDITIONS:
        raise ValueError(f"unknown condition {kind!r}; expected one of: {', '.join(CONDITIONS)}")


def anchor_latents(anchor: torch.Tensor, start: int, num_latents: int, level: float = 0.0) -> torch.Tensor:
    """cond_concat of a `last_latent` preset: [B, n, 4 + C, h, w] for latents start..start+n-1.

    `anchor` [B, 1, C, h, w] is the latest latent before the block as the model's context pass saw it
    (the start image's latent for block 0), repeated for every latent of the block: the model sees the
    previous frame in its input channels, as DIAMOND-style models do, instead of gray frames. The mask
    is `mask_latents`'s, with `level` (the anchor's noise level sigma) in channel `LEVEL_CHANNEL`.
    """
    cond = mask_latents(anchor.expand(-1, num_latents, -1, -1, -1), start)
    if level:
        cond[:, :, LEVEL_CHANNEL] = level
    return cond


def anchors_from_inputs(cond: torch.Tensor, x_in: torch.Tensor, t: torch.Tensor, fpb: int) -> torch.Tensor:
    """Training form of `anchor_latents` for a whole sequence: each block after the sequence's first is
    anchored on the last latent before it *as the model is fed it* (x_in, noised at its own t).

    cond: [B, F, 4 + C, h, w] (first block's anchors kept); x_in: [B, F, C, h, w] the model's input
    latents; t: [B, F] their timesteps. Returns a new cond with LEVEL_CHANNEL = t / 1000 of the anchor.
    """
    n = x_in.shape[1]
    prev = torch.arange(n, device=x_in.device) // fpb * fpb - 1  # [F] frame before each frame's block
    later = prev >= 0
    if not bool(later.any()):
        return cond
    idx = prev[later]
    out = cond.clone()
    out[:, later, MASK_CHANNELS:] = x_in[:, idx].to(cond.dtype)
    level = (t[:, idx].float() / 1000.0).to(cond.dtype)  # [B, F']
    out[:, later, LEVEL_CHANNEL] = level[:, :, None, None].expand(-1, -1, *cond.shape[-2:])
    return out


@dataclass
class ImageCondition:
    """The start image's conditioning for one session. `next(n)` hands out cond_concat block by block."""

    stream: ConditionStream
    visual_context: Optional[torch.Tensor]  # [B, L, D] CLIP tokens, or None
    position: int = 0  # latents handed out so far

    def next(self, num_latents: int) -> torch.Tensor:
        """cond_concat of the next `num_latents` latents: [B, n, 4 + C, h, w]."""
        cond = mask_latents(self.stream.next(num_latents), self.position)
        self.position += num_latents
        return cond


def build_condition(
    vae: VideoVAE, image: torch.Tensor, image_encoder: Optional[torch.nn.Module] = None
) -> ImageCondition:
    """Conditioning for a session from image [B, 3, H, W] in [-1, 1] (H, W the preset's size).

    The VAE latents of [image, gray...] are encoded lazily as blocks are asked for; the CLIP tokens are
    computed now (None when the preset has no image encoder).
    """
    context = image_encoder.encode(image) if image_encoder is not None else None
    return ImageCondition(stream=vae.condition_stream(image), visual_context=context)
