"""VAE trainer contracts: a decoder fine-tune keeps the latents (and every latent cache made from them)."""

from __future__ import annotations

import pytest
import torch

PRESET = "configs/train/presets/synthetic.yaml"


def vae_cfg(data, out, *extra):
    from engine.train.config import VAETrainConfig, load_train_config

    base = [f"preset={PRESET}", f"data=[{data}]", "crop=[0,0]", f"run.out_dir={out}", "run.steps=3",
            "run.batch_size=2", "run.lr=1e-3", "run.warmup_steps=1", "run.progress=false"]  # fmt: skip
    return load_train_config(VAETrainConfig, None, base + list(extra))


def load(path):
    from dataclasses import replace

    from engine.config import load_preset
    from engine.vae.tiny_vae import load_tiny_vae

    return load_tiny_vae(replace(load_preset(PRESET).vae, checkpoint=""), str(path))


def test_decoder_fine_tune_keeps_encoder_statistics_and_cache_fingerprint(synthetic_data, tmp_path):
    from engine.config import load_preset
    from engine.train.latent_cache import vae_fingerprint
    from engine.train.vae_trainer import train_vae

    base = tmp_path / "base"
    train_vae(vae_cfg(synthetic_data, base))
    tuned = tmp_path / "tuned"
    train_vae(vae_cfg(synthetic_data, tuned, f"init={base}/model.safetensors", "freeze_encoder=true"))
    a, b = load(base / "model.safetensors"), load(tuned / "model.safetensors")
    sa, sb = a.state_dict(), b.state_dict()
    kept = [k for k in sa if not k.startswith("decoder.")]
    assert kept and all(torch.equal(sa[k], sb[k]) for k in kept)  # encoder and latent_mean/std
    assert any(not torch.equal(sa[k], sb[k]) for k in sa if k.startswith("decoder."))
    cfg = load_preset(PRESET).vae
    assert vae_fingerprint(a, cfg) == vae_fingerprint(b, cfg)

    full = tmp_path / "full"  # the same start without freezing: the encoder moves, the cache is stale
    train_vae(vae_cfg(synthetic_data, full, f"init={base}/model.safetensors"))
    assert vae_fingerprint(load(full / "model.safetensors"), cfg) != vae_fingerprint(a, cfg)


def test_freeze_encoder_without_init_is_an_error(synthetic_data, tmp_path):
    from engine.train.vae_trainer import train_vae

    with pytest.raises(ValueError, match="freeze_encoder needs init"):
        train_vae(vae_cfg(synthetic_data, tmp_path / "out", "freeze_encoder=true"))


def test_equivariance_term_makes_latents_move_with_the_image(synthetic_data, tmp_path):
    """Descending the objective with only the equivariance term on makes a fixed batch's latents move
    with its shifted crops. Judged relative to the latents' spatial variance, so shrinking the latents
    (the latent statistics do not update here) does not pass."""
    from dataclasses import replace

    from engine.config import load_preset
    from engine.train.equivariance import shifted_pair, spatial_spread
    from engine.train.frame_clips import FrameClips, load_episodes
    from engine.train.vae_trainer import VAEObjective, init_pca
    from engine.vae.tiny_vae import TinyVAE

    torch.manual_seed(0)
    vae = TinyVAE(replace(load_preset(PRESET).vae, checkpoint=""))
    data = FrameClips(load_episodes([str(synthetic_data)]), 9, (56, 56))
    gen = torch.Generator().manual_seed(0)
    init_pca(vae, data.sample(16, gen))
    video, video_shift, offsets = shifted_pair(data.sample(4, gen), gen)
    cfg = vae_cfg(synthetic_data, tmp_path, "crop=[48,48]", "equivariance=1.0", "l1=0", "l2=0", "edge=0")
    objective = VAEObjective(vae, cfg)
    opt = torch.optim.Adam(vae.encoder.parameters(), lr=1e-3)
    terms = []
    for _ in range(60):
        loss, parts, raw = objective(video, torch.zeros(4), (video_shift, offsets))
        opt.zero_grad()
        loss.backward()
        opt.step()
        terms.append(float(parts["equivariance"].detach() / spatial_spread(vae.normalize(raw))))
    assert terms[-1] < 0.6 * terms[0]


def test_equivariance_without_crop_is_an_error(synthetic_data, tmp_path):
    from engine.train.vae_trainer import train_vae

    with pytest.raises(ValueError, match="equivariance needs crop of at least"):
        train_vae(vae_cfg(synthetic_data, tmp_path / "out", "equivariance=1.0"))
