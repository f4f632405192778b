#!/usr/bin/env python
"""Accuracy of each attention variant on the deep trained reference model (nextvit_photodigits: Next-ViT-S's 20
blocks at reduced widths): the original's top-1 on the 450 held-out pictures, each variant right after the swap
(E-MHSA weights carried over, nothing trained), and after ``edgevit adapt`` on unlabeled pictures: by default the
model's 64 calibration pictures; with ``--unlabeled N``, N pictures composited the way
``tools/train_photodigits.py`` makes its training and calibration pictures (training digits on crops of the
training part of the photographs: none of the held-out digits or backgrounds), from a seed of their own; plus adapt's
wall time on this machine. Each variant runs ``edgevit adapt`` as a fresh process (what a user runs), one after
another.

    .venv/bin/python benchmarks/adapt_variants.py [--block-steps 300 --model-steps 300] [--variants xca,hilo]
        [--unlabeled 512]

Writes benchmarks/results/adapt_variants.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgevit.adapt import AdaptConfig
from edgevit.models.factory import embedded_data

MODEL = "nextvit_photodigits"
UNLABELED_SEED = 3000  # train_photodigits.py composites its held-out set from seed+1000 and calibration from seed+2000


def write_unlabeled(n: int, out: Path) -> Path:
    """n unlabeled training-distribution pictures as PNGs under ``out`` (what a user's own photos would be)."""
    import numpy as np
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    from train_photodigits import backgrounds, composite, digits_split, load_photos, save_png

    images, _, train_idx, _ = digits_split(0)
    ink = torch.from_numpy(images.astype(np.float32) / 255.0)
    gen = torch.Generator().manual_seed(UNLABELED_SEED)
    pick = torch.from_numpy(train_idx)[torch.randint(len(train_idx), (n,), generator=gen)]
    pictures = composite(ink[pick], backgrounds(load_photos("train"), n, gen), gen)
    for k in range(n):
        save_png(pictures[k], out / f"{k:05d}.png")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default="avgpool,xca,hilo")
    ap.add_argument("--block-steps", type=int, default=300)
    ap.add_argument("--model-steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--model-lr", type=float, default=None, help="adapt's whole-model rate (default: adapt's own)")
    ap.add_argument("--unlabeled", type=int, default=0,
                    help="adapt on N composited training-distribution pictures instead of the 64 calibration ones")
    ap.add_argument("--json", default="benchmarks/results/adapt_variants.json")
    args = ap.parse_args(argv)
    rows = {}
    with tempfile.TemporaryDirectory(prefix="edgevit-adapt-") as tmp:
        data = (write_unlabeled(args.unlabeled, Path(tmp) / "unlabeled") if args.unlabeled
                else Path(embedded_data(MODEL, "calib")))
        for v in args.variants.split(","):
            out = Path(tmp) / f"{v}.safetensors"
            cmd = [sys.executable, "-m", "edgevit", "adapt", "--model", MODEL, "--attention", v,
                   "--data", str(data), "--max-images", str(max(512, args.unlabeled)),
                   "--eval-dir", embedded_data(MODEL, "eval"),
                   "--out", str(out), "--block-steps", str(args.block_steps), "--model-steps", str(args.model_steps),
                   "--batch", str(args.batch), "--json"]
            if args.model_lr is not None:
                cmd += ["--model-lr", str(args.model_lr)]
            t0 = time.perf_counter()
            p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
            wall = time.perf_counter() - t0
            if p.returncode != 0:
                raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
            rep = json.loads(p.stdout)
            rows[v] = {"wall_s": wall, "top1_original": rep["after"]["top1_original"],
                       "top1_after_swap": rep["before"]["top1"], "top1_after_adapt": rep["after"]["top1"],
                       "agreement_after_swap": rep["before"]["top1_agreement"],
                       "agreement_after_adapt": rep["after"]["top1_agreement"],
                       "block_rel_err_after_swap": rep["before"]["block_rel_err"],
                       "block_rel_err_after_adapt": rep["after"]["block_rel_err"],
                       "loss": rep["loss"], "threads": rep["threads"], "images": rep["images"],
                       "kept_step": rep["kept_step"], "val_curve": rep["val_curve"],
                       "eval_images": rep["eval_images"]}
            r = rows[v]
            print(f"{v}: swap {r['top1_after_swap']:.2%} -> adapt {r['top1_after_adapt']:.2%} "
                  f"(original {r['top1_original']:.2%}) in {wall:.0f} s", file=sys.stderr, flush=True)
    result = {"model": MODEL, "block_steps": args.block_steps, "model_steps": args.model_steps,
              "batch": args.batch, "model_lr": args.model_lr or AdaptConfig.model_lr,
              "data": (f"{args.unlabeled} composited training-distribution pictures "
                                            f"(seed {UNLABELED_SEED})" if args.unlabeled else "calibration pictures"),
              "variants": rows}
    print(f"\n{MODEL}, {next(iter(rows.values()))['eval_images']} held-out pictures; adapt: {args.block_steps} "
          f"block + {args.model_steps} model steps, batch {args.batch}, on "
          f"{next(iter(rows.values()))['images']} unlabeled pictures")
    print(f"{'variant':<8} {'top-1 original':>15} {'after swap':>11} {'after adapt':>12} {'drop pts':>9} "
          f"{'agreement':>10} {'adapt s':>8}")
    for v, r in rows.items():
        drop = 100 * (r["top1_original"] - r["top1_after_adapt"])
        print(f"{v:<8} {r['top1_original']:>15.2%} {r['top1_after_swap']:>11.2%} {r['top1_after_adapt']:>12.2%} "
              f"{drop:>9.2f} {r['agreement_after_adapt']:>10.2%} {r['wall_s']:>8.0f}")
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
