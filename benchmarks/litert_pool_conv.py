#!/usr/bin/env python
"""LiteRT: window means as average pools vs as depthwise convolutions (the `pools_as_depthwise_conv` pass).

Next-ViT-S, deterministic random weights, LiteRT's deployed form with and without the pass, each converted to fp32
and to int8 exactly as `edgevit convert --target litert` does (PT2E with litert-torch's quantizer, I/O ops float;
calibrated on 8 synthetic images: timing does not depend on what they show), run in the LiteRT interpreter with
XNNPACK, 2 threads, interleaved in rotating order over the rounds. Reports the ops left outside XNNPACK, the
fp32 outputs' largest difference between the two forms, p50 latencies, and round-by-round ratios (median, 10-90%;
a ratio whose range includes 1 is a tie), including int8's speed-up over fp32 of each form (issue 11's goal: >= 2.5x).

    .venv/bin/python benchmarks/litert_pool_conv.py                 # 224 and 384, 20 rounds
    .venv/bin/python benchmarks/litert_pool_conv.py --sizes 224 --rounds 10
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
from edgevit.rewrites import FORMS, deploy

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", type=int, default=[224, 384])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=str(RESULTS / "litert_pool_conv.json"))
    args = ap.parse_args()
    from edgevit.targets.litert.export import write_tflite
    from edgevit.targets.litert.graph import graph_report
    from edgevit.targets.litert.runtime import quiet as _quiet, interpreter_class

    passes = tuple(p for p in FORMS["litert"][0] if p != "pools_as_depthwise_conv")
    variants = {"pool": passes, "conv": passes + ("pools_as_depthwise_conv",)}
    net = randomize_(create_model("nextvit_small"), seed=0).eval()
    Interpreter = interpreter_class()
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgevit-poolconv-") as tmp:
        tmp = Path(tmp)
        for size in args.sizes:
            x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
            calib = np.random.default_rng(1).normal(size=(8, 3, size, size)).astype(np.float32)
            runners, info, outs = {}, {}, {}
            for name, ps in variants.items():
                form = deploy(net, "litert", passes=ps, img_size=(size, size)).model.eval()
                for precision in ("fp32", "int8"):
                    path = tmp / f"{name}_{precision}_{size}.tflite"
                    t0 = time.perf_counter()
                    write_tflite(form, x, path, calibration=None if precision == "fp32" else calib)
                    with _quiet():
                        it = Interpreter(model_path=str(path), num_threads=args.threads)
                        it.allocate_tensors()
                    index = it.get_input_details()[0]["index"]
                    it.set_tensor(index, x.numpy())
                    it.invoke()
                    key = f"{precision}_{name}"
                    outs[key] = it.get_tensor(it.get_output_details()[0]["index"]).copy()
                    rep = graph_report(path)
                    info[key] = {"not_delegated": rep["not_delegated"], "xnnpack_partitions": rep["xnnpack_partitions"],
                                 "bytes": path.stat().st_size, "build_s": round(time.perf_counter() - t0, 1)}

                    def run(it=it, index=index, xn=x.numpy()):
                        it.set_tensor(index, xn)
                        it.invoke()

                    runners[key] = run
                    print(f"{size} {key}: outside XNNPACK {rep['not_delegated']}, {rep['xnnpack_partitions']} "
                          "partitions", flush=True)
            samples = interleaved(runners, warmup=3, rounds=args.rounds)
            stats = {k: summarize(v) for k, v in samples.items()}
            ratios = {"fp32 pool/conv": paired_ratio(samples["fp32_pool"], samples["fp32_conv"]),
                      "int8 pool/conv": paired_ratio(samples["int8_pool"], samples["int8_conv"]),
                      "int8 speed-up (pool)": paired_ratio(samples["fp32_pool"], samples["int8_pool"]),
                      "int8 speed-up (conv)": paired_ratio(samples["fp32_conv"], samples["int8_conv"])}
            fp32_gap = float(np.abs(outs["fp32_pool"] - outs["fp32_conv"]).max())
            rows.append({"size": size, "stats": stats, "ratios": ratios, "graphs": info,
                         "fp32_max_abs_difference_between_forms": fp32_gap})
            print(f"\nNext-ViT-S {size}x{size}, {args.threads} threads, {args.rounds} interleaved rounds; fp32 outputs "
                  f"of the two forms differ by at most {fp32_gap:g}")
            print(f"  {'variant':<12} {'p50 ms':>8} {'p90 ms':>8}  outside XNNPACK")
            for k, st in stats.items():
                print(f"  {k:<12} {st['p50_ms']:>8.2f} {st['p90_ms']:>8.2f}  {info[k]['not_delegated'] or '-'}")
            for k, r in ratios.items():
                print(f"  {k:<22} {r['median']:.3f} [{r['p10']:.3f}-{r['p90']:.3f}] {r['verdict']}")
    out = {"model": "nextvit_small (random init)", "threads": args.threads, "rounds": args.rounds, "rows": rows,
           "python": platform.python_version(), "torch": torch.__version__, "when": time.strftime("%Y-%m-%d %H:%M")}
    Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
