#!/usr/bin/env python
"""Train the shipped reference model: Next-ViT (tiny widths) on scikit-learn's handwritten digits.

Pretrained ImageNet weights cannot be downloaded here, so quantization accuracy is measured on a real, small,
trained model instead: the 1,797 8x8 digit scans bundled with scikit-learn (real handwriting from 43 people),
upsampled to 64x64 RGB through the same preprocessing every edgevit artifact uses. A stratified 25% is held out
and shipped as PNGs (edgevit/assets/digits/eval/<label>/), with a calibration set from the training split
(edgevit/assets/digits/calib/). Runs in a few minutes on 2 CPU cores:

    .venv/bin/python tools/train_reference.py            # writes edgevit/assets/nextvit_digits.safetensors
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from edgevit.models import create_model, save_weights
from edgevit.preprocess import Preprocess

ASSETS = Path(__file__).resolve().parents[1] / "edgevit" / "assets"


def digits_split(seed: int = 0):
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.clip(d.images * 16, 0, 255).astype(np.uint8)  # 0..16 -> 0..255 ink
    labels = d.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    train, held = [], []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = int(round(len(idx) * 0.25))
        held += idx[:k].tolist()
        train += idx[k:].tolist()
    return images, labels, np.array(sorted(train)), np.array(sorted(held))


def pretrained_cfg(pre: Preprocess, note: str) -> dict:
    """The sidecar section edgevit reads a shipped checkpoint's preprocessing from (edgevit.models.pretrained)."""
    return {"input_size": [3, *pre.size], "crop_pct": pre.crop_pct, "interpolation": pre.interpolation,
            "mean": list(pre.mean), "std": list(pre.std), "preprocess_geometry": pre.geometry, "note": note}


def write_info(path: Path, info: dict) -> None:
    path.write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info, indent=2))


def to_pil(img8: np.ndarray) -> Image.Image:
    # white ink on black, as scanned; RGB so it goes through the standard 3-channel preprocessing
    return Image.fromarray(img8, "L").convert("RGB")


def preprocess_all(images, idx, pre):
    return np.stack([pre(to_pil(images[i])) for i in idx])


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random shifts of up to 4 px and small brightness changes."""
    b = x.shape[0]
    pad = torch.nn.functional.pad(x, (4, 4, 4, 4), mode="replicate")
    out = torch.empty_like(x)
    offs = torch.randint(0, 9, (b, 2), generator=gen)
    h, w = x.shape[2:]
    for i in range(b):
        out[i] = pad[i, :, offs[i, 0]:offs[i, 0] + h, offs[i, 1]:offs[i, 1] + w]
    return out * (1 + 0.1 * (torch.rand(b, 1, 1, 1, generator=gen) - 0.5))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--calib", type=int, default=128, help="calibration images to ship from the training split")
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    images, labels, train_idx, held_idx = digits_split(args.seed)
    # the resize/crop rule the shipped checkpoint was trained with (edgevit.preprocess: GEOMETRIES)
    pre = replace(Preprocess.for_size((64, 64)), geometry="edgevit-v1")
    xtr = torch.from_numpy(preprocess_all(images, train_idx, pre))
    ytr = torch.from_numpy(labels[train_idx])
    xte = torch.from_numpy(preprocess_all(images, held_idx, pre))
    yte = labels[held_idx]
    model = create_model("nextvit_digits", drop_path_rate=0.05)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    steps = args.epochs * ((len(xtr) + args.batch - 1) // args.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps, pct_start=0.15)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.time()
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(xtr), generator=gen)
        total = 0.0
        for i in range(0, len(xtr), args.batch):
            j = perm[i:i + args.batch]
            loss = loss_fn(model(augment(xtr[j], gen)), ytr[j])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(j)
        model.eval()
        with torch.no_grad():
            acc = (model(xte).argmax(1).numpy() == yte).mean()
        print(f"epoch {epoch + 1:>2}/{args.epochs} loss {total / len(xtr):.3f} held-out acc {acc:.4f} "
              f"({time.time() - t0:.0f}s)", flush=True)
    model.eval()
    with torch.no_grad():
        acc = float((model(xte).argmax(1).numpy() == yte).mean())
    ASSETS.mkdir(parents=True, exist_ok=True)
    save_weights(model, ASSETS / "nextvit_digits.safetensors", layout="timm", overwrite=True)
    (ASSETS / "digits_labels.txt").write_text("\n".join(str(i) for i in range(10)) + "\n")
    data = ASSETS / "digits"
    shutil.rmtree(data, ignore_errors=True)
    for n, i in enumerate(held_idx):
        d = data / "eval" / str(labels[i])
        d.mkdir(parents=True, exist_ok=True)
        to_pil(images[i]).convert("L").save(d / f"{i:04d}.png")
    rng = np.random.default_rng(args.seed + 1)
    (data / "calib").mkdir(parents=True)
    for i in sorted(rng.choice(train_idx, size=args.calib, replace=False)):
        to_pil(images[i]).convert("L").save(data / "calib" / f"{i:04d}.png")
    info = {"model": "nextvit_digits", "dataset": "sklearn.datasets.load_digits (UCI optdigits test set)",
            "train_images": int(len(train_idx)), "held_out_images": int(len(held_idx)),
            "held_out_top1": acc, "epochs": args.epochs, "seconds": round(time.time() - t0, 1),
            "torch": torch.__version__,
            "pretrained_cfg": pretrained_cfg(pre, "what tools/train_reference.py trained with: "
                                                  "Preprocess.for_size((64, 64))")}
    write_info(ASSETS / "nextvit_digits.json", info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
