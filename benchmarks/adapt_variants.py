#!/usr/bin/env python
"""Accuracy of each attention variant on the deep trained reference model (nextvit_photodigits: Next-ViT-S's 20
blocks at reduced widths): the original's top-1 on the 450 held-out pictures, each variant right after the swap
(E-MHSA weights carried over, nothing trained), and after ``edgevit adapt`` on the model's 64 unlabeled
calibration pictures; plus adapt's wall time on this machine. Each variant runs ``edgevit adapt`` as a fresh process
(what a user runs), one after another.

    .venv/bin/python benchmarks/adapt_variants.py [--block-steps 300 --model-steps 300] [--variants xca,hilo]

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

from edgevit.models.factory import embedded_data

MODEL = "nextvit_photodigits"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default="avgpool,xca,hilo")
    ap.add_argument("--block-steps", type=int, default=300)
    ap.add_argument("--model-steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--json", default="benchmarks/results/adapt_variants.json")
    args = ap.parse_args(argv)
    rows = {}
    with tempfile.TemporaryDirectory(prefix="edgevit-adapt-") as tmp:
        for v in args.variants.split(","):
            out = Path(tmp) / f"{v}.safetensors"
            cmd = [sys.executable, "-m", "edgevit", "adapt", "--model", MODEL, "--attention", v,
                   "--data", embedded_data(MODEL, "calib"), "--eval-dir", embedded_data(MODEL, "eval"),
                   "--out", str(out), "--block-steps", str(args.block_steps), "--model-steps", str(args.model_steps),
                   "--batch", str(args.batch), "--json"]
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
              "batch": args.batch, "variants": rows}
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
