"""Quality of a Freedoom world model against the real game on held-out episodes.

For each episode the real ViZDoom world (`--eval-preset`) plays a scripted action sequence; the model
starts from the real first frame and gets the same actions. With `--spawn random` each episode starts
at a random point of the map's floor plan drawn from seeds no training run uses (10,000 + episode), so
trajectories and spawn points are held out while the map is the trained one (the E1M1 world); without
it, episodes start at the maps' own starts (held-out freedoom1 maps for the multi-map doom model).
The script is judged in segments of 9 then 12 frames whatever the model's block size. Reported:
- PSNR at 12, 24 and 48 frames ahead vs two baselines: repeat the start frame; the mean frame of all
  real eval frames. The model should beat both at 12 frames.
- Action following per block (one action held per block, judged after the first LAG_FRAMES frames):
  turn blocks -> sign of the summed horizontal image shift must be opposite to the yaw (turning right
  moves the image left);
  forward/backward blocks -> expansion vs contraction. The same estimators run on the real frames as a
  check of the estimators. "Clear" blocks are those in which the real player did what was commanded,
  by the game's own pose: turned at least CLEAR_DEGREES the commanded way, or walked at least
  CLEAR_UNITS forward or back (a walk into a wall moves nothing, and a perfect model should not move
  either).
- Stability (`--stability-minutes`): a long scripted rollout; per segment the spatial std (flat image),
  saturated fraction and mean frame difference (frozen image) are checked.
- Long rollouts (`--long-seconds`, the first `--strips` episodes): real vs generated strips at 0, 1, 5,
  30 and 60 s, and sharpness (mean image gradient) of the generated frames relative to the real ones
  around 30 s and 60 s.
Strips of real vs generated frames go to `--out` (PNG). Machine, dtype and steps are printed.

`--oracle` replaces the world model by a perfect one: the real frames, encoded and decoded by the
preset's VAE (or `--vae`). It is the ceiling any world model on that VAE can reach.

python benchmarks/eval_doom.py --preset doom --episodes 9 --blocks 8 --out docs/eval --stability-minutes 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np
from PIL import Image
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from engine.actions import ActionBlock, block_video_frames  # noqa: E402
from engine.config import load_preset  # noqa: E402
from engine.eval.motion import block_motion, frame_health, psnr, sharpness  # noqa: E402
from engine.worlds import play  # noqa: E402

YAW = 0.15  # 2.25 degrees per frame, a moderate turn
COMMANDS = {  # name -> (keyboard [W, S, A, D], mouse [pitch, yaw])
    "forward": ([1, 0, 0, 0], [0, 0]),
    "back": ([0, 1, 0, 0], [0, 0]),
    "turn_left": ([0, 0, 0, 0], [0, -YAW]),
    "turn_right": ([0, 0, 0, 0], [0, YAW]),
    "forward_left": ([1, 0, 0, 0], [0, -YAW]),
    "forward_right": ([1, 0, 0, 0], [0, YAW]),
    "strafe_left": ([0, 0, 1, 0], [0, 0]),
    "strafe_right": ([0, 0, 0, 1], [0, 0]),
}
AHEAD = (12, 24, 48)
# ZDoom's turning and walking respond with momentum: after a command changes, the per-frame image shift
# ramps over ~4-6 frames (measured on freedoom1), so a block's first frames still show the previous
# command. Motion is judged on the frames after these (27 real episodes: turn estimator 86% -> 92%).
LAG_FRAMES = 4
# A judged span is 8 frames: a commanded turn is 18 degrees, a free walk 70-115 map units.
CLEAR_DEGREES, CLEAR_UNITS = 5.0, 40.0


def pct(value: float, digits: int = 2) -> str:
    """A fraction as a percentage for the report; "n/a" for a category without blocks (nan)."""
    return "n/a" if value != value else f"{value:.{digits}%}"


def scripted(num_blocks: int, rng: np.random.Generator) -> list[tuple[str, ActionBlock]]:
    """One named command held for each block (9 frames for block 0, then 12)."""
    names = list(COMMANDS)
    out = []
    for b in range(num_blocks):
        name = "forward" if b == 0 else names[int(rng.integers(len(names)))]
        kb, mouse = COMMANDS[name]
        n = block_video_frames(b)
        out.append((name, ActionBlock(np.tile(kb, (n, 1)), np.tile(mouse, (n, 1)))))
    return out


def real_rollout(
    world, actions: ActionBlock, seed: int, map: str, plan=None
) -> tuple[np.ndarray, np.ndarray]:
    """The game under `actions`: frames uint8 [T, H, W, 3] and the player's pose float32 [T, 5] per frame.

    plan: a map floor plan (engine.data.map_geometry) to start at a random spawn point drawn from seed."""
    world.start(None, seed=seed, map=map)
    if plan is not None:
        from engine.data.map_geometry import teleport_to_spawn

        teleport_to_spawn(world, plan, np.random.default_rng(seed))
    frames, poses = [], []
    for i in range(len(actions)):
        frames.append(world.frame)
        poses.append(world.pose)
        world.advance(actions.keyboard[i], actions.mouse[i])
    return np.stack(frames), np.stack(poses)


def pose_motion(poses: np.ndarray) -> tuple[float, float]:
    """(map units walked along the first frame's view direction, degrees turned left) over poses [T, 5]."""
    x0, y0, _, angle0, _ = poses[0]
    heading = np.deg2rad(angle0)
    forward = (poses[-1, 0] - x0) * np.cos(heading) + (poses[-1, 1] - y0) * np.sin(heading)
    turned = (poses[-1, 3] - angle0 + 180.0) % 360.0 - 180.0
    return float(forward), float(turned)


def did_command(cmd: str, forward: float, turned: float) -> bool | None:
    """Did the real player clearly do what `cmd` asks (by pose)? None for commands not judged."""
    if cmd in ("turn_left", "forward_left"):
        return turned >= CLEAR_DEGREES
    if cmd in ("turn_right", "forward_right"):
        return turned <= -CLEAR_DEGREES
    if cmd == "forward":
        return forward >= CLEAR_UNITS
    if cmd == "back":
        return forward <= -CLEAR_UNITS
    return None


def block_spans(num_blocks: int) -> list[tuple[int, int]]:
    spans, a = [], 0
    for b in range(num_blocks):
        n = block_video_frames(b)
        spans.append((a, a + n))
        a += n
    return spans


def vae_round_trip(vae, frames: np.ndarray) -> np.ndarray:
    """What a perfect world model would show: real frames uint8 [1 + 4k, H, W, 3] through the VAE."""
    import torch

    from engine.conditioning import frames_to_uint8, image_to_tensor

    x = torch.cat([image_to_tensor(f) for f in frames])[None]  # [1, 1 + 4k, 3, H, W]
    with torch.no_grad():
        return frames_to_uint8(vae.decode(vae.encode(x)))


def save_strip(path: str, real: np.ndarray, gen: np.ndarray, idx: list[int]) -> None:
    rows = [np.concatenate([real[i] for i in idx], axis=1), np.concatenate([gen[i] for i in idx], axis=1)]
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)


def judge(cmd: str, dx: float, dz: float) -> bool | None:
    """Does the motion (dx px, dz log-zoom) match the command? None for commands not judged."""
    if cmd in ("turn_left", "forward_left"):
        return dx > 0
    if cmd in ("turn_right", "forward_right"):
        return dx < 0
    if cmd == "forward":
        return dz > 0
    if cmd == "back":
        return dz < 0
    return None


def bar(items, desc: str):
    """A progress bar on stderr when it is a terminal (the per-item lines go to stdout either way)."""
    return tqdm(items, desc=desc, disable=None, dynamic_ncols=True, leave=False)


def long_rollouts(args, session, world, maps: list[str], plans: dict) -> dict:
    """Real vs generated over `--long-seconds` for the first `--strips` held-out episodes: strips at 0, 1,
    5, 30 and 60 s, PSNR there, and generated / real sharpness over the second before 30 s and 60 s."""
    fps = session.spec.fps
    n_seg = int(np.ceil(args.long_seconds * fps / 12)) + 1
    rows = []
    for e in bar(range(args.strips), "long rollouts"):
        plan = scripted(n_seg, np.random.default_rng(args.seed + 500 + e))
        actions = ActionBlock.concat([b for _, b in plan])
        map_name = maps[e % len(maps)]
        real, _ = real_rollout(world, actions, (20_000 if plans else 2000) + e, map_name, plans.get(map_name))
        session.start(real[0], seed=args.seed + e)
        gen = play(session, actions)
        marks = [s for s in (0, 1, 5, 30, 60) if s * fps < len(real)]
        idx = [min(int(round(s * fps)), len(real) - 1) for s in marks]
        save_strip(os.path.join(args.out, f"long_{map_name}_{e}.png"), real, gen, idx)
        row = {"seconds": marks, "psnr": [psnr(gen[i], real[i]) for i in idx]}
        for s in (30, 60):
            a, b = int((s - 1) * fps), int(s * fps)
            if b <= len(real):
                row[f"sharpness_{s}s"] = sharpness(gen[a:b]) / max(sharpness(real[a:b]), 1e-6)
        rows.append(row)
        tqdm.write(f"long rollout {e} ({map_name}, {len(real)} frames): {json.dumps(row)}")
    out = {"rollouts": rows}
    for s in (30, 60):
        vals = [r[f"sharpness_{s}s"] for r in rows if f"sharpness_{s}s" in r]
        if vals:
            out[f"sharpness_{s}s"] = float(np.mean(vals))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="doom")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--vae", default=None, help="VAE weights instead of the preset's")
    p.add_argument("--oracle", action="store_true", help="decode the real latents (a perfect model)")
    p.add_argument("--eval-preset", default="vizdoom-eval")
    p.add_argument("--episodes", type=int, default=9)
    p.add_argument("--blocks", type=int, default=8, help="blocks per episode (>= 5 for PSNR at 48)")
    p.add_argument("--stability-minutes", type=float, default=0.0)
    p.add_argument("--dtype", default="bf16")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="docs/eval")
    p.add_argument("--strips", type=int, default=3)
    p.add_argument(
        "--spawn", choices=["start", "random"], default="start", help="map start or held-out point"
    )
    p.add_argument("--long-seconds", type=float, default=0.0, help="long rollouts for strips and sharpness")
    args = p.parse_args(argv)

    import torch

    from engine.config import with_weights
    from engine.worlds import build_world
    from engine.worlds.vizdoom import VizDoomWorld

    if args.threads:
        torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    eval_preset = load_preset(args.eval_preset)
    preset = with_weights(load_preset(args.preset), args.checkpoint, vae=args.vae)
    session = build_world(preset, dtype=args.dtype)
    real_world = VizDoomWorld(eval_preset)
    maps = list(eval_preset.game.maps)
    plans = {}
    if args.spawn == "random":
        from engine.data.map_geometry import load_plan
        from engine.worlds.vizdoom import find_wad

        plans = {m: load_plan(find_wad(eval_preset.game.wad), m) for m in maps}
    rng = np.random.default_rng(args.seed)
    steps = preset.unet.steps if preset.unet is not None else len(preset.sampler.denoising_step_list)
    print(f"machine: {platform.machine()} {platform.processor() or ''} threads={torch.get_num_threads()}")
    print(
        f"model: {'VAE round trip (oracle) of ' if args.oracle else ''}{args.preset} {args.dtype} "
        f"{steps} denoising steps + 1 context pass; "
        f"eval world: {args.eval_preset}"
    )

    psnrs = {k: {"model": [], "repeat": [], "mean": []} for k in AHEAD}
    follow: list[dict] = []
    reals, gens = [], []
    t0 = time.time()
    for e in bar(range(args.episodes), "episodes"):
        plan = scripted(args.blocks, rng)
        actions = ActionBlock.concat([b for _, b in plan])
        map_name = maps[e % len(maps)]
        seed = (10_000 if plans else 1000) + e
        real, poses = real_rollout(real_world, actions, seed, map_name, plans.get(map_name))
        if args.oracle:
            gen = vae_round_trip(session.vae, real)
        else:
            session.start(real[0], seed=args.seed + e)
            gen = play(session, actions)
        reals.append(real)
        gens.append(gen)
        for (a, b), (cmd, _) in zip(block_spans(len(plan))[1:], plan[1:], strict=True):
            rdx, rdz = block_motion(real[a + LAG_FRAMES : b])
            gdx, gdz = block_motion(gen[a + LAG_FRAMES : b])
            walked, turned = pose_motion(poses[a + LAG_FRAMES : b])
            follow.append(
                {
                    "cmd": cmd,
                    "clear": did_command(cmd, walked, turned),
                    "real": judge(cmd, rdx, rdz),
                    "model": judge(cmd, gdx, gdz),
                    "real_dx": rdx,
                    "real_dz": rdz,
                    "gen_dx": gdx,
                    "gen_dz": gdz,
                }
            )
        if e < args.strips:
            idx = [i for i in (0, 6, 12, 24, 36, 48, 72) if i < len(real)]
            save_strip(os.path.join(args.out, f"strip_{map_name}_{e}.png"), real, gen, idx)
        tqdm.write(f"episode {e} ({map_name}): {len(real)} frames, {time.time() - t0:.0f} s")
    mean_frame = np.concatenate(reals).astype(np.float64).mean(axis=0).round().astype(np.uint8)
    for real, gen in zip(reals, gens, strict=True):
        for k in AHEAD:
            if k < len(real):
                psnrs[k]["model"].append(psnr(gen[k], real[k]))
                psnrs[k]["repeat"].append(psnr(real[0], real[k]))
                psnrs[k]["mean"].append(psnr(mean_frame, real[k]))

    report: dict = {
        "preset": args.preset,
        "dtype": args.dtype,
        "episodes": args.episodes,
        "blocks": args.blocks,
        "oracle": args.oracle,
        "vae": args.vae or session.preset.vae.checkpoint,
    }
    print("\nPSNR (dB, mean over episodes)     model   repeat-start   mean-frame")
    for k in AHEAD:
        if psnrs[k]["model"]:
            row = {n: float(np.mean(v)) for n, v in psnrs[k].items()}
            report[f"psnr_{k}"] = row
            print(
                f"  {k:3d} frames ahead               {row['model']:6.2f}   "
                f"{row['repeat']:6.2f}        {row['mean']:6.2f}"
            )
    for group, cmds in (
        ("turn", ("turn_left", "turn_right", "forward_left", "forward_right")),
        ("forward_back", ("forward", "back")),
    ):
        rows = [f for f in follow if f["cmd"] in cmds]
        clear = [f for f in rows if f["clear"]]
        acc = lambda rs, key: float(np.mean([r[key] for r in rs])) if rs else float("nan")  # noqa: E731
        report[f"follow_{group}"] = {
            "blocks": len(rows),
            "model": acc(rows, "model"),
            "real": acc(rows, "real"),
            "clear_blocks": len(clear),
            "model_on_clear": acc(clear, "model"),
            "real_on_clear": acc(clear, "real"),
        }
        r = report[f"follow_{group}"]
        r["by_command"] = {c: acc([f for f in rows if f["cmd"] == c], "model") for c in cmds}
        print(
            f"action following {group:13s} model {pct(r['model'])} on {r['blocks']} blocks "
            f"(estimator on real frames {pct(r['real'])}); "
            f"on {r['clear_blocks']} clear blocks {pct(r['model_on_clear'])} "
            f"(estimator on their real frames {pct(r['real_on_clear'])}); "
            + ", ".join(f"{c} {pct(v, 0)}" for c, v in r["by_command"].items())
        )

    if args.long_seconds > 0 and not args.oracle:
        report["long"] = long_rollouts(args, session, real_world, maps, plans)
    if args.stability_minutes > 0 and not args.oracle:
        fps = session.spec.fps
        n_blocks = int(np.ceil(args.stability_minutes * 60 * fps / 12))
        plan = scripted(n_blocks, np.random.default_rng(args.seed + 99))
        session.start(reals[0][0], seed=args.seed)
        stats, t1 = [], time.time()
        for _, block in bar(plan, "stability"):
            stats.append(frame_health(play(session, block)))
        flat = sum(s["spatial_std_min"] < 8 for s in stats)
        saturated = sum(s["saturated_max"] > 0.9 for s in stats)
        frozen = sum(s["motion_mean"] < 0.25 for s in stats)
        report["stability"] = {
            "blocks": n_blocks,
            "minutes": args.stability_minutes,
            "seconds": time.time() - t1,
            "spatial_std_min": min(s["spatial_std_min"] for s in stats),
            "saturated_max": max(s["saturated_max"] for s in stats),
            "motion_mean_min": min(s["motion_mean"] for s in stats),
            "mean_range": [min(s["mean"] for s in stats), max(s["mean"] for s in stats)],
            "flat_blocks": flat,
            "saturated_blocks": saturated,
            "frozen_blocks": frozen,
        }
        print(
            f"stability over {n_blocks} blocks ({args.stability_minutes} min of video): "
            f"flat {flat}, saturated {saturated}, frozen {frozen}; {json.dumps(report['stability'])}"
        )
    with open(os.path.join(args.out, "eval.json"), "w") as f:
        json.dump(report, f, indent=2)
    real_world.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
