#!/usr/bin/env python
"""How far fp32 itself is from the exact result, per stage: Next-ViT features (deterministic random weights) at a
given size, on edgevit's golden picture for that size, computed in float64 (the reference), in fp32 eager PyTorch
(original form), in fp32 eager PyTorch (ONNX's deployed form) and in ONNX Runtime fp32. Each column is the largest
absolute difference over the largest magnitude of the float64 result (the tolerance table's max_rel). When fp32 eager
is already far from float64, no fp32 artifact can be held to a tighter bound against an fp32 reference.

    .venv/bin/python benchmarks/fp32_conditioning.py --model nextvit_small --sizes 224 640
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from edgevit.models.factory import build_model
from edgevit.preprocess import Preprocess
from edgevit.rewrites import deploy
from edgevit.targets.base import IOSpec
from edgevit.targets.onnx.export import export_onnx
from edgevit.targets.onnx.runtime import make_session

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="nextvit_small")
    ap.add_argument("--sizes", nargs="+", type=int, default=[224, 640])
    ap.add_argument("--json", default=str(RESULTS / "fp32_conditioning.json"))
    args = ap.parse_args()
    from edgevit.pipeline import golden_pictures

    net = build_model(model=args.model, weights=None, random_init=True, features=True)
    rows, emhsa_std = [], {}
    for size in args.sizes:
        pre = Preprocess.for_size((size, size))  # what a conversion at this size uses by default
        pictures = golden_pictures(args.model, pre, 1)
        x = pre.normalize(np.stack([pre.raw(p) for p in pictures]))
        dep = deploy(net, "onnx", img_size=(size, size)).model
        xt = torch.from_numpy(x)
        from edgevit.models.nextvit import EMHSA

        stds = []  # how far from unit scale each E-MHSA's (BatchNorm-normalized) input is on this picture
        hooks = [m.register_forward_hook(lambda m, i, o: stds.append(float(i[0].std()))) for m in net.modules()
                 if isinstance(m, EMHSA)]
        with torch.no_grad():
            exact = [t.numpy() for t in build_model(model=args.model, weights=None, random_init=True,
                                                     features=True).double()(xt.double())]
            orig = [t.numpy() for t in net(xt)]
            deployed = [t.numpy() for t in dep(xt)]
        for h in hooks:
            h.remove()
        print(f"{args.model} {size}: E-MHSA input std per NTB (BatchNorm-normalized; ~1 when the weights are "
              f"normalized for the picture): {', '.join(f'{v:.2f}' for v in stds)}", flush=True)
        emhsa_std[str(size)] = stds
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "m.onnx"
            export_onnx(dep, xt, path, IOSpec(input_name="image", input_shape=tuple(x.shape),
                                               output_names=("stage1", "stage2", "stage3", "stage4")), opset=18)
            ort = make_session(path).run(None, {"image": x})
        for i in range(4):
            def rel(a):
                return float(np.abs(a - exact[i]).max() / np.abs(exact[i]).max())

            row = {"size": size, "stage": i + 1, "fp32_eager": rel(orig[i]), "fp32_deployed": rel(deployed[i]),
                   "onnxruntime_fp32": rel(ort[i]),
                   "ort_vs_fp32_eager": float(np.abs(ort[i] - orig[i]).max() / np.abs(orig[i]).max())}
            rows.append(row)
            print(f"{args.model} {size} stage{i + 1}: vs float64 eager {row['fp32_eager']:.2e}, deployed "
                  f"{row['fp32_deployed']:.2e}, onnxruntime {row['onnxruntime_fp32']:.2e}; onnxruntime vs fp32 "
                  f"eager (what parity measures) {row['ort_vs_fp32_eager']:.2e}", flush=True)
    Path(args.json).write_text(json.dumps({"model": args.model, "weights": "random init (seed 0)", "rows": rows,
                                           "emhsa_input_std": emhsa_std},
                                          indent=1) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
