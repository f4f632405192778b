"""Top-1 near-ties on the shipped reference models and on Next-ViT-S random init (issue 31).

Converts each case with edgevit's default options and reports, per data set the conversion measured (the golden
pair, the accuracy report's evaluation images, ``--images``), the plain top-1 agreement, how many of the flips are
near-ties (reference margin within the tolerance row's error bound, ``edgevit.verify.metrics.top1_flips``) and
whether the artifact passed.

    .venv/bin/python benchmarks/near_ties.py [--skip-small] [--json benchmarks/results/near_ties.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

CASES = [  # (model, target, precision, extra options)
    ("nextvit_digits", "coreml", "fp16", {}),
    ("nextvit_digits", "onnx", "fp16", {}),
    ("nextvit_digits", "litert", "fp16", {}),
    ("nextvit_digits", "onnx", "int8", {}),
    ("nextvit_digits", "executorch", "int8", {}),
    ("nextvit_photodigits", "coreml", "fp16", {}),
    ("nextvit_photodigits", "onnx", "fp16", {}),
    ("nextvit_photodigits", "onnx", "int8", {}),
    ("nextvit_photodigits", "executorch", "int8", {}),
]
SMALL = [  # the headline command and an fp16 sibling, with the seven photographs as --images; int8 calibrated on them
    ("nextvit_small", "coreml", "fp16", {"random_init": True}),
    ("nextvit_small", "onnx", "fp16", {"random_init": True}),
    ("nextvit_small", "executorch", "int8", {"random_init": True}),
]


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def run_case(model, target, precision, extra, out: Path, photos: str | None) -> dict:
    from edgevit.config import ConvertConfig
    from edgevit.pipeline import convert

    opts = dict(extra)
    if photos and model == "nextvit_small":
        opts.update(images=photos)
        if precision == "int8":
            opts.update(calib_dir=photos, eval_dir=photos)
    t0 = time.perf_counter()
    res = convert(ConvertConfig(model=model, target=target, precision=precision, out=str(out), keep_failed=True,
                                **opts))
    m = res.manifest
    sets = {}
    for name, metrics in m["parity"]["sets"].items():
        x = metrics[0]
        sets[name] = {k: x.get(k) for k in ("samples", "top1_agreement", "near_ties", "top5_agreement",
                                             "max_rel", "cosine_min", "cosine_mean")}
    acc = m.get("accuracy") or {}
    if acc:
        sets["evaluation"] = {k: acc.get(k) for k in ("images", "top1_agreement", "near_ties", "top5_agreement",
                                                      "max_rel", "cosine_min", "cosine_mean")}
    return {"model": model, "target": target, "precision": precision, "passed": res.parity_passed,
            "failures": m["parity"]["failures"], "golden_top2_margin_rel": m["golden"].get("top2_margin_rel"),
            "sets": sets, "seconds": round(time.perf_counter() - t0, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skip-small", action="store_true", help="only the shipped reference models")
    ap.add_argument("--json", default="benchmarks/results/near_ties.json")
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        photos = None
        cases = list(CASES)
        if not args.skip_small:
            from quantization import write_photos

            photos = write_photos(Path(tmp) / "photos")
            cases += SMALL
        for i, (model, target, precision, extra) in enumerate(cases):
            r = run_case(model, target, precision, extra, Path(tmp) / f"c{i}", photos)
            rows.append(r)
            for name, s in r["sets"].items():
                n = s.get("samples") or s.get("images")
                agree = "-" if s["top1_agreement"] is None else f"{s['top1_agreement']:.2%}"
                print(f"{model:<20} {target:<10} {precision:<5} {name:<10} n={n:<4} top1 agree {agree:>8} "
                      f"near-ties {s['near_ties']}  {'PASS' if r['passed'] else 'FAIL'}", flush=True)
    out = {"cpu": cpu_model(), "date": time.strftime("%Y-%m-%d"), "cases": rows}
    Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
