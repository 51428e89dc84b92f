"""The heads-up display: text drawn onto the window surface only, never into model frames."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Optional

import pygame


@dataclass
class HudStats:
    preset: str
    mode: str
    keys: list[str] = field(default_factory=list)
    mouse: tuple[float, float] = (0.0, 0.0)  # last frame's [pitch, yaw]
    sensitivity: float = 1.0
    mouse_captured: bool = False
    display_fps: float = 0.0  # new frames shown per second (held frames during a stall do not count)
    target_fps: float = 0.0
    gen_fps: float = 0.0
    block_ms: float = 0.0
    latency_ms: Optional[float] = None
    queue_depth: int = 0
    queue_capacity: int = 0
    block: int = 0
    stalls: int = 0
    stalled: bool = False
    paused: bool = False
    recording: bool = False
    record_failed: bool = False  # the recorder could not write a frame (shown at once, not as REC)
    start_label: str = ""
    dream_ms: Optional[float] = None
    error: str = ""
    notice: str = ""
    threads: str = ""  # CPU threads and how they were chosen, e.g. "2 (auto: 2 cores, load 0.1)"


class NewFrameRate:
    """New frames shown per second over the last `window_s` seconds.

    Only frames popped from the queue count; a frame held on screen while generation stalls does not,
    so the rate falls (to 0 after a stall of `window_s`) instead of reporting the redraw rate."""

    def __init__(self, window_s: float = 2.0):
        self.window_s = window_s
        self._times: deque[float] = deque()
        self._first: float | None = None

    def shown(self, t: float) -> None:
        """A new frame went on screen at time `t` (seconds, `time.perf_counter()`)."""
        self._times.append(t)
        if self._first is None:
            self._first = t

    def reset(self) -> None:
        self._times.clear()
        self._first = None

    def rate(self, now: float) -> float:
        while self._times and self._times[0] <= now - self.window_s:
            self._times.popleft()
        if self._first is None:
            return 0.0
        span = min(self.window_s, now - self._first)
        if span <= 0:
            return 0.0
        # the first frame opens the span, so it is not counted when the span starts at it
        counted = len(self._times) - (1 if span < self.window_s else 0)
        return max(counted, 0) / span


def hud_lines(s: HudStats) -> list[str]:
    """The HUD's text, one entry per line."""
    latency = "-" if s.latency_ms is None else f"{s.latency_ms:.0f} ms"
    lines = [
        f"{s.preset} [{s.mode}]  start: {s.start_label}",
        f"keys: {' '.join(k.upper() for k in s.keys) or '-'}   mouse: ({s.mouse[0]:+.3f}, {s.mouse[1]:+.3f})"
        f"  sens x{s.sensitivity:.2f}{'  [captured]' if s.mouse_captured else ''}",
        f"display {s.display_fps:4.1f}/{s.target_fps:g} fps   gen {s.gen_fps:5.1f} fps"
        f"   {s.block_ms:6.0f} ms/block",
        f"latency {latency}   queue {s.queue_depth}/{s.queue_capacity}   block {s.block}   stalls {s.stalls}"
        + (f"   threads {s.threads}" if s.threads else ""),
    ]
    if s.dream_ms is not None:
        lines.append(f"dreamed start scene in {s.dream_ms:.0f} ms")
    if s.notice:
        lines.append(s.notice)
    return lines


def draw_hud(surface: pygame.Surface, font: pygame.font.Font, s: HudStats) -> None:
    """Draw the HUD panel (top left), the status badges (top right) and the error bar (bottom)."""
    lines = hud_lines(s)
    pad, line_h = 6, font.get_linesize()
    rendered = [font.render(text, True, (235, 235, 235)) for text in lines]
    width = max(r.get_width() for r in rendered) + 2 * pad
    panel = pygame.Surface((min(width, surface.get_width()), len(lines) * line_h + 2 * pad), pygame.SRCALPHA)
    panel.fill((0, 0, 0, 150))
    for i, r in enumerate(rendered):
        panel.blit(r, (pad, pad + i * line_h))
    surface.blit(panel, (0, 0))
    draw_badges(surface, font, s)
    if s.error:
        draw_error(surface, font, s.error)


def draw_badges(surface: pygame.Surface, font: pygame.font.Font, s: HudStats) -> None:
    """REC / PAUSED / STALL markers in the top-right corner (shown even with the HUD off)."""
    x = surface.get_width() - 6
    for text, color, on in (
        ("REC", (230, 40, 40), s.recording and not s.record_failed),
        ("REC FAILED", (120, 0, 160), s.recording and s.record_failed),
        ("PAUSED", (240, 200, 40), s.paused),
        ("STALL", (255, 140, 0), s.stalled and not s.paused),
    ):
        if not on:
            continue
        label = font.render(text, True, (255, 255, 255))
        box = pygame.Rect(0, 0, label.get_width() + 12, label.get_height() + 4)
        box.topright = (x, 6)
        pygame.draw.rect(surface, color, box, border_radius=4)
        pygame.draw.rect(surface, (20, 20, 20), box, width=1, border_radius=4)
        surface.blit(label, (box.x + 6, box.y + 2))
        x = box.x - 6


def draw_split_labels(
    surface: pygame.Surface, font: pygame.font.Font, rect: pygame.Rect, labels: tuple[str, ...]
) -> None:
    """Name the side-by-side halves of `rect` (the picture on screen): a tag at each half's bottom left."""
    width = rect.width // len(labels)
    for i, text in enumerate(labels):
        label = font.render(text, True, (255, 255, 255))
        box = pygame.Rect(0, 0, label.get_width() + 12, label.get_height() + 4)
        box.bottomleft = (rect.x + i * width + 6, rect.bottom - 6)
        tag = pygame.Surface(box.size, pygame.SRCALPHA)
        tag.fill((0, 0, 0, 170))
        surface.blit(tag, box)
        surface.blit(label, (box.x + 6, box.y + 2))


def draw_error(surface: pygame.Surface, font: pygame.font.Font, message: str) -> None:
    label = font.render(message[:160], True, (255, 255, 255))
    bar = pygame.Rect(
        0, surface.get_height() - label.get_height() - 8, surface.get_width(), label.get_height() + 8
    )
    pygame.draw.rect(surface, (150, 20, 20), bar)
    surface.blit(label, (6, bar.y + 4))


def draw_center(surface: pygame.Surface, font: pygame.font.Font, message: str) -> None:
    label = font.render(message, True, (230, 230, 230))
    surface.blit(label, label.get_rect(center=surface.get_rect().center))
