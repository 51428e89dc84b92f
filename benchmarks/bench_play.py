"""Play benchmark: sustained generation rate, first-frame time and input-to-display latency.

    python benchmarks/bench_play.py --preset doom --blocks 100 --window-seconds 30 --json out.json

Headless part: one session of `--blocks` blocks (decode included) driven by `bench:random` actions;
reports load time, time to the first block's frames, per-block ms and the sustained generation rate
in video frames per second over blocks 1.. (block 0 includes warm-up). Window part (optional): the
real app under SDL's dummy video driver for `--window-seconds`, with W held and the mouse moving,
reporting the measured input-to-display latency (input sampled at block start -> first frame of that
block on screen), display fps, stalls and the first frame's time after the window opened.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from app.bench_actions import bench_actions  # noqa: E402
from app.start_images import StartImages  # noqa: E402
from engine.config import load_preset  # noqa: E402
from engine.worlds import build_world  # noqa: E402


def bench_headless(preset, args) -> dict:
    import torch

    t0 = time.perf_counter()
    world = build_world(preset, args.checkpoint, args.device, args.dtype, args.path)
    load_s = time.perf_counter() - t0
    _, image = StartImages(preset, args.image, log=lambda m: None).current()
    spec = world.spec
    actions = bench_actions("random", spec.mode, 9 + 12 * args.blocks, spec.keyboard_dim, spec.has_mouse, 0)
    t1 = time.perf_counter()
    world.start(image, seed=0)
    block_ms, frames, pos = [], [], 0
    first_frame_s = None
    for _ in range(args.blocks):
        n = world.actions_needed
        tb = time.perf_counter()
        out = world.step(actions.slice(pos, pos + n))
        block_ms.append((time.perf_counter() - tb) * 1000)
        if first_frame_s is None:
            first_frame_s = time.perf_counter() - t1
        frames.append(len(out))
        pos += n
    world.close()
    steady = block_ms[1:] or block_ms
    steady_frames = frames[1:] or frames
    return {
        "preset": preset.name,
        "device": args.device,
        "dtype": args.dtype,
        "path": args.path,
        "threads": torch.get_num_threads(),
        "size": [spec.height, spec.width],
        "native_fps": spec.fps,
        "blocks": args.blocks,
        "load_s": round(load_s, 2),
        "first_frame_s": round(first_frame_s, 3),
        "block0_ms": round(block_ms[0], 1),
        "block_ms_median": round(statistics.median(steady), 1),
        "block_ms_max": round(max(steady), 1),
        "sustained_fps": round(sum(steady_frames) / (sum(steady) / 1000), 2),
    }


def bench_window(preset, args) -> dict:
    """The window part, as `python main.py` runs it: built with one thread, stepped on the generation
    thread with `--threads` (engine.threads). Runs in a fresh process so that the headless part's
    OpenMP team does not slow it down."""
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    import pygame

    from app.cli import session_meta
    from app.window import App, AppOptions
    from engine.threads import default_threads, serial

    threads = default_threads(args.threads)
    serial()
    world = build_world(preset, args.checkpoint, args.device, args.dtype, args.path)
    opts = AppOptions(fps=preset.fps, screenshot_dir="/tmp", error_hold_s=0, threads=threads)
    images = StartImages(preset, args.image, log=lambda m: None)
    app = App(world, preset, images, 0, opts, session_meta(preset, args.checkpoint, args.device, args.dtype))

    def script(app, tick):
        if tick == 1:
            pygame.event.post(
                pygame.event.Event(pygame.KEYDOWN, key=pygame.K_w, mod=0, unicode="w", scancode=0)
            )
            app._set_capture(True)
        pygame.event.post(pygame.event.Event(pygame.MOUSEMOTION, rel=(3, 0), pos=(5, 5), buttons=(0, 0, 0)))

    app.run(script=script, max_seconds=args.window_seconds)
    world.close()
    s = app.summary()
    times = list(app._tick_times)
    s["display_fps_last"] = round((len(times) - 1) / (times[-1] - times[0]), 2) if len(times) > 1 else None
    s["threads"] = threads
    return s


def window_in_subprocess(argv: list[str]) -> dict:
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "window.json")
        subprocess.run([sys.executable, os.path.abspath(__file__), *argv, "--window-only", out], check=True)
        with open(out) as f:
            return json.load(f)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="doom")
    p.add_argument("--checkpoint")
    p.add_argument("--image")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="bf16")
    p.add_argument("--blocks", type=int, default=100)
    p.add_argument(
        "--path", default="reference", help="network path: reference, optimised, compiled, auto (as the app)"
    )
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument(
        "--window-seconds", type=float, default=0, help="also run the window for this long (0 = skip)"
    )
    p.add_argument("--json", help="write the results here too")
    p.add_argument("--window-only", help=argparse.SUPPRESS)  # internal: the window part's JSON path
    argv = sys.argv[1:]
    args = p.parse_args(argv)
    preset = load_preset(args.preset)
    if args.window_only:
        with open(args.window_only, "w") as f:
            json.dump(bench_window(preset, args), f)
        return
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    result = {"headless": bench_headless(preset, args)}
    if args.window_seconds > 0:
        result["window"] = window_in_subprocess(argv)  # its --json is ignored there
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
