"""worldplayer's desktop app: window, input, generation thread, HUD, recording, replay, headless."""

import os

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
