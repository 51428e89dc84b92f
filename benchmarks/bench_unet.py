"""U-Net world benchmark: the reference frame against the optimised and compiled ones, in one run.

    taskset -c 1 env OMP_NUM_THREADS=1 python benchmarks/bench_unet.py --preset e1m1 --frames 40

Part 1 (the network): one U-Net pass of the reference (`LatentUNet.forward`) and one frame without
decode on each path (`engine.edm.sample_next` against `engine.model.unet_fast_path`'s frame), timed
interleaved, medians. Part 2 (what the app sees): one session per path (`build_world(..., dit_path=)`,
first frame = the self-check) stepped frame by frame, interleaved, decode included: median ms per frame
and frames/s. Wall time and the thread's CPU time are both reported: their ratio shows whether the core
was shared with another process during the run. Also reports the compiled package's build (cold, when it
was not cached) and load (warm) times. Weights: --checkpoint, else runs/e1m1_unet/ema.safetensors when it
exists, else random (speed does not depend on the weights).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from functools import partial

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from app.bench_actions import bench_actions  # noqa: E402
from app.start_images import StartImages  # noqa: E402
from engine.config import load_preset  # noqa: E402
from engine.edm import sample_next  # noqa: E402
from engine.model import aot_package, unet_fast_path  # noqa: E402
from engine.worlds import build_world  # noqa: E402

DEFAULT_CHECKPOINT = "runs/e1m1_unet/ema.safetensors"


def timed(fn) -> tuple[float, float]:
    """(wall ms, this thread's CPU ms) of one call."""
    w, c = time.perf_counter(), time.thread_time()
    fn()
    return (time.perf_counter() - w) * 1000, (time.thread_time() - c) * 1000


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


@torch.no_grad()
def bench_network(world, frames: int, paths: list[str]) -> dict:
    """Part 1: a reference pass, and a frame (no decode) on each path, interleaved."""
    net, cfg, sigmas = world.model, world.cfg, world.sigmas
    hw = tuple(world._latents.shape[-2:])
    context, level, actions, noise = unet_fast_path.example_inputs(net, cfg, hw)
    gen = torch.Generator().manual_seed(0)
    x, c_noise = noise.to(world.dtype), torch.zeros(1)
    fns = {"pass (reference)": lambda: net(x, context, c_noise, level, actions)}
    fns["frame reference"] = lambda: sample_next(net, context, level, actions, cfg, sigmas, gen)
    info = {}
    for path in paths:
        if path == "reference":
            continue
        t0 = time.perf_counter()
        fn = unet_fast_path.build_frame_fn(net, cfg, sigmas, hw, path)
        info[f"{path} build_or_load_s"] = round(time.perf_counter() - t0, 2)
        if path == "compiled" and world.device.type == "cpu":
            pkg = unet_fast_path.package_path(unet_fast_path.UNetFrame(net, cfg, sigmas), hw)
            t0 = time.perf_counter()
            aot_package.load_package(pkg)
            info["compiled load_s (warm)"] = round(time.perf_counter() - t0, 3)
        fns[f"frame {path}"] = lambda fn=fn: fn(context, level, actions, noise)
    times = {k: [] for k in fns}
    for fn in fns.values():  # warm-up
        fn(), fn()
    for _ in range(frames):
        for name, fn in fns.items():
            times[name].append(timed(fn))
    return {"times": times, "info": info}


def bench_sessions(preset, checkpoint, dtype: str, frames: int, paths: list[str]) -> dict:
    """Part 2: one session per path, stepped one frame at a time, interleaved, decode included."""
    _, image = StartImages(preset, None, log=lambda m: None).current()
    worlds, times, notes = {}, {}, {}
    for path in paths:
        world = build_world(preset, checkpoint, "cpu", dtype, dit_path=path)
        world.start(image, seed=0)
        spec = world.spec
        actions = bench_actions("random", spec.mode, frames + 4, spec.keyboard_dim, spec.has_mouse, 0)
        world.step(actions.slice(0, 1))  # block 0: the start frame
        t = timed(partial(world.step, actions.slice(1, 2)))  # frame 1: the path's choice and self-check
        worlds[path], times[path] = (world, actions), []
        choice = getattr(world, "net_choice", None)
        notes[path] = {"first_frame_ms": round(t[0], 1), "note": choice.note if choice else "reference"}
    for i in range(frames):
        for path, (world, actions) in worlds.items():
            times[path].append(timed(partial(world.step, actions.slice(2 + i, 3 + i))))
    for world, _ in worlds.values():
        world.close()
    return {"times": times, "notes": notes}


def median(pairs: list[tuple[float, float]], k: int) -> float:
    return statistics.median(p[k] for p in pairs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="e1m1")
    p.add_argument("--checkpoint", help=f"world weights (default: {DEFAULT_CHECKPOINT} if it exists)")
    p.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"])
    p.add_argument("--frames", type=int, default=40, help="timed frames per path (after warm-up)")
    p.add_argument("--paths", default="reference,optimised,compiled")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    checkpoint = args.checkpoint or (DEFAULT_CHECKPOINT if os.path.isfile(DEFAULT_CHECKPOINT) else None)
    preset = load_preset(args.preset)
    paths = args.paths.split(",")
    print(
        f"# {args.preset} {args.dtype} on {cpu_name()}, {torch.get_num_threads()} thread(s), torch "
        f"{torch.__version__}, weights {checkpoint or 'random'}, {args.frames} frames per path"
    )
    world = build_world(preset, checkpoint, "cpu", args.dtype, dit_path="reference")
    world.start(StartImages(preset, None, log=lambda m: None).current()[1], seed=0)
    net = bench_network(world, args.frames, paths)
    for k, v in net["info"].items():
        print(f"{k}: {v}")
    print("part 1 (no decode)        wall ms   cpu ms")
    for name, pairs in net["times"].items():
        print(f"  {name:22s} {median(pairs, 0):8.2f} {median(pairs, 1):8.2f}")
    ses = bench_sessions(preset, checkpoint, args.dtype, args.frames, paths)
    print("part 2 (session frame, decode included)   wall ms   cpu ms   frames/s   first frame ms")
    for path, pairs in ses["times"].items():
        w, c = median(pairs, 0), median(pairs, 1)
        print(f"  {path:12s} {w:8.2f} {c:8.2f} {1000 / w:8.2f}   {ses['notes'][path]['first_frame_ms']:8.1f}")
        print(f"    {ses['notes'][path]['note']}")
    shared = np.mean([p[0] / max(p[1], 1e-9) for ps in ses["times"].values() for p in ps])
    print(f"wall / cpu time: {shared:.2f} (about 1: the core was not shared)")
    if "reference" in ses["times"] and "compiled" in ses["times"]:
        a, b = median(ses["times"]["reference"], 0), median(ses["times"]["compiled"], 0)
        speedup = f"{a / b:.2f}x (reference {a:.1f} ms, compiled {b:.1f} ms per frame)"
        print(f"speedup {args.preset} {args.dtype} cpu: {speedup}")


if __name__ == "__main__":
    main()
