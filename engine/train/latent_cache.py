"""Latent cache for world-model training: every episode encoded once by the preset's VAE.

Layout (one `latents.safetensors` per cache folder, tensors concatenated over episodes):
  latents   [Nl, C, h, w] bf16   continuous causal encode of each episode (latent j: frames rj-r+1 .. rj)
  starts    [Ns, 2] int64        (episode, start latent j0) of every clip start (a grid of `start_every`)
  start_cond[Ns, R, C, h, w]     condition-stream latents of [frame r j0, gray ...] at positions 0..R-1
  gray_cond [C, h, w]            the condition latent at positions >= R (identical for every image)
  keyboard  [Nf, K], mouse [Nf, 2] float32 per video frame; ep_latent0/ep_frame0/ep_latents [E] int64
metadata: the VAE's identity (kind, config, weight fingerprint) and frame size, checked on load so a
cache made with another VAE is an error, never silently used. r is the VAE's temporal ratio
(`LatentCache.temporal`).

Clip position 0 is the start frame encoded alone (as at inference, where latent 0 is the start
image); positions p >= 1 come from the continuous encode (latent j0 + p). The causal encoder has a
finite temporal receptive field of R latents, so the condition latents beyond R do not depend on the
image: the builder checks this and stores them once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from engine.train.episodes import ActionEpisode

CACHE_FILE = "latents.safetensors"


def vae_fingerprint(vae: torch.nn.Module, cfg) -> dict:
    """Identity of a VAE's latents: kind, architecture and a hash of its weights except the decoder's.

    A decoder fine-tune (`freeze_encoder`) keeps the latents, so it keeps the fingerprint too."""
    h = hashlib.sha1()
    for k, v in sorted(vae.state_dict().items()):
        if k.startswith("decoder."):
            continue
        h.update(k.encode())
        h.update(v.detach().float().cpu().numpy().tobytes())
    arch = {k: v for k, v in asdict(cfg).items() if k != "checkpoint"}
    return json.loads(json.dumps({"kind": cfg.kind, "config": arch, "weights_sha1": h.hexdigest()[:16]}))


@dataclass
class LatentCache:
    latents: torch.Tensor  # [Nl, C, h, w]
    starts: torch.Tensor  # [Ns, 2]
    start_cond: torch.Tensor  # [Ns, R, C, h, w]
    gray_cond: torch.Tensor  # [C, h, w]
    keyboard: torch.Tensor  # [Nf, K]
    mouse: torch.Tensor  # [Nf, 2]
    ep_latent0: torch.Tensor  # [E] offset of each episode's latents
    ep_frame0: torch.Tensor  # [E] offset of each episode's frames
    ep_latents: torch.Tensor  # [E] latents per episode
    meta: dict

    @property
    def num_clips(self) -> int:
        return len(self.starts)

    @property
    def temporal(self) -> int:
        """Video frames per latent frame of the VAE that made the cache (latent j ends at frame r j)."""
        return int(self.meta["vae"]["config"].get("temporal", 4))

    def clip_frame0(self, clip: int) -> int:
        """Index into `keyboard` / `mouse` of a clip's frame 0 (its start image)."""
        ep, j0 = self.starts[clip].tolist()
        return int(self.ep_frame0[ep]) + self.temporal * j0


@torch.no_grad()
def condition_receptive_field(vae, height: int, width: int, probe: int = 8) -> int:
    """Positions after which the condition stream no longer depends on the image (checked, not assumed)."""
    g, dev = torch.Generator().manual_seed(0), next(vae.parameters()).device
    imgs = [(torch.rand(1, 3, height, width, generator=g) * 2 - 1).to(dev) for _ in range(2)]
    a, b = (vae.condition_stream(i).next(probe).float() for i in imgs)
    same = [bool(torch.equal(a[:, i], b[:, i])) for i in range(probe)]
    for r in range(probe):
        if all(same[r:]):
            return r
    raise ValueError(
        f"the VAE's condition stream depends on the image beyond {probe} latents; cannot cache it"
    )


@torch.no_grad()
def encode_long(vae, video: torch.Tensor, chunk: int = 16) -> torch.Tensor:
    """Encode a long video [1, 1 + r k, 3, H, W] in chunks of `chunk` latents when the VAE streams."""
    if not hasattr(vae, "encode_frames"):
        return vae.encode(video)
    from engine.vae.tiny_vae_blocks import interleave_first

    r = vae.temporal
    padded, state, out = interleave_first(video, r), None, []  # [1, r(k + 1), 3, H, W]
    for i in range(0, padded.shape[1], r * chunk):
        z, state = vae.encode_frames(padded[:, i : i + r * chunk], state)
        out.append(z)
    return torch.cat(out, dim=1)


@torch.no_grad()
def build_latent_cache(
    vae,
    vae_cfg,
    episodes: list[ActionEpisode],
    out: Path,
    start_every: int,
    min_latents: int,
    batch: int = 4,
    dtype: torch.dtype = torch.float32,
) -> LatentCache:
    """Encode `episodes` with `vae` (eval, on its own device) in `dtype` and write `out/latents.safetensors`.

    bf16 is how a session runs the VAE and several times faster on a CPU than fp32; the fingerprint is
    the fp32 weights' either way. The VAE is handed back in fp32."""
    from safetensors.torch import save_file

    fingerprint = vae_fingerprint(vae, vae_cfg)
    vae.to(dtype)
    dev, r_t = next(vae.parameters()).device, vae.temporal  # r_t video frames per latent
    h, w = episodes[0].frames.shape[1:3]
    r = condition_receptive_field(vae, h, w)
    lat, kb, ms, starts, start_imgs = [], [], [], [], []
    ep_l0, ep_f0, ep_n = [], [], []
    n_lat = n_frm = 0
    from tqdm import tqdm

    for ep in tqdm(episodes, desc="encoding episodes", unit="episode", mininterval=10):
        k = (len(ep.frames) - 1) // r_t  # use 1 + r k frames
        if k + 1 < min_latents:
            continue
        frames = ep.frames[: 1 + r_t * k]
        video = (
            torch.from_numpy(np.array(frames)).permute(0, 3, 1, 2)[None].float() / 127.5 - 1
        )  # [1, T, 3, H, W]
        lat.append(encode_long(vae, video.to(dev))[0].to(torch.bfloat16).cpu())  # [1 + k, C, h, w]
        kb.append(torch.from_numpy(ep.keyboard[: len(frames)]))
        ms.append(torch.from_numpy(ep.mouse[: len(frames)]))
        idx = len(ep_n)
        for j0 in range(0, k + 1 - min_latents + 1, start_every):
            starts.append((idx, j0))
            start_imgs.append(torch.from_numpy(np.array(frames[r_t * j0])))  # uint8 [H, W, 3]: small
        ep_l0.append(n_lat)
        ep_f0.append(n_frm)
        ep_n.append(k + 1)
        n_lat, n_frm = n_lat + k + 1, n_frm + len(frames)
    if not starts:
        raise ValueError(f"no episode has the {1 + r_t * (min_latents - 1)} frames a training clip needs")
    conds = []
    for i in range(0, len(start_imgs), batch):
        imgs = torch.stack(start_imgs[i : i + batch]).permute(0, 3, 1, 2).float() / 127.5 - 1  # [b, 3, H, W]
        conds.append(vae.condition_stream(imgs.to(dev)).next(r + 1).float().cpu())
    cond = torch.cat(conds)  # [Ns, r + 1, C, h, w]
    vae.float()
    meta = {
        "vae": fingerprint,
        "height": h,
        "width": w,
        "receptive": r,
        "clip_latents": min_latents,
    }
    tensors = {
        "latents": torch.cat(lat).contiguous(),  # the VAE runs channels_last
        "starts": torch.tensor(starts, dtype=torch.int64),
        "start_cond": cond[:, :r].to(torch.bfloat16).contiguous(),
        "gray_cond": cond[0, r].to(torch.bfloat16).contiguous(),
        "keyboard": torch.cat(kb).float(),
        "mouse": torch.cat(ms).float(),
        "ep_latent0": torch.tensor(ep_l0),
        "ep_frame0": torch.tensor(ep_f0),
        "ep_latents": torch.tensor(ep_n),
    }
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (CACHE_FILE + ".tmp")
    save_file(tensors, str(tmp), metadata={"worldplayer_latents": json.dumps(meta)})
    tmp.replace(out / CACHE_FILE)
    return LatentCache(**tensors, meta=meta)


def load_latent_cache(folder: Path, expect_vae: dict, height: int, width: int) -> LatentCache:
    """Load a cache and check it was made by the same VAE at the same frame size (ValueError if not)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = folder / CACHE_FILE
    with safe_open(str(path), framework="pt") as f:
        raw = (f.metadata() or {}).get("worldplayer_latents")
    if raw is None:
        raise ValueError(f"{path} is not a worldplayer latent cache (no metadata)")
    meta = json.loads(raw)
    if meta["vae"] != expect_vae:
        raise ValueError(
            f"latent cache {path} was made with another VAE ({meta['vae']['kind']}, weights "
            f"{meta['vae']['weights_sha1']}) than the preset's ({expect_vae['kind']}, weights "
            f"{expect_vae['weights_sha1']}); delete it or point `latents=` elsewhere to re-encode"
        )
    if (meta["height"], meta["width"]) != (height, width):
        raise ValueError(
            f"latent cache {path} is {meta['height']}x{meta['width']}, the preset needs {height}x{width}"
        )
    return LatentCache(**load_file(str(path)), meta=meta)
