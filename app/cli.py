"""Command line: parse, validate, hand off to the window, headless runner or replay.

Every user error (unknown preset, missing image, bad action line, no display, ...) ends as one line on
stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import sys
from typing import Optional

from app.errors import NoDisplayError, require_vizdoom
from app.keymaps import keys_help
from app.out_folder import check_no_links, claim_out_dir, same_folder
from app.start_images import StartImages, file_sha256
from engine.config import Preset, list_presets, load_preset, preset_to_dict, with_weights

# torch is imported only once a world is needed (`run`), so --help and --list-presets answer at once

log = logging.getLogger("worldplayer")
DEFAULT_PRESET = "doom"
DEFAULT_BENCH_FRAMES = 120
MAX_FRAMES = 10**9


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="worldplayer",
        description="Play a neural world model live, headless, or replay.",
        epilog=keys_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--preset", default=DEFAULT_PRESET, help=f"preset name in configs/ (default {DEFAULT_PRESET})"
    )
    p.add_argument("--checkpoint", help="world-model weights (safetensors); default: the preset's")
    p.add_argument("--vae-checkpoint", help="VAE weights (e.g. Wan2.1_VAE.pth); default: the preset's")
    p.add_argument(
        "--image-encoder-checkpoint", help="CLIP weights (the official open-clip .pth); default: the preset's"
    )
    p.add_argument(
        "--model-dir",
        metavar="DIR",
        help="the Hugging Face folder Skywork/Matrix-Game-2.0 (mg2-* presets): the preset's DiT, "
        "Wan2.1_VAE.pth and the CLIP .pth from it; a --*checkpoint flag wins over its file",
    )
    p.add_argument("--image", help="start image PATH, or var:MAP07 to dream one (default: the preset's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fps", type=float, help="display frame rate (default: the preset's)")
    p.add_argument("--scale", type=float, default=0, help="window scale factor (default: about 960 px wide)")
    p.add_argument("--fullscreen", action="store_true")
    p.add_argument("--record", metavar="DIR", help="record the session into DIR from the first frame")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    p.add_argument(
        "--force-cpu", action="store_true",
        help="run a preset on the CPU even when it would take minutes per block (full-size mg2-*)",
    )  # fmt: skip
    p.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"])
    p.add_argument(
        "--no-compile", action="store_true",
        help="run the reference network path, DiT or U-Net (default: the fastest path that passes a "
        "self-check against it: compiled on CUDA, the optimised eager path on CPU, or compiled once its "
        "package is built)",
    )  # fmt: skip
    p.add_argument(
        "--compile", action="store_true",
        help="CPU: build the compiled DiT or U-Net package now if it is missing (about a minute (U-Net) to "
        "minutes (DiT), once per weights, size, dtype and thread count; cached under ~/.cache/worldplayer) "
        "and run it",
    )  # fmt: skip
    p.add_argument("--list-presets", action="store_true", help="list presets and exit")
    p.add_argument("--headless", action="store_true", help="no window: generate from --actions into --out")
    p.add_argument(
        "--actions", metavar="FILE|bench:NAME", help="action file (JSONL) or bench:random, bench:forward, ..."
    )
    p.add_argument(
        "--frames", type=int, help="video frames to generate headless (default: the action file's length)"
    )
    p.add_argument("--out", metavar="DIR", help="output folder for --headless and --replay")
    p.add_argument(
        "--force", action="store_true", help="let --headless/--replay overwrite a recording already in --out"
    )
    p.add_argument("--loop-actions", action="store_true", help="repeat an action file shorter than --frames")
    p.add_argument("--replay", metavar="DIR", help="regenerate a recording headless into --out and verify it")
    p.add_argument("--compare", action="store_true", help="real ViZDoom world and the dream side by side")
    p.add_argument(
        "--compare-preset", default="vizdoom", help="the real world for --compare (default vizdoom)"
    )
    p.add_argument(
        "--threads", type=int,
        help="CPU threads for torch (default: the cores not kept busy by other work; shown in the HUD)",
    )  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(device: str) -> str:
    """`device` if this torch build can run on it, else a one-line ValueError saying what to pass."""
    import torch

    try:
        d = torch.device(device)
    except RuntimeError:
        raise ValueError(f"--device {device!r} is not a device; use cpu, cuda or cuda:N") from None
    if d.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"--device {device}: this torch build ({torch.__version__}) sees no CUDA GPU; use cpu"
            )
        if d.index is not None and d.index >= torch.cuda.device_count():
            raise ValueError(
                f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) are visible"
            )
    elif d.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {device}: MPS is not available here; use cpu")
    elif d.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"--device {device}: worldplayer runs on cpu, cuda or mps")
    return device


def session_meta(preset: Preset, checkpoint: Optional[str], device: str, dtype: str) -> dict:
    """The parts of meta.json that describe the world (seed and start image are added per session).

    preset: with the weight overrides folded in (`with_weights`); checkpoint: the --checkpoint given."""
    ckpt = preset.checkpoint if preset.world != "vizdoom" else ""
    return {
        "preset": preset.name,
        "preset_config": preset_to_dict(preset),
        "world": preset.world,
        "checkpoint": ckpt or None,
        "checkpoint_arg": checkpoint,
        "checkpoint_sha256": file_sha256(ckpt),
        "device": device,
        "dtype": dtype,
    }


def action_dims(preset: Preset) -> tuple[int, bool]:
    """(keyboard_dim, has_mouse) of a preset's world, known before the world is built."""
    if preset.world == "vizdoom":
        return 4, True
    if preset.unet is not None:
        return preset.unet.keyboard_dim, preset.unet.mouse_dim > 0
    act = preset.model.action
    if act is None:
        return 0, False
    return (act.keyboard_dim_in if act.enable_keyboard else 0), bool(act.enable_mouse)


def scripted_actions(args, preset: Preset):
    """The headless actions (exactly --frames rows) and the frame count."""
    from app.action_file import fit_actions, load_action_file
    from app.bench_actions import ScriptedActions

    keyboard_dim, has_mouse = action_dims(preset)
    spec = args.actions or "bench:random"
    if spec.startswith("bench:"):
        frames = args.frames or DEFAULT_BENCH_FRAMES
        return ScriptedActions(spec[6:], preset.mode, frames, keyboard_dim, has_mouse, args.seed), frames
    actions = load_action_file(spec, keyboard_dim, has_mouse)
    frames = args.frames or len(actions)
    return fit_actions(actions, frames, args.loop_actions, spec), frames


def validate(args, parser: argparse.ArgumentParser) -> None:
    if args.frames is not None and not 1 <= args.frames <= MAX_FRAMES:
        raise ValueError(f"--frames must be between 1 and {MAX_FRAMES:,} (about 2 years), got {args.frames}")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    if args.fps is not None and not (math.isfinite(args.fps) and args.fps > 0):
        raise ValueError(f"--fps must be a finite number > 0, got {args.fps}")
    if (args.headless or args.replay) and not args.out:
        raise ValueError("--headless and --replay need --out DIR")
    if args.actions and not args.actions.startswith("bench:") and not os.path.isfile(args.actions):
        raise ValueError(f"action file not found: {args.actions}")
    for flag, path in (
        ("--checkpoint", args.checkpoint),
        ("--vae-checkpoint", args.vae_checkpoint),
        ("--image-encoder-checkpoint", args.image_encoder_checkpoint),
    ):
        if path and not os.path.isfile(path):
            raise ValueError(f"{flag}: file not found: {path}")
    if args.replay and not os.path.isdir(args.replay):
        raise ValueError(f"recording folder not found: {args.replay}")
    if args.replay and same_folder(args.replay, args.out):
        raise ValueError(
            f"--out {args.out} is the recording being replayed; give another folder (it would be overwritten)"
        )
    if args.record:
        check_no_links(args.record, flag="--record")


CPU_BLOCK_LIMIT_S = 60.0  # a preset slower than this per block on the CPU needs --force-cpu


def check_cpu_cost(preset: Preset) -> None:
    """Refuse, in one line, a preset that would take minutes per block on this CPU (the full-size
    Matrix-Game models), before building it; `--force-cpu` runs it anyway."""
    from engine.cost import cpu_block_seconds, model_parameters

    seconds, rate = cpu_block_seconds(preset)
    if seconds > CPU_BLOCK_LIMIT_S:
        raise ValueError(
            f"preset {preset.name} is a {model_parameters(preset) / 1e9:.1f}B-parameter model: one block "
            f"would take at least {seconds / 60:.0f} min on this CPU (bf16 matmuls measured at "
            f"{rate / 1e9:.0f} GFLOP/s); use --device cuda, or pass --force-cpu to run it anyway"
        )


def note_random_weights(preset) -> None:
    """A world-model preset without weights runs random ones (tests, benchmarks); say so, once."""
    if preset.world == "model" and not preset.checkpoint:
        print(
            f"worldplayer: note: preset {preset.name} has no world-model weights, so it runs random "
            "weights and shows noise; pass --checkpoint FILE",
            file=sys.stderr,
        )


def run(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list_presets:
        for name in list_presets():
            print(name)
        return 0
    validate(args, parser)
    from engine.threads import auto_threads, serial
    from engine.threads import use as use_threads
    from engine.worlds import build_world

    threads, why = (args.threads, "--threads") if args.threads else auto_threads()
    threads_note = f"{threads} ({why if args.threads else 'auto: ' + why})"
    use_threads(threads)
    device = check_device(args.device) if args.device else default_device()
    if args.replay:
        return _replay(args, device)
    preset = with_weights(
        load_preset(args.preset),
        args.checkpoint,
        args.vae_checkpoint,
        args.image_encoder_checkpoint,
        model_dir=args.model_dir,
    )
    if preset.world == "vizdoom":
        require_vizdoom(f"--preset {preset.name}")
    if device == "cpu" and not args.force_cpu:
        check_cpu_cost(preset)
    if args.compare:
        from app.compare import compare_world

        real_preset = load_preset(args.compare_preset)
        require_vizdoom("--compare")

        def world_factory():
            return compare_world(preset, real_preset, device, args.dtype)

    else:

        def world_factory():
            return build_world(preset, device=device, dtype=args.dtype, dit_path=dit_path)

    dit_path = "reference" if args.no_compile else "compiled" if args.compile else "auto"
    images = StartImages(preset, args.image, args.seed)
    images.own_start = images.own_start or args.compare  # the dream starts from the game's first frame
    meta = session_meta(preset, args.checkpoint, device, args.dtype)
    meta["dit_path"] = dit_path  # a replay asks for the same path (the optimised one is not bit-equal)
    if args.compare:
        meta["compare_preset"] = args.compare_preset
    if args.headless:
        actions, frames = scripted_actions(args, preset)
        claim_out_dir(args.out, args.force)
        label, image = images.current()
        note_random_weights(preset)
        world = world_factory()
        try:
            from app.headless import run_headless

            meta.update(start_image=label, actions=args.actions or "bench:random")
            if args.compare:
                world.record_sides(args.out, max_frames=frames)
            metrics = run_headless(
                world, image, actions, frames, args.out, args.seed, meta, progress=not args.quiet
            )[0]
        finally:
            world.close()
        if metrics["recording_error"]:
            print(
                f"worldplayer: error: {args.out} is incomplete: {metrics['recording_error']}", file=sys.stderr
            )
            return 1
        print(
            f"worldplayer: wrote {metrics['frames']} frames to {args.out} "
            f"({metrics['generation_fps']:.1f} frames/s generated, peak RSS {metrics['peak_rss_mb']:.0f} MB)"
        )
        return 0
    from app.window import AppOptions, check_display

    check_display()
    serial()  # the world is built here but stepped on the generation thread (see engine.threads)
    note_random_weights(preset)
    world = world_factory()
    try:
        from app.window import App

        options = AppOptions(
            fps=args.fps or world.spec.fps,
            scale=args.scale,
            fullscreen=args.fullscreen,
            record_dir=args.record,
            threads=threads,
            threads_note=threads_note,
            show_hud=not args.compare,  # the HUD panel would cover the real game; H shows it
        )
        app = App(world, preset, images, args.seed, options, meta)
        code = app.run()
        s = app.summary()
        print(
            f"worldplayer: {s['frames_shown']} frames shown, generation {s['generation_fps']} frames/s, "
            f"latency {s['latency_ms_mean']} ms (mean), first frame {s['first_frame_s']} s, "
            f"{s['stall_events']} stalls"
        )
        return code
    finally:
        world.close()


def _replay(args, device: str) -> int:
    from app.replay import replay_recording

    claim_out_dir(args.out, args.force)
    result = replay_recording(
        args.replay, args.out, device if args.device else None, args.dtype, progress=not args.quiet
    )
    if result.recording_error:
        print(f"worldplayer: error: {args.out} is incomplete: {result.recording_error}", file=sys.stderr)
        return 1
    if not result.compared:
        print(
            f"worldplayer: replayed {result.frames} frames into {args.out} "
            "but the recording has no frame hashes to compare",
            file=sys.stderr,
        )
        return 1
    first = "" if result.identical else f"; block {result.first_mismatch} is the first that differs"
    print(
        f"worldplayer: replayed {result.frames} frames into {args.out}; "
        f"{result.matched}/{result.compared} blocks identical to the recording{first}"
    )
    return 0 if result.identical else 1


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP: unwinds like Ctrl-C (every recording is finalised), exits 128 + signal."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _on_signal(signum, frame):  # finalise recordings on `kill` and on a closed terminal
    raise Terminated(signum)


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point of `python main.py` and the `worldplayer` console script
    (`worldplayer make-world ...` hands the rest of the line to `engine.make_world`)."""
    logging.basicConfig(level=logging.INFO, format="worldplayer: %(message)s")
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C -> KeyboardInterrupt -> finalise
    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _on_signal)
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["make-world"]:
        from engine.make_world import main as make_world

        return make_world(argv[1:])
    try:
        return run(argv)
    except KeyboardInterrupt as e:
        code = 128 + e.signum if isinstance(e, Terminated) else 130
        print("worldplayer: interrupted; recording (if any) finalised", file=sys.stderr)
        return code
    except (ValueError, OSError, NoDisplayError) as e:
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"worldplayer: error: {message}", file=sys.stderr)
        return 2
