"""Record scripted Freedoom gameplay into shards: `python -m engine.data.record --out DIR ...`.

Episode e plays map maps[e % len(maps)] with seed hash(seed, e), so the data does not depend on the
number of workers. Each episode first runs the explorer for a random 0..--warmup-frames frames (not
stored) so episodes on the same map start in different places, then stores --frames-per-episode frames;
an episode that ends early (exit line) is cut there. One shard per episode (see engine/data/shards.py).
With --spawn random each episode first warps the player to a random point of the map's floor plan
(engine/data/map_geometry.py), facing a random way, so a dataset covers the whole map; train and eval
sets then differ in their seeds (so in spawn points and trajectories). freedoom1.wad is evaluation data
except E1M1 (the embedded default's map): its other maps are refused unless --split eval.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import signal
import sys
import time
from pathlib import Path

import numpy as np

from engine.config import preset_from_dict
from engine.data.explorer import Explorer, ExplorerConfig
from engine.data.map_geometry import MapPlan, load_plan, teleport_to_spawn
from engine.data.shards import CONVENTION, read_index, rebuild_index, write_shard
from engine.worlds.vizdoom import KEYS, VizDoomWorld, find_wad, wad_maps

EVAL_ONLY_WADS = ("freedoom1",)
TRAINABLE_MAPS = {"freedoom1": ("E1M1",)}  # maps of an eval-only WAD that may be trained on


def episode_seed(seed: int, episode: int) -> int:
    return (seed * 1_000_003 + episode * 7919 + 17) % (2**31 - 1)


def record_episode(
    world: VizDoomWorld,
    map_name: str,
    seed: int,
    frames: int,
    warmup_max: int,
    plan: MapPlan | None = None,
    glance_per_s: float = ExplorerConfig.glance_per_s,
) -> dict:
    """Play one episode with the explorer; returns per-frame arrays (see shards.write_shard).
    With a floor plan the player starts at a random spawn point of it (see the module docstring)."""
    rng = np.random.default_rng(seed)
    explorer = Explorer(seed, ExplorerConfig(glance_per_s=glance_per_s))
    world.start(seed=seed, map=map_name)
    if plan is not None:
        teleport_to_spawn(world, plan, rng)
    for _ in range(int(rng.integers(0, warmup_max + 1))):
        world.advance(*explorer.act(world.depth, world.pose))
    out = {k: [] for k in ("frames", "keyboard", "mouse", "tic", "pose")}
    tic0 = world.tic
    for _ in range(frames):
        keyboard, mouse = explorer.act(world.depth, world.pose)
        out["frames"].append(world.frame)
        out["keyboard"].append(keyboard)
        out["mouse"].append(mouse)
        out["tic"].append(world.tic - tic0)  # tics since the first stored frame
        out["pose"].append(world.pose)
        world.advance(keyboard, mouse)
        if world.reset_pending:  # the episode ended (exit line, timeout): cut here
            break
    return {k: np.stack(v) for k, v in out.items()}


def _worker(
    wid: int, episodes: list[int], args: argparse.Namespace, maps: list[str], queue: mp.Queue
) -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # run `finally` (closes ViZDoom) when terminated
    world = None
    try:
        world = VizDoomWorld(make_preset(args, maps))
        plans = {}
        for ep in episodes:
            name = f"shard-{ep:05d}"
            if (Path(args.out) / f"{name}.actions.npz").is_file():
                queue.put(("skip", ep, 0))
                continue
            map_name, seed = maps[ep % len(maps)], episode_seed(args.seed, ep)
            try:
                if args.spawn == "random" and map_name not in plans:
                    plans[map_name] = load_plan(find_wad(args.wad), map_name)
                plan = plans.get(map_name)
                data = record_episode(
                    world, map_name, seed, args.frames_per_episode, args.warmup_frames, plan, args.glances
                )
            except Exception as e:  # a map that fails is skipped, not fatal
                queue.put(("error", ep, f"{map_name}: {type(e).__name__}: {e}"))
                continue
            n = len(data["frames"])
            if n < args.min_frames:
                queue.put(("short", ep, n))
                continue
            meta = dict(map=map_name, seed=seed, wad=args.wad, split=args.split)
            write_shard(args.out, name, episode=np.full(n, ep, np.int32), meta=meta, **data)
            queue.put(("done", ep, n))
    except Exception as e:
        queue.put(("fatal", wid, f"{type(e).__name__}: {e}"))
    finally:
        if world is not None:
            world.close()
        queue.put(("exit", wid, 0))


def make_preset(args: argparse.Namespace, maps: list[str]):
    game = dict(wad=args.wad, maps=maps, tics_per_frame=args.tics_per_frame, auto_use=args.auto_use)
    data = dict(world="vizdoom", mode="universal", height=args.height, width=args.width)
    return preset_from_dict(dict(data, fps=35.0 / args.tics_per_frame, game=game), name="record")


def header(args: argparse.Namespace, maps: list[str]) -> dict:
    source = dict(world="vizdoom", wad=args.wad, maps=maps, tics_per_frame=args.tics_per_frame)
    source.update(auto_use=args.auto_use, spawn=args.spawn, glances_per_s=args.glances)
    source.update(split=args.split, seed=args.seed, explorer="engine.data.explorer.Explorer")
    fps = 35.0 / args.tics_per_frame
    return dict(
        height=args.height, width=args.width, fps=fps, mode="universal", keys=list(KEYS), source=source
    )


def check_args(args: argparse.Namespace) -> list[str]:
    """Validate the WAD, split and maps; returns the maps to record (missing ones are skipped)."""
    wad_name = Path(args.wad).stem.lower()
    available = wad_maps(find_wad(args.wad))
    maps = [m.strip().upper() for m in args.maps.split(",") if m.strip()] if args.maps else available
    trainable = TRAINABLE_MAPS.get(wad_name, ())
    if wad_name in EVAL_ONLY_WADS and args.split != "eval" and any(m not in trainable for m in maps):
        allowed = f" (only {', '.join(trainable)} may be trained on)" if trainable else ""
        raise ValueError(
            f"{args.wad} is held out for evaluation{allowed}; record its other maps only with --split eval"
        )
    missing = [m for m in maps if m not in available]
    if missing:
        print(f"skipping maps not in {args.wad}: {', '.join(missing)}", file=sys.stderr)
    maps = [m for m in maps if m in available]
    if not maps:
        raise ValueError(f"no maps to record; {args.wad} has {', '.join(available)}")
    out = Path(args.out)
    if out.is_dir() and any(out.glob("*.actions.npz")) and not args.resume:
        raise ValueError(f"{out} already holds shards; pass --resume to add the missing episodes")
    return maps


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.data.record", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--wad", default="freedoom2.wad")
    p.add_argument(
        "--maps", default="", help="comma-separated, e.g. MAP01,MAP02 (default: every map in the WAD)"
    )
    p.add_argument("--episodes", type=int, default=8)
    p.add_argument("--frames-per-episode", type=int, default=600)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--height", type=int, default=144)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--tics-per-frame", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", choices=["train", "eval"], default="train")
    p.add_argument("--warmup-frames", type=int, default=300, help="max unrecorded frames before each episode")
    p.add_argument("--min-frames", type=int, default=33, help="drop episodes shorter than this")
    p.add_argument("--resume", action="store_true", help="keep existing shards in --out, record the rest")
    p.add_argument(
        "--spawn", choices=["start", "random"], default="start", help="the map's start or a random point"
    )
    p.add_argument("--auto-use", action="store_true", help="press USE while W is held (opens doors)")
    p.add_argument(
        "--glances", type=float, default=ExplorerConfig.glance_per_s, help="pitch glances per second"
    )
    args = p.parse_args(argv)
    try:
        maps = check_args(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return run(args, maps)


def run(args: argparse.Namespace, maps: list[str]) -> int:
    from tqdm import tqdm

    Path(args.out).mkdir(parents=True, exist_ok=True)
    workers = max(1, min(args.workers, args.episodes))
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [
        ctx.Process(
            target=_worker, args=(w, list(range(w, args.episodes, workers)), args, maps, queue), daemon=True
        )
        for w in range(workers)
    ]
    for proc in procs:
        proc.start()
    t0, frames, alive, failed = time.time(), 0, workers, 0
    bar = tqdm(total=args.episodes * args.frames_per_episode, unit="frame", desc="recording")
    while alive:
        kind, key, value = queue.get()
        if kind == "exit":
            alive -= 1
        elif kind == "done":
            frames += value
            bar.update(args.frames_per_episode)
            bar.set_postfix(fps=f"{frames / (time.time() - t0):.0f}")
            rebuild_index(args.out, header(args, maps))
        elif kind == "skip":
            bar.update(args.frames_per_episode)
        else:
            failed += kind in ("error", "fatal")
            bar.update(args.frames_per_episode)
            tqdm.write(f"episode {key}: {kind} {value}")
    bar.close()
    for proc in procs:
        proc.join()
    seconds = time.time() - t0
    index_path = rebuild_index(args.out, header(args, maps))
    try:
        report = summary(args.out, frames, seconds)
    except ValueError as e:
        print(f"error: no episode was recorded ({e})", file=sys.stderr)
        return 1
    print(report)
    (Path(args.out) / "histograms.txt").write_text(report + "\n")
    print(f"index: {index_path}")
    return 1 if failed and frames == 0 else 0


def summary(root: str, new_frames: int, seconds: float) -> str:
    """Dataset totals, recording rate and action histograms, as text."""
    index = read_index(root)
    keyboard, mouse = [], []
    for entry in index["shards"]:
        with np.load(Path(root) / f"{entry['name']}.actions.npz") as a:
            keyboard.append(a["keyboard"])
            mouse.append(a["mouse"])
    maps = sorted({s["meta"].get("map", "?") for s in index["shards"]})
    lines = [
        f"dataset {root}: {index['total_frames']} frames in {len(index['shards'])} episodes, "
        f"{index['width']}x{index['height']} at {index['fps']} fps, maps {', '.join(maps)}",
        f"this run: {new_frames} frames in {seconds:.0f} s ({new_frames / max(seconds, 1e-9):.0f} frames/s)",
        f"convention: {CONVENTION}",
        action_histograms(keyboard, mouse, index["fps"], index.get("keys", list(KEYS))),
    ]
    return "\n".join(lines)


def _bars(counts: np.ndarray, labels: list[str], width: int = 40) -> list[str]:
    frac = counts / max(counts.sum(), 1)
    return [
        f"  {lab:>16} {f * 100:6.2f}% {'#' * round(f * width)}" for lab, f in zip(labels, frac, strict=True)
    ]


def _runs(pressed: np.ndarray) -> np.ndarray:
    """Lengths of the runs of True in a bool [N] array."""
    edges = np.diff(np.concatenate([[0], pressed.astype(np.int8), [0]]))
    return np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)


def action_histograms(
    keyboard: list[np.ndarray], mouse: list[np.ndarray], fps: float, keys: list[str]
) -> str:
    """Text histograms of per-episode keyboard [N, K] and mouse [N, 2] arrays."""
    kb, ms = np.concatenate(keyboard) > 0.5, np.concatenate(mouse)
    idle = ~kb.any(1) & (np.abs(ms).max(1) < 1e-6)
    lines = [
        f"frames {len(kb)}; idle (no key, no mouse) {idle.mean() * 100:.1f}%",
        "key pressed (% of frames):",
    ]
    lines += _bars(kb.sum(0).astype(float), keys)
    combos, counts = np.unique(kb.astype(np.int8), axis=0, return_counts=True)
    names = ["+".join(k for k, on in zip(keys, c, strict=False) if on) or "none" for c in combos]
    order = np.argsort(-counts)
    lines += ["key combinations:"] + _bars(counts[order].astype(float), [names[i] for i in order])
    edges_s = [0, 0.3, 0.6, 1.0, 1.5, 2.0, 3.0, np.inf]
    holds = np.concatenate(
        [_runs(k[:, j]) for k in keyboard for j in range(k.shape[1]) if (k[:, j] > 0.5).any()]
    )
    h, _ = np.histogram(holds / fps, bins=edges_s)
    labels = [f"{a:g}-{b:g} s" for a, b in zip(edges_s[:-1], edges_s[1:], strict=False)]
    lines += [f"key hold durations ({len(holds)} presses, median {np.median(holds) / fps:.2f} s):"]
    lines += _bars(h.astype(float), labels)
    for axis, name, edges in (
        (1, "yaw", [-np.inf, -0.5, -0.3, -0.15, -0.05, -0.005, 0.005, 0.05, 0.15, 0.3, 0.5, np.inf]),
        (0, "pitch", [-np.inf, -0.15, -0.1, -0.05, -0.01, -0.001, 0.001, 0.01, 0.05, 0.1, 0.15, np.inf]),
    ):
        h, _ = np.histogram(ms[:, axis], bins=edges)
        labels = [f"[{a:g}, {b:g})" for a, b in zip(edges[:-1], edges[1:], strict=False)]
        lines += [
            f"mouse {name} (model units, 1.0 = 15 deg/frame; mean |{name}| {np.abs(ms[:, axis]).mean():.3f}):"
        ]
        lines += _bars(h.astype(float), labels)
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
