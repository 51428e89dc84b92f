"""What both trainers share: process group (single process or torchrun DDP), LR schedule, metrics log.

Under `torchrun` the env vars RANK/WORLD_SIZE/LOCAL_RANK are set and DDP is used (gloo on CPU, nccl
on CUDA); without them everything runs in one process. The code paths are the same either way.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.distributed as dist

from engine.train.config import RunConfig


@dataclass(frozen=True)
class Dist:
    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_dist(run: RunConfig) -> Dist:
    """Init DDP when launched by torchrun; pick the device; set CPU threads."""
    if run.threads > 0:
        torch.set_num_threads(run.threads)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(rank, world, device)


def wrap_ddp(model: torch.nn.Module, d: Dist) -> torch.nn.Module:
    if d.world == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [d.device.index] if d.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def barrier(d: Dist) -> None:
    if d.world > 1:
        dist.barrier()


def all_reduce_mean(x: torch.Tensor, d: Dist) -> torch.Tensor:
    if d.world > 1:
        x = x.clone()
        dist.all_reduce(x)
        x /= d.world
    return x


def lr_at(step: int, run: RunConfig) -> float:
    """Linear warmup then cosine decay to lr * min_lr_ratio."""
    if step < run.warmup_steps:
        return run.lr * (step + 1) / run.warmup_steps
    p = min(1.0, (step - run.warmup_steps) / max(1, run.steps - run.warmup_steps))
    return run.lr * (run.min_lr_ratio + (1 - run.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p)))


def autocast(device: torch.device, enabled: bool):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


class MetricsLog:
    """Append-only JSONL metrics (one object per line, with step and wall time) on the main process.

    A resumed run (`resume_step` > 0) first drops the rows logged after its checkpoint by the run that
    was interrupted, so every step appears once."""

    def __init__(self, path: Path, enabled: bool, resume_step: int = 0):
        self.path, self.enabled, self.t0 = path, enabled, time.time()
        if enabled and resume_step and path.is_file():
            kept = [r for r in path.read_text().splitlines() if _logged_step(r) <= resume_step]
            tmp = path.with_suffix(".tmp")
            tmp.write_text("".join(r + "\n" for r in kept))
            tmp.replace(path)

    def write(self, step: int, **values) -> None:
        if not self.enabled:
            return
        row = {"step": step, "time": round(time.time() - self.t0, 2)}
        row.update({k: (round(v, 6) if isinstance(v, float) else v) for k, v in values.items()})
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")


def _logged_step(row: str) -> float:
    try:
        return float(json.loads(row).get("step", 0))
    except (ValueError, AttributeError):
        return float("inf")  # an unreadable (cut) line is dropped


def progress(total: int, initial: int, enabled: bool, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, desc=desc, dynamic_ncols=True)


class Throughput:
    """Samples per second over the steps since the last `rate()` call."""

    def __init__(self):
        self.t, self.n = time.time(), 0

    def add(self, samples: int) -> None:
        self.n += samples

    def rate(self) -> float:
        now = time.time()
        r = self.n / max(now - self.t, 1e-9)
        self.t, self.n = now, 0
        return r


def optional_int(x: Optional[int]) -> int:
    return int(x or 0)
