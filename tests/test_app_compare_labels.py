"""--compare names its halves on screen (the HUD panel starts hidden there; H shows it)."""

from __future__ import annotations

import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

import pygame  # noqa: E402

from app.hud import draw_split_labels  # noqa: E402


def test_each_half_gets_its_label_at_its_bottom_left():
    pygame.init()
    font = pygame.font.Font(None, 18)
    screen = pygame.Surface((400, 120))
    screen.fill((255, 255, 255))
    rect = pygame.Rect(0, 10, 400, 100)
    draw_split_labels(screen, font, rect, ("real: vizdoom-e1m1", "dream: e1m1"))
    for x0 in (0, 200):  # a dark tag near each half's bottom-left corner, nothing at its top
        bottom = [screen.get_at((x0 + dx, 100)) for dx in range(8, 40)]
        top = [screen.get_at((x0 + dx, 15)) for dx in range(8, 40)]
        assert min(c.r for c in bottom) < 128 and min(c.r for c in top) == 255
    pygame.quit()
