"""Floor plans (engine/data/map_geometry.py): walkable cells, coverage, spawn points inside the level."""

from __future__ import annotations

import numpy as np
import pytest

from engine.data.map_geometry import plan_from_sectors


def square(x0, y0, x1, y1):
    return np.array([[x0, y0, x1, y0], [x1, y0, x1, y1], [x1, y1, x0, y1], [x0, y1, x0, y0]], np.float32)


def test_room_with_a_pillar_and_a_closed_door():
    room = np.concatenate([square(0, 0, 512, 256), square(192, 64, 320, 192)])  # outline + pillar hole
    sectors = [
        (0.0, 128.0, room),
        (0.0, 0.0, square(192, 64, 320, 192)),  # the pillar: no headroom
        (0.0, 0.0, square(512, 96, 544, 160)),  # a closed door beside the room
    ]
    plan = plan_from_sectors(sectors, cell=32)
    assert plan.walkable.shape == (8, 17)
    i, j = plan.cells_of(np.array([[16.0, 16.0], [256.0, 128.0], [528.0, 128.0]]))
    assert plan.walkable[i, j].tolist() == [True, False, False]  # floor, pillar, door
    assert plan.walkable.sum() == 8 * 16 - 4 * 4  # the room minus the pillar
    assert plan.coverage(np.array([[16.0, 16.0]]), radius=0) == pytest.approx(1 / 112)
    assert plan.coverage(np.array([[16.0, 16.0]]), radius=40) == pytest.approx(3 / 112)  # corner: no wrap
    assert plan.coverage(np.array([[48.0, 48.0]]), radius=40) == pytest.approx(5 / 112)
    cells = plan.spawn_cells()
    assert len(cells) and all(plan.walkable[a - 1 : a + 2, b - 1 : b + 2].all() for a, b in cells)
    x, y, angle = plan.random_spawn(np.random.default_rng(0))
    assert 0 < x < 512 and 0 < y < 256 and not (192 <= x <= 320 and 64 <= y <= 192) and 0 <= angle < 360


def test_e1m1_spawns_are_inside_the_level_and_the_record_rule():
    pytest.importorskip("vizdoom")
    from engine.config import load_preset
    from engine.data.map_geometry import load_plan, teleport_to_spawn
    from engine.data.record import main
    from engine.worlds.vizdoom import VizDoomWorld, find_wad

    plan = load_plan(find_wad("freedoom1.wad"), "E1M1")
    assert plan.walkable.sum() > 5000
    world = VizDoomWorld(load_preset("vizdoom-e1m1"))
    try:
        world.start(None, seed=0)
        rng = np.random.default_rng(10001)  # its first draw lies in the void
        assert teleport_to_spawn(world, plan, rng)
        before = world.frame.copy()
        for _ in range(6):
            world.advance(np.array([1, 0, 0, 0], np.float32), np.array([0, 0.2], np.float32))
        assert not np.array_equal(before, world.frame)
    finally:
        world.close()
    assert main(["--out", "/nonexistent/x", "--wad", "freedoom1.wad", "--maps", "E1M2"]) == 2
