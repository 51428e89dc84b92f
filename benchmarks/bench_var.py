"""Benchmark VAR sampling on CPU: target-only, exact speculative (several gamma), relaxed and collaborative.

    python benchmarks/bench_var.py --images 100 --out runs/var/bench.json

Per mode, for `--images` images at fixed seeds (image i: class i % 20, seed i), one image per call (B = 1):
target / draft forwards per image, target query rows per image, per-step acceptance (tokens and whole steps),
wall-clock per image (generation only; the VQ decode is timed separately), and quality: Frechet distance (FD)
of a small map classifier's features (engine.var.classifier) against real Freedoom 2 validation frames, plus
the classifier's accuracy on the intended map. Exact modes sample the target's distribution, so their FD
differs from the target's only by sampling noise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.var.classifier import FrameClassifier, extract, frechet_distance  # noqa: E402
from engine.var.dream import ASSETS_DIR, DEFAULT_SAMPLING, load_generator  # noqa: E402
from engine.var.frames import load_frames  # noqa: E402
from engine.var.sample import sample, sample_collaborative  # noqa: E402
from engine.var.speculative import SpecConfig, sample_speculative  # noqa: E402
from engine.var.train import to_pixels  # noqa: E402


def modes(target, draft):
    """name -> fn(quant, label, sampling, gen_draft, gen_accept) -> Decoded."""
    out = {"target": lambda q, y, sc, gd, ga: sample(target, q, y, sc, gd)}
    for g in (1, 2, 3):
        spec = SpecConfig(gamma=g)
        out[f"exact g{g}"] = lambda q, y, sc, gd, ga, s=spec: sample_speculative(
            target, draft, q, y, sc, s, gd, ga
        )
    spec = SpecConfig(gamma=2, spec_until=4)
    out["exact g2 steps<4"] = lambda q, y, sc, gd, ga: sample_speculative(
        target, draft, q, y, sc, spec, gd, ga
    )
    for d in (0.1, 0.3):
        spec_r = SpecConfig(gamma=2, rule="relaxed", relax_delta=d)
        out[f"relaxed g2 d{d}"] = lambda q, y, sc, gd, ga, s=spec_r: sample_speculative(
            target, draft, q, y, sc, s, gd, ga
        )
    for n in (3, 5):
        out[f"collab N{n}"] = lambda q, y, sc, gd, ga, n=n: sample_collaborative(
            target, draft, q, y, sc, n, gd
        )
    out["draft"] = lambda q, y, sc, gd, ga: as_draft(sample(draft, q, y, sc, gd))
    return out


def as_draft(out):
    """Count a draft-only run's forwards as draft forwards."""
    s = out.stats
    s.draft_calls, s.draft_rows, s.target_calls, s.target_rows = s.target_calls, s.target_rows, 0, 0
    return out


@torch.no_grad()
def run_mode(fn, vae, n_images, num_classes, sc):
    quant, k = vae.quantize, vae.quantize.num_steps
    f_hats, times, agg = [], [], {}
    for i in range(n_images):
        label = torch.tensor([i % num_classes])
        gd, ga = torch.Generator().manual_seed(i), torch.Generator().manual_seed(10_000 + i)
        t0 = time.perf_counter()
        out = fn(quant, label, sc, gd, ga)
        times.append(time.perf_counter() - t0)
        f_hats.append(out.f_hat)
        for name, v in vars(out.stats).items():
            agg[name] = np.add(agg.get(name, 0), v)
    f_hat = torch.cat(f_hats)
    t0 = time.perf_counter()
    imgs = torch.cat([vae.fhat_to_img(f_hat[j : j + 25]) for j in range(0, len(f_hat), 25)])
    decode_s = (time.perf_counter() - t0) / n_images
    per_img = {
        n: float(agg[n]) / n_images for n in ("target_calls", "draft_calls", "target_rows", "draft_rows")
    }
    acc_tok = [
        a / d if d else None for a, d in zip(agg["tokens_accepted"], agg["tokens_drafted"], strict=True)
    ]
    acc_step = [
        a / d if d else None for a, d in zip(agg["steps_accepted"], agg["steps_drafted"], strict=True)
    ]
    res = dict(
        per_img,
        ms_per_image=1000 * float(np.mean(times)),
        ms_median=1000 * float(np.median(times)),
        decode_ms_per_image=1000 * decode_s,
        token_accept=acc_tok,
        step_accept=acc_step,
        steps=k,
    )
    return res, imgs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--modes", nargs="*", default=None, help="subset of modes (default: all)")
    p.add_argument("--assets", default=str(ASSETS_DIR))
    p.add_argument("--data", type=Path, default=Path("data/var_frames"))
    p.add_argument("--out", type=Path, default=Path("runs/var/bench.json"))
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    vae, target, draft = load_generator(a.assets)
    if draft is None:
        raise ValueError(f"bench_var needs {a.assets}/var_draft.safetensors")
    clf = FrameClassifier()
    clf.load_state_dict(load_file(str(Path(a.assets) / "classifier.safetensors")))
    clf.eval()
    sc, ncls = DEFAULT_SAMPLING, target.cfg.num_classes
    x_val, y_val = load_frames(a.data / "val")
    real = to_pixels(x_val)
    f_real, pred_real = extract(clf, real)
    with torch.no_grad():
        recon = torch.cat([vae.idx_to_img(vae.img_to_idx(real[j : j + 50])) for j in range(0, len(real), 50)])
    f_rec, _ = extract(clf, recon)
    x_tr, _ = load_frames(a.data / "train")
    f_tr, _ = extract(clf, to_pixels(x_tr[:: max(1, len(x_tr) // len(x_val))][: len(x_val)]))
    report = {
        "sampling": vars(sc) if hasattr(sc, "__dict__") else str(sc),
        "images": a.images,
        "target_params_M": sum(p.numel() for p in target.parameters()) / 1e6,
        "draft_params_M": sum(p.numel() for p in draft.parameters()) / 1e6,
        "reference": {
            "FD real train vs real val": frechet_distance(f_tr, f_real),
            "FD tokenizer reconstructions vs real val": frechet_distance(f_rec, f_real),
            "classifier accuracy on real val": float((pred_real == y_val).mean()),
        },
        "modes": {},
    }
    print(json.dumps(report["reference"], indent=1), flush=True)
    all_modes = modes(target, draft)
    for name in a.modes or list(all_modes):
        res, imgs = run_mode(all_modes[name], vae, a.images, ncls, sc)
        feats, pred = extract(clf, imgs)
        res["FD vs real val"] = frechet_distance(feats, f_real)
        res["class accuracy"] = float((pred == np.arange(a.images) % ncls).mean())
        report["modes"][name] = res
        print(name, json.dumps({k: v for k, v in res.items()}), flush=True)
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(report, indent=1))
    print(table(report))


def table(report: dict) -> str:
    rows = [
        "| mode | target calls/img | draft calls/img | target rows/img | ms/img | FD | class acc |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in report["modes"].items():
        rows.append(
            f"| {name} | {r['target_calls']:.2f} | {r['draft_calls']:.2f} | {r['target_rows']:.0f} | "
            f"{r['ms_per_image']:.0f} | {r['FD vs real val']:.2f} | {r['class accuracy']:.2f} |"
        )
    rows += ["", "| mode | step acceptance per step (tokens / whole step) |", "|---|---|"]
    for name, r in report["modes"].items():
        if any(x is not None for x in r["token_accept"]):
            cells = [
                f"{t:.2f}/{s:.2f}" if t is not None else "-"
                for t, s in zip(r["token_accept"], r["step_accept"], strict=True)
            ]
            rows.append(f"| {name} | {' '.join(cells)} |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
