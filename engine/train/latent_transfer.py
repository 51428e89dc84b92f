"""Carry a trained world model over to a new VAE by rotating its latent channels.

A world model sees latents in two places, the patch embedding (the noisy latent and the anchor / image
latent of `cond`) and the head (the velocity). When the new VAE's normalised latents are close to a
rotation of the old VAE's on the same frames, z_old ~ R z_new with R orthogonal (fitted by Procrustes),
the flow-matching path maps exactly: with noise eps_old = R eps_new (still unit Gaussian),
x_t,old = R x_t,new and v_old = R v_new. So the patch-embedding weights of those channels become W R
and the head's rows R^T W, and the rotated model on new latents computes R^T (old model on R z):
the old model, up to how well the rotation fits. Training then continues on the new latents.

python -m engine.train.latent_transfer --model M.safetensors --old-vae A.safetensors --new-vae B.safetensors \
    --data data/doom2 --out M_new.safetensors
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from engine.checkpoint import PRESET_KEY, load_model_state
from engine.conditioning import MASK_CHANNELS
from engine.train.ckpt import save_weights


def relative_mse(target: torch.Tensor, pred: torch.Tensor) -> float:
    """Mean squared error of pred against target [N, C], divided by target's mean per-channel variance."""
    return float((target - pred).pow(2).mean() / target.var(0).mean())


def fit_rotation(old: torch.Tensor, new: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Orthogonal R [C, C] minimising |old - R new| over latents [N, C] (rows: latent pixels).

    Returns (R, residual): residual is the mean squared error after rotation divided by old's variance."""
    old, new = old.double(), new.double()
    u, _, vh = torch.linalg.svd(old.t() @ new)  # Procrustes: R = U V^T of the cross-covariance
    r = u @ vh
    return r.float(), relative_mse(old, new @ r.t())


def rotate_world_model(state: dict[str, torch.Tensor], r: torch.Tensor) -> dict[str, torch.Tensor]:
    """World-model weights for latents z_new = R^T z_old. R [C, C] orthogonal, C = the model's out_dim.

    Input channels [0, C) are the noisy latent; channels after the mask are the conditioning latent (both
    conditionings, `image` and `last_latent`, put [mask, latent] after it)."""
    out = dict(state)
    w = state["patch_embedding.weight"]  # [D, in_dim, pt, ph, pw]
    c = r.shape[0]
    cond = slice(c + MASK_CHANNELS, 2 * c + MASK_CHANNELS)
    if w.shape[1] not in (c, 2 * c + MASK_CHANNELS):
        raise ValueError(
            f"patch embedding has {w.shape[1]} input channels; expected {c} or {2 * c + MASK_CHANNELS}"
        )
    rot = r.to(torch.float64)
    w_new = w.double().clone()
    latent_channels = [slice(0, c)] + ([cond] if w.shape[1] > c else [])  # noisy, conditioning latent
    for ch in latent_channels:
        w_new[:, ch] = torch.einsum("dipqs,ij->djpqs", w_new[:, ch], rot)
    out["patch_embedding.weight"] = w_new.to(w.dtype)
    hw, hb = state["head.head.weight"], state["head.head.bias"]  # rows in (p q r c) order, c innermost
    out["head.head.weight"] = (
        torch.einsum("ij,pid->pjd", rot, hw.double().reshape(-1, c, hw.shape[1]))
        .reshape(hw.shape)
        .to(hw.dtype)
    )
    out["head.head.bias"] = (
        torch.einsum("ij,pi->pj", rot, hb.double().reshape(-1, c)).reshape(hb.shape).to(hb.dtype)
    )
    return out


@torch.no_grad()
def paired_latents(old_vae, new_vae, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised latents of the same clips [N, T, 3, H, W] under both VAEs, as rows [M, C]."""
    old, new = [], []
    for clip in clips:
        old.append(old_vae.encode(clip[None].float()))
        new.append(new_vae.encode(clip[None].float()))
    flat = lambda zs: torch.cat(zs).movedim(2, -1).reshape(-1, zs[0].shape[2])  # noqa: E731
    return flat(old), flat(new)


def main(argv=None) -> int:
    from engine.config import load_preset
    from engine.train.frame_clips import FrameClips, load_episodes
    from engine.vae.factory import build_vae

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="world-model weights trained on the old VAE's latents")
    p.add_argument("--old-vae", required=True)
    p.add_argument("--new-vae", required=True)
    p.add_argument("--preset", default="doom", help="VAE architecture")
    p.add_argument("--data", nargs="+", default=["data/doom2"])
    p.add_argument("--clips", type=int, default=32, help="clips of 17 frames to fit the rotation on")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    vae_cfg = load_preset(args.preset).vae
    try:
        old_vae = build_vae(vae_cfg, args.old_vae).float().eval()
        new_vae = build_vae(vae_cfg, args.new_vae).float().eval()
        state, preset = load_model_state(args.model)  # CheckpointError (a ValueError): one line
    except ValueError as e:
        raise SystemExit(f"latent_transfer: {e}") from None
    clips = FrameClips(load_episodes(args.data), 17).fixed(args.clips)
    old, new = paired_latents(old_vae, new_vae, clips)
    r, residual = fit_rotation(old, new)
    base = relative_mse(old, new)
    print(f"rotation fitted on {len(old)} latent pixels: MSE/var {base:.3f} as is, {residual:.3f} rotated")
    meta = {} if preset is None else {PRESET_KEY: json.dumps(preset)}
    save_weights(rotate_world_model(state, r), Path(args.out), meta)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
