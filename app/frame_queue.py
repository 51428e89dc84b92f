"""A bounded, thread-safe queue of decoded video frames between the generation thread and the display.

The generation thread puts whole blocks (`put_block`, blocking while the queue is full); the display
loop pops one frame per tick (`pop`, never blocking). Every frame carries the block it came from and
the time the block's input was sampled, so the display can measure input-to-display latency when the
first frame of a block is shown.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Optional

import numpy as np


@dataclass
class QueuedFrame:
    image: np.ndarray  # uint8 [H, W, 3]
    block: int  # block index within the session
    index_in_block: int
    input_time: float  # time.perf_counter() when the block's input was sampled
    session: int  # bumps on restart, so stale frames can be recognised


class FrameQueue:
    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"frame queue capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._frames: deque[QueuedFrame] = deque()
        self._cond = threading.Condition()

    def __len__(self) -> int:
        with self._cond:
            return len(self._frames)

    def put_block(
        self,
        frames: np.ndarray,
        block: int,
        input_time: float,
        session: int = 0,
        stop: Optional[threading.Event] = None,
    ) -> bool:
        """Append frames uint8 [T, H, W, 3], waiting for room; False if `stop` was set while waiting."""
        for i, image in enumerate(frames):
            with self._cond:
                while len(self._frames) >= self.capacity:
                    if stop is not None and stop.is_set():
                        return False
                    self._cond.wait(0.05)
                self._frames.append(QueuedFrame(image, block, i, input_time, session))
                self._cond.notify_all()
        return True

    def pop(self) -> Optional[QueuedFrame]:
        """The oldest frame, or None when empty."""
        with self._cond:
            if not self._frames:
                return None
            frame = self._frames.popleft()
            self._cond.notify_all()
            return frame

    def clear(self) -> None:
        with self._cond:
            self._frames.clear()
            self._cond.notify_all()

    def wait_below(self, depth: int, timeout: float) -> bool:
        """Wait until fewer than `depth` frames are queued; True if so within `timeout` seconds."""
        deadline = time.perf_counter() + timeout
        with self._cond:
            while len(self._frames) >= depth:
                left = deadline - time.perf_counter()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True
