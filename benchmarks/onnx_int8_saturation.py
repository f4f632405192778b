"""ONNX Runtime int8 with 8-bit against 7-bit (``reduce_range``) weights, on this machine's CPU.

Without VNNI (AVX2-only x86 CPUs) onnxruntime multiplies uint8 activations by int8 weights with VPMADDUBSW, whose
int16 pair sums saturate; 7-bit weights cannot saturate. Converts both shipped reference models to ONNX int8 both
ways and records the accuracy report on their held-out images, with the CPU's name and its VNNI flags.

    .venv/bin/python benchmarks/onnx_int8_saturation.py [--json benchmarks/results/onnx_int8_saturation.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

KEYS = ("images", "top1_agreement", "near_ties", "cosine_mean", "cosine_min", "top1_fp32", "top1_artifact",
        "accuracy_drop_points")


def cpu() -> dict:
    info = Path("/proc/cpuinfo").read_text()
    name = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), "?")
    flags = set(next((ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), []))
    return {"model_name": name, "vnni": sorted(f for f in flags if "vnni" in f),
            "avx512f": "avx512f" in flags, "avx2": "avx2" in flags}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", default="benchmarks/results/onnx_int8_saturation.json")
    args = ap.parse_args(argv)
    from edgevit.config import ConvertConfig
    from edgevit.pipeline import convert
    from edgevit.quantize import onnx_quant

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in ("nextvit_digits", "nextvit_photodigits"):
            for reduce in (False, True):
                onnx_quant.REDUCE_RANGE = reduce
                r = convert(ConvertConfig(model=model, target="onnx", precision="int8", keep_failed=True,
                                          out=str(Path(tmp) / f"{model}_{reduce}")))
                acc = r.manifest["accuracy"]
                row = {"model": model, "weights": "7-bit (reduce_range)" if reduce else "8-bit",
                       "passed": r.parity_passed, **{k: acc.get(k) for k in KEYS}}
                rows.append(row)
                print(f"{model:<20} {row['weights']:<20} agreement {row['top1_agreement']:.2%} cosine mean "
                      f"{row['cosine_mean']:.5f} (min {row['cosine_min']:.5f}) top-1 {row['top1_fp32']:.2%} -> "
                      f"{row['top1_artifact']:.2%} {'PASS' if row['passed'] else 'FAIL'}", flush=True)
    out = {"cpu": cpu(), "date": time.strftime("%Y-%m-%d"), "rows": rows}
    Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
