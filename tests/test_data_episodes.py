"""The training-data reader (engine.train.episodes): alignment and bad input on the synthetic world (~1 s)."""

import numpy as np
import pytest
import torch

from engine.actions import ActionBlock
from engine.data.shards import read_index, write_index, write_shard
from engine.train.episodes import load_action_episodes, load_frame_episodes, read_episodes
from engine.train.frame_clips import FrameClips
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


def test_action_i_takes_frame_i_to_i_plus_1(tmp_path):
    record_synthetic(tmp_path, episodes=2, frames=41, seed=0, height=16, width=16)
    eps = load_action_episodes([str(tmp_path)], 16, 16)
    assert [len(e.frames) for e in eps] == [41, 41]
    probe = SyntheticWorld(16, 16)
    for ep in eps:
        assert ep.keyboard.shape == (41, 4) and ep.mouse.shape == (41, 2) and ep.keyboard.dtype == np.float32
        for t in range(40):
            dy, dx = probe.shift(ep.keyboard[t], ep.mouse[t])
            assert moved(ep.frames[t], ep.frames[t + 1], round(dy), round(dx)), (ep.name, t)
    frames = load_frame_episodes([str(tmp_path)])  # the VAE trainer's view: the same frames
    assert all(np.array_equal(f, e.frames) for f, e in zip(frames, eps, strict=True))
    x = FrameClips(frames, 5).sample(3, torch.Generator().manual_seed(0))
    assert x.shape == (3, 5, 3, 16, 16) and x.dtype.is_floating_point and -1 <= x.min() and x.max() <= 1


def test_clips_never_cross_episodes(tmp_path):
    frames = np.broadcast_to(np.arange(30, dtype=np.uint8)[:, None, None, None], (30, 8, 8, 3))
    episode = np.repeat([0, 1], [13, 17])
    entry = write_shard(tmp_path, "s", frames, np.zeros((30, 4)), np.zeros((30, 2)), episode=episode)
    write_index(tmp_path, dict(height=8, width=8, fps=17.5, mode="universal"), [entry])
    eps = load_action_episodes([str(tmp_path)], 8, 8)
    assert [e.frames[:, 0, 0, 0].tolist() for e in eps] == [list(range(13)), list(range(13, 30))]
    clips = FrameClips([e.frames for e in eps], 9).sample(64, torch.Generator().manual_seed(0))
    ids = ((clips[:, :, 0, 0, 0] + 1) * 127.5).round().long()  # [B, T] frame numbers
    assert (ids.diff(dim=1) == 1).all() and ((ids[:, 0] >= 13) | (ids[:, -1] <= 12)).all()
    assert set(ids[:, 0].tolist()) == set(range(0, 5)) | set(range(13, 22))  # every start is drawn


def test_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="holds no episodes"):
        load_frame_episodes([str(tmp_path)])
    with pytest.raises(ValueError, match="does not exist"):
        load_frame_episodes([str(tmp_path / "nope")])
    with pytest.raises(ValueError, match="not found"):
        read_index(tmp_path / "nope")


def test_mismatched_shard_names_the_shard(tmp_path):
    record_synthetic(tmp_path, episodes=2, frames=13, height=8, width=8)
    with pytest.raises(ValueError, match="preset: \\(16, 16\\)"):
        load_action_episodes([str(tmp_path)], 16, 16)
    with np.load(tmp_path / "shard-00001.actions.npz") as a:
        arrays = dict(a)
    arrays["keyboard"] = arrays["keyboard"][:-1]
    np.savez(tmp_path / "shard-00001.actions.npz", **arrays)
    with pytest.raises(ValueError, match="shard shard-00001: 13 frames but 12 keyboard rows"):
        load_frame_episodes([str(tmp_path)])


def test_npz_folders_frames_only_count_for_the_vae_alone(tmp_path):
    frames = np.zeros((7, 8, 8, 3), np.uint8)
    np.savez(tmp_path / "a.npz", frames=frames)
    np.savez(tmp_path / "b.npz", frames=frames[:5], keyboard=np.ones((5, 4)), mouse=np.zeros((5, 2)))
    assert [len(f) for f in load_frame_episodes([str(tmp_path)])] == [7, 5]
    (ep,) = load_action_episodes([str(tmp_path)], 8, 8)  # a.npz has no actions
    assert ep.name.endswith("b.npz") and ep.keyboard.dtype == np.float32 and ep.keyboard.sum() == 20
    np.savez(tmp_path / "c.npz", frames=frames, keyboard=np.ones((6, 4)), mouse=np.zeros((7, 2)))
    with pytest.raises(ValueError, match="c.npz: 7 frames but 6 keyboard"):
        read_episodes([str(tmp_path)])
