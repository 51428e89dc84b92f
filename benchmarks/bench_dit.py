"""Milliseconds per block of the streaming DiT: all passes (len(denoising_step_list) + 1 context pass).

    python benchmarks/bench_dit.py                       # tiny + a ~30M config, CPU fp32/bf16 (+ CUDA)
    python benchmarks/bench_dit.py --preset mg2-universal --device cuda --dtype bf16

Random weights; the VAE and CLIP are not involved. Prints the machine, dtype and tokens per block.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.config import ActionConfig, Preset, load_preset  # noqa: E402
from engine.model.causal_wan import CausalWanModel  # noqa: E402
from engine.model.layers import DTYPES  # noqa: E402


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
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()} (torch {torch.__version__})"
    )


def bench(preset: Preset, device: str, dtype: torch.dtype, blocks: int, warmup: int) -> dict:
    cfg = preset.model
    torch.manual_seed(0)
    model = CausalWanModel(cfg).to(device=device, dtype=dtype).eval()
    h, w = preset.height // 8, preset.width // 8
    nfpb = cfg.num_frame_per_block
    steps = list(preset.sampler.denoising_step_list)
    enc = preset.image_encoder
    lc = (enc.image_size // enc.patch_size) ** 2 + 1  # CLIP tokens (257 for ViT-H/14 at 224)
    act = cfg.action
    win = act.vae_time_compression_ratio * act.windows_size
    x = torch.randn(1, nfpb, cfg.out_dim, h, w, device=device)
    cond = torch.randn(1, nfpb, cfg.in_dim - cfg.out_dim, h, w, device=device)
    context = torch.randn(1, lc, cfg.image_context_dim, device=device)
    keyboard = torch.zeros(1, nfpb, win, act.keyboard_dim_in, device=device)
    mouse = torch.zeros(1, nfpb, win, act.mouse_dim_in, device=device) if act.enable_mouse else None
    cache = model.new_cache(1, h, w, device, dtype)

    def block(k: int) -> None:
        for step in steps + [0.0]:  # denoising passes, then the clean context pass
            t = torch.full((1, nfpb), step, device=device)
            model(x, cond, t, context, mouse, keyboard, cache=cache, start_frame=k * nfpb)

    with torch.no_grad():
        for k in range(warmup):
            block(k)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for k in range(warmup, warmup + blocks):
            block(k)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        ms = (time.perf_counter() - t0) / blocks * 1000
    s = model.tokens_per_frame(h, w)
    return dict(
        preset=preset.name, params=sum(p.numel() for p in model.parameters()), tokens=nfpb * s,
        passes=len(steps) + 1, ms=ms, cache_mib=cache.nbytes() / 2**20,
    )  # fmt: skip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", action="append", help="preset name(s); default: tiny and mid-30m")
    parser.add_argument("--device", action="append", help="cpu / cuda; default: cpu (+ cuda when present)")
    parser.add_argument("--dtype", action="append", choices=list(DTYPES), help="default: fp32 and bf16")
    parser.add_argument("--blocks", type=int, default=0, help="timed blocks (default: 20 tiny, 3 others)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    presets = [
        mid_preset() if p == "mid-30m" else load_preset(p) for p in (args.preset or ["tiny", "mid-30m"])
    ]
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    for device in devices:
        print(f"machine: {machine(device)}")
        for preset in presets:
            for name in args.dtype or ["fp32", "bf16"]:
                blocks = args.blocks or (20 if preset.name.startswith("tiny") else 3)
                r = bench(preset, device, DTYPES[name], blocks, args.warmup)
                print(
                    f"  {r['preset']:<14} {r['params'] / 1e6:8.2f}M params  {device:<4} {name:<4}  "
                    f"{r['tokens']:6d} tokens/block  {r['passes']} passes  {r['ms']:9.1f} ms/block  "
                    f"({r['ms'] / r['passes']:.1f} ms/pass, cache {r['cache_mib']:.1f} MiB)"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
