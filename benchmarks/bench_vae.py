"""Streaming-decode speed of the full-size Wan 2.1 VAE (random weights): milliseconds per video frame.

Decodes `--latents` random latents the way a session does (`decode_stream`, `--per-call` latents per
call: 3 = one world-model block) and prints one row per call. The first call of a session includes
one-off costs (oneDNN primitive creation, cuDNN autotuning) and the first latent's single frame; the
later rows are the steady state. cpu-ms/frame is this process's CPU time (all threads): on a shared
machine it shows the work done when the wall-clock time is inflated by other processes.

    python benchmarks/bench_vae.py              # CPU bf16+fp32 (+ CUDA), 352x640 and 144x256
    python benchmarks/bench_vae.py --devices cpu --dtypes bf16 --sizes 144x256 --latents 6
    python benchmarks/bench_vae.py --sizes 352x640 --latents 2 --per-call 1   # quick look on a slow CPU
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.config import VAEConfig  # noqa: E402
from engine.model.layers import DTYPES  # noqa: E402
from engine.vae.wan_vae import WanVAE  # noqa: E402


def machine(device: str) -> str:
    if device == "cuda":
        return f"{torch.cuda.get_device_name()} (torch {torch.__version__}, CUDA {torch.version.cuda})"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    cpu = platform.processor() or platform.machine()
    threads = torch.get_num_threads()
    return f"CPU {cpu}, {os.cpu_count()} cores, {threads} threads, load {load:.1f}, torch {torch.__version__}"


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


@torch.no_grad()
def bench(
    vae: WanVAE, device: str, height: int, width: int, latents: int, per_call: int
) -> list[tuple[int, float, float]]:
    """(frames, wall seconds, process CPU seconds) for each decode_stream call."""
    z = torch.randn(1, latents, vae.z_dim, height // vae.spatial, width // vae.spatial, device=device)
    cache, rows = vae.new_decode_cache(), []
    for s in range(0, latents, per_call):
        sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        video, cache = vae.decode_stream(z[:, s : s + per_call], cache)
        sync(device)
        rows.append((video.shape[1], time.perf_counter() - t0, time.process_time() - c0))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_devices = "cpu,cuda" if torch.cuda.is_available() else "cpu"
    p.add_argument("--devices", default=default_devices, help="comma list of cpu, cuda")
    p.add_argument("--dtypes", default="bf16,fp32", help="comma list of bf16, fp16, fp32")
    p.add_argument("--sizes", default="352x640,144x256", help="comma list of HxW video sizes")
    p.add_argument("--latents", type=int, default=6, help="latents decoded per run (6 = two blocks)")
    p.add_argument("--per-call", type=int, default=3, help="latents per decode_stream call (3 = a block)")
    p.add_argument(
        "--latents-per-pass", type=int, default=1, help="WanVAE.latents_per_pass (decoder batching)"
    )
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    base = WanVAE(VAEConfig()).eval().requires_grad_(False)  # random weights; fp32
    print(f"Wan 2.1 VAE decoder, {sum(p.numel() for p in base.decoder.parameters()) / 1e6:.1f} M params")
    for device in args.devices.split(","):
        print(f"\n== {device}: {machine(device)}")
        print(f"{'dtype':>5} {'size':>8} {'call':>4} {'frames':>6} {'ms/frame':>9} {'cpu-ms/frame':>12}")
        for dname in args.dtypes.split(","):
            vae = copy.deepcopy(base).to(device=device, dtype=DTYPES[dname])
            vae.latents_per_pass = args.latents_per_pass
            for size in args.sizes.split(","):
                h, w = (int(v) for v in size.split("x"))
                rows = bench(vae, device, h, w, args.latents, args.per_call)
                for i, (frames, sec, cpu) in enumerate(rows):
                    line = f"{dname:>5} {size:>8} {i:>4} {frames:>6} {1000 * sec / frames:>9.1f}"
                    print(f"{line} {1000 * cpu / frames:>12.1f}", flush=True)
                if len(rows) > 1:
                    frames, sec, cpu = (sum(r[k] for r in rows[1:]) for k in range(3))
                    line = f"{dname:>5} {size:>8} {'avg':>4} {frames:>6} {1000 * sec / frames:>9.1f}"
                    print(f"{line} {1000 * cpu / frames:>12.1f}  (calls 1+)")
            del vae


if __name__ == "__main__":
    main()
