"""Multi-scale residual vector quantizer (VAR's VectorQuantizer2) over an (h, w) scale schedule.

Latent layout: f, f_hat [B, Cv, h, w] with (h, w) = scales[-1]. Token maps: idx [B, h_s * w_s] (row-major).
Step inputs for the transformer: [B, h_s * w_s, Cv] (area-downsampled running f_hat).

Encoding, f_rest = f, f_hat = 0, for each step s:
    z = area_down(f_rest, scale_s); idx = nearest codebook row (L2)
    h = phi_{k(s)}(bicubic_up(emb(idx))); f_hat += h; f_rest -= h
All functions here are non-mutating: speculative decoding keeps copies of f_hat and relies on that.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from engine.var.scales import Scales, check_scales, phi_index


class Phi(nn.Conv2d):
    """phi(h) = (1 - r) * h + r * conv3x3(h)."""

    def __init__(self, channels: int, resi: float):
        super().__init__(channels, channels, 3, padding=1)
        self.resi = resi

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h.mul(1 - self.resi) + super().forward(h).mul(self.resi)


class MultiScaleQuantizer(nn.Module):
    def __init__(
        self,
        vocab: int,
        cvae: int,
        scales: Scales,
        num_phi: int = 4,
        quant_resi: float = 0.5,
        beta: float = 0.25,
    ):
        super().__init__()
        check_scales(scales)
        self.vocab, self.cvae, self.scales, self.beta = vocab, cvae, tuple(scales), beta
        self.embedding = nn.Embedding(vocab, cvae)
        nn.init.uniform_(self.embedding.weight, -1 / vocab, 1 / vocab)
        self.phis = nn.ModuleList([Phi(cvae, quant_resi) for _ in range(num_phi)])
        self.phi_of_step = phi_index(len(scales), num_phi)

    @property
    def num_steps(self) -> int:
        return len(self.scales)

    def down(self, f: torch.Tensor, si: int) -> torch.Tensor:
        """Area-downsample [B, Cv, h, w] to scales[si]."""
        hs, ws = self.scales[si]
        return f if f.shape[-2:] == (hs, ws) else F.interpolate(f, size=(hs, ws), mode="area")

    def up_phi(self, h_BCs: torch.Tensor, si: int) -> torch.Tensor:
        """phi_{k(si)}(bicubic_up(h)) for a token-map embedding h [B, Cv, h_s, w_s] -> [B, Cv, h, w]."""
        size = self.scales[-1]
        if h_BCs.shape[-2:] != size:
            h_BCs = F.interpolate(h_BCs, size=size, mode="bicubic")
        return self.phis[self.phi_of_step[si]](h_BCs)

    def embed_idx(self, idx_Bl: torch.Tensor, si: int) -> torch.Tensor:
        """Token map idx [B, h_s * w_s] -> codebook vectors [B, Cv, h_s, w_s]."""
        hs, ws = self.scales[si]
        return rearrange(self.embedding(idx_Bl), "b (h w) c -> b c h w", h=hs, w=ws)

    def nearest(self, z_BChw: torch.Tensor) -> torch.Tensor:
        """Nearest codebook row per position: [B, Cv, h, w] -> idx [B, h * w]."""
        z = rearrange(z_BChw, "b c h w -> b (h w) c")
        e = self.embedding.weight  # [V, Cv]
        d = z.pow(2).sum(-1, keepdim=True) - 2 * z @ e.t() + e.pow(2).sum(-1)  # [B, l, V]
        return d.argmin(-1)

    def encode(self, f: torch.Tensor) -> list[torch.Tensor]:
        """Latent f [B, Cv, h, w] -> token maps, one idx [B, h_s * w_s] per step."""
        f_rest, out = f, []
        for si in range(self.num_steps):
            idx = self.nearest(self.down(f_rest, si))
            out.append(idx)
            f_rest = f_rest - self.up_phi(self.embed_idx(idx, si), si)
        return out

    def idx_to_fhat(self, idx: list[torch.Tensor]) -> torch.Tensor:
        """Token maps (all steps) -> f_hat [B, Cv, h, w]."""
        f_hat = 0
        for si, r in enumerate(idx):
            f_hat = f_hat + self.up_phi(self.embed_idx(r, si), si)
        return f_hat

    def next_input(
        self, si: int, f_hat: torch.Tensor, idx_Bl: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Commit step si's tokens: returns (f_hat + phi(up(emb(idx))), input of step si+1 [B, l, Cv] or None
        after the last step). Does not modify f_hat."""
        f_hat = f_hat + self.up_phi(self.embed_idx(idx_Bl, si), si)
        if si == self.num_steps - 1:
            return f_hat, None
        return f_hat, rearrange(self.down(f_hat, si + 1), "b c h w -> b (h w) c")

    def teacher_inputs(self, idx: list[torch.Tensor]) -> torch.Tensor:
        """Transformer inputs for steps 1..K-1 given all token maps: [B, L - 1, Cv]."""
        b, (h, w) = idx[0].shape[0], self.scales[-1]
        f_hat = self.embedding.weight.new_zeros(b, self.cvae, h, w)
        xs = []
        for si in range(self.num_steps - 1):
            f_hat, x = self.next_input(si, f_hat, idx[si])
            xs.append(x)
        return torch.cat(xs, 1)

    def forward(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training path: f [B, Cv, h, w] -> (straight-through f_hat, VQ loss, code usage counts [V])."""
        f_rest, f_hat = f.detach(), torch.zeros_like(f)
        loss, counts = f.new_zeros(()), torch.zeros(self.vocab, device=f.device)
        zs: list[torch.Tensor] = []
        for si in range(self.num_steps):
            z = self.down(f_rest, si).detach()
            idx = self.nearest(z)
            zs.append(rearrange(z, "b c h w -> (b h w) c"))
            counts += torch.bincount(idx.flatten(), minlength=self.vocab).float()
            h = self.up_phi(self.embed_idx(idx, si), si)
            f_hat = f_hat + h
            f_rest = f_rest - h.detach()
            loss = loss + F.mse_loss(f_hat.detach(), f) * self.beta + F.mse_loss(f_hat, f.detach())
        f_st = (f_hat - f).detach() + f  # straight-through to the encoder
        self.last_z = torch.cat(zs)  # [N, Cv] quantizer inputs of this batch, for dead-code restarts
        return f_st, loss / self.num_steps, counts
