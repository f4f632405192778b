#!/usr/bin/env python
"""LiteRT int8: litert-torch's PT2E quantizer (edgevit's choice) vs ai-edge-quantizer's static recipe.

Both quantize the same deployed graph (edgevit's LiteRT form) to int8 weights (per channel) and int8 activations,
calibrated on the same images:

  pt2e   edgevit's path: PT2E with litert-torch's PT2EQuantizer before conversion, the ops reading the input and
         making the outputs left float, so the model takes and returns float32
  aeq    ai-edge-quantizer `static_wi8_ai8` on the converted fp32 .tflite. It quantizes the graph input and output
         as well (int8 I/O; this version has no option to keep them float), so here the harness quantizes each
         input and dequantizes each output with the model's own scales, as an app would have to

Accuracy (plain top-1 agreement with PyTorch fp32, worst-image cosine, top-1 drop) on the held-out images of both
shipped reference models, and latency in the LiteRT interpreter (XNNPACK, 2 threads, interleaved rounds, the
paired ratio per round) on the deep reference at 64x64 and, with --with-small, on Next-ViT-S (random init) at 224.

    .venv/bin/python benchmarks/litert_quantizers.py [--with-small]   # prints a table, writes benchmarks/results/
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from edgevit.bench.timing import interleaved, paired_ratio, summarize
from edgevit.config import ConvertConfig
from edgevit.models import create_model, randomize_
from edgevit.models.factory import build_model, embedded_data
from edgevit.pipeline import plan
from edgevit.quantize.calibration import calibration_set, evaluation_set
from edgevit.rewrites import deploy
from edgevit.verify.metrics import compare


def convert_both(net, example: torch.Tensor, calib: np.ndarray, tmp: Path, tag: str) -> dict[str, Path]:
    import litert_torch
    from ai_edge_quantizer import quantizer, recipe
    from litert_torch.quantize.quant_config import QuantConfig

    from edgevit.targets.litert.quantize import io_modules as _io_modules, pt2e_int8 as _pt2e_int8
    from edgevit.targets.litert.runtime import quiet as _quiet, interpreter_class

    paths = {"fp32": tmp / f"{tag}_fp32.tflite", "pt2e": tmp / f"{tag}_pt2e.tflite", "aeq": tmp / f"{tag}_aeq.tflite"}
    with _quiet():
        litert_torch.convert(net, (example,)).export(str(paths["fp32"]))
        converted, q, _ = _pt2e_int8(net, example, calib, _io_modules(net, example))
        litert_torch.convert(converted, (example,), quant_config=QuantConfig(pt2e_quantizer=q)).export(
            str(paths["pt2e"]))
        aeq = quantizer.Quantizer(str(paths["fp32"]))
        aeq.load_quantization_recipe(recipe.static_wi8_ai8())
        (key,) = interpreter_class()(model_path=str(paths["fp32"])).get_signature_runner(
            "serving_default").get_input_details()
        result = aeq.calibrate({"serving_default": [{key: calib[i:i + 1]} for i in range(len(calib))]})
        aeq.quantize(result).export_model(str(paths["aeq"]), overwrite=True)
    return paths


def runner(path: Path, threads: int = 2):
    """A callable on one NCHW float batch; int8 I/O is quantized/dequantized here with the model's own scales."""
    from edgevit.targets.litert.runtime import quiet as _quiet, interpreter_class

    with _quiet():
        it = interpreter_class()(model_path=str(path), num_threads=threads)
        it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]

    def run(x: np.ndarray) -> np.ndarray:
        if i["dtype"] != np.float32:
            scale, zero = i["quantization"]
            x = np.clip(np.round(x / scale) + zero, -128, 127).astype(i["dtype"])
        it.set_tensor(i["index"], np.ascontiguousarray(x))
        it.invoke()
        y = it.get_tensor(o["index"])
        if o["dtype"] != np.float32:
            scale, zero = o["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        return np.asarray(y, np.float32).copy()
    return run, i["dtype"].__name__ if hasattr(i["dtype"], "__name__") else str(i["dtype"])


def accuracy(model: str, tmp: Path, log) -> dict:
    p = plan(ConvertConfig(model=model, target="litert", out=str(tmp / "unused")))
    calib = calibration_set(embedded_data(model, "calib"), p.pre, 64).normalized.astype(np.float32)
    ev = evaluation_set(embedded_data(model, "eval"), p.pre, p.labels, None)
    x = ev.normalized.astype(np.float32)
    net = build_model(model=model, weights=None, random_init=False)
    with torch.no_grad():
        ref = np.concatenate([net(torch.from_numpy(x[k:k + 1])).numpy() for k in range(len(x))])
    deployed = deploy(net, "litert", img_size=tuple(x.shape[2:])).model
    log(f"{model}: converting fp32, pt2e int8, aeq int8 ...")
    paths = convert_both(deployed, torch.from_numpy(x[:1]), calib, tmp, model)
    rows = {}
    for name in ("pt2e", "aeq"):
        run, io = runner(paths[name])
        out = np.concatenate([run(x[k:k + 1]) for k in range(len(x))])
        m = compare("logits", ref, out, classification=True)
        rows[name] = {"io_dtype": io, "top1_agreement": m.top1_agreement, "cosine_min": m.cosine_min,
                      "cosine_mean": m.cosine_mean, "top1_fp32": float((ref.argmax(1) == ev.labels).mean()),
                      "top1_int8": float((out.argmax(1) == ev.labels).mean()),
                      "bytes": paths[name].stat().st_size}
        rows[name]["drop_points"] = 100 * (rows[name]["top1_fp32"] - rows[name]["top1_int8"])
    return {"images": len(x), "calibration_images": len(calib), "paths": paths, "rows": rows}


def speed(paths: dict[str, Path], x: np.ndarray, rounds: int, log) -> dict:
    runners = {name: runner(paths[name])[0] for name in ("fp32", "pt2e", "aeq")}
    calls = {name: (lambda fn=fn: fn(x)) for name, fn in runners.items()}
    log(f"timing {len(calls)} variants, {rounds} interleaved rounds ...")
    samples = interleaved(calls, warmup=3, rounds=rounds)
    return {"p50_ms": {k: summarize(v)["p50_ms"] for k, v in samples.items()},
            "pt2e_vs_aeq": paired_ratio(samples["pt2e"], samples["aeq"]),
            "fp32_vs_pt2e": paired_ratio(samples["fp32"], samples["pt2e"])}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--with-small", action="store_true", help="also time Next-ViT-S (random init) at 224")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--json", default="benchmarks/results/litert_quantizers.json")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    torch.set_num_threads(2)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    results = {"note": f"measured {time.strftime('%Y-%m-%d')} with `benchmarks/litert_quantizers.py"
                       f"{' --with-small' if args.with_small else ''}`", "accuracy": {}, "speed": {}}
    with tempfile.TemporaryDirectory(prefix="edgevit-litertq-") as tmp:
        tmp = Path(tmp)
        for model in ("nextvit_digits", "nextvit_photodigits"):
            r = accuracy(model, tmp, log)
            results["accuracy"][model] = {k: v for k, v in r.items() if k != "paths"}
            if model == "nextvit_photodigits":
                x = np.random.default_rng(0).normal(size=(1, 3, 64, 64)).astype(np.float32)
                results["speed"]["nextvit_photodigits 64x64"] = speed(r["paths"], x, args.rounds, log)
        if args.with_small:
            net = deploy(randomize_(create_model("nextvit_small")), "litert", img_size=(224, 224)).model
            x = np.random.default_rng(0).normal(size=(1, 3, 224, 224)).astype(np.float32)
            calib = np.random.default_rng(1).normal(size=(8, 3, 224, 224)).astype(np.float32)
            log("nextvit_small: converting fp32, pt2e int8, aeq int8 ...")
            paths = convert_both(net, torch.from_numpy(x), calib, tmp, "small")
            results["speed"]["nextvit_small 224x224"] = dict(
                speed(paths, x, args.rounds, log), bytes={k: v.stat().st_size for k, v in paths.items()})
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    log(f"wrote {out}")
    print(f"{'model':<22} {'quantizer':<6} {'I/O':<8} {'top1 agree':>10} {'worst cos':>9} {'drop pts':>8} {'MB':>6}")
    for model, r in results["accuracy"].items():
        for name, v in r["rows"].items():
            print(f"{model:<22} {name:<6} {v['io_dtype']:<8} {v['top1_agreement']:>10.2%} {v['cosine_min']:>9.5f} "
                  f"{v['drop_points']:>8.2f} {v['bytes'] / 1e6:>6.2f}")
    for what, s in results["speed"].items():
        a, b = s["pt2e_vs_aeq"], s["fp32_vs_pt2e"]
        print(f"{what}: p50 ms {', '.join(f'{k} {v:.2f}' for k, v in s['p50_ms'].items())}; pt2e/aeq "
              f"{a['median']:.3f} [{a['p10']:.3f}, {a['p90']:.3f}] ({a['verdict']}); int8 (pt2e) speed-up over fp32 "
              f"{b['median']:.2f}x [{b['p10']:.2f}, {b['p90']:.2f}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
