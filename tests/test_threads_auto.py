"""Threads follow what the machine can give: a core kept busy by other work is not used (issue 22)."""

from __future__ import annotations

import os

import pytest

from engine import threads


@pytest.mark.parametrize(
    ("cores", "load", "expected"),
    [(2, 0.1, 2), (2, 1.0, 1), (2, 3.7, 1), (8, 2.2, 6), (1, 0.0, 1)],
)
def test_auto_threads_leave_busy_cores_alone(monkeypatch, cores, load, expected):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    n, why = threads.auto_threads()
    assert n == expected and f"{cores} cores" in why
    assert threads.default_threads(None) == expected and threads.default_threads(3) == 3


def test_the_hud_shows_the_thread_choice():
    from app.hud import HudStats, hud_lines

    lines = hud_lines(HudStats(preset="e1m1", mode="universal", threads="1 (auto: 2 cores, load 1.2)"))
    assert any("threads 1 (auto: 2 cores, load 1.2)" in line for line in lines)
