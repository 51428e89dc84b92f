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

from typing import Optional

import torch


def default_threads(requested: Optional[int] = None) -> int:
    """The intra-op thread count to generate with: `requested`, else torch's default for this thread."""
    return int(requested) if requested else torch.get_num_threads()


def serial() -> None:
    """Run this thread's torch ops on one thread (no OpenMP team is created for it)."""
    use(1)


def use(threads: int) -> None:
    """Run this thread's torch ops on `threads` threads."""
    torch.set_num_threads(max(1, int(threads)))
