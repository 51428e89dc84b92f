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


def test_ratio_one_vae_trains_on_single_frames(synthetic_data, tmp_path):
    """A temporal-ratio-1 VAE (one latent per video frame) trains from clips of any length, stores its
    ratio, and its loss falls within 60 steps."""
    import json

    from omegaconf import OmegaConf

    from engine.config import load_preset, preset_to_dict
    from engine.train.vae_trainer import train_vae
    from engine.vae.tiny_vae import read_tiny_vae_config

    data = preset_to_dict(load_preset(PRESET))
    data["vae"]["temporal"] = 1
    if data["model"]["action"]:
        data["model"]["action"]["vae_time_compression_ratio"] = 1
    preset = tmp_path / "frame.yaml"
    OmegaConf.save(OmegaConf.create(data), preset)
    out = tmp_path / "out"
    cfg = vae_cfg(synthetic_data, out, f"preset={preset}", "clip_frames=3", "run.steps=60", "run.log_every=1")
    train_vae(cfg)
    assert read_tiny_vae_config(str(out / "model.safetensors"))["temporal"] == 1
    from engine.train.config import VAETrainConfig, load_train_config

    assert load_train_config(VAETrainConfig, str(out / "config.yaml")) == cfg  # the run's config is YAML
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert sum(losses[-10:]) < 0.9 * sum(losses[:10])


def test_adversarial_decoder_fine_tune_trains_the_discriminator_and_resumes_exactly(synthetic_data, tmp_path):
    """With `adversarial` the discriminator learns (its hinge loss falls below 2, the value of a blind
    one), the decoder's loss gets the adversarial term after `adversarial_start`, the encoder stays
    frozen, and a run stopped and resumed ends with the same weights as one run straight through."""
    import json

    from engine.train.vae_trainer import train_vae

    base = tmp_path / "base"
    train_vae(vae_cfg(synthetic_data, base))
    gan = [f"init={base}/model.safetensors", "freeze_encoder=true", "adversarial=0.1", "adversarial_start=4",
           "run.steps=8", "run.log_every=1", "disc_lr=1e-3"]  # fmt: skip
    train_vae(vae_cfg(synthetic_data, tmp_path / "whole", *gan))
    rows = [json.loads(line) for line in open(tmp_path / "whole" / "metrics.jsonl")]
    assert all(r["adv"] == 0 for r in rows[:4]) and all(r["adv"] != 0 for r in rows[4:])
    assert min(r["disc"] for r in rows) < 2.0
    train_vae(vae_cfg(synthetic_data, tmp_path / "split", *gan, "run.stop_after=5"))
    train_vae(vae_cfg(synthetic_data, tmp_path / "split", *gan))
    a, b = load(tmp_path / "whole" / "model.safetensors"), load(tmp_path / "split" / "model.safetensors")
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    base_sd = load(base / "model.safetensors").state_dict()
    assert all(torch.equal(sa[k], base_sd[k]) for k in sa if not k.startswith("decoder."))
