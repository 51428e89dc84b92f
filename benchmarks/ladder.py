"""The diagnostic ladder for a world model on recorded episodes (docs/training.md, "The E1M1 world").

    python benchmarks/ladder.py --preset e1m1 --checkpoint runs/e1m1_world/ema.safetensors \
        --data data/e1m1-eval --episodes 4 [--seconds 1,5,30,60] [--context-noise 0]

For each episode of a shard folder (the real frames and the actions that made them):
- teacher-forced one step: the session starts from real frame p - 1 and generates frame p under the
  recorded action, at `--positions` random p; PSNR against real frame p, beside copying frame p - 1
  and beside the VAE's round trip of frame p (no model on this VAE can beat it);
- free rollout: the session starts from frame `--start` (default 0) and plays the recorded actions; PSNR
  against the real frame and sharpness (mean image gradient, generated / real over the second before)
  at each `--seconds` mark after the start, beside repeating the start frame.
Prints a table and writes --json; --strip writes a PNG with, per episode, a row of generated and a row
of real frames at 0 s and each mark (the frames to look at). Machine, dtype and sampler steps are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from dataclasses import replace

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from engine.actions import ActionBlock  # noqa: E402
from engine.data.shards import read_index  # noqa: E402
from engine.eval.motion import psnr, sharpness  # noqa: E402
from engine.worlds import play  # noqa: E402


def episode(root: str, name: str) -> tuple[np.ndarray, ActionBlock]:
    frames = np.load(os.path.join(root, f"{name}.frames.npy"), mmap_mode="r")
    with np.load(os.path.join(root, f"{name}.actions.npz")) as a:
        return frames, ActionBlock(a["keyboard"].astype(np.float32), a["mouse"].astype(np.float32))


def sampler_override(preset, steps: str, context_noise):
    """The preset with `--steps` / `--context-noise` applied to whichever sampler it has."""
    if preset.unet is not None:
        u = preset.unet
        u = replace(u, steps=int(steps)) if steps else u
        u = replace(u, context_noise=context_noise) if context_noise is not None else u
        return replace(preset, unet=u)
    s = preset.sampler
    if steps:
        s = replace(s, denoising_step_list=tuple(float(t) for t in steps.split(",")))
    if context_noise is not None:
        s = replace(s, context_noise=context_noise)
    return replace(preset, sampler=s)


def sampler_text(preset) -> str:
    if preset.unet is not None:
        u = preset.unet
        return (
            f"EDM Euler {u.steps} steps, sigma {u.sigma_max}..{u.sigma_min}, context noise {u.context_noise}"
        )
    s = preset.sampler
    return f"{list(s.denoising_step_list)} + context pass at {s.context_noise}"


def teacher_forced(session, frames, actions, positions, seed: int) -> tuple[float, float, float]:
    """Mean PSNR of one generated frame from the real frame before it, of copying that frame, and of
    the VAE's own round trip of the real frame (the ceiling of any model on this VAE)."""
    gen, copy, vae = [], [], []
    for k, p in enumerate(positions):
        session.start(np.ascontiguousarray(frames[p - 1]), seed=seed + k)
        out = play(session, actions.slice(p - 1, p + 1))  # frame p - 1 (the start), then frame p
        gen.append(psnr(out[1], frames[p]))
        copy.append(psnr(frames[p - 1], frames[p]))
        vae.append(psnr(round_trip(session.vae, frames[p]), frames[p]))
    return float(np.mean(gen)), float(np.mean(copy)), float(np.mean(vae))


def round_trip(vae, frame: np.ndarray) -> np.ndarray:
    """The frame encoded alone and decoded by the session's VAE, uint8 [H, W, 3]."""
    import torch

    from engine.conditioning import frames_to_uint8, image_to_tensor

    with torch.no_grad():
        x = image_to_tensor(np.ascontiguousarray(frame)).to(next(vae.parameters()).dtype)
        return frames_to_uint8(vae.decode(vae.encode(x[:, None])))[-1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="e1m1")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--data", default="data/e1m1-eval")
    p.add_argument("--episodes", type=int, default=4)
    p.add_argument("--positions", type=int, default=16)
    p.add_argument("--seconds", default="1,5,30,60")
    p.add_argument(
        "--steps", default="", help="sampler timesteps, e.g. 1000,500; for a U-Net world the step count"
    )
    p.add_argument(
        "--context-noise", type=float, default=None,
        help="sampler.context_noise (timesteps); for a U-Net world unet.context_noise (sigma)",
    )  # fmt: skip
    p.add_argument("--dtype", default="bf16")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default="")
    p.add_argument("--start", type=int, default=0, help="frame the free rollouts start from")
    p.add_argument("--strip", default="", help="PNG of generated / real rows at 0 s and the marks")
    args = p.parse_args(argv)

    import torch

    from engine.config import load_preset, with_weights
    from engine.worlds import build_world

    preset = with_weights(load_preset(args.preset), args.checkpoint)
    preset = sampler_override(preset, args.steps, args.context_noise)
    session = build_world(preset, dtype=args.dtype)
    fps = session.spec.fps
    marks = [float(s) for s in args.seconds.split(",") if s]
    print(f"machine: {platform.processor() or platform.machine()} threads={torch.get_num_threads()}")
    print(f"model: {args.preset} {args.checkpoint or preset.checkpoint} {args.dtype}; "
          f"sampler {sampler_text(preset)}")  # fmt: skip
    rng = np.random.default_rng(args.seed)
    rows, strips = [], []
    for entry in read_index(args.data)["shards"][: args.episodes]:
        frames, actions = episode(args.data, entry["name"])
        n = len(frames)
        pos = sorted(rng.choice(np.arange(1, n), size=min(args.positions, n - 1), replace=False).tolist())
        tf, copy, vae = teacher_forced(session, frames, actions, pos, args.seed)
        s0 = args.start
        frames = frames[s0:]  # the rollout and its marks count from the start frame
        horizon = min(n - s0, int(max(marks) * fps) + 1)
        session.start(np.ascontiguousarray(frames[0]), seed=args.seed)
        gen = play(session, actions.slice(s0, s0 + horizon))
        row = {"episode": entry["name"], "teacher_forced": tf, "copy_last": copy, "vae_round_trip": vae}
        for s in marks:
            i = int(round(s * fps))
            if i < horizon:
                a = max(0, i - int(fps))
                row[f"psnr_{s:g}s"] = psnr(gen[i], frames[i])
                row[f"repeat_{s:g}s"] = psnr(frames[0], frames[i])
                row[f"sharp_{s:g}s"] = sharpness(gen[a : i + 1]) / max(sharpness(frames[a : i + 1]), 1e-6)
        rows.append(row)
        at = [0] + [int(round(s * fps)) for s in marks if int(round(s * fps)) < horizon]
        strips += [np.concatenate([gen[i] for i in at], 1), np.concatenate([frames[i] for i in at], 1)]
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    keys = [k for k in rows[0] if k != "episode"]
    mean = {k: float(np.mean([r[k] for r in rows if k in r])) for k in keys}
    print("mean: " + ", ".join(f"{k} {v:.2f}" for k, v in mean.items()))
    if args.strip:
        from PIL import Image

        width = max(s.shape[1] for s in strips)
        pad = [np.pad(s, ((0, 4), (0, width - s.shape[1]), (0, 0))) for s in strips]
        Image.fromarray(np.concatenate(pad)).save(args.strip)
        print(f"strip: {args.strip} (rows: generated, real per episode; columns: 0 s, {args.seconds} s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "mean": mean, "sampler": sampler_text(preset)}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
