"""The HUD's display fps counts new frames shown per second, so a stalled generator shows as a low rate."""

import time

from app.hud import NewFrameRate
from tests.test_app_support import FakeWorld
from tests.test_app_window import make_app


class StallingWorld(FakeWorld):
    """Block 0 at once, then every block takes `block_s` seconds (a generator far slower than the display)."""

    def __init__(self, block_s: float):
        super().__init__()
        self.block_s = block_s

    def step(self, actions):
        if self._block > 0:
            time.sleep(self.block_s)
        return super().step(actions)


def test_display_fps_falls_to_zero_while_generation_stalls(tmp_path):
    app = make_app(StallingWorld(block_s=3.5), tmp_path, record=False, fps=60.0)
    app.run(max_seconds=2.8)  # block 0 is shown in the first ~0.2 s; block 1 arrives after ~3.5 s
    stats = app.stats()
    assert app.frames_shown > 0 and stats.stalled and stats.stalls >= 1
    assert stats.display_fps < 1.0, f"{stats.display_fps=} while no new frame came for 2 s"


def test_new_frame_rate_counts_frames_in_the_window():
    rate = NewFrameRate(window_s=2.0)
    assert rate.rate(now=0.0) == 0.0
    for i in range(40):  # 20 new frames per second for 2 s
        rate.shown(i / 20)
    assert abs(rate.rate(now=2.0) - 20.0) < 1.0
    assert rate.rate(now=3.0) < 11.0  # half the window without new frames
    assert rate.rate(now=4.5) == 0.0  # a stall longer than the window
    rate.reset()
    assert rate.rate(now=5.0) == 0.0
