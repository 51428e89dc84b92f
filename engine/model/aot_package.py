"""Ahead-of-time compiled streaming passes for the CPU: one AOTInductor package per model and geometry.

`torch.compile` re-traces the pass with Dynamo in every process (~8-11 s before the first block even with
a warm inductor cache, benchmarks/README.md). An AOTInductor package (`.pt2`: the exported pass compiled
to a shared library, the weights frozen into it) loads in milliseconds with no tracing at all, so the
compiled path can start as fast as the eager one once the package exists.

A package is valid for exactly one (torch version, CPU capability, thread count, model structure, weights,
batch, latent size, dtype); all of them go into its file name (`package_path`), so a changed checkpoint
or thread count builds a new package instead of running a stale one. Packages live under
`$WORLDPLAYER_CACHE/aoti` (default `~/.cache/worldplayer/aoti`) and are written to a temporary name first,
so a build killed half way never leaves a package that loads.

The DiT package runs `OptimizedCausalWan.forward` on the module's `io` dict: same inputs, same in-place
cache writes, same output as the eager pass (the self-check in `engine.model.fast_path` still compares it
with the reference before a session uses it). Any other fixed-shape module uses the generic pair
`module_package_path` / `build_module_package` (the U-Net world's frame, `engine.model.unet_fast_path`).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Callable

import torch

from engine.model.optimized_wan import OptimizedCausalWan

Tensor = torch.Tensor
FORMAT = 1  # bump when the exported pass changes in a way the key does not see (OptimizedCausalWan code)


def cache_dir() -> Path:
    """Where packages live: $WORLDPLAYER_CACHE/aoti, default ~/.cache/worldplayer/aoti."""
    root = os.environ.get("WORLDPLAYER_CACHE") or Path.home() / ".cache" / "worldplayer"
    return Path(root) / "aoti"


def weights_digest(opt: OptimizedCausalWan) -> str:
    """sha1 of every parameter and buffer the pass reads (names, shapes, dtypes and bytes)."""
    h = hashlib.sha1()
    for name, t in sorted(opt.state_dict(keep_vars=False).items()):
        h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.detach().contiguous().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def module_package_path(name: str, key: tuple, root: Path | None = None) -> Path:
    """The package file `<name>-t<threads>-<hash>.pt2`: the hash covers `key` (what the caller's compiled
    code depends on: structure, weights digest, shapes, dtype) plus the torch version, CPU capability and
    thread count. name: a readable prefix such as "unet-1x18x32-bfloat16"."""
    threads = torch.get_num_threads()
    parts = (FORMAT, torch.__version__, torch.backends.cpu.get_cpu_capability(), threads, *key)
    digest = hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:16]
    return (root or cache_dir()) / f"{name}-t{threads}-{digest}.pt2"


def package_path(opt: OptimizedCausalWan, root: Path | None = None) -> Path:
    """The package file of `opt` (a name that changes with everything the compiled code depends on)."""
    key = (repr(opt.cfg), opt.batch, tuple(opt.io["x"].shape), opt.dtype, weights_digest(opt))
    h, w = opt.io["x"].shape[-2:]
    return module_package_path(f"dit-{opt.batch}x{h}x{w}-{str(opt.dtype).removeprefix('torch.')}", key, root)


def build_package(opt: OptimizedCausalWan, path: Path) -> Path:
    """Export `opt.forward` on `opt.io` and compile it with AOTInductor (weights frozen) into `path`.
    Minutes on one CPU thread for the doom preset. Leaves `opt` where it was (export only traces)."""
    return build_module_package(opt, (opt.io,), path)


@torch.no_grad()
def build_module_package(module: torch.nn.Module, args: tuple, path: Path) -> Path:
    """Export `module.forward(*args)` (shapes fixed to those of `args`) and compile it with AOTInductor,
    weights frozen (inductor `freezing`: constants folded, convolutions and linears prepacked once),
    into `path`, written under a temporary name and renamed when complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ep = torch.export.export(module, args, strict=False)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-", suffix=".pt2")  # renamed when complete
    os.close(fd)
    try:
        torch._inductor.aoti_compile_and_package(ep, package_path=tmp, inductor_configs={"freezing": True})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_package(path: Path) -> Callable[..., Tensor]:
    """The compiled pass in `path`: call it with the arguments it was exported on (the DiT: `opt.io`,
    whose tensors it reads and writes as eager does)."""
    runner = torch._inductor.aoti_load_package(str(path))

    def compiled_pass(*args: Tensor | dict[str, Tensor]) -> Tensor:
        return runner(*args)

    return compiled_pass
