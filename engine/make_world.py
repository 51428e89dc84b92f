"""A world of your own map, one command: `worldplayer make-world --wad freedoom2.wad --map MAP07 --out DIR`.

Runs the recipe that made the E1M1 world (docs/training.md, "The E1M1 world"; docs/make-world.md) on any
map of a Doom WAD, in eight stages:

  record          scripted play from random spawn points          DIR/work/data
  record_eval     the held-out episodes (start images)            DIR/work/data-eval
  vae             the per-frame tiny VAE                          DIR/work/runs/vae
  vae_export      its weights, latent statistics calibrated       DIR/work/vae-base.safetensors
  vae_sharpen     decoder-only fine-tune with a patch GAN         DIR/work/runs/vae-sharpen
  sharpen_export  the VAE the world plays with                    DIR/vae.safetensors
  world           the latent U-Net world model (EMA weights)      DIR/work/runs/world
  export          weights, start images, preset, README           DIR/world.safetensors, DIR/start/,
                                                                  DIR/preset.yaml, DIR/README.txt

A stage that finished is skipped and a training stage resumes from its run folder, so the same command
after Ctrl-C continues. DIR/make-world.json holds the settings and the finished stages; DIR/work/ can be
deleted once the world is made. The recipe's configs are copied into DIR/work/recipe/ on the first run,
so a later change to configs/ does not change a world half made.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Callable, Optional

STATE_FILE = "make-world.json"
DATA_EXTRA = 'pip install -e ".[data]"'
MIN_FRAMES = 16  # per episode: the VAE calibrates on 9-frame clips, the world trains on 6-frame ones


@dataclass(frozen=True)
class Budget:
    """How much to record and train; a budget's numbers are the defaults its explicit flags override."""

    episodes: int  # training episodes
    frames: int  # video frames per episode
    eval_episodes: int  # held-out episodes (start images)
    height: int
    width: int
    vae_steps: int  # batch 8 of 3-frame 72x128 crops
    sharpen_steps: int  # batch 8 of 1 frame
    world_steps: int
    world_batch: int


BUDGETS = {
    "tiny": Budget(4, 60, 2, 72, 128, 20, 10, 20, 8),  # minutes: a smoke test, the world shows a blur
    "small": Budget(40, 1000, 8, 144, 256, 2000, 300, 10_000, 16),
    "full": Budget(200, 1000, 16, 144, 256, 6000, 800, 40_000, 16),  # the E1M1 world's recipe
}
OVERRIDES = {  # flag -> Budget field
    "episodes": "episodes",
    "frames_per_episode": "frames",
    "eval_episodes": "eval_episodes",
    "vae_steps": "vae_steps",
    "sharpen_steps": "sharpen_steps",
    "world_steps": "world_steps",
    "world_batch": "world_batch",
}


@dataclass(frozen=True)
class Settings:
    """Everything that decides what a world folder holds (stored in DIR/make-world.json)."""

    wad: str  # as the preset's game section names it: a shipped WAD's name, or an absolute path
    map: str
    budget: str
    seed: int
    start_images: int
    numbers: Budget


@dataclass(frozen=True)
class Stage:
    name: str
    what: str
    needs: tuple[str, ...]  # stages whose outputs this one reads
    outputs: Callable[["Layout"], list[Path]]


PATHS = {
    "work": "work",
    "state": STATE_FILE,
    "recipe": "work/recipe",
    "train_preset": "work/train-preset.yaml",
    "data": "work/data",
    "data_eval": "work/data-eval",
    "vae_run": "work/runs/vae",
    "vae_base": "work/vae-base.safetensors",
    "sharpen_run": "work/runs/vae-sharpen",
    "latents": "work/latents",
    "world_run": "work/runs/world",
    "vae": "vae.safetensors",
    "world": "world.safetensors",
    "start": "start",
    "preset": "preset.yaml",
    "readme": "README.txt",
}


@dataclass(frozen=True)
class Layout:
    """The files of a world folder (`Layout.of(out)`; relative names in PATHS)."""

    out: Path
    work: Path
    state: Path
    recipe: Path
    train_preset: Path
    data: Path
    data_eval: Path
    vae_run: Path
    vae_base: Path
    sharpen_run: Path
    latents: Path
    world_run: Path
    vae: Path
    world: Path
    start: Path
    preset: Path
    readme: Path

    @classmethod
    def of(cls, out: str | Path) -> "Layout":
        out = Path(out)
        return cls(out, **{name: out / rel for name, rel in PATHS.items()})


STAGES = (
    Stage("record", "record the training episodes", (), lambda lay: [lay.data / "index.json"]),
    Stage("record_eval", "record the held-out episodes", (), lambda lay: [lay.data_eval / "index.json"]),
    Stage("vae", "train the VAE", ("record", "record_eval"), lambda lay: [lay.vae_run / "model.safetensors"]),
    Stage("vae_export", "export the VAE", ("vae", "record"), lambda lay: [lay.vae_base]),
    Stage(
        "vae_sharpen",
        "sharpen the VAE's decoder",
        ("vae_export", "record", "record_eval"),
        lambda lay: [lay.sharpen_run / "model.safetensors"],
    ),
    Stage("sharpen_export", "export the sharpened VAE", ("vae_sharpen",), lambda lay: [lay.vae]),
    Stage(
        "world",
        "train the world model",
        ("sharpen_export", "record"),
        lambda lay: [lay.world_run / "ema.safetensors"],
    ),
    Stage(
        "export",
        "export weights, start images, preset",
        ("world", "sharpen_export", "record_eval"),
        lambda lay: [lay.world, lay.preset, lay.readme],
    ),
)
STAGE_NAMES = [s.name for s in STAGES]


def plan(finished: set[str], present: Callable[[Stage], bool]) -> list[str]:
    """The stages to run, in order: the export and, going back, whatever an unfinished stage needs that is
    not finished itself. A stage counts as finished when it is in `finished` and its outputs are `present`,
    so a world whose work/ folder was deleted stays complete, and a deleted output is made again."""
    done = {s.name for s in STAGES if s.name in finished and present(s)}
    required = {"export"}
    for stage in reversed(STAGES):
        if stage.name in required and stage.name not in done:
            required.update(stage.needs)
    return [s.name for s in STAGES if s.name in required and s.name not in done]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="worldplayer make-world",
        description="Record a Doom map, train a VAE and a world model on it, and export a playable world.",
        epilog="Budgets (episodes x frames, held-out episodes, size, VAE / sharpen / world steps, batch):\n"
        + "\n".join(
            f"  {name:6} {b.episodes} x {b.frames}, {b.eval_episodes}, {b.height}x{b.width}, "
            f"{b.vae_steps} / {b.sharpen_steps} / {b.world_steps}, {b.world_batch}"
            for name, b in BUDGETS.items()
        )
        + "\nRun the same command again to resume. Hours per budget: docs/make-world.md.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--wad", default="freedoom2.wad", help="a WAD shipped with ViZDoom or a path to one")
    p.add_argument("--map", required=True, help="the map to learn, e.g. MAP07 or E1M1")
    p.add_argument("--out", required=True, metavar="DIR", help="the world folder (new, or one to resume)")
    p.add_argument("--budget", choices=list(BUDGETS), default="small", help="default small")
    p.add_argument("--episodes", type=int, help="training episodes")
    p.add_argument("--frames-per-episode", type=int, help="video frames per episode")
    p.add_argument("--eval-episodes", type=int, help="held-out episodes (start images come from them)")
    p.add_argument("--vae-steps", type=int)
    p.add_argument("--sharpen-steps", type=int, help="steps of the decoder fine-tune (0: skip it)")
    p.add_argument("--world-steps", type=int)
    p.add_argument("--world-batch", type=int)
    p.add_argument("--start-images", type=int, default=9, help="start images to export (>= 1, default 9)")
    p.add_argument("--seed", type=int, default=0, help="training data seed (held-out: seed + 1)")
    p.add_argument("--workers", type=int, default=2, help="recording processes (default 2)")
    return p


def settings_from_args(args: argparse.Namespace, wad: str) -> Settings:
    """The settings of this command line (the budget with the explicit flags applied), checked."""
    numbers = BUDGETS[args.budget]
    given = {
        field: getattr(args, flag) for flag, field in OVERRIDES.items() if getattr(args, flag) is not None
    }
    numbers = replace(numbers, **given)
    for f in fields(numbers):
        low = 0 if f.name == "sharpen_steps" else 1
        if getattr(numbers, f.name) < low:
            flag = next((k for k, v in OVERRIDES.items() if v == f.name), f.name)
            raise ValueError(f"--{flag.replace('_', '-')} must be >= {low}, got {getattr(numbers, f.name)}")
    if numbers.frames < MIN_FRAMES:
        raise ValueError(f"--frames-per-episode must be >= {MIN_FRAMES}, got {numbers.frames}")
    if args.start_images < 1:
        raise ValueError(f"--start-images must be >= 1, got {args.start_images}")
    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    return Settings(wad, args.map.strip().upper(), args.budget, args.seed, args.start_images, numbers)


def vizdoom_installed() -> bool:
    return importlib.util.find_spec("vizdoom") is not None


def check_map(wad: str, map_name: str) -> str:
    """The WAD as the preset will name it, after checking that it exists and holds `map_name` and that
    the map may be trained on (freedoom1.wad is evaluation data except E1M1); one-line ValueErrors."""
    if not vizdoom_installed():
        raise ValueError(f"make-world records the game with ViZDoom, which is not installed: {DATA_EXTRA}")
    from engine.data.record import EVAL_ONLY_WADS, TRAINABLE_MAPS
    from engine.worlds.vizdoom import find_wad, wad_maps

    named = os.path.abspath(wad) if os.path.isfile(wad) else wad
    maps = wad_maps(find_wad(named))
    if map_name not in maps:
        raise ValueError(f"{wad} has no map {map_name}; its maps: {', '.join(maps)}")
    stem = Path(wad).stem.lower()
    trainable = TRAINABLE_MAPS.get(stem, ())
    if stem in EVAL_ONLY_WADS and map_name not in trainable:
        raise ValueError(
            f"{wad} is held out for evaluation (only {', '.join(trainable) or 'none of its maps'} may be "
            "trained on); pick a map of freedoom2.wad"
        )
    return named


def read_state(lay: Layout) -> Optional[dict]:
    if not lay.state.is_file():
        return None
    try:
        return json.loads(lay.state.read_text())
    except (OSError, ValueError):
        raise ValueError(
            f"{lay.state} is not readable JSON; delete the folder {lay.out} to start again"
        ) from None


def write_state(lay: Layout, state: dict) -> None:
    tmp = lay.state.with_name(lay.state.name + ".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, lay.state)


def claim(lay: Layout, settings: Settings) -> dict:
    """The folder's state: new for an empty or missing folder, the stored one when its settings match;
    a folder holding something else, or made with other settings, is a one-line ValueError."""
    state = read_state(lay)
    wanted = json.loads(json.dumps(asdict(settings)))
    if state is None:
        if lay.out.exists() and (not lay.out.is_dir() or any(lay.out.iterdir())):
            raise ValueError(f"--out {lay.out} holds other files; give a new or empty folder")
        return {"settings": wanted, "done": {}}
    stored = state.get("settings", {})
    if stored != wanted:
        flat_old, flat_new = _flat(stored), _flat(wanted)
        diffs = [
            f"{k} {flat_old.get(k)} (now {flat_new.get(k)})"
            for k in flat_new
            if flat_old.get(k) != flat_new.get(k)
        ]
        raise ValueError(
            f"--out {lay.out} was started with other settings: {'; '.join(diffs)}; run the same command to "
            "resume, or give another --out"
        )
    return state


def _flat(d: dict) -> dict:
    """{"numbers": {"episodes": 4}, "map": "MAP01"} -> {"episodes": 4, "map": "MAP01"}."""
    out = {}
    for k, v in d.items():
        out.update(_flat(v) if isinstance(v, dict) else {k: v})
    return out


def play_command(lay: Layout) -> str:
    return f"worldplayer --preset {lay.preset}   (from a checkout: python main.py --preset {lay.preset})"


def _seconds(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h"


def make_world(settings: Settings, out: str, workers: int = 2, say: Callable[[str], None] = print) -> Layout:
    """Run (or resume) every stage that is not finished; returns the world folder's layout."""
    lay = Layout.of(out)
    state = claim(lay, settings)
    todo = plan(set(state["done"]), lambda st: all(p.exists() for p in st.outputs(lay)))
    if not todo:
        say(f"make-world: {lay.out} is complete; play it: {play_command(lay)}")
        return lay
    if any(name in todo for name in ("record", "record_eval")) and not vizdoom_installed():
        raise ValueError(f"make-world records the game with ViZDoom, which is not installed: {DATA_EXTRA}")
    from engine import make_world_stages as stages

    lay.work.mkdir(parents=True, exist_ok=True)
    write_state(lay, state)
    stages.prepare(lay, settings)
    t_all = time.time()
    for i, name in enumerate(STAGE_NAMES, 1):
        stage = STAGES[i - 1]
        tag = f"make-world: [{i}/{len(STAGES)}] {name}:"
        if name not in todo:
            say(f"{tag} {'done, skipped' if name in state['done'] else 'not needed'}")
            continue
        say(f"{tag} {stage.what} ...")
        t0 = time.time()
        stages.RUNNERS[name](lay, settings, workers)
        seconds = time.time() - t0
        state["done"][name] = round(seconds, 1)
        write_state(lay, state)
        say(f"{tag} done in {_seconds(seconds)} (total {_seconds(time.time() - t_all)})")
    say(f"make-world: the world is in {lay.out}; play it: {play_command(lay)}")
    return lay


def main(argv: Optional[list[str]] = None) -> int:
    """`python -m engine.make_world ...` and `worldplayer make-world ...`; bad input is one line on stderr."""
    args = build_parser().parse_args(argv)
    try:
        lay = Layout.of(args.out)
        state = read_state(lay)
        stored = (state or {}).get("settings", {}).get("wad", "")
        if (
            set(STAGE_NAMES) <= set((state or {}).get("done", {}))
            and Path(stored).name == Path(args.wad).name
        ):
            wad = stored  # a finished world needs no ViZDoom to say so
        else:
            wad = check_map(args.wad, args.map.strip().upper())
        make_world(settings_from_args(args, wad), args.out, args.workers)
    except KeyboardInterrupt:
        print("\nmake-world: interrupted; run the same command to continue", file=sys.stderr)
        return 130
    except (ValueError, OSError) as e:
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"make-world: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
