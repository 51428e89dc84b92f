"""Print every parameter of a preset's world model with its shape, and the total count.

    python -m engine.inspect mg2-universal

The model is built on the meta device: no memory is allocated, so full-size presets inspect instantly.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional

import torch

from engine.config import list_presets, load_preset
from engine.model.causal_wan import CausalWanModel


def parameter_table(preset: str) -> tuple[list[tuple[str, tuple[int, ...]]], int]:
    """(name, shape) of every parameter of the preset's model, and the total number of parameters."""
    cfg = load_preset(preset)
    with torch.device("meta"):
        model = CausalWanModel(cfg.model)
    rows = [(name, tuple(p.shape)) for name, p in model.named_parameters()]
    return rows, sum(p.numel() for p in model.parameters())


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.inspect", description=__doc__.splitlines()[0])
    parser.add_argument("preset", choices=list_presets(), help="preset name (configs/NAME.yaml)")
    args = parser.parse_args(argv)
    try:
        rows, total = parameter_table(args.preset)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    width = max(len(name) for name, _ in rows)
    for name, shape in rows:
        print(f"{name:<{width}}  {list(shape)}")
    print(f"{len(rows)} tensors, {total:,} parameters ({total / 1e9:.3f} B)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
