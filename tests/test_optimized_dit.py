"""The optimised streaming DiT path (engine.model.optimized_wan, engine.model.fast_path) against the reference
streaming path: every pass of every block equal (fp32 allclose 1e-4; bf16 within 2% relative error per pass)
for the tiny, doom and a reduced mg2 structure, over blocks that roll the KV window twice and across a
restart; the session on the optimised path; flat memory over a long session; the fallbacks."""

from __future__ import annotations

import resource
from dataclasses import replace

import numpy as np
import pytest
import torch

from engine.actions import OFFICIAL, ActionBlock, gather_windows
from engine.config import load_preset
from engine.model import aot_package, fast_path
from engine.model.causal_wan import CausalWanModel
from engine.model.fast_path import FastStreamer, check_block, choose_path
from engine.model.optimized_wan import OptimizedCausalWan
from engine.worlds.session import load_session
from tests._model_helpers import (
    one_thread,  # noqa: F401 (autouse fixture)
    seeded_weights_,
)

H, W = 4, 8  # latent size for every structure here (the model code does not depend on it)
BF16_TOL = 2e-2  # relative (Frobenius) error of one pass, bf16 optimised vs bf16 reference


def mg2_reduced():
    """mg2-universal's structure (image context, action modules in the first half of the layers, mouse and
    keyboard, 12-frame action windows) with small dims and 4 layers."""
    cfg = load_preset("mg2-universal").model
    action = replace(
        cfg.action, blocks=(0, 1), heads_num=4, hidden_size=16, img_hidden_size=64, keyboard_hidden_dim=64,
        mouse_hidden_dim=64, mouse_qk_dim_list=(8, 4, 4), rope_dim_list=(8, 4, 4),
    )  # fmt: skip
    return replace(cfg, dim=64, ffn_dim=128, num_heads=4, num_layers=4, image_context_dim=48, action=action)


def structure(name: str):
    return mg2_reduced() if name == "mg2-reduced" else load_preset(name).model


def random_model(name: str, dtype=torch.float32, seed: int = 0) -> CausalWanModel:
    model = CausalWanModel(structure(name))
    seeded_weights_(model, seed)  # every weight random: zero-initialised outputs would hide bugs
    return model.to(dtype).eval()


class Inputs:
    """Random inputs for blocks of a model: fresh x per pass, cond and action windows per block."""

    def __init__(self, model: CausalWanModel, seed: int):
        self.cfg, self.g = model.cfg, torch.Generator().manual_seed(seed)
        act = self.cfg.action
        self.win = act.vae_time_compression_ratio * act.windows_size
        self.mouse_on = bool(model.action_layers) and act.enable_mouse

    def rnd(self, *shape):
        return torch.randn(shape, generator=self.g)

    def block(self):
        cfg, f = self.cfg, self.cfg.num_frame_per_block
        act = cfg.action
        keyboard = (torch.rand(1, f, self.win, act.keyboard_dim_in, generator=self.g) > 0.5).float()
        mouse = self.rnd(1, f, self.win, act.mouse_dim_in) if self.mouse_on else None
        return self.rnd(1, f, cfg.in_dim - cfg.out_dim, H, W), mouse, keyboard

    def context(self):
        c = self.cfg.image_context_dim
        return None if c is None else self.rnd(1, 17, c)


def run_both(name: str, dtype, blocks: int, timesteps=(1000.0, 750.0, 0.0), sessions: int = 2):
    """Stream `sessions` sessions of `blocks` blocks through both paths; yield (reference, optimised)
    velocities of every pass. The second session restarts the same buffers at position 0."""
    model = random_model(name, dtype)
    opt = OptimizedCausalWan(model, 1, H, W, list(timesteps))
    inp = Inputs(model, seed=1)
    f, dt = model.cfg.num_frame_per_block, dtype
    with torch.no_grad():
        for _ in range(sessions):
            context = inp.context()
            context = None if context is None else context.to(dt)
            ref_cache = model.new_cache(1, H, W, "cpu", dt)
            opt.start_session(context)
            for k in range(blocks):
                cond, mouse, keyboard = (None if t is None else t.to(dt) for t in inp.block())
                opt.begin_block(k * f, cond, mouse, keyboard)
                for i, t in enumerate(timesteps):
                    x = inp.rnd(1, f, model.cfg.out_dim, H, W).to(dt)
                    tt = torch.full((1, f), t)
                    ref = model(x, cond, tt, context, mouse, keyboard, cache=ref_cache, start_frame=k * f)
                    opt.set_pass(x, i)
                    yield ref, opt(opt.io)
                opt.end_block()
            assert opt.cache.end_frame == ref_cache.end_frame == blocks * f


@pytest.mark.parametrize("name", ["tiny", "doom", "mg2-reduced", "tiny-templerun"])
def test_optimised_equals_reference_fp32(name):
    # window 6 frames, 3 per block: blocks 2 and 3 each evict a whole block, so 5 blocks roll it twice
    n = 0
    for ref, out in run_both(name, torch.float32, blocks=5):
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
        n += 1
    assert n == 2 * 5 * 3


@pytest.mark.parametrize("name", ["tiny", "doom", "mg2-reduced"])
def test_optimised_close_to_reference_bf16(name):
    for ref, out in run_both(name, torch.bfloat16, blocks=5):
        assert out.dtype == torch.bfloat16
        err = (out.float() - ref.float()).norm() / ref.float().norm()
        assert err < BF16_TOL, f"{name}: bf16 relative error {err:.3g}"


def test_fused_qkv_keeps_official_names_and_shares_storage():
    model = random_model("tiny")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = OptimizedCausalWan(model, 1, H, W, [1000.0, 0.0])
    after = model.state_dict()
    assert list(after) == list(before)
    for k in before:
        torch.testing.assert_close(after[k], before[k], rtol=0, atol=0)
    q = model.blocks[0].self_attn.q.weight
    assert q.data_ptr() == opt.blocks[0].qkv.weight.data_ptr()  # a view: no second copy of the weights
    assert not any(".qkv." in k for k in after), "the fused weight must not appear in checkpoints"


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def test_long_session_flat_memory_and_exact_at_the_end():
    """400 blocks (1200 latent frames) on the optimised path: no tensor is reallocated, RSS stays flat, and
    the last block equals a full-sequence reference forward at absolute positions."""
    blocks = 400
    model = random_model("tiny")
    cfg = model.cfg
    f = cfg.num_frame_per_block
    t_step = 713.9794
    opt = OptimizedCausalWan(model, 1, H, W, [t_step, 0.0])
    g = torch.Generator().manual_seed(0)
    n = blocks * f
    keys = (torch.rand(1, 1 + 4 * (n - 1), 4, generator=g) > 0.5).float()
    mouse = torch.randn(1, 1 + 4 * (n - 1), 2, generator=g)
    context = torch.randn(1, 17, cfg.image_context_dim, generator=g)
    cond = torch.randn(1, f, cfg.in_dim - cfg.out_dim, H, W, generator=g)
    keep = cfg.num_layers + len(model.action_layers) + 1  # blocks the last one depends on
    tail = []
    with torch.no_grad():
        opt.start_session(context)
        for k in range(blocks):
            s = k * f
            opt.begin_block(
                s, cond, gather_windows(mouse, 0, s, f, OFFICIAL), gather_windows(keys, 0, s, f, OFFICIAL)
            )
            noisy = torch.randn(1, f, cfg.out_dim, H, W, generator=g)
            opt.set_pass(noisy, 0)
            out = opt(opt.io)
            clean = torch.randn(1, f, cfg.out_dim, H, W, generator=g)
            if k < blocks - 1:
                opt.set_pass(clean, 1)
                opt(opt.io)
                opt.end_block()
                tail = (tail + [clean])[-(keep - 1) :]
            if k == 0:
                storage = [(t.data_ptr(), t.shape) for t in opt.io.values()]
            if k == 20:
                rss = _rss_mib()
        assert [(t.data_ptr(), t.shape) for t in opt.io.values()] == storage
        assert _rss_mib() - rss < 32, "memory grew during the session"
        s0 = (blocks - keep) * f
        x = torch.cat(tail + [noisy], dim=1)
        t = torch.cat([torch.zeros(1, x.shape[1] - f), torch.full((1, f), t_step)], dim=1)
        ref = model(
            x, cond.repeat(1, keep, 1, 1, 1), t, context, gather_windows(mouse, 0, s0, x.shape[1], OFFICIAL),
            gather_windows(keys, 0, s0, x.shape[1], OFFICIAL), start_frame=s0,
        )[:, -f:]  # fmt: skip
    assert ref.abs().mean() > 0.1
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def _randomize(module: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)


@pytest.mark.parametrize("condition", ["image", "last_latent"])
def test_session_on_the_optimised_path_plays_the_reference_frames(condition):
    preset = load_preset("tiny")
    if condition == "last_latent":  # with noised context: exercises the context pass's own timestep
        preset = replace(
            preset, condition="last_latent", sampler=replace(preset.sampler, context_noise=200.0)
        )
    frames = {}
    for path in ("reference", "optimised"):
        s = load_session(preset, dtype="fp32", dit_path=path)
        _randomize(s.model, 0)
        rng = np.random.default_rng(0)
        image = rng.integers(0, 256, (s.spec.height, s.spec.width, 3), dtype=np.uint8)
        out = []
        for seed in (0, 1):  # the second start restarts the optimised path's caches
            s.start(image, seed)
            for _ in range(4):
                n = s.actions_needed
                kb = (rng.random((n, s.spec.keyboard_dim)) < 0.4).astype(np.float32)
                out.append(s.step(ActionBlock(kb, rng.normal(0, 0.1, (n, 2)).astype(np.float32))))
        frames[path] = np.concatenate(out)
        assert s.dit_choice is None if path == "reference" else s.dit_choice.path == "optimised"
    diff = np.abs(frames["reference"].astype(int) - frames["optimised"].astype(int))
    assert diff.max() <= 1 and diff.mean() < 0.01


def test_sampler_velocity_refuses_extra_calls():
    model = random_model("tiny")
    fast = FastStreamer(OptimizedCausalWan(model, 1, H, W, [1000.0, 0.0]), compiled=False)
    fast.opt.start_session(torch.randn(1, 17, model.cfg.image_context_dim))
    inp = Inputs(model, 0)
    fast.opt.begin_block(0, *inp.block())
    v = fast.sampler_velocity(1)
    x = torch.randn(1, 3, 16, H, W)
    with torch.no_grad():
        v(x, None)
        with pytest.raises(RuntimeError, match="more than 1 times"):
            v(x, None)


def test_choose_path_falls_back_when_compile_fails_or_differs(monkeypatch, tmp_path):
    model = random_model("doom")
    monkeypatch.setenv("WORLDPLAYER_CACHE", str(tmp_path))

    def no_compiler(*args, **kwargs):
        raise RuntimeError("no C++ compiler found\nmore lines")

    monkeypatch.setattr(aot_package, "build_package", no_compiler)  # the CPU compiled path
    choice = choose_path(model, 1, H, W, [1000.0, 0.0], "compiled")
    assert choice.path == "optimised" and choice.fell_back
    assert "compiled path failed (RuntimeError: no C++ compiler found)" in choice.note
    monkeypatch.setattr(torch, "compile", no_compiler)  # image-context models compile with torch.compile
    choice = choose_path(random_model("tiny"), 1, H, W, [1000.0, 0.0], "compiled")
    assert choice.path == "optimised" and "no C++ compiler" in choice.note
    monkeypatch.setattr(fast_path, "check_block", lambda *a, **k: 1.0)
    choice = choose_path(model, 1, H, W, [1000.0, 0.0], "optimised")
    assert choice.fast is None and choice.path == "reference" and "differs" in choice.note
    assert choose_path(model, 1, H, W, [0.0], "reference").note == "DiT path: reference"
    with pytest.raises(ValueError, match="unknown DiT path"):
        choose_path(model, 1, H, W, [0.0], "fastest")


def test_bad_call_order_raises():
    model = random_model("tiny")
    opt = OptimizedCausalWan(model, 1, H, W, [0.0])
    opt.start_session(torch.randn(1, 17, model.cfg.image_context_dim))
    with pytest.raises(RuntimeError, match="begin_block"):
        opt.set_pass(torch.zeros(1, 3, 16, H, W), 0)
    with pytest.raises(ValueError, match="must continue at start_frame=0"):
        opt.begin_block(6, *Inputs(model, 0).block())


def test_cpu_auto_runs_compiled_only_with_a_cached_package():
    cpu = torch.device("cpu")
    assert fast_path.auto_paths(cpu) == ("optimised", "reference")
    assert fast_path.auto_paths(cpu, package_ready=True)[0] == "compiled"
    assert fast_path.auto_paths(torch.device("cuda"))[0] == "compiled"


def test_package_name_changes_with_weights_threads_and_geometry(tmp_path):
    model = random_model("doom")
    opt = OptimizedCausalWan(model, 1, H, W, [1000.0, 0.0])
    assert fast_path.uses_package(opt)
    assert not fast_path.uses_package(OptimizedCausalWan(random_model("tiny"), 1, H, W, [0.0]))
    path = aot_package.package_path(opt, tmp_path)
    assert path.parent == tmp_path and path.suffix == ".pt2"
    assert aot_package.package_path(OptimizedCausalWan(model, 1, H, 2 * W, [0.0]), tmp_path) != path
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)
    try:
        assert aot_package.package_path(opt, tmp_path) != path
    finally:
        torch.set_num_threads(threads)
    with torch.no_grad():
        model.blocks[0].ffn[0].weight[0, 0] += 1.0
    assert aot_package.package_path(opt, tmp_path) != path


@pytest.mark.slow
def test_aoti_package_equals_reference_fp32_and_loads_from_the_cache(monkeypatch, tmp_path):
    """The CPU compiled path (AOTInductor, weights frozen): about a minute to build on one core; a second
    session loads the package without building (and without tracing)."""
    monkeypatch.setenv("WORLDPLAYER_CACHE", str(tmp_path))
    model = random_model("doom")  # no image context: the CPU compiled path is a package
    fast = fast_path.build(model, 1, H, W, [1000.0, 0.0], "compiled")
    assert fast.name == "compiled (AOTInductor package)"
    assert check_block(model, fast, blocks=5) < 1e-5  # also checks the in-place cache writes of the package
    monkeypatch.setattr(aot_package, "build_package", lambda *a: pytest.fail("rebuilt a cached package"))
    choice = choose_path(model, 1, H, W, [1000.0, 0.0], "auto")
    assert choice.path == "compiled" and not choice.fell_back


@pytest.mark.slow
def test_inductor_equals_reference_fp32():
    """torch.compile (inductor, freezing on CPU) of the pass: a minute or more cold on one core."""
    model = random_model("tiny")
    fast = fast_path.build(model, 1, H, W, [1000.0, 0.0], "inductor")
    assert fast.compiled
    assert check_block(model, fast, blocks=5) < 1e-5
