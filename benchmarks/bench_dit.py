"""Milliseconds per block of the streaming DiT, reference and optimised paths side by side in one run.

A block is every pass of the streaming step: len(denoising_step_list) denoising passes + 1 context pass.

    python benchmarks/bench_dit.py                                  # tiny + doom, CPU bf16 (+ mg2 on CUDA)
    python benchmarks/bench_dit.py --preset doom --threads 2 --paths reference,optimised,compiled
    python benchmarks/bench_dit.py --preset mg2-universal --device cuda --steps 3
    python benchmarks/bench_dit.py --preset doom --profile optimised  # where the time goes
    python benchmarks/bench_dit.py --preset doom --paths compiled --cold-cache  # cold compile time

Random weights; the VAE and CLIP are not involved. Ends with one line per preset, dtype and device:
`speedup PRESET DTYPE DEVICE: N.NNx (reference A ms, optimised B ms per block)` where "optimised" is the
fastest optimised path measured. For a compiled path it also prints the first block's time (the compile,
or a cache hit on a warm start).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.config import ActionConfig, Preset, load_preset  # noqa: E402
from engine.model.causal_wan import CausalWanModel  # noqa: E402
from engine.model.fast_path import build, choose_path  # noqa: E402
from engine.model.layers import DTYPES  # noqa: E402
from engine.scheduler import sampling_timesteps  # noqa: E402

PATHS = ("reference", "optimised", "compiled", "inductor")  # inductor: torch.compile (CPU compiled = AOTI)


def mid_preset() -> Preset:
    """~30M parameters: mg2 layout shrunk (dim 384, 8 layers, actions in 0..3) at 176 x 320 pixels."""
    base = load_preset("mg2-universal")
    action = ActionConfig(
        blocks=(0, 1, 2, 3), heads_num=4, hidden_size=64, img_hidden_size=384, keyboard_hidden_dim=256,
        mouse_hidden_dim=256, mouse_qk_dim_list=(8, 28, 28), rope_dim_list=(8, 28, 28),
    )  # fmt: skip
    model = dataclasses.replace(
        base.model, dim=384, ffn_dim=1536, num_heads=6, num_layers=8, image_context_dim=256, action=action
    )
    return dataclasses.replace(base, name="mid-30m", height=176, width=320, model=model)


def machine(device: str) -> str:
    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(0)} (torch {torch.__version__})"
    cpu = "unknown CPU"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        cpu = next(ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = torch.get_num_threads()
    return f"{cpu} (lscpu), {cores} usable cores, torch threads {threads} (torch {torch.__version__})"


class Setup:
    """A random-weight model of a preset and one block's random inputs at the preset's size."""

    def __init__(self, preset: Preset, device: str, dtype: torch.dtype, steps: int):
        cfg, self.preset = preset.model, preset
        torch.manual_seed(0)
        self.model = CausalWanModel(cfg).to(device=device, dtype=dtype).eval()
        with torch.no_grad():  # the official init zeroes the output layers; random ones exercise every path
            for name, p in self.model.named_parameters():
                if name.endswith(("proj_mouse.weight", "proj_keyboard.weight", "head.head.weight")):
                    p.normal_(0, 0.02)
        self.h, self.w = preset.height // 8, preset.width // 8
        ts = sampling_timesteps(preset.sampler).tolist()
        if steps:
            ts = torch.linspace(1000, 1000 / steps, steps).tolist()
        self.timesteps = ts + [float(preset.sampler.context_noise)]  # denoising passes, then the context pass
        f, act, g = cfg.num_frame_per_block, cfg.action, torch.Generator().manual_seed(1)

        def rnd(*shape):
            return torch.randn(shape, generator=g).to(device, dtype)

        win = act.vae_time_compression_ratio * act.windows_size if act is not None else 0
        acts = act is not None and act.blocks
        self.x = rnd(1, f, cfg.out_dim, self.h, self.w)
        self.cond = rnd(1, f, cfg.in_dim - cfg.out_dim, self.h, self.w) if cfg.in_dim > cfg.out_dim else None
        self.mouse = rnd(1, f, win, act.mouse_dim_in) if acts and act.enable_mouse else None
        self.keyboard = rnd(1, f, win, act.keyboard_dim_in) if acts and act.enable_keyboard else None
        enc = preset.image_encoder
        lc = (enc.image_size // enc.patch_size) ** 2 + 1  # CLIP tokens (257 for ViT-H/14 at 224)
        self.context = rnd(1, lc, cfg.image_context_dim) if cfg.image_context_dim is not None else None
        self.f, self.device = f, device

    def runner(self, path: str, fast=None):
        """block(k): every pass of block k on `path` (on `fast`, a built FastStreamer, when given)."""
        m, f = self.model, self.f
        if path == "reference":
            cache = m.new_cache(1, self.h, self.w, self.device, m.patch_embedding.weight.dtype)

            def block(k: int) -> None:
                for t in self.timesteps:
                    tt = torch.full((1, f), t, device=self.device)
                    m(
                        self.x,
                        self.cond,
                        tt,
                        self.context,
                        self.mouse,
                        self.keyboard,
                        cache=cache,
                        start_frame=k * f,
                    )

            return block, cache
        fast = fast or build(m, 1, self.h, self.w, self.timesteps, path)
        fast.opt.start_session(self.context)

        def block(k: int) -> None:
            fast.opt.begin_block(k * f, self.cond, self.mouse, self.keyboard)
            for i in range(len(self.timesteps)):
                fast.velocity(self.x, i)
            fast.opt.end_block()

        return block, fast.opt.cache


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@torch.no_grad()
def time_paths(setup: Setup, paths: list[str], blocks: int, warmup: int) -> dict[str, dict]:
    """ms per block of each path, measured interleaved (block k of every path, then block k + 1) so that
    a neighbour's load on a shared core moves all paths alike; ms is the median of the timed blocks."""
    runners, res = {}, {}
    for path in paths:
        block, cache = runners[path] = setup.runner(path)
        t0 = time.perf_counter()
        block(0)  # the first block: compiles (or loads the compiled code from the cache)
        sync(setup.device)
        res[path] = dict(first_s=time.perf_counter() - t0, cache_mib=cache.nbytes() / 2**20, times=[])
    for k in range(1, max(warmup, 1) + blocks):
        for path in paths:
            t0 = time.perf_counter()
            runners[path][0](k)
            sync(setup.device)
            if k >= max(warmup, 1):
                res[path]["times"].append((time.perf_counter() - t0) * 1000)
    for r in res.values():
        r["ms"] = float(torch.tensor(r["times"]).median())
    return res


CATEGORIES = (
    ("attention", ("scaled_dot_product", "flash_attention", "efficient_attention", "softmax")),
    ("matmuls", ("addmm", "aten::mm", "bmm", "matmul", "linear", "conv", "mkldnn", "cublas", "gemm")),
    ("norms/modulation/rope", ("layer_norm", "rsqrt", "pow", "mean", "aten::mul", "aten::add", "aten::sub",
                               "stack", "gelu", "cpp_fused", "triton_")),
    ("copies/casts/cache writes", ("copy_", "_to_copy", "index_copy", "cat", "clone", "contiguous")),
)  # fmt: skip


@torch.no_grad()
def profile(setup: Setup, path: str) -> None:
    """Where one block's time goes (self time of the profiled ops by category; the rest is Python)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    block, _ = setup.runner(path)
    block(0)
    block(1)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if setup.device.startswith("cuda") else [])
    with torch_profile(activities=acts) as prof:
        t0 = time.perf_counter()
        block(2)
        sync(setup.device)
        wall = (time.perf_counter() - t0) * 1000
    groups: dict[str, float] = defaultdict(float)
    top: dict[str, float] = defaultdict(float)
    for ev in prof.key_averages():
        ms = ev.self_cpu_time_total / 1000
        if ms <= 0 or ev.key.startswith(("Torch-Compiled Region", "CompiledFunction", "## Call")):
            continue
        cat = next((c for c, keys in CATEGORIES if any(k in ev.key for k in keys)), "other ops")
        groups[cat] += ms
        top[ev.key] += ms
    print(f"  profile {setup.preset.name} {path}: {wall:.1f} ms wall for one block (profiler on)")
    for cat, ms in sorted(groups.items(), key=lambda kv: -kv[1]):
        print(f"    {cat:<28} {ms:9.1f} ms  {100 * ms / wall:5.1f}%")
    rest = wall - sum(groups.values())
    print(f"    {'Python/framework overhead':<28} {rest:9.1f} ms  {100 * rest / wall:5.1f}%")
    print(
        "    top ops: " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(top.items(), key=lambda kv: -kv[1])[:6])
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", action="append", help="preset name(s) or mid-30m; default: tiny, doom "
                        "(+ mg2-universal at 352x640 on CUDA)")  # fmt: skip
    parser.add_argument("--device", action="append", help="cpu / cuda; default: cpu (+ cuda when present)")
    parser.add_argument("--dtype", action="append", choices=list(DTYPES), help="default: bf16")
    parser.add_argument("--paths", default="reference,optimised,compiled", help=f"comma list of {PATHS}")
    parser.add_argument("--steps", type=int, default=0, help="denoising steps (default: the preset's)")
    parser.add_argument("--blocks", type=int, default=0, help="timed blocks (default: 10 tiny, 3 others)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed blocks, the first included")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    parser.add_argument("--profile", choices=PATHS, help="also print where one block's time goes on a path")
    parser.add_argument("--cold-cache", action="store_true", help="compile into an empty inductor cache")
    args = parser.parse_args(argv)
    paths = [p for p in args.paths.split(",") if p]
    if any(p not in PATHS for p in paths) or "reference" not in paths:
        parser.error(f"--paths must name some of {PATHS}, reference included")
    if args.cold_cache:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-cold-")
        os.environ["WORLDPLAYER_CACHE"] = tempfile.mkdtemp(prefix="worldplayer-cold-")  # AOTI packages
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    summary = []
    for device in devices:
        names = args.preset or (["tiny", "doom"] + (["mg2-universal"] if device.startswith("cuda") else []))
        for name in args.dtype or ["bf16"]:
            print(f"machine: {machine(device)}; dtype {name}; paths {', '.join(paths)}")
            for pname in names:
                preset = mid_preset() if pname == "mid-30m" else load_preset(pname)
                setup = Setup(preset, device, DTYPES[name], args.steps)
                blocks = args.blocks or (10 if pname.startswith("tiny") else 3)
                s = setup.model.tokens_per_frame(setup.h, setup.w)
                passes = len(setup.timesteps)
                params = sum(p.numel() for p in setup.model.parameters()) / 1e6
                print(
                    f"  {preset.name} {preset.height}x{preset.width}: {params:.2f}M params, "
                    f"{setup.f * s} tokens/block, {passes} passes ({passes - 1} steps + context), "
                    f"{blocks} timed blocks"
                )
                res = time_paths(setup, paths, blocks, args.warmup)
                for path in paths:
                    r = res[path]
                    extra = f", first block {r['first_s']:.2f} s" if path in ("compiled", "inductor") else ""
                    print(
                        f"    {path:<10} {r['ms']:9.1f} ms/block  ({r['ms'] / passes:.1f} ms/pass, "
                        f"x{res['reference']['ms'] / r['ms']:.2f}, cache {r['cache_mib']:.1f} MiB{extra})"
                    )
                if "compiled" in paths:  # what the app pays before its first block, package cached
                    t0 = time.perf_counter()
                    m = setup.model
                    choice = choose_path(m, 1, setup.h, setup.w, setup.timesteps, "auto")
                    setup.runner(choice.path, choice.fast)[0](0)
                    print(
                        f"    app start, auto path {choice.path}: {time.perf_counter() - t0:.2f} s to the "
                        f"end of the first block (build/load + self-check {choice.check_s:.2f} s)"
                    )
                if args.profile:
                    profile(setup, args.profile)
                best = min((p for p in paths if p != "reference"), key=lambda p: res[p]["ms"], default=None)
                if best is not None:
                    ref, opt = res["reference"]["ms"], res[best]["ms"]
                    print(f"    optimised = {best} (the fastest optimised path measured)")
                    summary.append(
                        f"speedup {preset.name} {name} {device}: {ref / opt:.2f}x "
                        f"(reference {ref:.1f} ms, optimised {opt:.1f} ms per block)"
                    )
    for line in summary:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
