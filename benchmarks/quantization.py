#!/usr/bin/env python
"""int8 vs fp32 latency of Next-ViT-S (XNNPACK and ONNX Runtime) and the accuracy cost of every scheme on the
trained reference model.

Latency: Next-ViT-S at 224, 2 threads, deployed fp32 vs int8 artifacts made by `edgevit convert`, timed with
`edgevit bench`'s method (interleaved rounds, ONNX Runtime spinning off, peak RSS in a fresh process per
artifact). Next-ViT-S has random weights here (no ImageNet download), calibrated on the shipped digit images.
Accuracy: every quantized scheme of the shipped, trained `nextvit_digits` on its 450 held-out images.

    .venv/bin/python benchmarks/quantization.py        # ~8 min; prints a table, writes benchmarks/results/
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import warnings
from pathlib import Path

from edgevit.bench.runner import bench
from edgevit.config import ConvertConfig
from edgevit.models.factory import embedded_data
from edgevit.pipeline import convert

SCHEMES = [("onnx", "int8", {}), ("onnx", "fp16", {}), ("ort", "int8", {}), ("executorch", "int8", {}),
           ("coreml", "fp16", {}), ("coreml", "int8", {"min_ios": 17}), ("coreml", "int8w", {}),
           ("coreml", "pal8", {}), ("coreml", "pal6", {})]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="nextvit_small")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--calib-count", type=int, default=64)
    ap.add_argument("--json", default="benchmarks/results/quantization.json")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    calib = embedded_data("nextvit_digits", "calib")
    results = {"model": args.model, "threads": args.threads, "rounds": args.rounds}
    with tempfile.TemporaryDirectory(prefix="edgevit-qbench-") as tmp:
        folders = {}
        for target, precision in (("executorch", "fp32"), ("executorch", "int8"), ("onnx", "fp32"),
                                  ("onnx", "int8")):
            log(f"converting {args.model} {target} {precision} ...")
            out = Path(tmp) / f"{target}_{precision}"
            r = convert(ConvertConfig(model=args.model, random_init=True, target=target, precision=precision,
                                      calib_dir=calib if precision == "int8" else None,
                                      calib_count=args.calib_count, out=str(out), keep_failed=True))
            folders[(target, precision)] = (str(out), r.manifest)
        log("timing (interleaved) ...")
        rows = bench([f for f, _ in folders.values()], threads=args.threads, warmup=3, runs=args.rounds)
        by = {(r["target"], r["precision"]): r for r in rows}
        latency = {}
        for (target, precision), (folder, manifest) in folders.items():
            r = by[(target, precision)]
            latency[f"{target}/{precision}"] = {
                "p50_ms": r["p50_ms"], "p90_ms": r["p90_ms"], "peak_rss_mb": r["peak_rss_mb"],
                "size_mb": r["size_mb"], "parity_passed": manifest["parity"]["passed"],
                "golden_cosine": manifest["parity"]["sets"]["golden"][0]["cosine_min"],
                "accuracy_vs_fp32": manifest.get("accuracy")}
        results["latency"] = latency
        results["speedup"] = {
            "xnnpack_int8_vs_fp32": by[("executorch", "fp32")]["p50_ms"] / by[("executorch", "int8")]["p50_ms"],
            "ort_int8_vs_fp32": by[("onnx", "fp32")]["p50_ms"] / by[("onnx", "int8")]["p50_ms"]}
        results["size_ratio"] = {
            "executorch": by[("executorch", "int8")]["size_mb"] / by[("executorch", "fp32")]["size_mb"],
            "onnx": by[("onnx", "int8")]["size_mb"] / by[("onnx", "fp32")]["size_mb"]}
        accuracy = {}
        for target, precision, kw in SCHEMES:
            log(f"reference model nextvit_digits {target} {precision} ...")
            r = convert(ConvertConfig(model="nextvit_digits", target=target, precision=precision,
                                      out=str(Path(tmp) / f"digits_{target}_{precision}"), keep_failed=True, **kw))
            a = r.manifest["accuracy"]
            accuracy[f"{target}/{precision}"] = {k: a.get(k) for k in (
                "top1_fp32", "top1_artifact", "accuracy_drop_points", "top1_agreement", "sqnr_db", "cosine_mean")}
            accuracy[f"{target}/{precision}"]["parity_passed"] = r.parity_passed
            accuracy[f"{target}/{precision}"]["size_mb"] = r.manifest["artifact_bytes"] / 1e6
        results["reference_accuracy"] = accuracy
    print_table(results)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    log(f"wrote {out}")
    return 0


def print_table(r: dict) -> None:
    print(f"\n{r['model']} 224x224, {r['threads']} threads, median of {r['rounds']} interleaved rounds (random "
          "weights, calibrated on the shipped digit images)")
    print(f"  {'artifact':<18} {'p50 ms':>8} {'p90 ms':>8} {'RSS MB':>8} {'size MB':>8}  golden cosine")
    for k, v in r["latency"].items():
        print(f"  {k:<18} {v['p50_ms']:>8.1f} {v['p90_ms']:>8.1f} {v['peak_rss_mb']:>8.0f} {v['size_mb']:>8.1f}  "
              f"{v['golden_cosine']:.5f}")
    s = r["speedup"]
    print(f"  int8 speed-up: XNNPACK {s['xnnpack_int8_vs_fp32']:.2f}x, ONNX Runtime {s['ort_int8_vs_fp32']:.2f}x; "
          f"int8/fp32 size: executorch {r['size_ratio']['executorch']:.2f}, onnx {r['size_ratio']['onnx']:.2f}")
    print("\nreference model nextvit_digits (450 held-out real digit images)")
    print(f"  {'scheme':<18} {'fp32 top1':>9} {'top1':>7} {'drop pts':>8} {'agree':>7} {'SQNR dB':>8}")
    for k, v in r["reference_accuracy"].items():
        print(f"  {k:<18} {v['top1_fp32']:>9.2%} {v['top1_artifact']:>7.2%} {v['accuracy_drop_points']:>8.2f} "
              f"{v['top1_agreement']:>7.2%} {v['sqnr_db']:>8.1f}")


if __name__ == "__main__":
    sys.exit(main())
