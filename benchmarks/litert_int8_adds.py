#!/usr/bin/env python
"""LiteRT int8 in three configurations: litert-torch's PT2E quantizer as it is (``int8_float_adds``: its "add"/"cat"
annotators match nothing on a non-strict export, so the residual adds and concatenations stay float, and the
attention scores q @ k^T are an int8 BATCH_MATMUL), with the adds and concatenations quantized
(``int8_int8_adds``: edgevit's ``_annotate_adds_and_cats``), and edgevit's default, which also keeps the attention
scores float (``int8_default``: ``_float_attention_scores``).

Next-ViT-S, deterministic random weights, LiteRT's deployed form, converted to fp32 and to the three int8 forms as
``edgevit convert --target litert`` does (PT2E, the I/O ops kept float, calibrated on 8 synthetic images: timing
does not depend on what they show), run in the LiteRT interpreter with XNNPACK, 2 threads, interleaved in rotating
order. Reports each graph's float ops (``graph_report``'s ``float_op_counts``: op types whose first input is float32,
beside the QUANTIZE and DEQUANTIZE counts), the ops outside XNNPACK, p50 latencies and round-by-round ratios
(median, 10-90%; a range that includes 1 is a tie), and each int8's cosine to the fp32 .tflite on the 8 images.
Then the accuracy of the three int8 forms on the trained reference models: ``edgevit convert --target litert
--precision int8`` of each (the real pipeline, with ``_pt2e_int8``'s options patched in), its manifest's accuracy
report on the shipped held-out images.

    .venv/bin/python benchmarks/litert_int8_adds.py                 # 224 and 384, 20 rounds, both reference models
    .venv/bin/python benchmarks/litert_int8_adds.py --sizes 224 --rounds 10 --references
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from edgevit.bench.timing import interleaved, paired_ratio, summarize
from edgevit.models import create_model, randomize_
from edgevit.rewrites import deploy

RESULTS = Path(__file__).resolve().parent / "results"
CONFIGS = {"int8_float_adds": {"quantize_adds": False, "float_scores": False},
           "int8_int8_adds": {"quantize_adds": True, "float_scores": False},
           "int8_default": {"quantize_adds": True, "float_scores": True}}


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def reference_accuracy(name: str) -> dict:
    """The accuracy report of ``edgevit convert --target litert --precision int8`` on ``name`` (its shipped
    calibration and held-out images), with the adds quantized (edgevit's default) and left float."""
    from unittest import mock

    import edgevit.targets.litert as lt
    from edgevit.config import ConvertConfig
    from edgevit.manifest import read_manifest
    from edgevit.pipeline import convert

    real, result = lt._pt2e_int8, {}
    for key, options in CONFIGS.items():
        with tempfile.TemporaryDirectory(prefix="edgevit-adds-ref-") as tmp, \
                mock.patch.object(lt, "_pt2e_int8", lambda *a, o=options, **k: real(*a, **k, **o)):
            done = convert(ConvertConfig(model=name, target="litert", precision="int8", out=f"{tmp}/o",
                                         keep_failed=True))
            acc = read_manifest(done.out_dir)["accuracy"]
        result[key] = {k: acc[k] for k in ("images", "top1_fp32", "top1_artifact", "accuracy_drop_points",
                                           "top1_agreement", "cosine_mean", "cosine_min", "sqnr_db") if k in acc}
        print(f"{name} {key}: top-1 {acc.get('top1_artifact')} (fp32 {acc.get('top1_fp32')}), agreement "
              f"{acc['top1_agreement']:.2%}, cosine mean {acc['cosine_mean']:.5f} min {acc['cosine_min']:.5f}",
              flush=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="*", type=int, default=[224, 384], help="none: accuracy only")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--references", nargs="*", default=["nextvit_digits", "nextvit_photodigits"],
                    help="reference models whose accuracy is measured (none: skip)")
    ap.add_argument("--json", default=str(RESULTS / "litert_int8_adds.json"))
    args = ap.parse_args()
    from edgevit.targets.litert.export import write_tflite
    from edgevit.targets.litert.graph import graph_report
    from edgevit.targets.litert.runtime import quiet as _quiet, interpreter_class

    net = randomize_(create_model("nextvit_small"), seed=0).eval()
    Interpreter = interpreter_class()
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgevit-adds-") as tmp:
        tmp = Path(tmp)
        for size in args.sizes:
            x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
            calib = np.random.default_rng(1).normal(size=(8, 3, size, size)).astype(np.float32)
            form = deploy(net, "litert", img_size=(size, size)).model.eval()
            runners, info, outs = {}, {}, {}
            for key in ("fp32", *CONFIGS):
                path = tmp / f"{key}_{size}.tflite"
                t0 = time.perf_counter()
                write_tflite(form, x, path, calibration=None if key == "fp32" else calib, **CONFIGS.get(key, {}))
                with _quiet():
                    it = Interpreter(model_path=str(path), num_threads=args.threads)
                    it.allocate_tensors()
                index, out_index = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
                got = []
                for img in calib:
                    it.set_tensor(index, img[None])
                    it.invoke()
                    got.append(it.get_tensor(out_index).copy())
                outs[key] = np.concatenate(got)
                rep = graph_report(path)
                info[key] = {"not_delegated": rep["not_delegated"], "xnnpack_partitions": rep["xnnpack_partitions"],
                             "ops": {**rep["float_op_counts"], "QUANTIZE": rep["op_counts"].get("QUANTIZE", 0),
                                     "DEQUANTIZE": rep["op_counts"].get("DEQUANTIZE", 0)}, "bytes": path.stat().st_size,
                             "build_s": round(time.perf_counter() - t0, 1)}

                def run(it=it, index=index, xn=x.numpy()):
                    it.set_tensor(index, xn)
                    it.invoke()

                runners[key] = run
                print(f"{size} {key}: {info[key]['ops']}; outside XNNPACK {rep['not_delegated']}, "
                      f"{rep['xnnpack_partitions']} partitions", flush=True)
            for key in CONFIGS:
                cos = cosine(outs["fp32"], outs[key])
                info[key]["cosine_to_fp32"] = {"mean": float(cos.mean()), "min": float(cos.min())}
            samples = interleaved(runners, warmup=3, rounds=args.rounds)
            stats = {k: summarize(v) for k, v in samples.items()}
            ratios = {**{f"int8 speed-up ({k})": paired_ratio(samples["fp32"], samples[k]) for k in CONFIGS},
                      "int8 float adds / int8 adds": paired_ratio(samples["int8_float_adds"],
                                                                  samples["int8_int8_adds"]),
                      "int8 int8 adds / default": paired_ratio(samples["int8_int8_adds"], samples["int8_default"])}
            rows.append({"size": size, "stats": stats, "ratios": ratios, "graphs": info})
            print(f"\nNext-ViT-S {size}x{size}, {args.threads} threads, {args.rounds} interleaved rounds")
            print(f"  {'variant':<16} {'p50 ms':>8} {'p90 ms':>8} {'MB':>6}  cosine to fp32 (mean/min)")
            for k, st in stats.items():
                c = info[k].get("cosine_to_fp32")
                cs = f"{c['mean']:.5f}/{c['min']:.5f}" if c else "-"
                print(f"  {k:<16} {st['p50_ms']:>8.2f} {st['p90_ms']:>8.2f} {info[k]['bytes'] / 1e6:>6.1f}  {cs}")
            for k, r in ratios.items():
                print(f"  {k:<32} {r['median']:.3f} [{r['p10']:.3f}-{r['p90']:.3f}] {r['verdict']}")
    accuracy = {name: reference_accuracy(name) for name in args.references}
    out = {"model": "nextvit_small (random init)", "threads": args.threads, "rounds": args.rounds, "rows": rows,
           "reference_accuracy": accuracy,
           "python": platform.python_version(), "torch": torch.__version__, "when": time.strftime("%Y-%m-%d %H:%M")}
    Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
