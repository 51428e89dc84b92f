"""Streaming state of CausalWanModel: preallocated ring-buffer KV caches with integer positions.

One `StreamCache` holds everything a session needs between blocks:
- self-attention K/V of every layer, `[L, B, H, W*S, Dh]` (W = window frames, S = tokens per frame);
- mouse K/V of every action layer, `[La, B*S, Hm, Wa, Dm]` (temporal attention per spatial token);
- keyboard K/V of every action layer, `[La, B, Hm, Wa, Dm]`;
- cross-attention K/V of every layer, `[L, B, H, Lc, Dh]`, computed on the first call of a session.
Heads come before positions so the tensors feed SDPA without a transpose. Cached K is already RoPE'd.

Positions are plain ints. Latent frame f (f >= sink) lives in ring slot `sink + (f - sink) mod (W - sink)`,
frames below `sink` keep slots 0..sink-1. Writing frames [s, e) therefore overwrites exactly the frames that
leave the window, and after any write the valid slots are [0, min(e, W)). Attention reads all valid slots
without a mask; the order of keys does not matter to softmax, so this equals the official roll-and-shift cache
(reference §4.7) without copying anything. A call at the same start frame rewrites the same slots (denoising
passes, then the clean context pass): the cache holds the K/V of the last call at each position.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

Tensor = torch.Tensor


@dataclass(frozen=True)
class Ring:
    """Slot arithmetic of one ring buffer: `capacity` frames, the first `sink` frames never evicted."""

    capacity: int
    sink: int = 0

    def slot(self, frame: int) -> int:
        if frame < self.sink:
            return frame
        return self.sink + (frame - self.sink) % (self.capacity - self.sink)

    def runs(self, start: int, stop: int) -> list[tuple[int, int, int]]:
        """Contiguous writes for frames [start, stop): (first slot, offset into the new frames, count)."""
        runs: list[tuple[int, int, int]] = []
        for i, frame in enumerate(range(start, stop)):
            slot = self.slot(frame)
            if runs and runs[-1][0] + runs[-1][2] == slot:
                runs[-1] = (runs[-1][0], runs[-1][1], runs[-1][2] + 1)
            else:
                runs.append((slot, i, 1))
        return runs

    def valid(self, stop: int) -> int:
        """Number of valid slots (always slots [0, n)) once frames [0, stop) have been written."""
        return min(stop, self.capacity)


@dataclass(frozen=True)
class WritePlan:
    """Where one forward call writes: frames [start, stop) of the session."""

    start: int
    stop: int
    self_runs: tuple[tuple[int, int, int], ...]
    self_valid: int
    action_runs: tuple[tuple[int, int, int], ...]
    action_valid: int


@dataclass
class StreamCache:
    """All per-session state of the streaming forward path. Build with `CausalWanModel.new_cache`."""

    batch: int
    tokens_per_frame: int
    self_ring: Ring
    action_ring: Ring
    self_k: Tensor  # [L, B, H, W*S, Dh]
    self_v: Tensor  # [L, B, H, W*S, Dh]
    mouse_k: Optional[Tensor] = None  # [La, B*S, Hm, Wa, Dm]
    mouse_v: Optional[Tensor] = None
    keyboard_k: Optional[Tensor] = None  # [La, B, Hm, Wa, Dm]
    keyboard_v: Optional[Tensor] = None
    cross_k: Optional[Tensor] = None  # [L, B, H, Lc, Dh], filled by the first call
    cross_v: Optional[Tensor] = None
    cross_ready: bool = False  # cross K/V hold this session's image context
    end_frame: int = 0  # frames [0, end_frame) have been written at least once

    def plan(self, start: int, num_frames: int) -> WritePlan:
        """Check a call for frames [start, start + num_frames) and say which slots it writes."""
        stop = start + num_frames
        if start != self.end_frame and stop != self.end_frame:
            raise ValueError(
                f"stream cache holds frames [0, {self.end_frame}): a call must continue at start_frame="
                f"{self.end_frame} or repeat the last block, got frames [{start}, {stop})"
            )
        for name, ring in (("self-attention", self.self_ring), ("action", self.action_ring)):
            if num_frames > ring.capacity - ring.sink:
                raise ValueError(
                    f"{num_frames} frames per call do not fit the {name} window of {ring.capacity} frames "
                    f"({ring.sink} sink)"
                )
        return WritePlan(
            start=start,
            stop=stop,
            self_runs=tuple(self.self_ring.runs(start, stop)),
            self_valid=self.self_ring.valid(stop),
            action_runs=tuple(self.action_ring.runs(start, stop)),
            action_valid=self.action_ring.valid(stop),
        )

    def commit(self, plan: WritePlan) -> None:
        """Advance the integer positions after every layer has written `plan`."""
        self.end_frame = max(self.end_frame, plan.stop)

    def reset(self) -> None:
        """Start a new session with the same buffers (contents are overwritten before they are read)."""
        self.end_frame = 0
        self.cross_ready = False

    def tensors(self) -> list[Tensor]:
        """Every buffer this cache holds (for memory accounting and tests)."""
        names = ("self_k", "self_v", "mouse_k", "mouse_v", "keyboard_k", "keyboard_v", "cross_k", "cross_v")
        return [t for t in (getattr(self, n) for n in names) if t is not None]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors())


def write_frames(buf: Tensor, new: Tensor, runs: tuple[tuple[int, int, int], ...], per_frame: int) -> None:
    """Copy new K or V into ring slots. buf: [N, H, slots*per_frame, D]; new: [N, H, frames*per_frame, D]."""
    for slot, offset, count in runs:
        buf[:, :, slot * per_frame : (slot + count) * per_frame] = new[
            :, :, offset * per_frame : (offset + count) * per_frame
        ]


def valid_view(buf: Tensor, valid: int, per_frame: int) -> Tensor:
    """The valid part of a ring buffer: [N, H, valid*per_frame, D] (a view, no copy)."""
    return buf[:, :, : valid * per_frame]


def write_and_read(
    cache_k: Tensor, cache_v: Tensor, k: Tensor, v: Tensor, runs, valid: int, per_frame: int
) -> tuple[Tensor, Tensor]:
    """Store this call's K/V ([N, H, F*per_frame, D]) and return the whole valid window to attend."""
    write_frames(cache_k, k, runs, per_frame)
    write_frames(cache_v, v, runs, per_frame)
    return valid_view(cache_k, valid, per_frame), valid_view(cache_v, valid, per_frame)
