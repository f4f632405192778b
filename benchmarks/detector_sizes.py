#!/usr/bin/env python
"""The example detector (examples/detector: Next-ViT-S features -> FPN -> anchor-free head, six outputs) converted at
detection sizes on each target, then re-verified from its folder: parity of every output against PyTorch (the fp32
row of the tolerance table), the worst max_rel over the six outputs, conversion and verification time, file size.

    .venv/bin/python benchmarks/detector_sizes.py                                   # 640 and 800x1344, 4 targets
    .venv/bin/python benchmarks/detector_sizes.py --sizes 640 --targets onnx,executorch

Random weights (edgevit's deterministic init for the backbone, the example's own init for the rest): the numbers
say whether the conversion is exact at these sizes, not how well anything detects. Writes
benchmarks/results/detector_sizes.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path

from edgevit.config import ConvertConfig, parse_img_size
from edgevit.pipeline import convert
from edgevit.verify import verify_dir

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "detector" / "detector.py"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="nextvit_small")
    ap.add_argument("--sizes", default="640,800x1344")
    ap.add_argument("--targets", default="onnx,ort,executorch,coreml")
    ap.add_argument("--json", default="benchmarks/results/detector_sizes.json")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgevit-det-") as tmp:
        for text in args.sizes.split(","):
            h, w = parse_img_size(text)
            for target in args.targets.split(","):
                out = Path(tmp) / f"{target}_{h}x{w}"
                t0 = time.perf_counter()
                r = convert(ConvertConfig(model=args.model, module=f"{EXAMPLE}:build", random_init=True,
                                          img_size=f"{h}x{w}", target=target, precision="fp32", out=str(out),
                                          keep_failed=True))
                t_convert = time.perf_counter() - t0
                t0 = time.perf_counter()
                report = verify_dir(r.out_dir)
                t_verify = time.perf_counter() - t0
                golden = report.to_dict()["sets"]["golden"]
                row = {"size": f"{h}x{w}", "target": target, "convert_parity": r.parity_passed,
                       "verify_passed": report.passed, "runtime": report.runtime,
                       "max_rel_worst": max(m["max_rel"] for m in golden),
                       "cosine_worst": min(m["cosine_min"] for m in golden),
                       "worst_output": max(golden, key=lambda m: m["max_rel"])["name"],
                       "max_rel_limit": report.tolerance.max_rel, "convert_s": round(t_convert, 1),
                       "verify_s": round(t_verify, 1),
                       "bytes": sum(f.stat().st_size for f in Path(r.out_dir).rglob("*") if f.is_file())}
                rows.append(row)
                print(f"{row['size']:>9} {target:<11} parity {'PASS' if row['convert_parity'] else 'FAIL'} / verify "
                      f"{'PASS' if row['verify_passed'] else 'FAIL'}  worst max_rel {row['max_rel_worst']:.2e} "
                      f"({row['worst_output']}; limit {row['max_rel_limit']:g})  cosine {row['cosine_worst']:.8f}  "
                      f"convert {row['convert_s']:.0f}s verify {row['verify_s']:.0f}s  "
                      f"{row['bytes'] / 1e6:.0f} MB", flush=True)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"model": args.model, "module": "examples/detector/detector.py:build",
                               "weights": "random init (backbone seed 0)",
                               "command": "benchmarks/detector_sizes.py " + " ".join(argv or sys.argv[1:]),
                               "rows": rows}, indent=1) + "\n")
    print(f"wrote {out}")
    return 0 if all(r["convert_parity"] and r["verify_passed"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
