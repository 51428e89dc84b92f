"""Class-conditional VAR (next-scale prediction) start-frame generator with exact speculative decoding.

See docs/var.md. The app calls `dream_start_image`.
"""

from __future__ import annotations


def dream_start_image(*args, **kwargs):
    """`dream_start_image(level, seed=0, ...) -> uint8 [H, W, 3]` (engine.var.dream). Also accepts the app's
    `(preset, level, seed)` form, taking height and width from the preset."""
    from engine.var.dream import dream_start_image as dream

    if args and not isinstance(args[0], str):
        preset, *args = args
        kwargs.setdefault("height", preset.height)
        kwargs.setdefault("width", preset.width)
    return dream(*args, **kwargs)


__all__ = ["dream_start_image"]
