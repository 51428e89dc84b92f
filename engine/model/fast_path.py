"""Which streaming DiT path a session runs, and the self-check that lets a faster one in.

Paths, slowest first:
- "reference": `CausalWanModel.forward` with its `StreamCache` (the definition of correct);
- "optimised": `OptimizedCausalWan` run eagerly (static buffers, fused QKV, per-session/per-block tables);
- "compiled": the same pass compiled. CPU, models without image context (doom): an AOTInductor package
  (`engine.model.aot_package`, weights frozen, built once per model/geometry/dtype/thread count under
  ~/.cache/worldplayer, then loaded in milliseconds with no tracing); other CPU models: torch.compile
  with freezing; CUDA: torch.compile with CUDA graphs (mode="reduce-overhead").
`choose_path` builds the requested path (or, for "auto", the fastest that the device's policy allows),
runs one block of random inputs through it and through the reference, and falls back one path at a time
when the outputs differ or compiling fails (no C++ compiler, an inductor error). On CPU, "auto" runs the
compiled path only when its package already exists (a cold build takes minutes and must not block the
window); `--compile` in the app (want="compiled") builds it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch

from engine.model import aot_package
from engine.model.causal_wan import CausalWanModel
from engine.model.optimized_wan import OptimizedCausalWan

Tensor = torch.Tensor
PATHS = ("auto", "reference", "optimised", "compiled")
# Relative error (Frobenius) of one block's velocities against the reference that the self-check accepts.
CHECK_TOLERANCE = {torch.float32: 1e-3, torch.bfloat16: 3e-2, torch.float16: 1e-2}


def auto_paths(device: torch.device, package_ready: bool = False) -> tuple[str, ...]:
    """What "auto" tries, fastest first. CUDA: compiled. CPU: compiled when its AOTInductor package is
    cached (it loads in milliseconds and is the fastest, benchmarks/README.md), else the eager optimised
    path (a cold build takes minutes on one thread)."""
    if device.type == "cuda" or package_ready:
        return ("compiled", "optimised", "reference")
    return ("optimised", "reference")


class FastStreamer:
    """An `OptimizedCausalWan` with its pass function (eager or compiled) and the sampler hookup."""

    def __init__(
        self,
        opt: OptimizedCausalWan,
        compiled: bool,
        mode: Optional[str] = None,
        pass_fn: Optional[Callable[[dict], Tensor]] = None,
    ):
        """pass_fn: an already compiled pass (an AOTInductor package); else `compiled` runs torch.compile."""
        self.opt, self.compiled, self.mode = opt, compiled or pass_fn is not None, mode
        self._pass: Callable[[dict], Tensor] = pass_fn or opt
        self.name = "compiled (AOTInductor package)" if pass_fn is not None else "optimised"
        if compiled and pass_fn is None:
            self.name = f"compiled ({mode or 'inductor'})"
            if mode == "reduce-overhead":
                for t in opt.io.values():  # CUDA graphs read and write them in place, never copy them
                    torch._dynamo.mark_static_address(t)
            # CPU: freezing folds the weights into the graph as constants, so inductor prepacks every linear
            # for oneDNN once (bf16 doom: ~2x per pass over unfrozen inductor, benchmarks/README.md).
            options = {"freezing": True} if opt.device.type == "cpu" else None
            self._pass = torch.compile(opt, fullgraph=True, dynamic=False, mode=mode, options=options)

    def velocity(self, x: Tensor, i: int) -> Tensor:
        """Pass i (index into the pass timesteps) on x [B, F, C, h, w]; velocity of the same shape."""
        self.opt.set_pass(x, i)
        if self.mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()
            return self._pass(self.opt.io).clone()  # the graph's output buffer is reused by the next replay
        return self._pass(self.opt.io)

    def sampler_velocity(self, num_steps: int) -> Callable[[Tensor, Tensor], Tensor]:
        """A `VelocityFn` for `engine.scheduler.sample`: its k-th call is pass k (the samplers call the
        velocity once per timestep, in order; t is not read, so nothing syncs)."""
        calls = [0]

        def velocity(x: Tensor, t: Tensor) -> Tensor:
            k = calls[0]
            if k >= num_steps:
                raise RuntimeError(f"the sampler called the velocity more than {num_steps} times in a block")
            calls[0] += 1
            return self.velocity(x, k)

        return velocity


def build(
    model: CausalWanModel,
    batch: int,
    h: int,
    w: int,
    pass_timesteps: list[float],
    path: str,
    package_root: Optional[Path] = None,
):
    """A FastStreamer for "optimised", "compiled" (CUDA: torch.compile reduce-overhead; CPU: the cached
    AOTInductor package, built first when missing: minutes) or "inductor" (torch.compile on any device:
    the benchmarks' comparison). package_root: where CPU packages live (default `aot_package.cache_dir()`)."""
    opt = OptimizedCausalWan(model, batch, h, w, pass_timesteps)
    if path == "optimised":
        return FastStreamer(opt, compiled=False)
    if path == "compiled" and uses_package(opt):
        pkg = aot_package.package_path(opt, package_root)
        if not pkg.exists():
            aot_package.build_package(opt, pkg)
        return FastStreamer(opt, compiled=True, pass_fn=aot_package.load_package(pkg))
    mode = "reduce-overhead" if opt.device.type == "cuda" else None
    return FastStreamer(opt, compiled=True, mode=mode)


@torch.no_grad()
def check_block(
    model: CausalWanModel, fast: FastStreamer, blocks: int = 2, seed: int = 0, quick: bool = False
) -> float:
    """`blocks` blocks (all passes) of random inputs through `fast` and the reference; the worst relative
    error of a pass. Two blocks, so that a per-block table baked into compiled code would show.
    quick: one pass per block (block k: the first pass if k is even, else the last), so that a session's
    check costs ~2 passes of both paths instead of 2 blocks (doom on one thread: ~0.7 s instead of ~3.5 s);
    both caches see the same writes, so the blocks still differ only in their position.
    Leaves `fast` at position 0 (call `start_session` before real use)."""
    opt, cfg = fast.opt, model.cfg
    g = torch.Generator().manual_seed(seed)
    b, f, dt, dev = opt.batch, opt.f, opt.dtype, opt.device
    h, w = opt.io["x"].shape[-2:]

    def rnd(*shape):
        return torch.randn(shape, generator=g).to(dev, dt)

    act = cfg.action
    t_win = act.vae_time_compression_ratio * act.windows_size if act is not None else 0
    has_mouse = bool(model.action_layers) and act.enable_mouse
    has_keyboard = bool(model.action_layers) and act.enable_keyboard
    context = rnd(b, 17, cfg.image_context_dim) if cfg.image_context_dim is not None else None
    ref_cache = model.new_cache(b, h, w, dev, dt)
    opt.start_session(context)
    worst = 0.0
    for k in range(blocks):
        mouse = rnd(b, f, t_win, act.mouse_dim_in) if has_mouse else None
        keyboard = rnd(b, f, t_win, act.keyboard_dim_in) if has_keyboard else None
        cond = rnd(b, f, cfg.in_dim - cfg.out_dim, h, w) if opt.has_cond else None
        opt.begin_block(k * f, cond, mouse, keyboard)
        for i, t in enumerate(torch.tensor(opt.pass_timesteps).tolist()):
            if quick and i != (0 if k % 2 == 0 else len(opt.pass_timesteps) - 1):
                continue
            x = rnd(b, f, cfg.out_dim, h, w)
            tt = torch.full((b, f), t, device=dev)
            ref = model(x, cond, tt, context, mouse, keyboard, cache=ref_cache, start_frame=k * f).float()
            out = fast.velocity(x, i).float()
            worst = max(worst, float((out - ref).norm() / ref.norm().clamp_min(1e-12)))
        opt.end_block()
    opt.start_session(context)  # back to position 0
    return worst


def uses_package(opt: OptimizedCausalWan) -> bool:
    """Whether "compiled" is an AOTInductor package: on CPU, for models without image context (the
    package's shapes are fixed at export, and the cross K/V length is only known once a session starts;
    image-context models compile with torch.compile, which re-specialises on a new length)."""
    return opt.device.type == "cpu" and opt.cfg.image_context_dim is None


def package_exists(model: CausalWanModel, batch: int, h: int, w: int, pass_timesteps: list[float]) -> bool:
    """Whether the CPU compiled path's AOTInductor package for this model and geometry is cached."""
    opt = OptimizedCausalWan(model, batch, h, w, pass_timesteps)
    return uses_package(opt) and aot_package.package_path(opt).exists()


@dataclass
class Choice:
    """The path a session runs: `fast` None means the reference; `note` is one line for the user."""

    fast: Optional[FastStreamer]
    path: str
    note: str
    check_s: float = 0.0  # seconds the build + self-check took (the compile, for a compiled path)
    fell_back: bool = False  # a faster path was tried and failed or differed


def choose_path(
    model: CausalWanModel, batch: int, h: int, w: int, pass_timesteps: list[float], want: str = "auto"
) -> Choice:
    """The fastest path among `want` (a name in PATHS) and its fallbacks that passes the self-check."""
    if want not in PATHS:
        raise ValueError(f"unknown DiT path {want!r}; choose one of: {', '.join(PATHS)}")
    dev = model.patch_embedding.weight.device
    ready = dev.type == "cpu" and want == "auto" and package_exists(model, batch, h, w, pass_timesteps)
    order = {
        "auto": auto_paths(dev, ready),
        "compiled": ("compiled", "optimised", "reference"),
        "optimised": ("optimised", "reference"),
        "reference": ("reference",),
    }[want]
    notes = []
    for path in order:
        if path == "reference":
            break
        t0 = time.perf_counter()
        try:
            fast = build(model, batch, h, w, pass_timesteps, path)
            err = check_block(model, fast, quick=True)
        except Exception as e:  # compile errors come in many types (no C++ compiler, inductor bugs)
            notes.append(f"{path} path failed ({type(e).__name__}: {str(e).splitlines()[0][:120]})")
            continue
        tol = CHECK_TOLERANCE[fast.opt.dtype]
        if err <= tol:
            note = "; ".join(notes + [f"DiT path: {fast.name}, self-check error {err:.1e}"])
            return Choice(fast, path, note, time.perf_counter() - t0, fell_back=bool(notes))
        notes.append(f"{path} path differs from the reference (error {err:.1e} > {tol:.0e})")
    note = "; ".join(notes + ["DiT path: reference"])
    return Choice(None, "reference", note, fell_back=bool(notes))
