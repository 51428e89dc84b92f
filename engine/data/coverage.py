"""How much of a map a dataset visits: `python -m engine.data.coverage DATA [--out plot.png]`.

Reads the poses of every shard in DATA (one WAD map), rasterises the map's floor plan
(engine/data/map_geometry.py) and prints the share of its walkable area within --radius map units of a
recorded position. --out draws a top-down plot: walls in grey, walkable cells never visited in dark
red, visited cells in green, and every 10th recorded position as a white dot.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from engine.data.map_geometry import MapPlan, load_plan
from engine.data.shards import read_index
from engine.worlds.vizdoom import find_wad


def dataset_positions(root: str) -> tuple[np.ndarray, str, str]:
    """(xy float32 [N, 2] of every frame with a pose, wad, map) of a one-map dataset."""
    index = read_index(root)
    maps = {s["meta"].get("map") for s in index["shards"]}
    if len(maps) != 1:
        raise ValueError(f"{root} holds maps {sorted(maps)}; coverage is per map")
    xy = []
    for entry in index["shards"]:
        with np.load(Path(root) / f"{entry['name']}.actions.npz") as a:
            if "pose" in a:
                xy.append(a["pose"][:, :2])
    if not xy:
        raise ValueError(f"{root} has no poses (recorded before poses were stored?)")
    return np.concatenate(xy), index["source"]["wad"], maps.pop()


def draw(plan: MapPlan, xy: np.ndarray, radius: float, scale: float = 0.25) -> Image.Image:
    """Top-down plot (north up) of the plan, the visited cells and the positions."""
    visited = plan.visited(xy, radius)
    ny, nx = plan.walkable.shape
    rgb = np.zeros((ny, nx, 3), np.uint8)
    rgb[plan.walkable] = (90, 20, 20)
    rgb[visited] = (40, 150, 60)
    k = plan.cell * scale
    img = Image.fromarray(rgb[::-1]).resize((round(nx * k), round(ny * k)), Image.NEAREST)
    d = ImageDraw.Draw(img)

    def px(x, y):
        return ((x - plan.x0) * scale, img.height - (y - plan.y0) * scale)

    for x1, y1, x2, y2 in plan.segments:
        d.line([px(x1, y1), px(x2, y2)], fill=(170, 170, 170), width=1)
    for x, y in xy[::10]:
        d.point(px(x, y), fill=(255, 255, 255))
    return img


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.data.coverage", description=__doc__.splitlines()[0])
    p.add_argument("data")
    p.add_argument("--radius", type=float, default=64.0, help="map units around a position that count")
    p.add_argument("--out", default="", help="write a top-down PNG here")
    args = p.parse_args(argv)
    try:
        xy, wad, map_name = dataset_positions(args.data)
        plan = load_plan(find_wad(wad), map_name)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    share = plan.coverage(xy, args.radius)
    print(
        f"{args.data}: {len(xy)} positions on {wad} {map_name}; {share * 100:.1f}% of the walkable area "
        f"({int(plan.walkable.sum())} cells of {plan.cell:g} units) within {args.radius:g} units"
    )
    if args.out:
        draw(plan, xy, args.radius).save(args.out)
        print(f"plot: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
