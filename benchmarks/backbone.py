#!/usr/bin/env python
"""Next-ViT as a detection backbone: the four feature maps at detection size, original form vs deployed form, on
ONNX Runtime, ExecuTorch XNNPACK and LiteRT (XNNPACK), 2 threads.

Every variant is timed in the same rounds (interleaved, rotating order; median of >= 15 rounds after warm-up), with
ONNX Runtime's spinning off and ExecuTorch's thread pool sized to the same threads, beside fp32 GEMMs of Next-ViT's
own shapes in each runtime: the roofline is 2 x MACs over the best GEMM rate measured in the same run. Deployed vs
original is the round-by-round ratio (median, 10-90% range; a tie when that range contains 1). The share of time
spent in E-MHSA per stage comes from ONNX Runtime's per-node profile of each form, nodes attributed to modules by the
exporter's name scopes (onnxruntime's renamed nodes traced back; its NCHWc layout reorders counted apart).

    .venv/bin/python benchmarks/backbone.py                       # Next-ViT-S features at 640x640 (~10 min)
    .venv/bin/python benchmarks/backbone.py --sizes 640 --no-litert --rounds 15

Goals (issue 17): deployed XNNPACK and ONNX Runtime within 1.10x of the GEMM roofline at 640, and deployed >= 1.1x
faster than the original form on each runtime at 640. Weights are deterministic random (the timing does not depend
on them).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import re
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rewrites import executorch_runner, litert_runners  # noqa: E402  (the rewrites benchmark's runners)

from edgevit.bench.peak import gemm_runners, gflops, theoretical_peak  # noqa: E402
from edgevit.bench.timing import interleaved, paired_ratio, summarize  # noqa: E402
from edgevit.models import create_model, randomize_  # noqa: E402
from edgevit.models.complexity import count_macs  # noqa: E402
from edgevit.rewrites import FORMS, deploy  # noqa: E402
from edgevit.targets.base import IOSpec  # noqa: E402
from edgevit.targets.executorch.runtime import set_threads
from edgevit.targets.onnx.drift import node_scopes
from edgevit.targets.onnx.export import export_onnx
from edgevit.targets.onnx.runtime import make_session

OUTPUTS = ("stage1", "stage2", "stage3", "stage4")
RUNTIMES = {"ort": ("ONNX Runtime", FORMS["onnx"][0]), "et": ("ExecuTorch XNNPACK", FORMS["executorch"][0]),
            "lite": ("LiteRT XNNPACK", FORMS["litert"][0])}


def export(net, x: torch.Tensor, path: Path, *, dynamic_hw: bool = False) -> None:
    export_onnx(net, x, path, IOSpec(input_name="image", input_shape=tuple(x.shape), output_names=OUTPUTS,
                                     dynamic_hw=dynamic_hw), opset=18)


def attention_share(path: Path, x: np.ndarray, threads: int, runs: int) -> dict:
    """Per stage, the share of ONNX Runtime's per-node kernel time spent inside E-MHSA modules."""
    import onnx
    import onnxruntime as ort

    scope_of = {}
    for n in onnx.load(str(path), load_external_data=False).graph.node:
        scope_of[n.name] = scope_of[f"out:{n.output[0]}"] = node_scopes(n)

    def scopes_of(name: str):
        # onnxruntime renames what it rewrites: "<node>/MatmulTransposeFusion/", NCHWc convolutions named after
        # their output tensor with "_nchwc" (the "node_" prefix dropped); its layout reorders belong to no module
        base = name.split("/")[0].removesuffix("_nchwc")
        for key in (name, base, f"node_{base}", f"out:{base}"):
            if key in scope_of:
                return scope_of[key]
        return "reorder" if name.startswith(("ReorderInput", "ReorderOutput")) else None

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.enable_profiling = True
    so.profile_file_prefix = str(path.with_suffix(""))
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    sess.run(None, {"image": x})  # warm-up, left out below
    for _ in range(runs):
        sess.run(None, {"image": x})
    events = json.loads(Path(sess.end_profiling()).read_text())
    per = defaultdict(float)
    total = 0.0
    for ev in events:
        if ev.get("cat") != "Node" or not ev["name"].endswith("_kernel_time") or ev["ts"] < 0:
            continue
        scopes = scopes_of(ev["name"][: -len("_kernel_time")])
        stage = "layout reorders" if scopes == "reorder" else "unattributed"
        if scopes and scopes != "reorder":
            m = next((re.search(r"stages\.(\d+)", s) for s in scopes if re.search(r"stages\.(\d+)", s)), None)
            stage = f"stage{int(m.group(1)) + 1}" if m else "stem/other"
            if any(".e_mhsa" in s for s in scopes):
                stage += ".e_mhsa"
        per[stage] += ev["dur"]
        total += ev["dur"]
    out = {}
    for i in range(1, 5):
        stage_us = per.get(f"stage{i}", 0.0) + per.get(f"stage{i}.e_mhsa", 0.0)
        out[f"stage{i}"] = {"share_of_model": stage_us / total, "e_mhsa_share_of_model": per.get(f"stage{i}.e_mhsa", 0.0) / total,
                            "e_mhsa_share_of_stage": per.get(f"stage{i}.e_mhsa", 0.0) / stage_us if stage_us else 0.0}
    out["unattributed_share"] = per.get("unattributed", 0.0) / total
    out["layout_reorder_share"] = per.get("layout reorders", 0.0) / total
    out["e_mhsa_share_of_model"] = sum(v for k, v in per.items() if k.endswith(".e_mhsa")) / total
    return out


def build(model, size, threads: int, tmp: Path, log, with_litert: bool, profile_runs: int):
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(1, 3, *size)).astype(np.float32))
    xn = x.numpy()
    runners, info, profiles = {}, {}, {}
    forms = {"original": model}
    for prefix, (_, passes) in RUNTIMES.items():
        forms[f"{prefix}_deployed"] = deploy(model, passes=passes, img_size=size).model
    for prefix in ("ort", "et"):
        for form in ("original", "deployed"):
            net = forms["original" if form == "original" else f"{prefix}_deployed"]
            t0 = time.perf_counter()
            if prefix == "ort":
                path = tmp / f"{form}_{size[0]}x{size[1]}.onnx"
                export(net, x, path)
                sess = make_session(path, threads=threads)
                runners[f"ort_{form}"] = lambda sess=sess: sess.run(None, {"image": xn})
                profiles[form] = attention_share(path, xn, threads, profile_runs)
                if form == "deployed":  # what --img-sizes ships: the same form with dynamic height and width
                    path = tmp / f"{form}_dynamic_hw.onnx"
                    export(net, x, path, dynamic_hw=True)
                    dyn = make_session(path, threads=threads)
                    runners["ort_deployed_dynamic_hw"] = lambda dyn=dyn: dyn.run(None, {"image": xn})
            else:
                runners[f"et_{form}"], info[f"et_{form}"] = executorch_runner(net, x, threads,
                                                                              tmp / f"{form}_{size[0]}x{size[1]}.pte")
            log(f"  built {prefix} {form} at {size[0]}x{size[1]} in {time.perf_counter() - t0:.0f}s")
    if with_litert:
        lite, lite_info = litert_runners({"original": model, "deployed": forms["lite_deployed"]}, x, size, threads,
                                         tmp, log, int8=False)
        runners.update(lite)
        info.update(lite_info)
    return runners, info, profiles


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="nextvit_small")
    ap.add_argument("--sizes", default="640", help="comma-separated N or HxW (default 640)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--profile-runs", type=int, default=3)
    ap.add_argument("--no-litert", action="store_true", help="leave LiteRT out (its conversion at 640 takes minutes)")
    ap.add_argument("--json", default="benchmarks/results/backbone.json")
    ap.add_argument("--print-only", action="store_true", help="re-print the table of an existing --json, no timing")
    args = ap.parse_args(argv)
    if args.print_only:
        print_table(json.loads(Path(args.json).read_text()))
        return 0
    from edgevit.config import parse_img_size

    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    set_threads(args.threads)
    model = randomize_(create_model(args.model, features_only=True))
    results = {"model": args.model, "mode": "features (stage1..stage4)", "threads": args.threads,
               "rounds": args.rounds, "warmup": args.warmup, "machine": platform.processor() or platform.machine(),
               "torch": torch.__version__, "command": "benchmarks/backbone.py " + " ".join(argv or sys.argv[1:]),
               "sizes": {}}
    with torch.no_grad(), tempfile.TemporaryDirectory(prefix="edgevit-backbone-") as tmp:
        for text in args.sizes.split(","):
            size = parse_img_size(text)
            key = f"{size[0]}x{size[1]}"
            log(f"building variants at {key} ...")
            runners, info, profiles = build(model, size, args.threads, Path(tmp), log, not args.no_litert,
                                            args.profile_runs)
            gemms = gemm_runners(args.threads)
            timed = dict(runners)
            timed.update({k: fn for k, (fn, _) in gemms.items()})
            log(f"timing {len(timed)} variants, {args.rounds} interleaved rounds ...")
            samples = interleaved(timed, warmup=args.warmup, rounds=args.rounds)
            peak = max(gflops(f, float(np.median(samples[k]))) for k, (_, f) in gemms.items())
            macs = count_macs(model, size)
            rows = {}
            for k in runners:
                st = summarize(samples[k])
                st["roofline_ms"] = 2.0 * macs / (peak * 1e9) * 1000
                st["vs_roofline"] = st["p50_ms"] / st["roofline_ms"]
                st.update(info.get(k, {}))
                rows[k] = st
            speedups = {p: paired_ratio(samples[f"{p}_original"], samples[f"{p}_deployed"])
                        for p in RUNTIMES if f"{p}_original" in runners and f"{p}_deployed" in runners}
            dynamic = paired_ratio(samples["ort_deployed_dynamic_hw"], samples["ort_deployed"])
            results["sizes"][key] = {"macs": macs, "gemm_peak_gflops": peak,
                                     "theoretical_peak": theoretical_peak(args.threads, "fp32"),
                                     "variants": rows, "deployed_speedup": speedups,
                                     "ort_dynamic_hw_vs_static": dynamic,
                                     "onnxruntime_attention_profile": profiles}
    print_table(results)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    log(f"wrote {out}")
    return 0


def print_table(results: dict) -> None:
    print(f"\n{results['model']} {results['mode']}, {results['threads']} threads, median of {results['rounds']} "
          "interleaved rounds")
    for key, r in results["sizes"].items():
        print(f"\n{key}: {r['macs'] / 1e9:.2f} GMACs; best fp32 GEMM in this run {r['gemm_peak_gflops']:.1f} GFLOP/s "
              f"-> roofline {next(iter(r['variants'].values()))['roofline_ms']:.1f} ms")
        print(f"  {'variant':<18} {'p50 ms':>8} {'p90 ms':>8} {'x roofline':>10}")
        for k, st in r["variants"].items():
            print(f"  {k:<18} {st['p50_ms']:8.1f} {st['p90_ms']:8.1f} {st['vs_roofline']:10.2f}")
        for p, sp in r["deployed_speedup"].items():
            print(f"  {RUNTIMES[p][0]}: deployed {sp['median']:.3f}x faster than original (10-90% {sp['p10']:.3f}-"
                  f"{sp['p90']:.3f}: {sp['verdict']})")
        if "ort_dynamic_hw_vs_static" in r:
            d = r["ort_dynamic_hw_vs_static"]
            print(f"  ONNX Runtime deployed, dynamic height/width (--img-sizes) vs static: time ratio {d['median']:.3f} "
                  f"(10-90% {d['p10']:.3f}-{d['p90']:.3f}: {'tie' if d['verdict'] == 'tie' else d['verdict']})")
        for form, prof in r["onnxruntime_attention_profile"].items():
            stages = ", ".join(f"{s} {prof[s]['share_of_model']:.0%} (E-MHSA {prof[s]['e_mhsa_share_of_model']:.1%})"
                               for s in ("stage1", "stage2", "stage3", "stage4"))
            print(f"  ONNX Runtime profile, {form}: E-MHSA {prof['e_mhsa_share_of_model']:.1%} of node time; per "
                  f"stage: {stages}; NCHWc layout reorders {prof.get('layout_reorder_share', 0):.1%}, unattributed "
                  f"{prof['unattributed_share']:.1%}")
        goals = []
        for p in ("ort", "et"):
            if f"{p}_deployed" in r["variants"]:
                v = r["variants"][f"{p}_deployed"]["vs_roofline"]
                goals.append(f"{RUNTIMES[p][0]} deployed {v:.2f}x roofline (goal <= 1.10: "
                             f"{'met' if v <= 1.10 else 'not met'})")
            if p in r["deployed_speedup"]:
                sp = r["deployed_speedup"][p]
                goals.append(f"{RUNTIMES[p][0]} deployed/original {sp['median']:.3f}x (goal >= 1.1: "
                             f"{'met' if sp['p10'] >= 1.1 else 'not met' if sp['p90'] < 1.1 else 'within spread'})")
        for g in goals:
            print("  goal: " + g)


if __name__ == "__main__":
    raise SystemExit(main())
