"""The U-Net world's fast frame (engine.model.unet_fast_path): the optimised and compiled frames play the
reference's frames, the package is built once and then loaded, and a failing or wrong path falls back."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from engine.actions import ActionBlock
from engine.config import load_preset
from engine.edm import karras_sigmas, sample_next
from engine.model import aot_package, unet_fast_path
from engine.model.latent_unet import LatentUNet
from engine.worlds.unet_session import UNetWorldSession

PRESET = "configs/train/presets/synthetic_unet.yaml"


def random_net(dtype=torch.float32, seed: int = 0) -> LatentUNet:
    """The synthetic preset's U-Net with every weight random (zero-initialised layers would hide errors)."""
    preset = load_preset(PRESET)
    torch.manual_seed(seed)
    net = LatentUNet(preset.unet, preset.vae.z_dim).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.1)
    return net.to(dtype)


def session(net: LatentUNet, dtype: str, net_path: str) -> UNetWorldSession:
    from engine.vae.factory import build_vae

    preset = load_preset(PRESET)
    torch.manual_seed(1)
    return UNetWorldSession(preset, net, build_vae(preset.vae), "cpu", dtype, net_path=net_path)


def play_frames(world: UNetWorldSession, frames: int = 4) -> np.ndarray:
    """Start from a fixed image and play `frames` blocks of moving actions: uint8 [T, H, W, 3]."""
    spec = world.spec
    image = np.random.default_rng(0).integers(0, 256, (spec.height, spec.width, 3), dtype=np.uint8)
    world.start(image, seed=3)
    out = []
    for i in range(frames):
        n = world.actions_needed
        keyboard = np.zeros((n, spec.keyboard_dim), np.float32)
        keyboard[:, i % spec.keyboard_dim] = 1
        mouse = np.full((n, 2), 0.3 * (i - 1), np.float32)
        out.append(world.step(ActionBlock(keyboard, mouse)))
    return np.concatenate(out)


def latents(world: UNetWorldSession) -> torch.Tensor:
    return world._latents.clone()


@pytest.mark.parametrize("turn", [False, True])
@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_optimised_frame_equals_sample_next(dtype, tol, turn):
    """Same noise, same context: the fused-modulation frame is the reference's frame (bf16: within tol);
    turn: a residual world whose base is the turned newest latent (folded 2x2, as the E1M1 world's)."""
    net, cfg = random_net(dtype), load_preset(PRESET).unet
    if turn:
        cfg = replace(cfg, residual=True, turn_fov=106.26, turn_patch=2)
    sigmas = karras_sigmas(cfg)
    context, level, actions, noise = unet_fast_path.example_inputs(net, cfg, (8, 8), batch=2)
    level = torch.tensor([0.0, 0.4])
    actions.normal_()
    g = torch.Generator().manual_seed(5)
    noise = torch.randn(noise.shape, generator=torch.Generator().set_state(g.get_state()))
    with torch.no_grad():
        ref = sample_next(net, context, level, actions, cfg, sigmas, g)
        out = unet_fast_path.UNetFrame(net, cfg, sigmas)(context, level, actions, noise)
    assert float((out - ref).norm() / ref.norm()) < tol


def test_session_hook_plays_the_reference_frames_and_checks_once():
    """net_path="optimised": the same frames as the reference session (fp32), chosen on the first frame."""
    ref_world = session(random_net(), "fp32", "reference")
    fast_world = session(random_net(), "fp32", "optimised")
    ref, fast = play_frames(ref_world), play_frames(fast_world)
    assert np.abs(ref.astype(int) - fast.astype(int)).max() <= 1
    torch.testing.assert_close(latents(fast_world), latents(ref_world), atol=1e-4, rtol=1e-4)
    assert fast_world.net_choice.path == "optimised" and not fast_world.net_choice.fell_back
    assert ref_world.net_choice is None
    with pytest.raises(ValueError, match="unknown U-Net path"):
        session(random_net(), "fp32", "fastest")


def test_failed_or_wrong_compiled_path_falls_back_with_one_line(monkeypatch, capsys):
    """A build that raises, or a frame that differs, falls back to the next path; the frames stay right."""
    real = unet_fast_path.build_frame_fn

    def no_compiler(net, cfg, sigmas, hw, path, package_root=None):
        if path == "compiled":
            raise RuntimeError("no C++ compiler\nsecond line")
        return real(net, cfg, sigmas, hw, path, package_root)

    monkeypatch.setattr(unet_fast_path, "build_frame_fn", no_compiler)
    ref = play_frames(session(random_net(), "fp32", "reference"), 2)
    world = session(random_net(), "fp32", "compiled")
    assert np.abs(play_frames(world, 2).astype(int) - ref.astype(int)).max() <= 1
    assert world.net_choice.path == "optimised" and world.net_choice.fell_back
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "compiled U-Net path failed (RuntimeError: no C++ compiler)" in err

    def wrong(net, cfg, sigmas, hw, path, package_root=None):
        frame = real(net, cfg, sigmas, hw, "optimised")
        return lambda *args: frame(*args) + 1.0

    monkeypatch.setattr(unet_fast_path, "build_frame_fn", wrong)
    world = session(random_net(), "fp32", "optimised")
    np.testing.assert_array_equal(play_frames(world, 2), ref)  # the reference runs every frame
    assert world.net_choice.path == "reference" and world.net_choice.frame is None
    assert "optimised U-Net path differs from the reference" in capsys.readouterr().err


def test_cpu_auto_runs_compiled_only_with_a_cached_package(monkeypatch, tmp_path):
    monkeypatch.setenv("WORLDPLAYER_CACHE", str(tmp_path))
    world = session(random_net(), "fp32", "auto")
    play_frames(world, 2)
    assert world.net_choice.path == "optimised"  # no package: no cold build in the window
    assert not list(tmp_path.rglob("*.pt2"))


def test_package_name_changes_with_weights_threads_shape_and_dtype(tmp_path):
    cfg = load_preset(PRESET).unet
    sigmas = karras_sigmas(cfg)

    def name(net, hw=(8, 8)):
        return unet_fast_path.package_path(unet_fast_path.UNetFrame(net, cfg, sigmas), hw, root=tmp_path)

    a = name(random_net())
    assert a == name(random_net()) and a.parent == tmp_path and a.name.startswith("unet-1x8x8-float32-t")
    assert name(random_net(seed=1)) != a
    assert name(random_net(), (8, 16)) != a
    assert name(random_net(torch.bfloat16)) != a
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)
        assert name(random_net()) != a
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
@pytest.mark.parametrize("dtype, tol", [("fp32", 1e-4), ("bf16", 3e-2)])
def test_compiled_session_plays_the_reference_and_reuses_the_package(dtype, tol, monkeypatch, tmp_path):
    """The AOTInductor frame over a few frames of a session equals the reference (fp32: allclose; bf16:
    relative error of the latents within tol); a second session loads the package without compiling."""
    monkeypatch.setenv("WORLDPLAYER_CACHE", str(tmp_path))
    ref_world = session(random_net(), dtype, "reference")
    play_frames(ref_world)
    world = session(random_net(), dtype, "compiled")
    play_frames(world)
    assert world.net_choice.path == "compiled", world.net_choice.note
    ref, out = latents(ref_world), latents(world)
    if dtype == "fp32":
        torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    else:
        assert float((out - ref).norm() / ref.norm()) < tol
    packages = list(tmp_path.rglob("*.pt2"))
    assert len(packages) == 1

    def no_build(*args, **kwargs):
        raise AssertionError("the cached package was rebuilt")

    monkeypatch.setattr(aot_package, "build_module_package", no_build)
    again = session(random_net(), dtype, "auto")  # auto: the cached package is used
    play_frames(again)
    assert again.net_choice.path == "compiled"
    torch.testing.assert_close(latents(again), out)
