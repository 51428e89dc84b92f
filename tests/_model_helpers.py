"""Shared fixtures for the model tests: a tiny model with every branch switched on, and random inputs."""

from __future__ import annotations

import pytest
import torch

from engine.actions import OFFICIAL, gather_windows
from engine.config import load_preset
from engine.model.causal_wan import CausalWanModel


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: extra threads only spin on a shared CPU. Import into a test module to use it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_model(preset: str = "tiny", seed: int = 0) -> CausalWanModel:
    """A tiny fp32 model whose zero-initialised projections are made random, so every branch matters."""
    torch.manual_seed(seed)
    model = CausalWanModel(load_preset(preset).model).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("proj_mouse.weight", "proj_keyboard.weight", "head.head.weight")):
                p.normal_(0, 0.3)
            if (
                name.endswith("norm_q.weight")
                or name.endswith("norm_k.weight")
                or name.endswith("norm3.weight")
            ):
                p.uniform_(0.5, 1.5)
    return model


def tiny_inputs(model: CausalWanModel, batch: int, num_frames: int, seed: int = 1) -> dict:
    """Random clean latents, cond, context and windowed actions for latent frames [0, num_frames)."""
    cfg = model.cfg
    g = torch.Generator().manual_seed(seed)
    h, w = 4, 8  # latent size of the tiny presets (32 x 64 pixels)
    video = 1 + 4 * (num_frames - 1)
    act = cfg.action
    keys = (torch.rand(batch, video, act.keyboard_dim_in, generator=g) > 0.5).float()
    mouse = torch.randn(batch, video, 2, generator=g) if act.enable_mouse else None
    return dict(
        clean=torch.randn(batch, num_frames, cfg.out_dim, h, w, generator=g),
        cond=torch.randn(batch, num_frames, cfg.in_dim - cfg.out_dim, h, w, generator=g),
        context=torch.randn(batch, 17, cfg.image_context_dim, generator=g),
        keyboard=gather_windows(keys, 0, 0, num_frames, OFFICIAL),  # [B, F, 12, K]
        mouse=None if mouse is None else gather_windows(mouse, 0, 0, num_frames, OFFICIAL),  # [B, F, 12, 2]
        generator=g,
        hw=(h, w),
    )


def frames(inp: dict, key: str, start: int, stop: int):
    t = inp[key]
    return None if t is None else t[:, start:stop]


def seeded_weights_(model: torch.nn.Module, seed: int) -> None:
    """Fill every parameter from one generator in sorted-name order (independent of the model's init code),
    so reference outputs computed elsewhere (e.g. with the official implementation) stay reproducible."""
    g = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name in sorted(params):
            p = params[name]
            r = torch.randn(p.shape, generator=g)
            if name.endswith("modulation"):
                p.copy_(r / p.shape[-1] ** 0.5)
            elif (
                p.ndim == 1
                and "norm" in name
                or name.endswith(("proj.0.weight", "proj.4.weight"))
                or (name.endswith("mouse_mlp.3.weight"))
            ):
                p.copy_(1 + 0.2 * r)  # norm scales
            elif p.ndim == 1:
                p.copy_(0.02 * r)  # biases
            else:
                p.copy_(r / p[0].numel() ** 0.5)  # fan-in scaled weights


def record_forward(session) -> list:
    """Spy on a session's model: every call appends (x, cond, t) clones to the returned list."""
    calls = []
    forward = session.model.forward

    def spy(x, cond, t, *args, **kwargs):
        calls.append((x.clone(), cond.clone(), t.clone()))
        return forward(x, cond, t, *args, **kwargs)

    session.model.forward = spy
    return calls


def synthetic_cache(tmp_path, preset: str = "configs/train/presets/synthetic.yaml"):
    """A latent cache of 2 synthetic episodes (61 frames at 64x64) for autoregressive 3+3 sequences."""
    from engine.train.config import WorldTrainConfig, load_train_config
    from engine.train.runtime import setup_dist
    from engine.train.world_trainer import cache_clip_latents, load_or_build_cache
    from engine.worlds.synthetic import record_synthetic

    record_synthetic(tmp_path / "data", episodes=2, frames=61, height=64, width=64)
    cfg = load_train_config(
        WorldTrainConfig, None,
        [f"preset={preset}", f"data=[{tmp_path / 'data'}]", f"run.out_dir={tmp_path / 'run'}",
         "mode=autoregressive", "clip_latents=3", "context_latents=3"],
    )  # fmt: skip
    p = load_preset(preset)
    cache, _ = load_or_build_cache(cfg, p, setup_dist(cfg.run), cache_clip_latents(cfg, p))
    return cache
