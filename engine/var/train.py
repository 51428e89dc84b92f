"""Train the VAR tokenizer, the target/draft VAR transformers and the feature classifier on CPU.

    python -m engine.var.train tokenizer --minutes 25
    python -m engine.var.train var --preset target --minutes 35
    python -m engine.var.train var --preset draft --minutes 20
    python -m engine.var.train classifier --minutes 6

Frames come from `python -m engine.var.frames` (data/var_frames/{train,val}); weights go to assets/var/.
Everything is seeded; with the same frames and thread count a run is repeatable up to its wall-clock budget.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from engine.var.classifier import FrameClassifier, classifier_loss, extract
from engine.var.config import VAR_PRESETS, TokenizerConfig
from engine.var.frames import load_frames
from engine.var.transformer import VAR, load_var
from engine.var.vqvae import VQVAE, load_vqvae

ASSETS = Path("assets/var")


def to_pixels(frames_uint8: np.ndarray) -> torch.Tensor:
    """uint8 [B, H, W, 3] -> float [B, 3, H, W] in [-1, 1]."""
    return torch.from_numpy(frames_uint8).permute(0, 3, 1, 2).float().div(127.5).sub(1)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two [-1, 1] image batches, on the [0, 1] range."""
    mse = ((a - b) / 2).pow(2).mean().item()
    return 10 * math.log10(1 / max(mse, 1e-12))


def save(model: torch.nn.Module, cfg, path: Path, extra: dict | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"var_config": json.dumps(asdict(cfg))}
    meta.update({k: json.dumps(v) for k, v in (extra or {}).items()})
    sd = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(sd, str(path), metadata=meta)


@torch.no_grad()
def eval_psnr(vae: VQVAE, frames: np.ndarray, bs: int = 32) -> float:
    vae.eval()
    out = []
    for i in range(0, len(frames), bs):
        x = to_pixels(frames[i : i + bs])
        out.append(psnr(vae.idx_to_img(vae.img_to_idx(x)), x))
    vae.train()
    return float(np.mean(out))


def train_tokenizer(a: argparse.Namespace) -> None:
    cfg = TokenizerConfig()
    x_all, _ = load_frames(a.data / "train")
    x_val, _ = load_frames(a.data / "val")
    x_val = x_val[::10]  # 100 frames
    rng = np.random.default_rng(a.seed)
    torch.manual_seed(a.seed)
    vae = VQVAE(cfg)
    params = vae.parameters()
    if a.resume:  # stage 2: keep the encoder, codebook and phi (the tokens) fixed; train the decoder only
        vae = load_vqvae(a.resume).train()
        params = list(vae.decoder.parameters()) + list(vae.post_quant_conv.parameters())
        for p in vae.parameters():
            p.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=a.lr, betas=(0.9, 0.99), weight_decay=0.0)
    usage = torch.zeros(cfg.vocab)
    t0, step = time.time(), 0
    print(
        f"tokenizer {sum(p.numel() for p in vae.parameters()) / 1e6:.2f}M params, {len(x_all)} frames",
        flush=True,
    )
    while time.time() - t0 < a.minutes * 60 and (not a.steps or step < a.steps):
        lr = a.lr * min(1.0, (step + 1) / 50)
        for g in opt.param_groups:
            g["lr"] = lr
        x = to_pixels(x_all[rng.integers(0, len(x_all), a.bs)])
        if rng.random() < 0.5:
            x = x.flip(-1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y, vq_loss, u = vae(x)
        y = y.float()
        dx = lambda t: (t[..., :, 1:] - t[..., :, :-1], t[..., 1:, :] - t[..., :-1, :])
        grad_loss = sum(F.l1_loss(p, q) for p, q in zip(dx(y), dx(x), strict=True))
        loss = F.l1_loss(y, x) + F.mse_loss(y, x) + 0.5 * grad_loss + vq_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        usage += u
        step += 1
        if step % 100 == 0 and not a.resume:  # restart dead codes from this batch's quantizer inputs
            dead = (usage == 0).nonzero().flatten()
            if len(dead):
                z = vae.quantize.last_z
                pick = torch.from_numpy(rng.integers(0, len(z), len(dead)))
                with torch.no_grad():
                    vae.quantize.embedding.weight[dead] = z[pick] + 1e-3 * torch.randn(len(dead), cfg.cvae)
            used = int((usage > 0).sum())
            usage.zero_()
            print(
                f"step {step} loss {loss.item():.4f} vq {vq_loss.item():.4f} codes used {used} "
                f"restarted {len(dead)} {time.time() - t0:.0f}s",
                flush=True,
            )
        if step % 100 == 0:
            save(vae, cfg, a.runs / "tokenizer.safetensors")
        if step % 500 == 0:
            print(f"step {step} val psnr {eval_psnr(vae, x_val):.2f} dB", flush=True)
    p = eval_psnr(vae, x_val)
    print(f"final step {step} val psnr {p:.2f} dB", flush=True)
    save(vae, cfg, a.out or ASSETS / "tokenizer.safetensors", {"steps": step, "val_psnr": p})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["tokenizer", "tokens", "var", "classifier", "half"])
    p.add_argument("--preset", choices=list(VAR_PRESETS), default="target")
    p.add_argument("--minutes", type=float, default=25)
    p.add_argument("--bs", type=int, default=16)
    p.add_argument("--lr", type=float, default=4e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data", type=Path, default=Path("data/var_frames"))
    p.add_argument("--runs", type=Path, default=Path("runs/var"))
    p.add_argument("--steps", type=int, default=0, help="stop after this many steps (0: only --minutes)")
    p.add_argument("--warmup", type=int, default=100, help="var: warmup steps")
    p.add_argument("--init", type=Path, default=None, help="var: continue from these weights")
    p.add_argument("--stride", type=int, default=2, help="var: use every stride-th training frame")
    p.add_argument(
        "--resume", type=Path, default=None, help="tokenizer: decoder-only stage from these weights"
    )
    p.add_argument("--out", type=Path, default=None, help="output weights (default assets/var/<name>)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    jobs = {
        "tokenizer": train_tokenizer,
        "tokens": make_tokens,
        "var": train_var,
        "classifier": train_classifier,
        "half": to_half,
    }
    jobs[a.what](a)


def to_half(a: argparse.Namespace) -> None:
    """Ship a checkpoint as fp16 (loading casts back to fp32): --resume SRC --out DST."""
    from safetensors import safe_open

    with safe_open(str(a.resume), "pt") as f:
        meta = f.metadata()
        sd = {k: f.get_tensor(k) for k in f.keys()}
    sd = {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(a.out), metadata=meta)
    print(f"{a.resume} -> {a.out} (fp16)")


def make_tokens(a: argparse.Namespace) -> None:
    """Tokenize the train and val frames once (cached in --runs) before starting VAR trainings in parallel."""
    for split in ("train", "val"):
        tokens, _ = cached_tokens(a, split)
        print(f"{split}: {tuple(tokens.shape)} tokens", flush=True)


@torch.no_grad()
def tokenize_frames(vae: VQVAE, frames: np.ndarray, bs: int = 64) -> torch.Tensor:
    """uint8 frames [N, H, W, 3] -> token pyramids, flat in step order: int16 [N, L]."""
    out = []
    for i in range(0, len(frames), bs):
        x = to_pixels(frames[i : i + bs])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            f = vae.encode_f(x)
        out.append(torch.cat(vae.quantize.encode(f.float()), 1).short())
    return torch.cat(out)


def cached_tokens(a: argparse.Namespace, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens and labels of a frame split, cached beside the runs (keyed by the tokenizer file's mtime)."""
    tok_path = ASSETS / "tokenizer.safetensors"
    stride = a.stride if split == "train" else 5
    cache = a.runs / f"tokens_{split}_s{stride}_{int(tok_path.stat().st_mtime)}.pt"
    if cache.is_file():
        d = torch.load(cache, weights_only=True)  # tensors only: a planted pickle cannot run
        return d["tokens"], d["labels"]
    frames, labels = load_frames(a.data / split)
    stride = a.stride if split == "train" else 5
    frames, labels = frames[::stride], labels[::stride]
    tokens = tokenize_frames(load_vqvae(tok_path), frames)
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"tokens": tokens, "labels": torch.from_numpy(labels)}, cache)
    return tokens, torch.from_numpy(labels)


def var_loss(model: VAR, quant, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-scale cross-entropy of token pyramids [B, L] (teacher forcing)."""
    idx = list(tokens.long().split([h * w for h, w in quant.scales], 1))
    with torch.no_grad():
        inp = quant.teacher_inputs(idx)  # [B, L - 1, Cv]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(labels, inp)  # [B, L, V]
    return F.cross_entropy(logits.float().flatten(0, 1), tokens.long().flatten())


def train_var(a: argparse.Namespace) -> None:
    cfg = VAR_PRESETS[a.preset]
    tokens, labels = cached_tokens(a, "train")
    vtok, vlab = cached_tokens(a, "val")
    quant = load_vqvae(ASSETS / "tokenizer.safetensors").quantize
    if (quant.vocab, quant.cvae, quant.scales) != (cfg.vocab, cfg.cvae, cfg.scales):
        raise ValueError(f"VAR preset {a.preset} does not match the tokenizer (vocab, cvae, scales)")
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    model = VAR(cfg) if a.init is None else load_var(a.init).train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "pos_" not in n and "emb" not in n]
    rest = [
        p for n, p in model.named_parameters() if not (p.ndim >= 2 and "pos_" not in n and "emb" not in n)
    ]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.05}, {"params": rest, "weight_decay": 0.0}],
        lr=a.lr,
        betas=(0.9, 0.95),
    )
    print(
        f"VAR {a.preset}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params, "
        f"{len(tokens)} pyramids of {tokens.shape[1]} tokens",
        flush=True,
    )
    t0, step = time.time(), 0
    # lr: warmup, then cosine to 0.1x over the wall-clock budget (or over --steps when given)
    while (frac := step / a.steps if a.steps else (time.time() - t0) / (a.minutes * 60)) < 1:
        lr = a.lr * min(1.0, (step + 1) / a.warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        i = torch.from_numpy(rng.integers(0, len(tokens), a.bs))
        loss = var_loss(model, quant, tokens[i], labels[i])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)
        opt.step()
        step += 1
        if step % 50 == 0:
            print(f"step {step} loss {loss.item():.4f} lr {lr:.2e} {time.time() - t0:.0f}s", flush=True)
        if step % 200 == 0:
            save(model, cfg, a.runs / f"var_{a.preset}.safetensors", {"steps": step})
    model.eval()
    with torch.no_grad():
        vl = float(
            np.mean(
                [
                    var_loss(model, quant, vtok[j : j + 64], vlab[j : j + 64]).item()
                    for j in range(0, len(vtok), 64)
                ]
            )
        )
    print(f"final step {step} val loss {vl:.4f}", flush=True)
    save(model, cfg, a.out or ASSETS / f"var_{a.preset}.safetensors", {"steps": step, "val_loss": vl})


def train_classifier(a: argparse.Namespace) -> None:
    x_all, y_all = load_frames(a.data / "train")
    x_val, y_val = load_frames(a.data / "val")
    rng = np.random.default_rng(a.seed)
    torch.manual_seed(a.seed)
    clf = FrameClassifier()
    opt = torch.optim.AdamW(clf.parameters(), lr=2e-3, weight_decay=0.01)
    t0, step = time.time(), 0
    while time.time() - t0 < a.minutes * 60 and (not a.steps or step < a.steps):
        i = rng.integers(0, len(x_all), a.bs)
        loss = classifier_loss(clf, to_pixels(x_all[i]), torch.from_numpy(y_all[i]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % 100 == 0:
            print(f"step {step} loss {loss.item():.3f} {time.time() - t0:.0f}s", flush=True)
    clf.eval()
    _, pred = extract(clf, to_pixels(x_val))
    acc = float((pred == y_val).mean())
    print(f"final step {step} val accuracy {acc:.3f}", flush=True)
    path = ASSETS / "classifier.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.contiguous() for k, v in clf.state_dict().items()},
        str(path),
        metadata={"steps": str(step), "val_accuracy": f"{acc:.4f}"},
    )


if __name__ == "__main__":
    main()
