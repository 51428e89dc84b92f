"""A Doom map's floor plan from ViZDoom's sector info: where a player fits, coverage, spawn points.

`MapPlan` rasterises the map on a grid of `cell` map units: a cell is walkable when its centre lies
inside a sector whose ceiling is at least a player's height (56 units) above its floor (closed doors
and solid pillars are not). Coverage of a dataset is the share of walkable cells within `radius` of a
recorded pose; spawn points are walkable cells whose 8 neighbours are walkable too, so a player warped
there does not stand in a wall.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

import numpy as np

PLAYER_HEIGHT = 56.0


@dataclass
class MapPlan:
    """Walkable cells of one map. walkable: bool [ny, nx]; cell (i, j) is centred at
    (x0 + (j + 0.5) * cell, y0 + (i + 0.5) * cell)."""

    walkable: np.ndarray
    x0: float
    y0: float
    cell: float
    segments: np.ndarray  # float32 [M, 4] every line (x1, y1, x2, y2), for plots

    def cells_of(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Grid indices (i, j) of points xy [N, 2], clipped to the grid."""
        j = np.clip(((xy[:, 0] - self.x0) / self.cell).astype(int), 0, self.walkable.shape[1] - 1)
        i = np.clip(((xy[:, 1] - self.y0) / self.cell).astype(int), 0, self.walkable.shape[0] - 1)
        return i, j

    def visited(self, xy: np.ndarray, radius: float = 64.0) -> np.ndarray:
        """bool [ny, nx]: walkable cells within `radius` map units of any point of xy [N, 2]."""
        hit = np.zeros_like(self.walkable)
        i, j = self.cells_of(xy)
        hit[i, j] = True
        r = int(np.ceil(radius / self.cell))
        padded = np.pad(hit, r)
        grown = np.zeros_like(hit)
        ny, nx = hit.shape
        for di in range(-r, r + 1):
            for dj in range(-r, r + 1):
                if (di * di + dj * dj) * self.cell**2 <= radius**2:
                    grown |= padded[r + di : r + di + ny, r + dj : r + dj + nx]
        return grown & self.walkable

    def coverage(self, xy: np.ndarray, radius: float = 64.0) -> float:
        """Share of the walkable area within `radius` of the points xy [N, 2]."""
        return float(self.visited(xy, radius).sum() / max(self.walkable.sum(), 1))

    def spawn_cells(self) -> np.ndarray:
        """int [K, 2] (i, j) of walkable cells with all 8 neighbours walkable."""
        w = np.pad(self.walkable, 1)
        ny, nx = self.walkable.shape
        inner = self.walkable.copy()
        for di in (0, 1, 2):
            for dj in (0, 1, 2):
                inner &= w[di : di + ny, dj : dj + nx]
        return np.argwhere(inner)

    def random_spawn(self, rng: np.random.Generator) -> tuple[float, float, float]:
        """(x, y, angle in degrees) at a random spawn cell, uniform over the map's area."""
        cells = self.spawn_cells()
        i, j = cells[rng.integers(len(cells))]
        x = self.x0 + (j + rng.uniform(0.25, 0.75)) * self.cell
        y = self.y0 + (i + rng.uniform(0.25, 0.75)) * self.cell
        return float(x), float(y), float(rng.uniform(0.0, 360.0))


def _inside(px: np.ndarray, py: np.ndarray, seg: np.ndarray) -> np.ndarray:
    """Even-odd rule: which points (px, py) [N] lie inside the closed loops of segments seg [M, 4]."""
    x1, y1, x2, y2 = (seg[:, k][None, :] for k in range(4))
    crosses = (y1 > py[:, None]) != (y2 > py[:, None])
    with np.errstate(divide="ignore", invalid="ignore"):
        xc = x1 + (py[:, None] - y1) * (x2 - x1) / (y2 - y1)
    return ((crosses & (px[:, None] < xc)).sum(1) % 2) == 1


def plan_from_sectors(sectors: list[tuple[float, float, np.ndarray]], cell: float = 32.0) -> MapPlan:
    """MapPlan from (floor, ceiling, segments [M, 4]) per sector."""
    segments = np.concatenate([s for _, _, s in sectors]).astype(np.float32)
    x0, y0 = segments[:, [0, 2]].min(), segments[:, [1, 3]].min()
    nx = int(np.ceil((segments[:, [0, 2]].max() - x0) / cell))
    ny = int(np.ceil((segments[:, [1, 3]].max() - y0) / cell))
    jj, ii = np.meshgrid(np.arange(nx), np.arange(ny))
    px, py = x0 + (jj.ravel() + 0.5) * cell, y0 + (ii.ravel() + 0.5) * cell
    walkable = np.zeros(ny * nx, bool)
    for floor, ceiling, seg in sectors:
        if ceiling - floor >= PLAYER_HEIGHT:
            walkable |= _inside(px, py, seg)
    return MapPlan(walkable.reshape(ny, nx), float(x0), float(y0), cell, segments)


def load_plan(wad: str, map_name: str, cell: float = 32.0) -> MapPlan:
    """Start ViZDoom once on `map_name` of `wad` (a path) and rasterise its sectors."""
    import vizdoom as vzd

    g = vzd.DoomGame()
    g.set_doom_game_path(wad)
    g.set_doom_map(map_name)
    g.set_doom_config_path(os.path.join(tempfile.gettempdir(), f"worldplayer-plan-{os.getuid()}.ini"))
    g.set_window_visible(False)
    g.set_sound_enabled(False)
    g.set_sectors_info_enabled(True)
    g.set_screen_resolution(vzd.ScreenResolution.RES_160X120)
    g.add_game_args("-nomonsters")
    g.init()
    try:
        g.new_episode()
        sectors = [
            (s.floor_height, s.ceiling_height, np.array([[ln.x1, ln.y1, ln.x2, ln.y2] for ln in s.lines]))
            for s in g.get_state().sectors
            if len(s.lines)
        ]
    finally:
        g.close()
    return plan_from_sectors(sectors, cell)


def teleport_to_spawn(world, plan: MapPlan, rng: np.random.Generator, tries: int = 20) -> bool:
    """Warp a VizDoomWorld to a random spawn point of `plan` that really is inside the level.

    A point inside a sector's outline can still lie in the void (off the BSP): there the z is -32768 or
    the renderer stops redrawing, so a small turn leaves the frame unchanged. Such points are redrawn.
    Returns False if no good point was found in `tries` draws (the last one stays)."""
    turn = np.array([0.0, 0.5], np.float32)  # 7.5 degrees right, then back
    for _ in range(tries):
        world.teleport(*plan.random_spawn(rng))
        if world.pose[2] < -10000:
            continue
        before = world.frame.copy()
        world.advance(np.zeros(4, np.float32), turn)
        moved = not np.array_equal(before, world.frame)
        world.advance(np.zeros(4, np.float32), -turn)
        if moved:
            return True
    return False
