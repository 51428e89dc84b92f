"""`python -m engine.train {vae,world,cache} --config FILE [key=value ...]` (also under torchrun).

  vae    train the tiny causal VAE of a preset               (configs/train/doom_vae.yaml)
  world  train a Matrix-Game world model (CausalWanModel) on cached latents + actions
  unet   train a latent U-Net world (the E1M1 default)       (configs/train/e1m1_unet.yaml)
  cache  only encode the data to latents with the preset's VAE
  eval   rollout PSNR of a run's EMA weights under several samplers (few-step evidence)

Overrides use dotted keys, e.g. `run.steps=100 run.out_dir=runs/x mode=autoregressive`.
A run folder that already holds state.pt is resumed exactly.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.train", description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["vae", "world", "unet", "cache", "eval"])
    parser.add_argument("--config", default=None, help="YAML training config")
    parser.add_argument("overrides", nargs="*", help="key=value overrides")
    args = parser.parse_intermixed_args(argv)
    from engine.train.config import UNetTrainConfig, VAETrainConfig, WorldTrainConfig, load_train_config

    try:
        if args.what == "vae":
            from engine.train.vae_trainer import train_vae

            result = train_vae(load_train_config(VAETrainConfig, args.config, args.overrides))
        elif args.what == "unet":
            from engine.train.unet_trainer import train_unet

            result = train_unet(load_train_config(UNetTrainConfig, args.config, args.overrides))
        else:
            from engine.train.world_trainer import cache_only, train_world

            cfg = load_train_config(WorldTrainConfig, args.config, args.overrides)
            if args.what == "eval":
                from engine.train.evaluate import evaluate_samplers

                result = evaluate_samplers(cfg)
            else:
                result = cache_only(cfg) if args.what == "cache" else train_world(cfg)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print({k: (round(v, 5) if isinstance(v, float) else v) for k, v in (result or {}).items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
