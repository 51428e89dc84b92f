"""Training clips from recorded shards, as pixels or as cached VAE latents.

Convention (engine.actions): keyboard[i] / mouse[i] are the action held while frame i is shown; it takes
frame i to frame i + 1. A clip of T = 1 + 4k video frames starting at frame s yields the frames s..s+T-1
and the actions of the same frames (the last action's result lies outside the clip).

Pixel clips (`ClipDataset(root, clip_frames=1 + 4k)`):
    frames float32 [T, 3, H, W] in [-1, 1] (or uint8 [T, H, W, 3] with `uint8=True`),
    keyboard float32 [T, K], mouse float32 [T, 2] ([pitch, yaw]).
Latent clips (`ClipDataset(root, latent_frames=1 + k, latents=CACHE, vae_config=cfg)`), after
`cache_latents`: a cached segment of video frames a..a+4m is encoded in one causal pass, so latent f
covers frames a+4f-3..a+4f (f = 0 covers frame a alone). A clip of latents f0..f0+k yields
    latents float32 [1 + k, C, h, w], keyboard [T, K] and mouse [T, 2] of frames a+4f0 .. a+4f0+4k
    (T = 1 + 4k: latent j of the clip ends at clip frame 4j), first_frame float32 [3, H, W] = frame a+4f0.
For f0 > 0 the first latent also saw the 3 frames before the clip's first frame.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from engine.config import resolve_path
from engine.data.shards import Shard, load_shard, read_index

LATENT_FORMAT = "worldplayer-latents/1"


def to_model_frames(frames: np.ndarray) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> float32 [T, 3, H, W] in [-1, 1]."""
    x = torch.from_numpy(np.array(frames)).permute(0, 3, 1, 2)  # [T, 3, H, W]
    return x.float() / 127.5 - 1.0


def vae_fingerprint(vae_config) -> dict:
    """What identifies a VAE for the latent cache: its config fields plus a hash of its checkpoint file."""
    cfg = dataclasses.asdict(vae_config) if dataclasses.is_dataclass(vae_config) else dict(vae_config)
    cfg = json.loads(json.dumps(cfg))  # tuples -> lists, as stored in JSON
    path = resolve_path(cfg.get("checkpoint", "") or "")
    if path and os.path.isfile(path):
        h = hashlib.sha256(str(os.path.getsize(path)).encode())
        with open(path, "rb") as f:
            h.update(f.read(1 << 20))
            f.seek(max(0, os.path.getsize(path) - (1 << 20)))
            h.update(f.read(1 << 20))
        cfg["checkpoint_digest"] = h.hexdigest()
    return cfg


class DatasetShards:
    """All shards of a dataset folder, opened (frames memory-mapped) and validated."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.index = read_index(self.root)
        self.height, self.width = int(self.index["height"]), int(self.index["width"])
        self.shards: list[Shard] = [
            load_shard(self.root, e, self.height, self.width) for e in self.index["shards"]
        ]

    def runs(self) -> list[tuple[int, int, int, int]]:
        """(shard index, episode id, first frame, frame count) for every episode in the dataset."""
        return [(i, ep, s, n) for i, sh in enumerate(self.shards) for ep, s, n in sh.episodes()]


class ClipDataset(Dataset):
    """Clips of 1 + 4k video frames (or 1 + k cached latents) with their per-frame actions; see module doc."""

    def __init__(
        self,
        root: str | Path,
        clip_frames: Optional[int] = None,
        latent_frames: Optional[int] = None,
        stride: int = 4,
        latents: Optional[str | Path] = None,
        vae_config=None,
        uint8: bool = False,
    ):
        self.data = DatasetShards(root)
        self.uint8 = uint8
        self.latent_dir = Path(latents) if latents is not None else None
        if self.latent_dir is None:
            if clip_frames is None or clip_frames < 1 or (clip_frames - 1) % 4:
                raise ValueError(f"clip_frames must be 1 + 4k, got {clip_frames}")
            self.T = clip_frames
            self.items = [
                (sh, s + j) for sh, _, s, n in self.data.runs() for j in range(0, n - clip_frames + 1, stride)
            ]  # (shard, first frame)
        else:
            if latent_frames is None or latent_frames < 1:
                raise ValueError(f"latent_frames must be >= 1 with latents, got {latent_frames}")
            self.L, self.T = latent_frames, 1 + 4 * (latent_frames - 1)
            self.cache = read_latent_index(self.latent_dir, vae_config, self.data)
            names = {sh.name: i for i, sh in enumerate(self.data.shards)}
            self.items = [
                (names[seg["shard"]], k, f0)
                for k, seg in enumerate(self.cache["segments"])
                for f0 in range(0, seg["latent_frames"] - latent_frames + 1, max(1, stride // 4))
            ]  # (shard, segment, first latent)
        if not self.items:
            raise ValueError(f"{root}: no episode is long enough for clips of {self.T} video frames")

    def __len__(self) -> int:
        return len(self.items)

    def _actions(self, shard: Shard, start: int) -> dict:
        return dict(
            keyboard=torch.from_numpy(np.array(shard.keyboard[start : start + self.T], np.float32)),  # [T, K]
            mouse=torch.from_numpy(np.array(shard.mouse[start : start + self.T], np.float32)),  # [T, 2]
        )

    def __getitem__(self, i: int) -> dict:
        if self.latent_dir is None:
            sh, start = self.items[i]
            shard = self.data.shards[sh]
            frames = shard.frames[start : start + self.T]  # uint8 [T, H, W, 3]
            out = dict(frames=torch.from_numpy(np.array(frames)) if self.uint8 else to_model_frames(frames))
            return dict(out, **self._actions(shard, start), start=start, shard=sh)
        sh, k, f0 = self.items[i]
        shard, seg = self.data.shards[sh], self.cache["segments"][k]
        z = np.load(self.latent_dir / seg["file"], mmap_mode="r")[f0 : f0 + self.L]  # [L, C, h, w]
        start = seg["start"] + 4 * f0
        first = to_model_frames(shard.frames[start : start + 1])[0]  # [3, H, W]
        out = dict(latents=torch.from_numpy(np.array(z, np.float32)), first_frame=first)
        return dict(out, **self._actions(shard, start), start=start, shard=sh)


def read_latent_index(cache_dir: Path, vae_config, data: DatasetShards) -> dict:
    """Read a latent cache index and check it belongs to this dataset and to this VAE config."""
    path = Path(cache_dir) / "index.json"
    if not path.is_file():
        raise ValueError(f"latent cache {cache_dir} has no index.json; build it with cache_latents()")
    cache = json.loads(path.read_text())
    if cache.get("format") != LATENT_FORMAT:
        raise ValueError(f"{path}: format {cache.get('format')!r}, expected {LATENT_FORMAT!r}")
    if vae_config is None:
        raise ValueError("a latent cache needs vae_config to check it was made by the same VAE")
    want, have = vae_fingerprint(vae_config), cache["vae"]
    if want != have:
        diff = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
        details = ", ".join(f"{k}: cache {have.get(k)!r} vs {want.get(k)!r}" for k in diff)
        raise ValueError(
            f"latent cache {cache_dir} was made with a different VAE config ({details}); rebuild it"
        )
    frames = {sh.name: len(sh) for sh in data.shards}
    for seg in cache["segments"]:
        if frames.get(seg["shard"], -1) < seg["start"] + seg["video_frames"]:
            raise ValueError(
                f"latent cache {cache_dir}: segment {seg['file']} does not match shard {seg['shard']}"
            )
    return cache


def segments(start: int, length: int, segment_frames: Optional[int]) -> list[tuple[int, int]]:
    """Split an episode run into (first frame, 1 + 4m frames) segments encoded independently."""
    if segment_frames is None:
        return [(start, 1 + 4 * ((length - 1) // 4))]
    if (segment_frames - 1) % 4:
        raise ValueError(f"segment_frames must be 1 + 4m, got {segment_frames}")
    return [(start + a, segment_frames) for a in range(0, length - segment_frames + 1, segment_frames)]


@torch.no_grad()
def cache_latents(
    dataset_dir: str | Path,
    vae,
    out: str | Path,
    vae_config,
    segment_frames: Optional[int] = None,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    store_dtype: str = "float16",
    batch: int = 1,
) -> Path:
    """Encode every episode of a dataset with `vae` (engine.vae.protocol.VideoVAE) and store the latents.

    One .npy per episode segment ([1 + m, C, h, w], normalised latents) plus out/index.json recording the
    VAE fingerprint (config + checkpoint digest) and the segments. segment_frames None encodes whole
    episodes (trimmed to 1 + 4m frames); otherwise episodes are cut into independent segments of that
    many frames (each segment's latent 0 is a true first-frame latent, as at inference), encoded
    `batch` segments at a time.
    """
    from tqdm import tqdm

    data, out = DatasetShards(dataset_dir), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    segs, shape = [], None
    for sh, ep, start, length in tqdm(data.runs(), desc="encoding", unit="episode"):
        shard = data.shards[sh]
        parts = segments(start, length, segment_frames)
        for i in range(0, len(parts), batch):
            group = parts[i : i + batch]  # equal lengths, except a whole episode (one part)
            x = torch.stack([to_model_frames(shard.frames[a : a + n]) for a, n in group])  # [B, T, 3, H, W]
            z = vae.encode(x.to(device, dtype)).float().cpu().numpy()  # [B, 1 + m, C, h, w]
            n = group[0][1]
            if z.shape[1] != 1 + (n - 1) // 4:
                raise ValueError(
                    f"VAE encoded {n} frames to {z.shape[1]} latents, expected {1 + (n - 1) // 4}"
                )
            shape = list(z.shape[2:])
            for (a, n), zb in zip(group, z, strict=True):
                name = f"{shard.name}_e{ep:05d}_f{a:06d}.npy"
                np.save(out / name, zb.astype(store_dtype))
                seg = dict(
                    shard=shard.name, episode=ep, start=a, video_frames=n, latent_frames=len(zb), file=name
                )
                segs.append(seg)
    index = dict(
        format=LATENT_FORMAT,
        vae=vae_fingerprint(vae_config),
        dataset=str(Path(dataset_dir).resolve()),
        latent_shape=shape,
        segment_frames=segment_frames,
        segments=segs,
    )
    tmp = out / ".index.json.tmp"
    tmp.write_text(json.dumps(index, indent=1))
    os.replace(tmp, out / "index.json")
    return out / "index.json"
