"""CLIP vision tower (open-clip XLM-RoBERTa-large ViT-H/14, as in Wan 2.1 / Matrix-Game 2.0): image tokens.

`ClipVisionEncoder.encode(image)` takes image [B, 3, H, W] in [-1, 1] and returns the tokens after
`use_layers` of the tower's blocks, [B, 1 + (image_size / patch_size)^2, width] ([B, 257, 1280] for
ViT-H/14): class token first, no post-norm, no projection. That is what the world model's
cross-attention reads (`visual_context`).

Parameter names are those of `models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth` under
`visual.`; only the blocks that are used are built (the last block, `visual.post_norm` and
`visual.head` of the file are skipped, as is the whole text tower).
"""

from __future__ import annotations

import re
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from engine.config import ImageEncoderConfig
from engine.model.attention import attention
from engine.vae.weights import WeightsFileError, check_keys, guess_model, read_state_dict

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
NORM_EPS = 1e-5


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in fp32 and returned in the input dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(
            x.float(), self.normalized_shape, self.weight.float(), self.bias.float(), self.eps
        ).to(x.dtype)


class SelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.to_qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B, L, D]
        qkv = rearrange(self.to_qkv(x), "b l (three n d) -> three b n l d", three=3, n=self.num_heads)
        y = attention(qkv[0], qkv[1], qkv[2])  # [B, N, L, Dh]
        return self.proj(rearrange(y, "b n l d -> b l (n d)"))


class AttentionBlock(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x)) with exact GELU."""

    def __init__(self, dim: int, mlp_ratio: float, num_heads: int):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = LayerNorm(dim, eps=NORM_EPS)
        self.attn = SelfAttention(dim, num_heads)
        self.norm2 = LayerNorm(dim, eps=NORM_EPS)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """Patch conv (no bias) + class token + positions, pre-norm, `num_blocks` blocks. [B,3,S,S] -> [B,L,D]."""

    def __init__(self, cfg: ImageEncoderConfig, num_blocks: int):
        super().__init__()
        if cfg.image_size % cfg.patch_size:
            raise ValueError(f"image_size {cfg.image_size} is not a multiple of patch_size {cfg.patch_size}")
        num_patches = (cfg.image_size // cfg.patch_size) ** 2
        gain = cfg.width**-0.5
        self.patch_embedding = nn.Conv2d(3, cfg.width, cfg.patch_size, stride=cfg.patch_size, bias=False)
        self.cls_embedding = nn.Parameter(gain * torch.randn(1, 1, cfg.width))
        self.pos_embedding = nn.Parameter(gain * torch.randn(1, 1 + num_patches, cfg.width))
        self.pre_norm = LayerNorm(cfg.width, eps=NORM_EPS)
        self.transformer = nn.Sequential(
            *[AttentionBlock(cfg.width, cfg.mlp_ratio, cfg.heads) for _ in range(num_blocks)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = rearrange(self.patch_embedding(x), "b d gh gw -> b (gh gw) d")  # [B, P, D]
        x = torch.cat([self.cls_embedding.to(x.dtype).expand(x.shape[0], -1, -1), x], dim=1)  # [B, 1+P, D]
        x = self.pre_norm(x + self.pos_embedding.to(x.dtype))
        return self.transformer(x)


class ClipVisionEncoder(nn.Module):
    """The CLIP image branch of Matrix-Game 2.0: preprocessing + the first `use_layers` ViT blocks."""

    def __init__(self, cfg: ImageEncoderConfig):
        super().__init__()
        if not 0 < cfg.use_layers <= cfg.layers:
            raise ValueError(f"image encoder use_layers {cfg.use_layers} must be in 1..layers ({cfg.layers})")
        self.cfg = cfg
        self.out_dim = cfg.width
        self.num_tokens = 1 + (cfg.image_size // cfg.patch_size) ** 2
        self.visual = VisionTransformer(cfg, cfg.use_layers)

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [-1, 1] -> [B, 3, S, S] CLIP-normalised (bicubic resize to a square, no crop)."""
        size = (self.cfg.image_size, self.cfg.image_size)
        x = F.interpolate(image.float(), size=size, mode="bicubic", align_corners=False)
        mean = torch.tensor(CLIP_MEAN, device=x.device)[:, None, None]
        std = torch.tensor(CLIP_STD, device=x.device)[:, None, None]
        return (x * 0.5 + 0.5 - mean) / std

    @torch.no_grad()
    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """image [B, 3, H, W] in [-1, 1] -> tokens [B, 1 + P, width] in the weights' dtype."""
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"image must be [B, 3, H, W], got {tuple(image.shape)}")
        x = self.preprocess(image).to(self.visual.patch_embedding.weight.dtype)
        return self.visual(x)

    forward = encode


def load_clip_vision(
    cfg: ImageEncoderConfig,
    path: str,
    device: str | torch.device = "cpu",
    dtype: Optional[torch.dtype] = None,
) -> ClipVisionEncoder:
    """The vision tower from `models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth` (text tower ignored).

    Also accepts a file holding only the `visual.*` tensors (.pth or .safetensors).
    """
    expected = (
        f"an open-clip ViT vision tower (visual.* keys; width {cfg.width}, {cfg.layers} blocks) such as "
        "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"
    )
    sd = read_state_dict(path, expected)
    if "visual.patch_embedding.weight" not in sd:
        raise WeightsFileError(f"{path}: holds {guess_model(sd)}, not {expected}")
    blocks = {int(m.group(1)) for k in sd if (m := re.match(r"visual\.transformer\.(\d+)\.", k))}
    if len(blocks) != cfg.layers:
        raise WeightsFileError(f"{path}: the vision tower has {len(blocks)} blocks; expected {expected}")
    unused = re.compile(r"visual\.(post_norm\.|head$|proj$|transformer\.(\d+)\.)")

    def keep(k: str) -> bool:
        if not k.startswith("visual."):
            return False
        m = unused.match(k)
        return m is None or (m.group(2) is not None and int(m.group(2)) < cfg.use_layers)

    sd = {k: v for k, v in sd.items() if keep(k)}
    with torch.device("meta"):
        model = ClipVisionEncoder(cfg)
    check_keys(path, expected, sd, model.state_dict())
    model.load_state_dict(sd, assign=True)
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)


def build_image_encoder(cfg: ImageEncoderConfig) -> Optional[ClipVisionEncoder]:
    """The preset's CLIP vision tower with the weights in `cfg.checkpoint` (random if empty), or None
    for presets without an image-context branch (`kind: none`)."""
    if cfg.kind == "none":
        return None
    if cfg.kind == "clip":
        return load_clip_vision(cfg, cfg.checkpoint) if cfg.checkpoint else ClipVisionEncoder(cfg)
    raise ValueError(f"unknown image encoder kind {cfg.kind!r}; expected 'clip' or 'none'")
