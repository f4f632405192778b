#!/usr/bin/env python
"""Where LiteRT's int8 speed-up comes from, unit by unit: each Next-ViT-S unit (the stem, every NCB and NTB) of
LiteRT's deployed form, cut out at its own input shape for a given image size, converted alone to fp32 and to int8
(PT2E with litert-torch's quantizer plus edgevit's add/cat annotation, calibrated on the unit's real input from 4
random images; I/O int8 as the converter folds it, so the times exclude the model's float I/O ops), run in the LiteRT
interpreter with XNNPACK, 2 threads, all units' fp32 and int8 interleaved in the same rounds. Prints per unit the fp32
and int8 p50, the int8 speed-up (median of per-round ratios, 10-90%) and its share of the summed fp32/int8 time, and
the ops left outside XNNPACK. Random weights: timing does not depend on the values.

    .venv/bin/python benchmarks/litert_int8_blocks.py --size 384
    .venv/bin/python benchmarks/litert_int8_blocks.py --size 384 --units stages.1.blocks.3,stages.3.blocks.2
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
from edgevit.verify.drift import units_of

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=384)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--units", default="", help="only these units (comma-separated module paths)")
    ap.add_argument("--json", default=None, help="default benchmarks/results/litert_int8_blocks_<size>.json")
    args = ap.parse_args()
    from edgevit.targets.litert.export import write_tflite
    from edgevit.targets.litert.graph import graph_report
    from edgevit.targets.litert.runtime import quiet as _quiet, interpreter_class

    net = randomize_(create_model("nextvit_small"), seed=0).eval()
    form = deploy(net, "litert", img_size=(args.size, args.size)).model.eval()
    modules = dict(form.named_modules())
    units = [u for u, _, _ in units_of(form) if not args.units or u in args.units.split(",")]
    inputs: dict[str, torch.Tensor] = {}
    hooks = [modules[u].register_forward_pre_hook(lambda _m, a, u=u: inputs.__setitem__(u, a[0].detach().clone()))
             for u in units]
    with torch.no_grad():
        form(torch.randn(4, 3, args.size, args.size, generator=torch.Generator().manual_seed(0)))
    for h in hooks:
        h.remove()
    Interpreter = interpreter_class()
    runners, info = {}, {}
    with tempfile.TemporaryDirectory(prefix="edgevit-blocks-") as tmp:
        for u in units:
            mod, x_all = modules[u].eval(), inputs[u]
            x = x_all[:1]
            for precision in ("fp32", "int8"):
                path = Path(tmp) / f"{u}_{precision}.tflite"
                write_tflite(mod, x, path, calibration=None if precision == "fp32" else x_all.numpy(), keep_float=())
                with _quiet():
                    it = Interpreter(model_path=str(path), num_threads=args.threads)
                    it.allocate_tensors()
                d = it.get_input_details()[0]
                feed = np.zeros(d["shape"], d["dtype"])

                def run(it=it, index=d["index"], feed=feed):
                    it.set_tensor(index, feed)
                    it.invoke()

                runners[f"{u}|{precision}"] = run
                rep = graph_report(path)
                info[f"{u}|{precision}"] = {"not_delegated": rep["not_delegated"],
                                            "float_op_counts": rep["float_op_counts"] if precision == "int8" else None}
            print(f"  converted {u} {tuple(x.shape)}", flush=True)
        samples = interleaved(runners, warmup=2, rounds=args.rounds)
    stats = {k: summarize(v) for k, v in samples.items()}
    total = {p: sum(stats[f"{u}|{p}"]["p50_ms"] for u in units) for p in ("fp32", "int8")}
    rows = []
    print(f"\nNext-ViT-S units at {args.size}x{args.size}, LiteRT + XNNPACK, {args.threads} threads, {args.rounds} "
          "interleaved rounds")
    print(f"  {'unit':<20} {'fp32 ms':>8} {'int8 ms':>8} {'speed-up (10-90%)':>22} {'fp32 %':>7} {'int8 %':>7}  "
          "int8 outside XNNPACK")
    for u in units:
        f, i = stats[f"{u}|fp32"], stats[f"{u}|int8"]
        r = paired_ratio(samples[f"{u}|fp32"], samples[f"{u}|int8"])
        rows.append({"unit": u, "fp32": f, "int8": i, "speed_up": r, **info[f"{u}|int8"]})
        print(f"  {u:<20} {f['p50_ms']:>8.2f} {i['p50_ms']:>8.2f} {r['median']:>7.2f} ({r['p10']:.2f}-{r['p90']:.2f})"
              f"{'':>5} {100 * f['p50_ms'] / total['fp32']:>6.1f}% {100 * i['p50_ms'] / total['int8']:>6.1f}%  "
              f"{info[f'{u}|int8']['not_delegated'] or '-'}")
    print(f"  {'sum':<20} {total['fp32']:>8.2f} {total['int8']:>8.2f} {total['fp32'] / total['int8']:>7.2f}")
    out = {"model": "nextvit_small (random init), LiteRT deployed form",
           "configuration": "edgevit's default int8 (_pt2e_int8 defaults)", "size": args.size, "threads": args.threads,
           "rounds": args.rounds, "units": rows, "sum_p50_ms": total, "python": platform.python_version(),
           "torch": torch.__version__, "when": time.strftime("%Y-%m-%d %H:%M")}
    path = Path(args.json or RESULTS / f"litert_int8_blocks_{args.size}.json")
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
