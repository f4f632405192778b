#!/usr/bin/env python
"""Where the time goes, original vs deployed Next-ViT, on ONNX Runtime, ExecuTorch XNNPACK and LiteRT (XNNPACK).

Every variant is timed in the same rounds (interleaved, rotating order), median of >= 15 rounds after warm-up,
2 threads, ONNX Runtime spinning off, ExecuTorch's thread pool sized to the same threads. Alternative exact forms
are timed too and compared round by round with the chosen one (the ratio's median and 10-90% range): a form is
"faster" only when that whole range is on one side of 1, otherwise the forms tie and FORMS says why the chosen one
wins on other grounds. The roofline fraction is 2 x MACs / latency against the best fp32 GEMM rate measured in the
same run (Next-ViT's own GEMM shapes included) and against the CPU's theoretical ceiling.

    .venv/bin/python benchmarks/rewrites.py                      # Next-ViT-S at 224 and 384 (~6 min)
    .venv/bin/python benchmarks/rewrites.py --sizes 224 --rounds 15 --json out.json

LiteRT (when the `litert` extra is installed): every form converted with litert-torch and run in the LiteRT
interpreter (XNNPACK, same threads), plus the chosen form in int8 (PT2E, calibrated on 8 synthetic images: the
timing and the size do not depend on what the calibration images show). Its goals are printed under the table:
deployed fp32 within 1.10x of the fastest other deployed CPU runtime, int8 >= 2.5x faster than its fp32, int8 file
<= 0.3x the fp32 file.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from edgevit.bench.peak import gemm_runners, gflops, theoretical_peak
from edgevit.bench.timing import interleaved, paired_ratio, summarize
from edgevit.models import create_model, randomize_
from edgevit.models.complexity import count_macs
from edgevit.rewrites import FORMS, deploy
from edgevit.targets.base import IOSpec
from edgevit.targets.executorch.export import delegation_report
from edgevit.targets.executorch.runtime import set_threads
from edgevit.targets.onnx.export import export_onnx
from edgevit.targets.onnx.runtime import make_session

ALT_FORMS = {
    "kq": ("fold_conv_bn", "merge_pre_bn", "bchw_attention_kq", "delegate_friendly_ops"),
    "qk": ("fold_conv_bn", "merge_pre_bn", "bchw_attention_qk", "delegate_friendly_ops"),
    "tok": ("fold_conv_bn", "merge_pre_bn", "delegate_friendly_ops"),
    # LiteRT's form: window means as depthwise convolutions (benchmarks/litert_pool_conv.py times it vs "tok")
    "tok_dw": ("fold_conv_bn", "merge_pre_bn", "delegate_friendly_ops", "pools_as_depthwise_conv"),
}
CHOSEN = {"ort": FORMS["onnx"][0], "et": FORMS["executorch"][0], "lite": FORMS["litert"][0]}


def litert_runners(forms: dict, x: torch.Tensor, size, threads: int, tmp: Path, log, *, int8: bool = True,
                   chosen: str | None = None):
    """LiteRT interpreter runners for each form (fp32) and, with ``int8``, for the ``chosen`` form (default: the one
    ``FORMS["litert"]`` names) in int8; {} without the extra."""
    try:
        import litert_torch

        from edgevit.targets.litert.graph import graph_report
        from edgevit.targets.litert.quantize import io_modules as _io_modules, pt2e_int8 as _pt2e_int8
        from edgevit.targets.litert.runtime import quiet as _quiet, interpreter_class
    except ImportError:
        log("  LiteRT rows skipped: pip install 'edgevit[litert]'")
        return {}, {}
    from litert_torch.quantize.quant_config import QuantConfig

    Interpreter = interpreter_class()
    xn = x.numpy()
    runners, info = {}, {}

    def runner(path: Path):
        with _quiet():
            it = Interpreter(model_path=str(path), num_threads=threads)
            it.allocate_tensors()
        index = it.get_input_details()[0]["index"]

        def run(it=it):
            it.set_tensor(index, xn)
            it.invoke()
        return run

    chosen = chosen or form_name(CHOSEN["lite"])
    for name, net in forms.items():
        path = tmp / f"lite_{name}_{size[0]}.tflite"
        t0 = time.perf_counter()
        try:
            with _quiet():
                litert_torch.convert(net, (x,)).export(str(path))
        except Exception as e:  # noqa: BLE001 - a form the converter rejects is reported, not timed
            info[f"lite_{name}"] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
            log(f"  LiteRT {name}: conversion failed ({info[f'lite_{name}']['error']})")
            continue
        runners[f"lite_{name}"] = runner(path)
        rep = graph_report(path)
        info[f"lite_{name}"] = {"bytes": path.stat().st_size, "transposes": rep["transposes"],
                                "xnnpack_partitions": rep["xnnpack_partitions"]}
        if int8 and name == chosen:
            calib = np.random.default_rng(1).normal(size=(8, 3, *size)).astype(np.float32)
            q = tmp / f"lite_int8_{size[0]}.tflite"
            with _quiet():
                converted, quantizer, _ = _pt2e_int8(net, x, calib, _io_modules(net, x))
                litert_torch.convert(converted, (x,), quant_config=QuantConfig(pt2e_quantizer=quantizer)).export(str(q))
            runners["lite_int8"] = runner(q)
            rep = graph_report(q)
            info["lite_int8"] = {"bytes": q.stat().st_size, "transposes": rep["transposes"],
                                 "xnnpack_partitions": rep["xnnpack_partitions"]}
        log(f"  built LiteRT {name} at {size[0]}x{size[1]} in {time.perf_counter() - t0:.0f}s")
    return runners, info


def form_name(passes) -> str:
    return next(k for k, v in ALT_FORMS.items() if tuple(v) == tuple(passes))


def executorch_runner(net, x: torch.Tensor, threads: int, pte: Path):
    """(a no-argument runner of ``net`` lowered to XNNPACK and loaded from ``pte``, its delegation summary)."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    from edgevit.targets.executorch.runtime import executorch_runtime

    edge = to_edge_transform_and_lower(torch.export.export(net, (x,), strict=False), partitioner=[XnnpackPartitioner()])
    rep = delegation_report(edge)
    pte.write_bytes(edge.to_executorch().buffer)
    method = executorch_runtime(threads).load_program(str(pte)).load_method("forward")
    return (lambda: method.execute([x])), {"subgraphs": rep["delegated_subgraphs"], "portable": rep["portable_operators"]}


def build_runners(model, size, threads, tmp: Path, log, with_litert: bool = True):
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(1, 3, *size)).astype(np.float32))
    xn = x.numpy()
    runners, info = {}, {}
    torch.set_num_threads(threads)
    runners["eager_original"] = lambda: model(x)
    forms = {"original": model}
    for name, passes in ALT_FORMS.items():
        forms[name] = deploy(model, passes=passes, img_size=size).model
    for name, net in forms.items():
        label = "original" if name == "original" else name
        if name == "tok_dw":  # LiteRT's form only
            continue
        t0 = time.perf_counter()
        onnx_path = tmp / f"{label}_{size[0]}.onnx"
        export_onnx(net, x, onnx_path, IOSpec(input_name="image", input_shape=tuple(x.shape),
                                              output_names=("logits",)), opset=18)
        sess = make_session(onnx_path, threads=threads)
        runners[f"ort_{label}"] = lambda sess=sess: sess.run(None, {"image": xn})
        if name in ("original", "tok", "qk"):  # kq's softmax over keys falls outside XNNPACK: not a candidate
            runners[f"et_{label}"], info[f"et_{label}"] = executorch_runner(net, x, threads,
                                                                            tmp / f"{label}_{size[0]}.pte")
        log(f"  built {label} at {size[0]}x{size[1]} in {time.perf_counter() - t0:.0f}s")
    lite, lite_info = litert_runners(forms, x, size, threads, tmp, log) if with_litert else ({}, {})
    runners.update(lite)
    info.update(lite_info)
    return runners, info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="nextvit_small")
    ap.add_argument("--sizes", default="224,384")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--json", default="benchmarks/results/rewrites.json")
    ap.add_argument("--no-litert", action="store_true", help="leave LiteRT out (its int8 conversion takes minutes)")
    ap.add_argument("--print-only", action="store_true", help="re-print the table of an existing --json, no timing")
    args = ap.parse_args(argv)
    if args.print_only:
        print_table(json.loads(Path(args.json).read_text()))
        return 0
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    set_threads(args.threads)
    model = randomize_(create_model(args.model))
    results = {"model": args.model, "threads": args.threads, "rounds": args.rounds, "warmup": args.warmup,
               "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
               "chosen_forms": {"onnxruntime": form_name(CHOSEN["ort"]), "executorch": form_name(CHOSEN["et"]),
                                "litert": form_name(CHOSEN["lite"])},
               "sizes": {}}
    with torch.no_grad(), tempfile.TemporaryDirectory(prefix="edgevit-bench-") as tmp:
        for s in [int(v) for v in args.sizes.split(",")]:
            size = (s, s)
            log(f"building variants at {s}x{s} ...")
            runners, info = build_runners(model, size, args.threads, Path(tmp), log, not args.no_litert)
            gemms = gemm_runners(args.threads)
            all_runners = dict(runners)
            all_runners.update({k: fn for k, (fn, _) in gemms.items()})
            log(f"timing {len(all_runners)} variants, {args.rounds} interleaved rounds ...")
            samples = interleaved(all_runners, warmup=args.warmup, rounds=args.rounds)
            peak = max(gflops(f, float(np.median(samples[k]))) for k, (_, f) in gemms.items())
            ceiling = theoretical_peak(args.threads, "fp32")
            macs = count_macs(model, size)
            rows = {}
            for k in runners:
                st = summarize(samples[k])
                st["roofline_fraction"] = gflops(2.0 * macs, st["p50_ms"] / 1000) / peak
                st["theoretical_fraction"] = gflops(2.0 * macs, st["p50_ms"] / 1000) / ceiling["gflops"] \
                    if ceiling else None
                st.update(info.get(k, {}))
                rows[k] = st
            choices = {}
            for rt, prefix in (("onnxruntime", "ort"), ("executorch", "et"), ("litert", "lite")):
                chosen = f"{prefix}_{results['chosen_forms'][rt]}"
                if chosen not in runners:
                    continue
                for k in runners:
                    if k.startswith(prefix + "_") and k not in (chosen, f"{prefix}_original", f"{prefix}_int8"):
                        choices[f"{chosen} vs {k}"] = paired_ratio(samples[chosen], samples[k])
            results["sizes"][str(s)] = {
                "macs": macs, "gemm_peak_gflops": peak, "theoretical_peak": ceiling,
                "chosen_vs_alternatives": choices,
                "gemm_gflops": {k: gflops(f, float(np.median(samples[k]))) for k, (_, f) in gemms.items()},
                "variants": rows,
                "ratios": {
                    "et_deployed_vs_original": rows["et_original"]["p50_ms"] / rows[f"et_{results['chosen_forms']['executorch']}"]["p50_ms"],
                    "ort_deployed_vs_original": rows["ort_original"]["p50_ms"] / rows[f"ort_{results['chosen_forms']['onnxruntime']}"]["p50_ms"],
                    "et_deployed_vs_ort_deployed": rows[f"ort_{results['chosen_forms']['onnxruntime']}"]["p50_ms"] / rows[f"et_{results['chosen_forms']['executorch']}"]["p50_ms"],
                },
            }
            lite = f"lite_{results['chosen_forms']['litert']}"
            if lite in rows and "lite_int8" in rows:
                others = {f"{p}_deployed": samples[f"{p}_{results['chosen_forms'][rt]}"]
                          for rt, p in (("onnxruntime", "ort"), ("executorch", "et"))}
                fastest = min(others, key=lambda k: float(np.median(others[k])))
                results["sizes"][str(s)]["litert_goals"] = {
                    "fastest_other": fastest,
                    "fp32_vs_fastest_other": paired_ratio(samples[lite], others[fastest]),
                    "fp32_vs_int8": paired_ratio(samples[lite], samples["lite_int8"]),
                    "int8_size_vs_fp32": info["lite_int8"]["bytes"] / info[lite]["bytes"],
                    "deployed_vs_original": paired_ratio(samples["lite_original"], samples[lite])
                    if "lite_original" in rows else None}
    print_table(results)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    log(f"wrote {out}")
    return 0


def print_table(results: dict) -> None:
    chosen = results["chosen_forms"]
    for s, r in results["sizes"].items():
        print(f"\n{results['model']} {s}x{s}, {results['threads']} threads, median of {results['rounds']} "
              f"interleaved rounds; GEMM peak {r['gemm_peak_gflops']:.0f} GFLOP/s "
              f"(best of {len(r['gemm_gflops'])} runtime x shape GEMMs); {r['macs'] / 1e9:.2f} GMACs")
        print(f"  {'variant':<16} {'p50 ms':>8} {'p90 ms':>8} {'min ms':>8} {'roofline':>9} {'GEMM':>8}  note")
        for k, v in r["variants"].items():
            note = ""
            if k in (f"ort_{chosen['onnxruntime']}", f"et_{chosen['executorch']}", f"lite_{chosen.get('litert')}"):
                note = "<- deployed (chosen form)"
            if "subgraphs" in v:
                note += f" [{v['subgraphs']} XNNPACK subgraphs, portable: {v['portable'] or 'none'}]"
            if "transposes" in v:
                note += f" [{v['transposes']} TRANSPOSE, {v['xnnpack_partitions']} XNNPACK partitions, " \
                        f"{v['bytes'] / 1e6:.1f} MB]"
            print(f"  {k:<16} {v['p50_ms']:>8.1f} {v['p90_ms']:>8.1f} {v['min_ms']:>8.1f} "
                  f"{v['theoretical_fraction'] or 0:>8.0%} {v['roofline_fraction']:>8.0%}  {note}")
        if r.get("theoretical_peak"):
            print(f"  roofline: share of the fp32 ceiling {r['theoretical_peak']['gflops']:.0f} GFLOP/s "
                  f"({r['theoretical_peak']['basis']}), which no run can exceed; GEMM: share of the best GEMM "
                  "measured in this run, a probe a whole model can edge past by the run's spread")
        print("  chosen form vs each alternative, p50 ratio per round (median [p10, p90]); < 1: chosen is faster")
        for pair, c in r["chosen_vs_alternatives"].items():
            verdict = {"a faster": "chosen faster", "b faster": "alternative faster", "tie": "tie (within spread)"}
            print(f"    {pair:<16} {c['median']:.3f} [{c['p10']:.3f}, {c['p90']:.3f}]  {verdict[c['verdict']]}")
        g = r.get("litert_goals")
        if g:
            a, b = g["fp32_vs_fastest_other"], g["fp32_vs_int8"]
            print(f"  LiteRT goals: deployed fp32 / fastest other ({g['fastest_other']}) {a['median']:.3f} "
                  f"[{a['p10']:.3f}, {a['p90']:.3f}] (goal <= 1.10); int8 speed-up {b['median']:.2f}x "
                  f"[{b['p10']:.2f}, {b['p90']:.2f}] (goal >= 2.5); int8 size {g['int8_size_vs_fp32']:.2f}x fp32 "
                  "(goal <= 0.3)")
        ra = r["ratios"]
        print(f"  speed-up ExecuTorch deployed vs original {ra['et_deployed_vs_original']:.2f}x, "
              f"ONNX Runtime deployed vs original {ra['ort_deployed_vs_original']:.2f}x, "
              f"ExecuTorch deployed vs ORT deployed {ra['et_deployed_vs_ort_deployed']:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
