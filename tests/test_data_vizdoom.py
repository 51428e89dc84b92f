"""The ViZDoom world and the explorer (skipped without the vizdoom package; a few seconds)."""

import numpy as np
import pytest

from engine.actions import ActionBlock
from engine.config import load_preset
from engine.data.explorer import Explorer

vizdoom = pytest.importorskip("vizdoom")


@pytest.fixture(scope="module")
def world():
    from engine.worlds.vizdoom import VizDoomWorld

    w = VizDoomWorld(load_preset("vizdoom"))
    yield w
    w.close()


def play(world, seed, keyboard, mouse, map_name="MAP01"):
    world.start(seed=seed, map=map_name)
    out, i = [], 0
    while i < len(keyboard):
        n = world.actions_needed
        out.append(world.step(ActionBlock(keyboard[i : i + n], mouse[i : i + n])))
        i += n
    return np.concatenate(out)


def test_shape_and_determinism(world):
    rng = np.random.default_rng(0)
    keyboard = (rng.random((21, 4)) < 0.4).astype(np.float32)
    mouse = rng.normal(0, 0.2, (21, 2)).astype(np.float32)
    a = play(world, 7, keyboard, mouse, "MAP02")
    b = play(world, 7, keyboard, mouse, "MAP02")
    assert a.shape == (21, 144, 256, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert np.abs(np.diff(a.astype(np.int16), axis=0)).mean() > 1  # the actions do move the view


def test_yaw_units_and_block_sizes(world):
    world.start(seed=0, map="MAP01")
    assert world.actions_needed == 9
    angle0 = world.pose[3]
    world.step(ActionBlock(np.zeros((9, 4)), np.tile([0.0, 0.5], (9, 1))))  # 9 x 7.5 degrees to the right
    assert world.actions_needed == 12 and world.block_index == 1
    turned = (angle0 - world.pose[3]) % 360  # Doom angles grow counter-clockwise
    assert abs(turned - 67.5) < 0.1
    poses = world.last_poses  # [9, 5]: the pose of each returned frame, the first one before any action
    assert poses.shape == (9, 5) and poses[0, 3] == angle0
    assert np.allclose((poses[0, 3] - poses[:, 3]) % 360, 7.5 * np.arange(9), atol=0.1)
    with pytest.raises(ValueError):
        world.step(ActionBlock(np.zeros((9, 4)), np.zeros((9, 2))))


def test_unknown_map_is_a_clear_error(world):
    with pytest.raises(ValueError, match="not in freedoom2.wad"):
        world.start(seed=0, map="E1M1")


def test_explorer_is_deterministic_and_humanlike(world):
    def run(seed):
        world.start(seed=seed, map="MAP03")
        ex, acts = Explorer(seed), []
        for _ in range(200):
            kb, ms = ex.act(world.depth, world.pose)
            acts.append(np.concatenate([kb, ms]))
            world.advance(kb, ms)
        return np.stack(acts)

    a, b = run(4), run(4)
    assert np.array_equal(a, b)
    assert a[:, 0].mean() > 0.2 and (np.abs(a[:, 5]) > 0.01).mean() > 0.2  # walks forward, turns
    assert np.abs(np.diff(a[:, 5])).max() < 0.3  # turns are smooth


def test_record_refuses_freedoom1_for_training(tmp_path, capsys):
    from engine.data.record import main

    assert main(["--out", str(tmp_path), "--wad", "freedoom1.wad", "--episodes", "1"]) == 2
    assert "held out for evaluation" in capsys.readouterr().err


def test_record_cli_writes_a_loadable_dataset(tmp_path, capsys):
    from engine.data.record import main
    from engine.data.shards import read_index
    from engine.train.episodes import load_action_episodes

    argv = ["--out", str(tmp_path), "--maps", "MAP01,MAP02", "--episodes", "2", "--frames-per-episode", "21"]
    assert main(argv + ["--warmup-frames", "5", "--min-frames", "9", "--workers", "1", "--seed", "3"]) == 0
    assert "key pressed" in (tmp_path / "histograms.txt").read_text()
    eps = load_action_episodes([str(tmp_path)], 144, 256)
    assert [e.frames.shape for e in eps] == [(21, 144, 256, 3)] * 2 and eps[0].keyboard.shape[0] == 21
    assert [s["meta"]["map"] for s in read_index(tmp_path)["shards"]] == ["MAP01", "MAP02"]
