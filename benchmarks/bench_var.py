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
from engine.var.train import psnr, to_pixels  # noqa: E402


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
def generate(all_modes: dict, names: list[str], vae, images: range, num_classes: int, sc) -> dict:
    """Run every mode on every image, interleaved (image-major) so that CPU contention hits all modes alike.
    Returns name -> {"times": [...], "stats": {...summed}, "f_hat": [N, Cv, h, w], "labels": [N]}."""
    quant = vae.quantize
    raw = {n: {"times": [], "stats": {}, "f_hat": [], "labels": []} for n in names}
    for i in images:
        label = torch.tensor([i % num_classes])
        for name in names:
            gd, ga = torch.Generator().manual_seed(i), torch.Generator().manual_seed(10_000 + i)
            t0 = time.perf_counter()
            out = all_modes[name](quant, label, sc, gd, ga)
            r = raw[name]
            r["times"].append(time.perf_counter() - t0)
            r["f_hat"].append(out.f_hat)
            r["labels"].append(i % num_classes)
            for key, v in vars(out.stats).items():
                r["stats"][key] = np.add(r["stats"].get(key, 0), v)
        print(f"image {i} done", flush=True)
    for r in raw.values():
        r["f_hat"] = torch.cat(r["f_hat"])
        r["stats"] = {k: np.asarray(v).tolist() for k, v in r["stats"].items()}  # plain numbers: weights_only
    return raw


def merge(shards: list[dict]) -> dict:
    out = {}
    for name in shards[0]:
        rs = [s[name] for s in shards]
        out[name] = {
            "times": sum((r["times"] for r in rs), []),
            "labels": sum((r["labels"] for r in rs), []),
            "f_hat": torch.cat([r["f_hat"] for r in rs]),
            "stats": {k: sum(np.asarray(r["stats"][k]) for r in rs) for k in rs[0]["stats"]},
        }
    return out


@torch.no_grad()
def evaluate(raw: dict, vae, clf, f_real: np.ndarray) -> dict:
    """Counters per image, acceptance per step, ms per image, decode time, FD and class accuracy per mode."""
    res = {}
    for name, r in raw.items():
        n, st = len(r["times"]), r["stats"]
        t0 = time.perf_counter()
        imgs = torch.cat([vae.fhat_to_img(r["f_hat"][j : j + 25]) for j in range(0, n, 25)])
        decode_ms = 1000 * (time.perf_counter() - t0) / n
        feats, pred = extract(clf, imgs)
        per = {k: float(st[k]) / n for k in ("target_calls", "draft_calls", "target_rows", "draft_rows")}
        div = lambda a, d: [float(x) / float(y) if y else None for x, y in zip(a, d, strict=True)]
        res[name] = dict(
            per,
            images=n,
            ms_per_image=1000 * float(np.mean(r["times"])),
            ms_median=1000 * float(np.median(r["times"])),
            decode_ms_per_image=decode_ms,
            token_accept=div(st["tokens_accepted"], st["tokens_drafted"]),
            step_accept=div(st["steps_accepted"], st["steps_drafted"]),
            **{"FD vs real val": frechet_distance(feats, f_real)},
            **{"class accuracy": float((pred == np.asarray(r["labels"])).mean())},
        )
        if name == "target":
            res["_target_imgs"] = imgs[:40]
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=100)
    p.add_argument("--shard", default="0/1", help="i/n: generate images i, i+n, ... and save raw results")
    p.add_argument("--merge", nargs="*", default=None, help="raw shard files to evaluate together")
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
    sc, ncls = DEFAULT_SAMPLING, target.cfg.num_classes
    if a.merge is None:
        all_modes = modes(target, draft)
        names = a.modes or list(all_modes)
        i, n = (int(x) for x in a.shard.split("/"))
        raw = generate(all_modes, names, vae, range(i, a.images, n), ncls, sc)
        if n > 1:
            a.out.parent.mkdir(parents=True, exist_ok=True)
            torch.save(raw, a.out)
            return
    else:
        raw = merge([torch.load(f, weights_only=True) for f in a.merge])
    clf = FrameClassifier()
    clf.load_state_dict(load_file(str(Path(a.assets) / "classifier.safetensors")))
    clf.eval()
    x_val, y_val = load_frames(a.data / "val")
    real = to_pixels(x_val)
    f_real, pred_real = extract(clf, real)
    with torch.no_grad():
        recon = torch.cat([vae.idx_to_img(vae.img_to_idx(real[j : j + 50])) for j in range(0, len(real), 50)])
    f_rec, _ = extract(clf, recon)
    x_tr, _ = load_frames(a.data / "train")
    f_tr, _ = extract(clf, to_pixels(x_tr[:: max(1, len(x_tr) // len(x_val))][: len(x_val)]))
    res = evaluate(raw, vae, clf, f_real)
    grid = res.pop("_target_imgs", None)
    report = {
        "sampling": str(sc),
        "target_params_M": sum(p.numel() for p in target.parameters()) / 1e6,
        "draft_params_M": sum(p.numel() for p in draft.parameters()) / 1e6,
        "reference": {
            "FD real train vs real val": frechet_distance(f_tr, f_real),
            "FD tokenizer reconstructions vs real val": frechet_distance(f_rec, f_real),
            "tokenizer PSNR on real val (dB)": psnr(recon, real),
            "classifier accuracy on real val": float((pred_real == y_val).mean()),
        },
        "modes": res,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=1))
    if grid is not None and len(grid) >= 5:
        save_grid(grid, a.out.with_suffix(".png"))
    print(json.dumps(report["reference"], indent=1))
    print(table(report))


def save_grid(imgs: torch.Tensor, path: Path, cols: int = 5) -> None:
    """[N, 3, H, W] in [-1, 1] -> one PNG grid (first N - N % cols images)."""
    from PIL import Image

    a = ((imgs + 1) * 127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
    n = len(a) // cols * cols
    rows = [np.concatenate(list(a[r : r + cols]), 1) for r in range(0, n, cols)]
    Image.fromarray(np.concatenate(rows, 0)).save(path)


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
