"""CPU threads for torch's intra-op pool, and where they may be used.

torch's CPU build parallelises ops with OpenMP, and every Python thread that runs a parallel op gets
its own OpenMP team. Measured on the 2-core dev machine (doom preset, bf16, 2 threads): a session
stepped on a worker thread takes 417 ms per block when the main thread never ran a parallel op, but
786 ms (+88%) when the main thread had built the model with 2 threads first: the idle team of the
main thread slows the worker's team (OMP_WAIT_POLICY / GOMP_SPINCOUNT do not help). So an app that
generates on a worker thread builds the model on the main thread with one thread (`serial`) and
lets the worker take the real count (`use`).
"""

from __future__ import annotations

import os
from typing import Optional

import torch


def default_threads(requested: Optional[int] = None) -> int:
    """The intra-op thread count to generate with: `requested`, else `auto_threads()`."""
    return int(requested) if requested else auto_threads()[0]


def auto_threads() -> tuple[int, str]:
    """(threads, why): the cores this process may use minus the load other work puts on them.

    On the 2-core machine, 2 threads were 10-28x slower than 1 while another job kept one core busy
    (an OpenMP team whose threads wait for each other on a shared core), and faster than 1 on a quiet
    machine; so a busy core is not counted. `--threads` overrides it."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        load = os.getloadavg()[0]
    except OSError:  # not available on this platform
        return cores, f"{cores} cores"
    free = max(1, min(cores, int(cores - load + 0.5)))
    return free, f"{cores} cores, load {load:.1f}"


def serial() -> None:
    """Run this thread's torch ops on one thread (no OpenMP team is created for it)."""
    use(1)


def use(threads: int) -> None:
    """Run this thread's torch ops on `threads` threads."""
    torch.set_num_threads(max(1, int(threads)))
