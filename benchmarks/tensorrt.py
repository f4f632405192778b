#!/usr/bin/env python
"""Next-ViT on NVIDIA GPUs: TensorRT engines of the original and the deployed form, built and timed in one run.

Needs a machine with an NVIDIA GPU and `pip install 'edgevit[tensorrt]'` (exit 5 otherwise, saying which is
missing). For each model (Next-ViT-S/B/L, deterministic random weights with measured BatchNorm statistics: engine
timing does not depend on the weights' values) and size (224, 384), both forms are exported to the TensorRT-ready
ONNX exactly as `edgevit convert --target tensorrt` makes it (fp16: ModelOpt AutoCast; int8: ModelOpt Q/DQ
calibrated on synthetic images, which fixes the scales but not the speed), built with one optimization profile
(batch 1-8, opt 8) and timed interleaved at batch 1 and 8: every round runs every engine once in rotating order,
inputs and outputs stay on the GPU, and a sample is the host time of TensorRT's execute plus the stream
synchronization. Ratios are taken round by round (median and 10-90% range); a difference whose range includes 1
is a tie.

Goals printed under the table (issue 12): the deployed form never slower than the original at 224 (a tie holds),
>= 1.05x faster at 384 fp16 batch 8; int8 >= 1.5x faster than fp16 at batch 8.

    python benchmarks/tensorrt.py                                    # S/B/L x 224/384 x fp16/int8 (long)
    python benchmarks/tensorrt.py --models nextvit_small --sizes 224 --precisions fp16

`--proxy torch-cuda` needs only PyTorch with CUDA (no TensorRT): the deployed vs the original form in PyTorch CUDA
fp16 at batch 8 (CUDA events, interleaved), the closest proxy for the TensorRT comparison above, and the fp16-vs-fp32
drift of the deployed form on the GPU (the server-side reference an engine has to match). It writes
benchmarks/results/tensorrt_proxy_torch_cuda.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

# run as a script, this file's folder leads sys.path and this file would shadow the `tensorrt` package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402
import torch  # noqa: E402

from edgevit.bench.timing import interleaved, paired_ratio, summarize  # noqa: E402
from edgevit.models import create_model, randomize_  # noqa: E402
from edgevit.rewrites import FORMS, deploy  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
MODELS = ("nextvit_small", "nextvit_base", "nextvit_large")
VERDICT = {"a faster": "original faster", "b faster": "deployed faster", "tie": "tie"}  # paired_ratio(original, deployed)
ORIGINAL = ()  # no rewrite passes: the model as trained


def forms_of(name: str, size: int) -> dict[str, torch.nn.Module]:
    net = randomize_(create_model(name), seed=0).eval()
    return {"original": net, "deployed": deploy(net, "tensorrt", img_size=(size, size)).model.eval()}


# ---------------------------------------------------------------------------------------------------------------
# PyTorch CUDA proxy (no TensorRT)


def cuda_timer(fn):
    """A callable that runs ``fn`` once and returns the GPU time between two CUDA events around it (seconds)."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    def run():
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000.0

    return run


def gpu_interleaved(runners: dict, *, warmup: int, rounds: int) -> dict[str, list[float]]:
    """``interleaved``'s rotation, with each sample the CUDA-event time of one run."""
    samples: dict[str, list[float]] = {k: [] for k in runners}
    for fn in runners.values():
        for _ in range(warmup):
            fn()
    names = list(runners)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            samples[name].append(runners[name]())
    return samples


def proxy(args) -> dict:
    if not torch.cuda.is_available():
        sys.exit("--proxy torch-cuda needs PyTorch with a CUDA GPU")
    dev = torch.device("cuda")
    rows = []
    for name in args.models:
        for size in args.sizes:
            forms = forms_of(name, size)
            x32 = torch.randn(args.batch, 3, size, size, generator=torch.Generator().manual_seed(0))
            with torch.no_grad():
                ref_cpu = forms["deployed"](x32).double() if args.cpu_reference else None
                for m in forms.values():  # Module.to and .half work in place
                    m.to(dev)
                fp32_out = forms["deployed"](x32.to(dev)).double().cpu()
                for m in forms.values():
                    m.half()
                xh = x32.to(dev).half()
                fp16_out = forms["deployed"](xh).double().cpu()
                runners = {k: cuda_timer(lambda m=m: m(xh)) for k, m in forms.items()}
                samples = gpu_interleaved(runners, warmup=args.warmup, rounds=args.rounds)
            ratio = paired_ratio(samples["original"], samples["deployed"])  # > 1: deployed faster
            diff = (fp16_out - fp32_out).abs().max().item() / fp32_out.abs().max().item()
            cos = torch.nn.functional.cosine_similarity(fp16_out, fp32_out, dim=1).min().item()
            row = {"model": name, "size": size, "batch": args.batch, "dtype": "fp16",
                   "original": summarize(samples["original"]), "deployed": summarize(samples["deployed"]),
                   "original_over_deployed": ratio,
                   "deployed_fp16_vs_fp32_gpu": {"max_rel": diff, "cosine_min": cos}}
            if ref_cpu is not None:
                row["deployed_fp32_gpu_vs_cpu_max_rel"] = ((fp32_out - ref_cpu).abs().max()
                                                           / ref_cpu.abs().max()).item()
            rows.append(row)
            print(f"{name:<14} {size:>4} b{args.batch}  original p50 {row['original']['p50_ms']:7.3f} ms  deployed "
                  f"p50 {row['deployed']['p50_ms']:7.3f} ms  orig/deployed {ratio['median']:.3f} "
                  f"[{ratio['p10']:.3f}-{ratio['p90']:.3f}] {VERDICT[ratio['verdict']]}"
                  f"  fp16 vs fp32: max_rel {diff:.2e} cos {cos:.6f}", flush=True)
            del forms, runners
            torch.cuda.empty_cache()
    return {"mode": "torch-cuda proxy (no TensorRT)", "gpu": torch.cuda.get_device_name(0),
            "torch": torch.__version__, "cuda": torch.version.cuda, "rounds": args.rounds, "rows": rows}


# ---------------------------------------------------------------------------------------------------------------
# TensorRT engines


def tensorrt_onnx(model, size: int, precision: str, dest: Path, calib: np.ndarray) -> None:
    """The TensorRT-ready ONNX exactly as ``edgevit convert --target tensorrt`` writes it."""
    from edgevit.quantize import tensorrt_quant
    from edgevit.targets.base import IOSpec
    from edgevit.targets.onnx.export import export_onnx

    io = IOSpec(input_name="image", input_shape=(1, 3, size, size), output_names=("logits",), dynamic_batch=True)
    fp32 = dest.with_suffix(".fp32.onnx")
    export_onnx(model, torch.zeros(1, 3, size, size), fp32, io, opset=18)
    if precision == "fp16":
        tensorrt_quant.convert_fp16(fp32, dest, calib, input_name="image", opset=18)
    else:
        tensorrt_quant.quantize_int8(fp32, dest, calib, method="minmax")


def engines(args) -> dict:
    from edgevit.targets.tensorrt.engine import device_resident_run, engine_from_onnx, engine_problems, gpu_info

    problems = engine_problems()
    if problems:
        print("benchmarks/tensorrt.py needs a GPU with TensorRT: " + "; ".join(problems), file=sys.stderr)
        sys.exit(5)
    import tensorrt as trt

    rows = []
    with tempfile.TemporaryDirectory(prefix="edgevit-trt-bench-") as tmp:
        tmp = Path(tmp)
        cache = tmp / "timing.cache"
        for name in args.models:
            for size in args.sizes:
                calib = np.random.default_rng(1).standard_normal((16, 3, size, size)).astype(np.float32)
                forms = forms_of(name, size)
                runners, builds = {}, {}
                for precision in args.precisions:
                    for form, model in forms.items():
                        onnx_path = tmp / f"{name}_{size}_{form}_{precision}.onnx"
                        tensorrt_onnx(model, size, precision, onnx_path, calib)
                        t0 = time.perf_counter()
                        profile = {"input": "image", "min": [1, 3, size, size], "opt": [8, 3, size, size],
                                   "max": [8, 3, size, size]}
                        plan = engine_from_onnx(onnx_path, profile, 4096, cache)
                        builds[f"{form}/{precision}"] = time.perf_counter() - t0
                        for batch in (1, 8):
                            x = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
                            runners[f"{form}/{precision}/b{batch}"] = device_resident_run(plan, "image", x)
                samples = interleaved(runners, warmup=args.warmup, rounds=args.rounds)
                stats = {k: summarize(v) for k, v in samples.items()}
                ratios = {}
                for precision in args.precisions:
                    for batch in (1, 8):
                        ratios[f"original/deployed {precision} b{batch}"] = paired_ratio(
                            samples[f"original/{precision}/b{batch}"], samples[f"deployed/{precision}/b{batch}"])
                if {"fp16", "int8"} <= set(args.precisions):
                    ratios["fp16/int8 deployed b8"] = paired_ratio(samples["deployed/fp16/b8"],
                                                                   samples["deployed/int8/b8"])
                rows.append({"model": name, "size": size, "stats": stats, "ratios": ratios, "build_s": builds})
                for k, st in stats.items():
                    print(f"{name:<14} {size:>4} {k:<22} p50 {st['p50_ms']:8.3f} ms  p90 {st['p90_ms']:8.3f}")
                for k, r in ratios.items():
                    print(f"{'':<19} {k:<28} {r['median']:.3f} [{r['p10']:.3f}-{r['p90']:.3f}] {r['verdict']}")
    goals = []
    for row in rows:
        for key, r in row["ratios"].items():
            if key.startswith("original/deployed") and row["size"] == 224:
                goals.append((f"{row['model']} 224 {key}: deployed never slower", r["verdict"] != "a faster"))
            if key == "original/deployed fp16 b8" and row["size"] == 384:
                goals.append((f"{row['model']} 384 {key} >= 1.05", r["median"] >= 1.05))
            if key == "fp16/int8 deployed b8":
                goals.append((f"{row['model']} {row['size']} {key} >= 1.5", r["median"] >= 1.5))
    print("\ngoals:")
    for what, ok in goals:
        print(f"  {'met ' if ok else 'MISSED'} {what}")
    return {"mode": "tensorrt engines", **(gpu_info() or {}), "tensorrt": trt.__version__, "rounds": args.rounds,
            "rows": rows, "goals": [{"goal": g, "met": ok} for g, ok in goals]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--sizes", nargs="+", type=int, default=[224, 384])
    ap.add_argument("--precisions", nargs="+", default=["fp16", "int8"], choices=["fp16", "int8"])
    ap.add_argument("--proxy", choices=["torch-cuda"], help="no TensorRT: PyTorch CUDA fp16 proxy")
    ap.add_argument("--batch", type=int, default=8, help="proxy batch (default 8, the reference deployment's)")
    ap.add_argument("--cpu-reference", action="store_true", help="proxy: also compare GPU fp32 with CPU fp32")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--json", help="results file (default benchmarks/results/tensorrt[_proxy_torch_cuda].json)")
    args = ap.parse_args()
    out = proxy(args) if args.proxy else engines(args)
    out.update({"python": platform.python_version(), "torch": torch.__version__,
                "when": time.strftime("%Y-%m-%d %H:%M:%S"),
                "form": {"deployed": list(FORMS.get("tensorrt", FORMS["onnx"])[0]), "original": list(ORIGINAL)}})
    dest = Path(args.json) if args.json else RESULTS / ("tensorrt_proxy_torch_cuda.json" if args.proxy
                                                        else "tensorrt.json")
    dest.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
