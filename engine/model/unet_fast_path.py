"""The U-Net world's frame as one fixed-shape module, its compiled form, and the self-check that lets it in.

A frame of the reference (`engine.edm.sample_next`) is `steps` calls of `engine.edm.denoise`, each one
network pass with its casts and EDM scalings, and an Euler update. `UNetFrame` is the same frame as one
module with the sigmas as constants and one linear for all the residual blocks' modulations (the
reference runs 14 small ones a pass on e1m1); its inputs carry the sampler's unit noise, drawn by the
caller from the session's generator exactly as `sample_next` draws it, so both paths see the same noise:

  context [B, K, C, h, w] float32 (raw latents, oldest first), level [B], actions [B, K, A],
  noise [B, C, h, w] float32 unit Gaussian -> next latent [B, C, h, w] float32.

Paths (names as `engine.model.fast_path.PATHS`): "reference" (`sample_next`), "optimised" (`UNetFrame`
eagerly), "compiled" (CPU: an AOTInductor package of `UNetFrame` with inductor freezing, built once per
weights, shapes, dtype and thread count under ~/.cache/worldplayer/aoti by `engine.model.aot_package`;
other devices: torch.compile). "auto" on CPU runs the compiled path only when its package is cached (a
cold build takes about a minute on one thread), else the optimised one. `choose_unet_path` runs the
first frame through the reference and the chosen path, and falls back one path at a time, with one line,
when a build fails or the frames differ beyond `CHECK_TOLERANCE`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from engine.config import UNetConfig
from engine.edm import euler_sample, sample_next
from engine.model import aot_package
from engine.model.latent_unet import LatentUNet, ResBlock

Tensor = torch.Tensor
FrameFn = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]
PATHS = ("auto", "reference", "optimised", "compiled")
# Relative error (Frobenius) of the first frame's latent against the reference that the self-check accepts.
CHECK_TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 3e-2, torch.float16: 1e-2}


class UNetFrame(nn.Module):
    """`sample_next` for one LatentUNet, `sigmas` and batch, as a module with constant sigmas."""

    def __init__(self, net: LatentUNet, cfg: UNetConfig, sigmas: Tensor):
        super().__init__()
        self.net, self.cfg = net, cfg
        self.sigmas = [float(s) for s in sigmas]
        blocks = self.res_blocks()
        weight = torch.cat([b.modulation.weight for b in blocks]).detach()  # [sum 2 cout, cond_dim]
        self.modulation = nn.Linear(
            weight.shape[1], weight.shape[0], device=weight.device, dtype=weight.dtype
        )
        self.modulation.weight.data.copy_(weight)
        self.modulation.bias.data.copy_(torch.cat([b.modulation.bias for b in blocks]).detach())
        self.widths = [b.modulation.out_features for b in blocks]

    def res_blocks(self) -> list[ResBlock]:
        """The residual blocks in the order the pass runs them."""
        n = self.net
        return [b for blocks in n.down for b in blocks] + list(n.middle) + [b for bl in n.up for b in bl]

    def forward(self, context: Tensor, level: Tensor, actions: Tensor, noise: Tensor) -> Tensor:
        """The next latent [B, C, h, w] float32; shapes in the module docstring."""
        return euler_sample(self.network, noise, context, level, actions, self.cfg, self.sigmas)

    def network(self, x: Tensor, context: Tensor, c_noise: Tensor, level: Tensor, actions: Tensor) -> Tensor:
        """`LatentUNet.forward` with all modulations from one linear (same shapes, same dtypes)."""
        n = self.net
        cond = n.condition(c_noise, level, actions)  # [B, cond_dim]
        mods = iter(self.modulation(cond).split(self.widths, dim=1))  # each [B, 2 cout]
        return n.trunk(n.stem_input(x, context), lambda block, h: res_block(block, h, next(mods)))


def res_block(block: ResBlock, x: Tensor, mod: Tensor) -> Tensor:
    """`ResBlock.forward` with its modulation already computed: mod [B, 2 cout]."""
    h = block.conv1(F.silu(block.norm1(x)))
    scale, shift = mod[:, :, None, None].chunk(2, dim=1)
    h = block.conv2(F.silu(block.norm2(h) * (1 + scale) + shift))
    return block.skip(x) + h


def example_inputs(net: LatentUNet, cfg: UNetConfig, hw: tuple[int, int], batch: int = 1) -> tuple:
    """Inputs of the frame's shapes (what the package is exported on): see the module docstring."""
    dev, k, a = net.stem.weight.device, cfg.context_frames, cfg.keyboard_dim + cfg.mouse_dim
    g = torch.Generator().manual_seed(0)
    context = torch.randn(batch, k, net.z_dim, *hw, generator=g).to(dev)
    noise = torch.randn(batch, net.z_dim, *hw, generator=g).to(dev)
    return context, torch.zeros(batch, device=dev), torch.zeros(batch, k, a, device=dev), noise


def package_path(frame: UNetFrame, hw: tuple[int, int], batch: int = 1, root: Optional[Path] = None) -> Path:
    """The AOTInductor package of `frame` at latent size hw (its name changes with the structure, weights,
    sigmas and dtype)."""
    dtype = frame.net.stem.weight.dtype
    digest = aot_package.weights_digest(frame)
    key = (repr(frame.cfg), frame.net.z_dim, frame.sigmas, batch, hw, dtype, digest)
    name = f"unet-{batch}x{hw[0]}x{hw[1]}-{str(dtype).removeprefix('torch.')}"
    return aot_package.module_package_path(name, key, root)


def build_frame_fn(
    net: LatentUNet,
    cfg: UNetConfig,
    sigmas: Tensor,
    hw: tuple[int, int],
    path: str,
    package_root: Optional[Path] = None,
) -> FrameFn:
    """The frame function of "optimised" or "compiled" (CPU: load the package, building it first when
    missing; other devices: torch.compile)."""
    frame = UNetFrame(net, cfg, sigmas).eval()
    if path == "optimised":
        return frame
    if path != "compiled":
        raise ValueError(f"unknown U-Net path {path!r}; choose one of: {', '.join(PATHS)}")
    if net.stem.weight.device.type != "cpu":
        return torch.compile(frame, fullgraph=True, dynamic=False)
    pkg = package_path(frame, hw, root=package_root)
    if not pkg.exists():
        aot_package.build_module_package(frame, example_inputs(net, cfg, hw), pkg)
    compiled = aot_package.load_package(pkg)

    def compiled_frame(*args: Tensor) -> Tensor:
        # The package assumes the export's (contiguous) strides without checking them; a session's
        # context comes from the channels_last VAE encoder (strides (16, 512, 1, 2048, 16) on e1m1).
        return compiled(*(a.contiguous() for a in args))

    return compiled_frame


def package_exists(net: LatentUNet, cfg: UNetConfig, sigmas: Tensor, hw: tuple[int, int]) -> bool:
    """Whether the CPU compiled frame's package for these weights and this latent size is cached."""
    return package_path(UNetFrame(net, cfg, sigmas), hw).exists()


@dataclass
class UNetChoice:
    """The path a session runs: `frame` None means the reference; `note` is one line for the user."""

    frame: Optional[FrameFn]
    path: str
    note: str
    first: Tensor  # the reference's first frame [B, C, h, w] (what the session shows)
    check_s: float = 0.0  # seconds the build (or load) and the self-check took
    fell_back: bool = False  # a faster path was tried and failed or differed


@torch.no_grad()
def choose_unet_path(
    net: LatentUNet,
    cfg: UNetConfig,
    sigmas: Tensor,
    context: Tensor,
    level: Tensor,
    actions: Tensor,
    gen: torch.Generator,
    want: str = "auto",
) -> UNetChoice:
    """The fastest path among `want` and its fallbacks whose first frame (these inputs, the noise `gen`
    gives next) matches the reference's; `gen` advances by one frame's noise, as `sample_next` does."""
    if want not in PATHS:
        raise ValueError(f"unknown U-Net path {want!r}; choose one of: {', '.join(PATHS)}")
    dev, hw = context.device, tuple(context.shape[-2:])
    ready = dev.type == "cpu" and want == "auto" and package_exists(net, cfg, sigmas, hw)
    order = {
        "auto": ("compiled", "optimised") if dev.type != "cpu" or ready else ("optimised",),
        "compiled": ("compiled", "optimised"),
        "optimised": ("optimised",),
        "reference": (),
    }[want]
    state = gen.get_state()
    ref = sample_next(net, context, level, actions, cfg, sigmas, gen)
    noise = torch.randn(ref.shape, generator=torch.Generator().set_state(state)).to(dev)
    notes, tol = [], CHECK_TOLERANCE[net.stem.weight.dtype]
    for path in order:
        t0 = time.perf_counter()
        try:
            frame = build_frame_fn(net, cfg, sigmas, hw, path)
            out = frame(context, level, actions, noise)
        except Exception as e:  # compile errors come in many types (no C++ compiler, inductor bugs)
            notes.append(f"{path} U-Net path failed ({type(e).__name__}: {str(e).splitlines()[0][:120]})")
            continue
        err = float((out.float() - ref).norm() / ref.norm().clamp_min(1e-12))
        if err <= tol:
            note = "; ".join(notes + [f"U-Net path: {path}, self-check error {err:.1e}"])
            return UNetChoice(frame, path, note, ref, time.perf_counter() - t0, fell_back=bool(notes))
        notes.append(f"{path} U-Net path differs from the reference (error {err:.1e} > {tol:.0e})")
    note = "; ".join(notes + ["U-Net path: reference"])
    return UNetChoice(None, "reference", note, ref, fell_back=bool(notes))
