"""worldplayer: play a neural world model live in a window, headless, or replay a recording.

Examples: `python main.py` (the default preset in a window);
`python main.py --headless --preset tiny --actions bench:random --frames 60 --out out/run`;
`python main.py --replay out/run --out out/replay`. Everything else lives in `app/`.
"""

import signal
import sys

signal.signal(signal.SIGINT, lambda *_: sys.exit(130))  # Ctrl-C while importing: no traceback

from app.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
