"""Data alignment and bad-input tests on the synthetic world (CPU, about a second)."""

import json

import numpy as np
import pytest

from engine.actions import ActionBlock
from engine.config import VAEConfig
from engine.data.loader import ClipDataset, cache_latents
from engine.data.shards import read_index, write_index, write_shard
from engine.worlds.synthetic import SyntheticWorld, random_actions, record_synthetic


def moved(before: np.ndarray, after: np.ndarray, dy: int, dx: int) -> bool:
    """after[y, x] == before[y + dy, x + dx] wherever both are in view (camera moved by dy, dx)."""
    h, w = before.shape[:2]
    src = before[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)]
    dst = after[max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)]
    return np.array_equal(src, dst) and (dy == dx == 0 or not np.array_equal(before, after))


def test_synthetic_world_moves_by_known_amount():
    world = SyntheticWorld(16, 24)
    world.start(seed=3)
    before = world.frame
    after = world.advance(np.array([0, 0, 0, 1.0]), np.zeros(2))  # D: camera right by 2 px
    assert moved(before, after, 0, 2)
    after2 = world.advance(np.zeros(4), np.array([0.25, 0.0]))  # pitch up 0.25 * 8 = 2 px: content down
    assert moved(after, after2, -2, 0)


def test_synthetic_step_matches_advance_and_is_deterministic():
    keyboard, mouse = random_actions(21, seed=1)
    runs = []
    for _ in range(2):
        world = SyntheticWorld(16, 16)
        world.start(seed=5)
        a = world.step(ActionBlock(keyboard[:9], mouse[:9]))
        b = world.step(ActionBlock(keyboard[9:], mouse[9:]))
        runs.append(np.concatenate([a, b]))
    assert runs[0].shape == (21, 16, 16, 3) and np.array_equal(runs[0], runs[1])
    world = SyntheticWorld(16, 16)
    world.start(seed=5)
    frames = [world.frame] + [world.advance(keyboard[i], mouse[i]) for i in range(20)]
    assert np.array_equal(np.stack(frames), runs[0])


def test_loader_action_i_takes_frame_i_to_i_plus_1(tmp_path):
    record_synthetic(tmp_path, episodes=2, frames=41, seed=0, height=16, width=16)
    ds = ClipDataset(tmp_path, clip_frames=17, stride=4, uint8=True)
    assert len(ds) == 2 * 7
    probe = SyntheticWorld(16, 16)
    for i in (0, 5, len(ds) - 1):
        item = ds[i]
        frames, kb, ms = item["frames"].numpy(), item["keyboard"].numpy(), item["mouse"].numpy()
        assert frames.shape == (17, 16, 16, 3) and kb.shape == (17, 4) and ms.shape == (17, 2)
        for t in range(16):
            dy, dx = probe.shift(kb[t], ms[t])
            assert moved(frames[t], frames[t + 1], round(dy), round(dx)), t
    x = ClipDataset(tmp_path, clip_frames=5)[0]["frames"]
    assert x.shape == (5, 3, 16, 16) and x.dtype.is_floating_point and -1 <= x.min() and x.max() <= 1


def test_clips_never_cross_episodes(tmp_path):
    frames = np.zeros((30, 8, 8, 3), np.uint8)
    episode = np.repeat([0, 1], [13, 17])
    entry = write_shard(tmp_path, "s", frames, np.zeros((30, 4)), np.zeros((30, 2)), episode=episode)
    write_index(tmp_path, dict(height=8, width=8, fps=17.5, mode="universal"), [entry])
    ds = ClipDataset(tmp_path, clip_frames=9, stride=1)
    assert sorted(ds.items) == [(0, s) for s in range(0, 5)] + [(0, s) for s in range(13, 22)]


def test_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="is empty"):
        ClipDataset(tmp_path, clip_frames=5)
    with pytest.raises(ValueError, match="not found"):
        read_index(tmp_path / "nope")


def test_mismatched_shard_names_the_shard(tmp_path):
    record_synthetic(tmp_path, episodes=2, frames=13, height=8, width=8)
    with np.load(tmp_path / "shard-00001.actions.npz") as a:
        arrays = dict(a)
    arrays["keyboard"] = arrays["keyboard"][:-1]
    np.savez(tmp_path / "shard-00001.actions.npz", **arrays)
    with pytest.raises(ValueError, match="shard shard-00001: 13 frames but 12 keyboard rows"):
        ClipDataset(tmp_path, clip_frames=5)


class PoolVAE:
    """Stand-in causal VAE: latent 0 = frame 0, latent f = mean of frames 4f-3..4f, 4x4 average pooled."""

    z_dim, spatial, temporal = 3, 4, 4

    def encode(self, video):
        import torch

        b, t, c, h, w = video.shape
        x = video.reshape(b, t, c, h // 4, 4, w // 4, 4).mean((4, 6))  # [B, T, C, h, w]
        rest = x[:, 1:].reshape(b, (t - 1) // 4, 4, c, h // 4, w // 4).mean(2)
        return torch.cat([x[:, :1], rest], 1)  # [B, 1 + k, C, h, w]


def test_latent_cache_alignment_and_vae_check(tmp_path):
    data, cache = tmp_path / "data", tmp_path / "cache"
    record_synthetic(data, episodes=1, frames=29, height=8, width=8)
    cfg = VAEConfig(kind="tiny", z_dim=3)
    cache_latents(data, PoolVAE(), cache, cfg)
    index = json.loads((cache / "index.json").read_text())
    assert index["segments"][0]["latent_frames"] == 8 and index["latent_shape"] == [3, 2, 2]
    ds = ClipDataset(data, latent_frames=3, latents=cache, vae_config=cfg)
    assert len(ds) == 6
    pixels = ClipDataset(data, clip_frames=29, stride=1)[0]
    item = ds[2]  # latents 2..4 -> video frames 8..16
    assert item["latents"].shape == (3, 3, 2, 2) and item["keyboard"].shape == (9, 4) and item["start"] == 8
    assert np.allclose(item["keyboard"], pixels["keyboard"][8:17]) and np.allclose(
        item["mouse"], pixels["mouse"][8:17]
    )
    assert np.allclose(item["first_frame"], pixels["frames"][8])
    expect = PoolVAE().encode(pixels["frames"][None])[0, 2:5]
    assert np.allclose(item["latents"], expect, atol=2e-3)
    seg = tmp_path / "seg"
    cache_latents(data, PoolVAE(), seg, cfg, segment_frames=13, batch=2)  # frames 0..12 and 13..25
    item = ClipDataset(data, latent_frames=2, latents=seg, vae_config=cfg)[4]  # segment 2, latents 1..2
    assert item["start"] == 13 + 4 and np.allclose(item["keyboard"], pixels["keyboard"][17:22])
    expect = PoolVAE().encode(pixels["frames"][None, 13:26])[0, 1:3]
    assert np.allclose(item["latents"], expect, atol=2e-3)
    with pytest.raises(ValueError, match="different VAE config.*z_dim"):
        ClipDataset(data, latent_frames=3, latents=cache, vae_config=VAEConfig(kind="tiny", z_dim=16))
