#!/usr/bin/env python
"""Why int8 misses the worst-image goals on the deep reference: where 8-bit activation rounding alone takes it.

On the deployed `nextvit_photodigits` (fp32 weights, no runtime), the input of every Conv is rounded to 256 levels
(asymmetric, range from the 64 calibration images), for three groups of convolutions:

  after-relu   inputs that are ReLU outputs (stem.1-3, each MHCA projection, each MLP fc2)
  residual     every other Conv input: what the residual stream, the attention and the patch embeddings feed in
  all          both

each per tensor (what ONNX Runtime and XNNPACK do) and per channel (what neither does for activations; finer steps
where channel ranges differ, but every channel's range is learnt from 64 calibration images and held-out values
beyond it are clipped). Weights stay fp32, so the numbers are the cost of activation rounding alone. Two more kinds
of rows for `all` bound what any calibration could do: `per-image` gives every Conv input of every held-out image its
own exact min-max range (an oracle no static artifact can have: no clipping, no range wider than the image needs),
and `per-tensor, N bits` rounds to 2^N levels over the calibration ranges (10, 12 and 16 bits: how many bits of
activation the worst-image goals would need). It then lists the held-out images with the worst logit cosine under
`all` per tensor, with the fp32 logits' norm and top-2 margin (the median norm for comparison): a cosine goal on raw
logits is hardest where the fp32 model is unsure, because there the logit vector is short and any absolute error
turns it.

    .venv/bin/python benchmarks/int8_noise_study.py     # prints a table, writes benchmarks/results/
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from edgevit.config import ConvertConfig
from edgevit.models.factory import build_model, embedded_data
from edgevit.pipeline import plan
from edgevit.quantize.calibration import calibration_set, evaluation_set
from edgevit.rewrites import deploy
from edgevit.verify.metrics import compare

MODEL = "nextvit_photodigits"


def fake_quant(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, per_channel: bool, bits: int = 8) -> torch.Tensor:
    """Round ``x`` to 2^bits levels over [lo, hi] (widened to hold 0), per tensor or per channel (dim 1)."""
    if not per_channel:
        lo, hi = lo.min(), hi.max()
    levels = 2 ** bits - 1
    lo, hi = lo.clamp(max=0), hi.clamp(min=0)
    scale = ((hi - lo) / levels).clamp(min=1e-12)
    zero = torch.round(-lo / scale)
    if per_channel:
        scale, zero = scale.view(1, -1, 1, 1), zero.view(1, -1, 1, 1)
    return (torch.clamp(torch.round(x / scale) + zero, 0, levels) - zero) * scale


def fake_quant_per_image(x: torch.Tensor) -> torch.Tensor:
    """Round every image of ``x`` to 256 levels over its own exact range (widened to hold 0)."""
    return torch.stack([fake_quant(xi, xi.min().reshape(1), xi.max().reshape(1), False) for xi in x])


def conv_input_ranges(model, convs: dict, calib: torch.Tensor) -> dict:
    ranges = {}

    def observe(name):
        def hook(_m, inp):
            lo, hi = inp[0].amin(dim=(0, 2, 3)), inp[0].amax(dim=(0, 2, 3))
            old = ranges.get(name)
            ranges[name] = (lo, hi) if old is None else (torch.minimum(old[0], lo), torch.maximum(old[1], hi))
        return hook

    handles = [m.register_forward_pre_hook(observe(n)) for n, m in convs.items()]
    with torch.no_grad():
        model(calib)
    for h in handles:
        h.remove()
    return ranges


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", default="benchmarks/results/int8_noise_study.json")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    torch.set_num_threads(2)
    p = plan(ConvertConfig(model=MODEL, target="onnx", out="unused"))
    calib = torch.from_numpy(calibration_set(embedded_data(MODEL, "calib"), p.pre, 64).normalized.astype(np.float32))
    ev = evaluation_set(embedded_data(MODEL, "eval"), p.pre, p.labels, None)
    x = torch.from_numpy(ev.normalized.astype(np.float32))
    net = deploy(build_model(model=MODEL, weights=None, random_init=False), "onnx", img_size=(64, 64)).model.eval()
    with torch.no_grad():
        ref = net(x).numpy()
    convs = {n: m for n, m in net.named_modules() if isinstance(m, torch.nn.Conv2d)}
    after_relu = {n for n in convs if n in ("stem.1.conv", "stem.2.conv", "stem.3.conv")
                  or n.endswith("mhca.projection") or n.endswith("mlp.fc2")}
    groups = {"after-relu": after_relu, "residual": set(convs) - after_relu, "all": set(convs)}
    ranges = conv_input_ranges(net, convs, calib)
    spread = {n: float((hi - lo).max() / (hi - lo).median().clamp(min=1e-12)) for n, (lo, hi) in ranges.items()}

    rows, worst_out = [], None
    for group, names in groups.items():
        for per_channel in (False, True):
            handles = [convs[n].register_forward_pre_hook(
                lambda _m, inp, n=n, pc=per_channel: (fake_quant(inp[0], *ranges[n], pc),)) for n in names]
            with torch.no_grad():
                out = net(x).numpy()
            for h in handles:
                h.remove()
            m = compare("logits", ref, out, classification=True)
            rows.append({"convs": group, "count": len(names), "activations": "per-channel" if per_channel else
                         "per-tensor", "top1_agreement": m.top1_agreement, "cosine_min": m.cosine_min,
                         "cosine_mean": m.cosine_mean, "sqnr_db": m.sqnr_db})
            if group == "all" and not per_channel:
                worst_out = out
    bounds = [("per-image (oracle)", lambda n: lambda _m, inp: (fake_quant_per_image(inp[0]),))]
    bounds += [(f"per-tensor, {b} bits", lambda n, b=b: lambda _m, inp: (fake_quant(inp[0], *ranges[n], False, b),))
               for b in (10, 12, 16)]
    for label, hook in bounds:
        handles = [convs[n].register_forward_pre_hook(hook(n)) for n in groups["all"]]
        with torch.no_grad():
            out = net(x).numpy()
        for h in handles:
            h.remove()
        m = compare("logits", ref, out, classification=True)
        rows.append({"convs": "all", "count": len(convs), "activations": label, "top1_agreement": m.top1_agreement,
                     "cosine_min": m.cosine_min, "cosine_mean": m.cosine_mean, "sqnr_db": m.sqnr_db})
    norms = np.linalg.norm(ref, axis=1)
    cos = (ref * worst_out).sum(1) / np.maximum(norms * np.linalg.norm(worst_out, axis=1), 1e-30)
    top2 = np.sort(ref, axis=1)[:, -2:]
    worst = [{"image": f"{Path(ev.files[i]).parent.name}/{Path(ev.files[i]).name}",
              "cosine": float(cos[i]), "fp32_logit_norm": float(norms[i]),
              "fp32_top2_margin": float(top2[i, 1] - top2[i, 0])} for i in np.argsort(cos)[:5]]
    result = {"note": f"measured {time.strftime('%Y-%m-%d')} with `benchmarks/int8_noise_study.py`; PyTorch "
                      "fake-quant of Conv inputs only (weights fp32), no runtime",
              "model": MODEL, "images": len(x), "calibration_images": len(calib),
              "fp32_logit_norm_median": float(np.median(norms)),
              "fp32_logit_norm_p5": float(np.percentile(norms, 5)),
              "conv_input_channel_range_ratio_max": max(spread.values()), "rows": rows,
              "worst_images_all_per_tensor": worst}
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{MODEL}: {len(x)} held-out images, Conv inputs rounded to 8 bits (weights fp32)")
    print(f"  {'convs':<12} {'n':>4} {'activations':<20} {'top1 agree':>10} {'worst cos':>9} {'mean cos':>9} "
          f"{'SQNR dB':>8}")
    for r in rows:
        print(f"  {r['convs']:<12} {r['count']:>4} {r['activations']:<20} {r['top1_agreement']:>10.2%} "
              f"{r['cosine_min']:>9.4f} {r['cosine_mean']:>9.5f} {r['sqnr_db']:>8.1f}")
    print(f"  widest channel-range ratio of any Conv input (max / median channel): "
          f"{result['conv_input_channel_range_ratio_max']:.1f}")
    print(f"  fp32 logit norm: median {result['fp32_logit_norm_median']:.2f}, 5th percentile "
          f"{result['fp32_logit_norm_p5']:.2f}; worst images under all/per-tensor:")
    for w in worst:
        print(f"    {w['image']:<28} cosine {w['cosine']:.4f}  fp32 norm {w['fp32_logit_norm']:.2f}  top-2 margin "
              f"{w['fp32_top2_margin']:.3f}")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
