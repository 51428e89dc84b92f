"""Headless runs: generate a session from scripted actions into a recording folder, with a progress bar.

`run_headless` writes DIR/video.mp4, DIR/actions.jsonl, DIR/blocks.jsonl, DIR/start.png, DIR/meta.json
(the same recording format as the live window) and DIR/metrics.json (`frames`, `blocks`, `block_ms`
per block, `generation_fps`, `peak_rss_mb`, `first_block_ms`). `frames` counts video frames: blocks are
generated until that many exist and the surplus of the last block is dropped.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Optional

import numpy as np
from tqdm import tqdm

from app.action_file import block_slice
from app.out_folder import claim_out_dir
from app.recorder import Recorder
from app.rollout import Rollout
from engine.actions import ActionBlock
from engine.worlds import World


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (0.0 where the platform does not say)."""
    try:
        import resource
    except ImportError:  # Windows
        return 0.0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1 << 20) if sys.platform == "darwin" else rss / 1024  # macOS: bytes, Linux: KiB


def run_headless(
    world: World,
    image: Optional[np.ndarray],
    actions: ActionBlock,  # or a lazy source with `rows(idx)` (app.action_file.block_slice)
    frames: int,
    out_dir: str,
    seed: int,
    meta: dict,
    video_start_frame: int = 0,
    progress: bool = True,
    keys: Optional[list[list[str]]] = None,
    force: bool = False,
) -> tuple[dict, Rollout]:
    """Generate `frames` video frames driven by `actions` (>= frames rows) and record them to `out_dir`.

    `video_start_frame` > 0 leaves the first frames out of the video (replays of recordings started
    mid-session). An existing recording in `out_dir` is an error unless `force`. Returns (metrics,
    rollout); `metrics["recording_error"]` is non-empty when a frame did not reach the video.
    """
    spec = world.spec
    claim_out_dir(out_dir, force, ("metrics.json",))
    t_start = time.perf_counter()
    rollout = Rollout(world, image, seed)
    recorder = Recorder(
        out_dir,
        spec.width,
        spec.height,
        spec.fps,
        dict(meta, seed=seed, fps=spec.fps),
        start_image=rollout.image,
        video_start_frame=video_start_frame,
        overwrite=force,
    )
    if video_start_frame == 0:
        rollout.attach(recorder)
    block_ms: list[float] = []
    bar = tqdm(total=frames, unit="frame", desc=f"{spec.name}", disable=not progress, dynamic_ncols=True)
    first_block_s = None
    failure = ""
    try:
        while rollout.frame < frames:
            needed = rollout.actions_needed
            block = block_slice(actions, rollout.frame, needed)
            keep = min(needed, frames - rollout.frame)
            if rollout.recorder is None and rollout.frame + needed > video_start_frame:
                raise ValueError(f"video_start_frame {video_start_frame} is not at a block boundary")
            block_keys = None if keys is None else keys[min(rollout.frame, len(keys) - 1)]
            t0 = time.perf_counter()
            rollout.step(block, keys=block_keys, keep=keep)
            block_ms.append((time.perf_counter() - t0) * 1000.0)
            if first_block_s is None:
                first_block_s = time.perf_counter() - t_start
            if rollout.recorder is None and rollout.frame == video_start_frame:
                rollout.attach(recorder)
            bar.update(keep)
            bar.set_postfix(ms_block=f"{block_ms[-1]:.0f}")
            if recorder.failed:
                raise OSError(f"recording into {out_dir} failed: {recorder.error_text}")
    except KeyboardInterrupt:  # Ctrl-C, SIGTERM, SIGHUP: a stop, not a failure; what was made is complete
        raise
    except BaseException as e:  # noqa: B036 - the folder must say that the session ended early
        failure = f"{type(e).__name__}: {e}".strip().splitlines()[0]
        raise
    finally:
        bar.close()
        if rollout.recorder is None:
            recorder.close(failure=failure)
        rollout.detach(failure=failure)
    generated = sum(b["frames"] for b in rollout.blocks)
    metrics = {
        "frames": min(frames, generated),
        "frames_generated": generated,
        "blocks": len(block_ms),
        "block_ms": [round(m, 2) for m in block_ms],
        "generation_fps": round(generated / (sum(block_ms) / 1000.0), 3) if block_ms else 0.0,
        "first_block_ms": round(block_ms[0], 2) if block_ms else None,
        "time_to_first_frames_s": None if first_block_s is None else round(first_block_s, 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "recording_error": recorder.error_text,
    }
    with open(os.path.join(out_dir, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    return metrics, rollout
