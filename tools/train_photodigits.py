#!/usr/bin/env python
"""Train the deep reference model: Next-ViT-S's depth on handwritten digits composited onto photographs.

The shipped ``nextvit_digits`` model is shallow and scores 99.33% in every quantization scheme, so it cannot show a
difference between them. This one has all 20 blocks of Next-ViT-S (the same NCB/NTB pattern and sr ratios,
``nextvit_photodigits`` in ``edgevit/models/nextvit.py``) at reduced widths, and a harder task built only from
real images available offline:

* the 1,797 8x8 digit scans bundled with scikit-learn (split as in ``train_reference.py``: 25% of each class held
  out), pasted at a random scale, rotation, position, colour and opacity
* onto crops of scikit-image's bundled photographs (astronaut, coffee, chelsea, rocket, hubble_deep_field, ...):
  training crops come from the left 75% of each photograph, held-out crops from the right 25%, so neither the
  held-out digits nor the held-out backgrounds were seen in training.

Training images are composited on the fly (every step sees new ones); the held-out set is composited once with a
fixed seed and shipped as 64x64 PNGs in ``edgevit/assets/photodigits/eval/<label>/`` with calibration images
(training digits on training crops) in ``edgevit/assets/photodigits/calib/``. The pictures are exactly the model's
input size and its preprocessing keeps them as they are (crop_pct 1.0), so what it trained on is bit for bit what
the artifacts see. Needs scikit-learn and scikit-image (``pip install -e '.[dev]'``); about half an hour on 2 cores:

    .venv/bin/python tools/train_photodigits.py      # writes edgevit/assets/nextvit_photodigits.{safetensors,json}
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from edgevit.models import create_model, save_weights
from edgevit.models.checkpoint import load_weights
from edgevit.preprocess import Preprocess

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_reference import digits_split, pretrained_cfg, write_info  # noqa: E402  (shared by both models)

ASSETS = Path(__file__).resolve().parents[1] / "edgevit" / "assets"
SIZE = 64
# scikit-image's bundled pictures (no download needed); grey ones are used as RGB
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
          "colorwheel", "camera", "coins", "brick", "grass", "gravel", "moon", "page", "text", "clock", "cell")
TRAIN_FRACTION = 0.75  # of each photograph's width; the rest gives the held-out backgrounds


def load_photos(split: str) -> list[torch.Tensor]:
    """(3, H, W) float 0..1 tensors: the left 75% (train) or right 25% (held-out) of every photograph."""
    from skimage import data

    out = []
    for name in PHOTOS:
        a = np.asarray(getattr(data, name)())
        if a.ndim == 2:
            a = np.stack([a] * 3, axis=-1)
        a = a[..., :3].astype(np.float32) / 255.0
        cut = int(a.shape[1] * TRAIN_FRACTION)
        a = a[:, :cut] if split == "train" else a[:, cut:]
        out.append(torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))))
    return out


def backgrounds(photos: list[torch.Tensor], n: int, gen: torch.Generator) -> torch.Tensor:
    """n random square crops (side 64 px to the whole region), resized to 64x64, randomly mirrored."""
    out = torch.empty(n, 3, SIZE, SIZE)
    for i in range(n):
        p = photos[int(torch.randint(len(photos), (1,), generator=gen))]
        h, w = p.shape[1:]
        side = int(SIZE + torch.rand(1, generator=gen) * (min(h, w) - SIZE))
        top = int(torch.randint(h - side + 1, (1,), generator=gen))
        left = int(torch.randint(w - side + 1, (1,), generator=gen))
        crop = p[None, :, top:top + side, left:left + side]
        crop = F.interpolate(crop, size=(SIZE, SIZE), mode="bilinear", antialias=True, align_corners=False)[0]
        out[i] = crop.flip(-1) if torch.rand(1, generator=gen) < 0.5 else crop
    return out


def composite(ink: torch.Tensor, bg: torch.Tensor, gen: torch.Generator, ease: float = 0.0) -> torch.Tensor:
    """Paste (n, 8, 8) ink maps (0..1) onto (n, 3, 64, 64) backgrounds; returns uint8-rounded pixels in 0..1.

    Per image: digit height 20-44 px, rotation +-30 degrees, a random position that keeps most of it in view,
    a random ink colour, opacity 0.45-1.0, and sensor noise. Low-contrast draws make some images genuinely hard.
    ``ease`` (1 -> 0 over the start of training, a curriculum) fades the background and raises the opacity; the
    shipped images are all made with 0.
    """
    bg = bg * (1 - 0.8 * ease)
    n = ink.shape[0]
    k = SIZE / (20 + torch.rand(n, generator=gen) * 24)          # output extent / digit extent: 20..44 px high
    angle = (torch.rand(n, generator=gen) - 0.5) * math.radians(60)
    shift = (torch.rand(n, 2, 1, generator=gen) - 0.5) * 0.8     # centre, in normalised output coordinates
    rot = torch.stack([torch.stack([torch.cos(angle), -torch.sin(angle)], 1),
                       torch.stack([torch.sin(angle), torch.cos(angle)], 1)], 1)
    a = k.view(n, 1, 1) * rot                                       # output coords -> the 8x8 scan's coords
    theta = torch.cat([a, -a @ shift], 2)
    grid = F.affine_grid(theta, [n, 1, SIZE, SIZE], align_corners=False)
    alpha = F.grid_sample(ink[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    lowest = 0.45 + 0.55 * ease
    alpha = alpha * (lowest + (1 - lowest) * torch.rand(n, 1, 1, 1, generator=gen))
    colour = torch.rand(n, 3, 1, 1, generator=gen) * (1 - ease) + ease
    img = bg * (1 - alpha) + colour * alpha
    img = img + torch.randn(img.shape, generator=gen) * 0.03 * torch.rand(n, 1, 1, 1, generator=gen)
    return (img.clamp(0, 1) * 255).round() / 255


def normalize(x: torch.Tensor, pre: Preprocess) -> torch.Tensor:
    mean = torch.tensor(pre.mean).view(1, 3, 1, 1)
    std = torch.tensor(pre.std).view(1, 3, 1, 1)
    return (x - mean) / std


def save_png(x: torch.Tensor, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    a = (x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(a, "RGB").save(path, optimize=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--curriculum", type=float, default=0.4, help="fraction of the steps over which ease goes 1 -> 0")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--calib", type=int, default=64, help="calibration images to ship (training digits and crops)")
    ap.add_argument("--eval-every", type=int, default=200)
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    images, labels, train_idx, held_idx = digits_split(args.seed)
    ink = torch.from_numpy(images.astype(np.float32) / 255.0)
    train_photos, held_photos = load_photos("train"), load_photos("held")
    pre = Preprocess(size=(SIZE, SIZE), crop_pct=1.0, interpolation="bicubic", geometry="edgevit-v1")

    # the held-out set, composited once: every held-out digit once, on held-out backgrounds
    g_held = torch.Generator().manual_seed(args.seed + 1000)
    held = composite(ink[held_idx], backgrounds(held_photos, len(held_idx), g_held), g_held)
    g_cal = torch.Generator().manual_seed(args.seed + 2000)
    cal_idx = torch.from_numpy(np.random.default_rng(args.seed + 1).choice(train_idx, args.calib, replace=False))
    calib = composite(ink[cal_idx], backgrounds(train_photos, args.calib, g_cal), g_cal)
    xte, yte = normalize(held, pre), labels[held_idx]

    model = create_model("nextvit_photodigits", drop_path_rate=0.1)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps, pct_start=0.05)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    gen = torch.Generator().manual_seed(args.seed)
    tr_idx = torch.from_numpy(train_idx)
    ytr_all = torch.from_numpy(labels)

    def held_out_accuracy() -> float:
        model.eval()
        with torch.no_grad():
            pred = torch.cat([model(xte[i:i + 150]).argmax(1) for i in range(0, len(xte), 150)]).numpy()
        model.train()
        return float((pred == yte).mean())

    t0, running = time.time(), 0.0
    model.train()
    for step in range(1, args.steps + 1):
        j = tr_idx[torch.randint(len(tr_idx), (args.batch,), generator=gen)]
        ease = max(0.0, 1.0 - step / (args.curriculum * args.steps))
        x = normalize(composite(ink[j], backgrounds(train_photos, args.batch, gen), gen, ease), pre)
        loss = loss_fn(model(x), ytr_all[j])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        running = 0.98 * running + 0.02 * loss.item() if step > 1 else loss.item()
        if step % args.eval_every == 0 or step == args.steps:
            print(f"step {step:>5}/{args.steps} ease {ease:.2f} loss {running:.3f} held-out acc {held_out_accuracy():.4f} "
                  f"({time.time() - t0:.0f}s)", flush=True)
    ASSETS.mkdir(parents=True, exist_ok=True)
    save_weights(model, ASSETS / "nextvit_photodigits.safetensors", layout="timm", overwrite=True,
                 dtype=torch.float16)
    load_weights(model, str(ASSETS / "nextvit_photodigits.safetensors"))  # what ships: fp16-rounded weights
    acc = held_out_accuracy()
    data = ASSETS / "photodigits"
    shutil.rmtree(data, ignore_errors=True)
    for k, i in enumerate(held_idx):
        save_png(held[k], data / "eval" / str(labels[i]) / f"{i:04d}.png")
    for k, i in enumerate(cal_idx.tolist()):
        save_png(calib[k], data / "calib" / f"{i:04d}.png")
    info = {"model": "nextvit_photodigits",
            "dataset": "sklearn.datasets.load_digits scans composited onto skimage.data photographs "
                       "(tools/train_photodigits.py)",
            "photos": list(PHOTOS), "train_steps": args.steps, "batch": args.batch,
            "train_digits": int(len(train_idx)), "held_out_images": int(len(held_idx)),
            "held_out_top1": acc, "seconds": round(time.time() - t0, 1), "torch": torch.__version__,
            "weights_dtype": "float16",
            "pretrained_cfg": pretrained_cfg(pre, "what tools/train_photodigits.py trained with: 64x64 pictures, "
                                                  "unresized")}
    write_info(ASSETS / "nextvit_photodigits.json", info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
