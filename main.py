"""worldplayer: play a neural world model live in a window, headless, or replay a recording.

python main.py                       # play the default preset
python main.py --headless --preset tiny --actions bench:random --frames 60 --out out/run
python main.py --replay out/run --out out/replay
"""

import sys

from app.cli import main

if __name__ == "__main__":
    sys.exit(main())
