#!/usr/bin/env python
"""int8 vs fp32 latency of Next-ViT-S (XNNPACK and ONNX Runtime) beside its fidelity on real photographs, and the
accuracy cost of every scheme on both trained reference models.

Latency: Next-ViT-S at 224, 2 threads, deployed fp32 vs int8 artifacts made by `edgevit convert`, timed with
`edgevit bench`'s method (interleaved rounds, ONNX Runtime spinning off, peak RSS in a fresh process per
artifact). Next-ViT-S has random weights here (no ImageNet download), calibrated on the shipped digit images;
its fidelity columns (worst-image cosine and top-1 agreement with fp32) are measured on seven of scikit-image's
photographs (astronaut, coffee, chelsea, rocket, hubble_deep_field, immunohistochemistry, retina).
Accuracy: every quantized scheme of the shipped, trained reference models on their held-out images:
`nextvit_digits` (shallow, 450 digit scans) and `nextvit_photodigits` (Next-ViT-S's 20 blocks, 450 digits
composited onto held-out photograph crops), with top-1 drop, agreement and worst-image cosine.

    .venv/bin/python benchmarks/quantization.py        # ~15 min; prints a table, writes benchmarks/results/
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

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")
REFERENCES = ("nextvit_digits", "nextvit_photodigits")
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
    ap.add_argument("--print-only", action="store_true", help="print the table of an existing --json file")
    args = ap.parse_args(argv)
    if args.print_only:
        print_table(json.loads(Path(args.json).read_text()))
        return 0
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    calib = embedded_data("nextvit_digits", "calib")
    results = {"model": args.model, "threads": args.threads, "rounds": args.rounds, "photos": list(PHOTOS)}
    with tempfile.TemporaryDirectory(prefix="edgevit-qbench-") as tmp:
        photos = write_photos(Path(tmp) / "photos")
        folders = {}
        for target, precision in (("executorch", "fp32"), ("executorch", "int8"), ("onnx", "fp32"),
                                  ("onnx", "int8")):
            log(f"converting {args.model} {target} {precision} ...")
            out = Path(tmp) / f"{target}_{precision}"
            r = convert(ConvertConfig(model=args.model, random_init=True, target=target, precision=precision,
                                      calib_dir=calib if precision == "int8" else None,
                                      calib_count=args.calib_count, eval_dir=photos, out=str(out),
                                      keep_failed=True))
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
                "photos_cosine_min": (manifest.get("accuracy") or {}).get("cosine_min"),
                "photos_top1_agreement": (manifest.get("accuracy") or {}).get("top1_agreement"),
                "accuracy_vs_fp32": manifest.get("accuracy")}
        results["latency"] = latency
        results["speedup"] = {
            "xnnpack_int8_vs_fp32": by[("executorch", "fp32")]["p50_ms"] / by[("executorch", "int8")]["p50_ms"],
            "ort_int8_vs_fp32": by[("onnx", "fp32")]["p50_ms"] / by[("onnx", "int8")]["p50_ms"]}
        results["size_ratio"] = {
            "executorch": by[("executorch", "int8")]["size_mb"] / by[("executorch", "fp32")]["size_mb"],
            "onnx": by[("onnx", "int8")]["size_mb"] / by[("onnx", "fp32")]["size_mb"]}
        accuracy = {}
        for ref in REFERENCES:
            for target, precision, kw in SCHEMES:
                log(f"reference model {ref} {target} {precision} ...")
                r = convert(ConvertConfig(model=ref, target=target, precision=precision,
                                          out=str(Path(tmp) / f"{ref}_{target}_{precision}"), keep_failed=True, **kw))
                a = r.manifest["accuracy"]
                row = {k: a.get(k) for k in ("images", "top1_fp32", "top1_artifact", "accuracy_drop_points",
                                             "top1_agreement", "sqnr_db", "cosine_mean", "cosine_min")}
                row["parity_passed"] = r.parity_passed
                row["size_mb"] = r.manifest["artifact_bytes"] / 1e6
                accuracy.setdefault(ref, {})[f"{target}/{precision}"] = row
        results["reference_accuracy"] = accuracy
    out = Path(args.json)  # written before the table is printed: a printing bug never loses a run
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    log(f"wrote {out}")
    print_table(results)
    return 0


def write_photos(folder: Path) -> str:
    """The seven scikit-image photographs as PNG files (scikit-image is in the dev extra)."""
    import numpy as np
    from PIL import Image
    from skimage import data

    folder.mkdir(parents=True)
    for name in PHOTOS:
        a = np.asarray(getattr(data, name)())[..., :3]
        Image.fromarray(a).save(folder / f"{name}.png")
    return str(folder)


def print_table(r: dict) -> None:
    print(f"\n{r['model']} 224x224, {r['threads']} threads, median of {r['rounds']} interleaved rounds (random "
          "weights, calibrated on the shipped digit images)")
    print(f"  {'artifact':<18} {'p50 ms':>8} {'p90 ms':>8} {'RSS MB':>8} {'size MB':>8} {'golden cos':>10} "
          f"{'photos worst cos':>16} {'photos top1 agree':>17}")
    for k, v in r["latency"].items():
        cos, agree = v.get("photos_cosine_min"), v.get("photos_top1_agreement")
        print(f"  {k:<18} {v['p50_ms']:>8.1f} {v['p90_ms']:>8.1f} {v['peak_rss_mb']:>8.0f} {v['size_mb']:>8.1f} "
              f"{v['golden_cosine']:>10.5f} {'-' if cos is None else format(cos, '.5f'):>16} "
              f"{'-' if agree is None else format(agree, '.2%'):>17}")
    s = r["speedup"]
    print(f"  int8 speed-up: XNNPACK {s['xnnpack_int8_vs_fp32']:.2f}x, ONNX Runtime {s['ort_int8_vs_fp32']:.2f}x; "
          f"int8/fp32 size: executorch {r['size_ratio']['executorch']:.2f}, onnx {r['size_ratio']['onnx']:.2f}")
    for ref, rows in r["reference_accuracy"].items():
        n = next(iter(rows.values()))["images"]
        print(f"\nreference model {ref} ({n} held-out images)")
        print(f"  {'scheme':<18} {'fp32 top1':>9} {'top1':>7} {'drop pts':>8} {'agree':>7} {'worst cos':>9} "
              f"{'SQNR dB':>8} parity")
        for k, v in rows.items():
            print(f"  {k:<18} {v['top1_fp32']:>9.2%} {v['top1_artifact']:>7.2%} {v['accuracy_drop_points']:>8.2f} "
                  f"{v['top1_agreement']:>7.2%} {v['cosine_min']:>9.5f} {v['sqnr_db']:>8.1f} "
                  f"{'pass' if v['parity_passed'] else 'FAIL'}")


if __name__ == "__main__":
    sys.exit(main())
