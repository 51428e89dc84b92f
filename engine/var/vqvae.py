"""Small multi-scale VQ-VAE tokenizer for 256x144 frames (VAR-style, scaled down ~50x).

Pixels: img [B, 3, H, W] in [-1, 1]. Latent: f [B, Cv, H / 16, W / 16]. A 4x4 pixel-unshuffle stem and two
stride-2 levels keep it cheap on a CPU; the quantizer is `MultiScaleQuantizer`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from engine.var.config import TokenizerConfig
from engine.var.quantizer import MultiScaleQuantizer


def _norm(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, c // 4), c, eps=1e-6)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.n1, self.c1 = _norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.n2, self.c2 = _norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c1(F.silu(self.n1(x)))
        return self.skip(x) + self.c2(F.silu(self.n2(h)))


class Encoder(nn.Module):
    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        chs = [cfg.ch * m for m in cfg.ch_mult]
        layers: list[nn.Module] = [nn.PixelUnshuffle(4), nn.Conv2d(48, chs[0], 3, padding=1)]
        for i, c in enumerate(chs):
            cin = chs[max(i - 1, 0)]
            layers += [ResBlock(cin if j == 0 else c, c) for j in range(cfg.num_res)]
            if i < len(chs) - 1:
                layers.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
        layers += [
            ResBlock(chs[-1], chs[-1]),
            _norm(chs[-1]),
            nn.SiLU(),
            nn.Conv2d(chs[-1], cfg.cvae, 3, padding=1),
        ]
        self.net = nn.Sequential(*layers)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.net(img)  # [B, 3, H, W] -> [B, Cv, H/16, W/16]


class Decoder(nn.Module):
    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        chs = [cfg.ch * m for m in cfg.ch_mult][::-1]
        layers: list[nn.Module] = [nn.Conv2d(cfg.cvae, chs[0], 3, padding=1), ResBlock(chs[0], chs[0])]
        for i, c in enumerate(chs):
            cin = chs[max(i - 1, 0)]
            layers += [ResBlock(cin if j == 0 else c, c) for j in range(cfg.num_res + 1)]
            if i < len(chs) - 1:
                layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, c, 3, padding=1)]
        layers += [_norm(chs[-1]), nn.SiLU(), nn.Conv2d(chs[-1], 48, 3, padding=1), nn.PixelShuffle(4)]
        self.net = nn.Sequential(*layers)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.net(f)  # [B, Cv, H/16, W/16] -> [B, 3, H, W]


class VQVAE(nn.Module):
    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        if cfg.scales[-1] != (cfg.height // cfg.downsample, cfg.width // cfg.downsample):
            raise ValueError(
                f"last scale {cfg.scales[-1]} != latent size of {cfg.height}x{cfg.width} / {cfg.downsample}"
            )
        self.cfg = cfg
        self.encoder, self.decoder = Encoder(cfg), Decoder(cfg)
        self.quant_conv = nn.Conv2d(cfg.cvae, cfg.cvae, 3, padding=1)
        self.post_quant_conv = nn.Conv2d(cfg.cvae, cfg.cvae, 3, padding=1)
        self.quantize = MultiScaleQuantizer(
            cfg.vocab, cfg.cvae, cfg.scales, cfg.num_phi, cfg.quant_resi, cfg.beta
        )

    def encode_f(self, img: torch.Tensor) -> torch.Tensor:
        return self.quant_conv(self.encoder(img))

    def forward(self, img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training: img [B, 3, H, W] -> (reconstruction, VQ loss, code usage [V])."""
        with torch.autocast(img.device.type, enabled=False):  # nearest-code search in fp32
            f_hat, vq_loss, usage = self.quantize(self.encode_f(img).float())
        return self.decoder(self.post_quant_conv(f_hat)), vq_loss, usage

    @torch.no_grad()
    def img_to_idx(self, img: torch.Tensor) -> list[torch.Tensor]:
        return self.quantize.encode(self.encode_f(img))

    def fhat_to_img(self, f_hat: torch.Tensor) -> torch.Tensor:
        """f_hat [B, Cv, h, w] -> pixels [B, 3, H, W] in [-1, 1]."""
        return self.decoder(self.post_quant_conv(f_hat)).clamp(-1, 1)

    def idx_to_img(self, idx: list[torch.Tensor]) -> torch.Tensor:
        return self.fhat_to_img(self.quantize.idx_to_fhat(idx))


def load_config_meta(path: str | Path, cls: type):
    """Read the config dataclass stored as JSON in a safetensors file's metadata (key `var_config`)."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    if "var_config" not in meta:
        raise ValueError(f"{path}: no 'var_config' metadata; not a worldplayer VAR checkpoint")
    d = json.loads(meta["var_config"])
    d["scales"] = tuple(tuple(s) for s in d["scales"])
    d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
    return cls(**d)


def load_vqvae(path: str | Path) -> VQVAE:
    """Load a tokenizer saved by `engine.var.train tokenizer` (eval mode, fp32)."""
    if not Path(path).is_file():
        raise ValueError(f"VAR tokenizer weights not found: {path}")
    model = VQVAE(load_config_meta(path, TokenizerConfig))
    model.load_state_dict(load_file(str(path)))
    return model.eval()
