#!/usr/bin/env python
"""Which int8 configuration holds up: the same deployed graph quantized several ways, in the real runtimes.

For each model and each configuration, the fp32 ONNX / deployed PyTorch graph is quantized and run in its own
runtime (onnxruntime for ONNX QDQ, ExecuTorch for XNNPACK) and compared with the fp32 PyTorch model on held-out
images: plain top-1 agreement, worst-image cosine, and top-1 accuracy where labels exist.

Configurations (ONNX Runtime, `quantize_static` QDQ, int8 per-channel weights, uint8 activations):
  default            minmax calibration (edgevit's default)
  percentile         percentile calibration (99.999%)
  attention-float    minmax, the attention core (q k^T MatMul, Softmax, attn @ v MatMul) left in float
  attn-float+pct     both
  residual-float     minmax, the residual Adds (the block outputs) left in float
  residual+attn-float  both left in float
  conv-gemm-only     minmax, only Conv/Gemm quantized (every other op, the residual Adds included, in float)
ExecuTorch (XNNPACKQuantizer, per-channel int8 weights, int8 activations):
  default            edgevit's default
  attention-float    the attention core (bmm, the scaling mul, softmax) left in float; projections stay int8
  residual-float     the residual adds (the block outputs) left in float
  per-tensor         per-tensor weights

Models: `nextvit_photodigits` (the deep trained reference, 450 held-out images) and, with --with-small,
Next-ViT-S random-init on seven scikit-image photographs (calibrated on the shipped digit images, as the issue's
user did).

    .venv/bin/python benchmarks/int8_configs.py [--with-small]   # prints a table, writes benchmarks/results/
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from edgevit.config import ConvertConfig
from edgevit.models.factory import build_model, embedded_data
from edgevit.pipeline import convert, plan
from edgevit.quantize.calibration import calibration_set, evaluation_set
from edgevit.rewrites import deploy
from edgevit.verify.metrics import compare

ORT_CONFIGS = {"default": ("minmax", ()), "percentile": ("percentile", ()),
               "attention-float": ("minmax", ("MatMul", "Softmax")),
               "attn-float+pct": ("percentile", ("MatMul", "Softmax")),
               "residual-float": ("minmax", ("Add",)),
               "residual+attn-float": ("minmax", ("Add", "MatMul", "Softmax")),
               "conv-gemm-only": ("minmax", "only Conv Gemm")}
ET_CONFIGS = ("default", "attention-float", "residual-float", "per-tensor")


def ort_variant(fp32: Path, out: Path, calib: np.ndarray, method: str, float_ops: tuple[str, ...] | str) -> Path:
    """``float_ops``: op types left in float, or "only A B" for the only op types quantized."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from edgevit.quantize.onnx_quant import _reader

    pre = out.with_name(out.stem + "_pre.onnx")
    with contextlib.redirect_stdout(io.StringIO()):
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    graph = onnx.load(str(pre)).graph
    only = float_ops.split()[1:] if isinstance(float_ops, str) else None
    exclude = None if only else [n.name for n in graph.node if n.op_type in float_ops] or None
    name = graph.input[0].name
    quantize_static(str(pre), str(out), _reader(name, calib, 1), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method={"minmax": CalibrationMethod.MinMax,
                                      "percentile": CalibrationMethod.Percentile}[method],
                    nodes_to_exclude=exclude, op_types_to_quantize=only, extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
    return out


def run_ort(path: Path, x: np.ndarray) -> np.ndarray:
    from edgevit.targets.onnx.runtime import make_session

    sess = make_session(path, threads=2)
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])


def et_variant(deployed, calib: np.ndarray, config: str):
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                          get_symmetric_quantization_config)
    from executorch.exir import to_edge_transform_and_lower
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from edgevit.quantize.executorch_quant import module_paths

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=config != "per-tensor"))
    if config == "attention-float":
        projections = {torch.ops.aten.conv2d.default, torch.ops.aten.linear.default}

        def keep(node) -> bool:  # False: left in float
            in_attention = any(p.endswith("e_mhsa") for p in module_paths(node))
            return not (in_attention and node.target not in projections)

        quantizer.set_filter_function(keep)
    if config == "residual-float":
        quantizer.set_filter_function(lambda node: node.target not in (torch.ops.aten.add.Tensor,
                                                                       torch.ops.aten.add_.Tensor))
    example = torch.from_numpy(calib[:1])
    graph = torch.export.export(deployed, (example,), strict=False).module()
    prepared = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for i in range(len(calib)):
            prepared(torch.from_numpy(calib[i:i + 1]))
    converted = convert_pt2e(prepared)
    edge = to_edge_transform_and_lower(torch.export.export(converted, (example,), strict=False),
                                       partitioner=[XnnpackPartitioner()])
    return edge.to_executorch().buffer


def run_et(buffer: bytes, x: np.ndarray) -> np.ndarray:
    from edgevit.targets.executorch.runtime import executorch_runtime

    method = executorch_runtime(2).load_program(buffer).load_method("forward")
    return np.concatenate([method.execute([torch.from_numpy(x[i:i + 1])])[0].numpy() for i in range(len(x))])


def row(ref: np.ndarray, out: np.ndarray, labels: np.ndarray | None) -> dict:
    m = compare("logits", ref, out, classification=True)
    r = {"top1_agreement": m.top1_agreement, "cosine_min": m.cosine_min, "cosine_mean": m.cosine_mean,
         "sqnr_db": m.sqnr_db}
    if labels is not None:
        r["top1_fp32"] = float((ref.argmax(1) == labels).mean())
        r["top1_int8"] = float((out.argmax(1) == labels).mean())
        r["drop_points"] = 100 * (r["top1_fp32"] - r["top1_int8"])
    return r


def measure(model: str, random_init: bool, calib_dir: str, eval_dir: str, labeled: bool, tmp: Path, log) -> dict:
    fp32_dir = tmp / f"{model}_fp32"
    log(f"{model}: fp32 ONNX (deployed) ...")
    convert(ConvertConfig(model=model, random_init=random_init, target="onnx", out=str(fp32_dir)))
    p = plan(ConvertConfig(model=model, random_init=random_init, target="onnx", out=str(tmp / "unused")))
    calib = calibration_set(calib_dir, p.pre, 64).normalized.astype(np.float32)
    ev = evaluation_set(eval_dir, p.pre, p.labels if labeled else None, None)
    x = ev.normalized.astype(np.float32)
    labels = ev.labels if labeled else None
    net = build_model(model=model, weights=None, random_init=random_init)
    with torch.no_grad():
        ref = np.concatenate([net(torch.from_numpy(x[i:i + 1])).numpy() for i in range(len(x))])
    results = {"images": len(x), "calibration_images": len(calib), "onnxruntime": {}, "executorch": {}}
    for name, (method, float_ops) in ORT_CONFIGS.items():
        log(f"{model}: onnxruntime {name} ...")
        t0 = time.perf_counter()
        q = ort_variant(fp32_dir / "model.onnx", tmp / f"{model}_{name}.onnx", calib, method, float_ops)
        results["onnxruntime"][name] = dict(row(ref, run_ort(q, x), labels),
                                            seconds=round(time.perf_counter() - t0, 1))
    deployed = deploy(net, "executorch", img_size=tuple(x.shape[2:])).model
    for name in ET_CONFIGS:
        log(f"{model}: executorch {name} ...")
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            buffer = et_variant(deployed, calib, name)
        results["executorch"][name] = dict(row(ref, run_et(buffer, x), labels),
                                           seconds=round(time.perf_counter() - t0, 1))
    return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--with-small", action="store_true", help="also Next-ViT-S random-init on seven photographs")
    ap.add_argument("--json", default="benchmarks/results/int8_configs.json")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    torch.set_num_threads(2)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    results = {"note": f"measured {time.strftime('%Y-%m-%d')} with `benchmarks/int8_configs.py"
                       f"{' --with-small' if args.with_small else ''}`; accuracy only, no timing"}
    with tempfile.TemporaryDirectory(prefix="edgevit-int8cfg-") as tmp:
        tmp = Path(tmp)
        results["nextvit_photodigits"] = measure("nextvit_photodigits", False,
                                                 embedded_data("nextvit_photodigits", "calib"),
                                                 embedded_data("nextvit_photodigits", "eval"), True, tmp, log)
        if args.with_small:
            sys.path.insert(0, str(Path(__file__).parent))
            from quantization import write_photos

            photos = write_photos(tmp / "photos")
            results["nextvit_small (random init, 7 photos)"] = measure(
                "nextvit_small", True, embedded_data("nextvit_digits", "calib"), photos, False, tmp, log)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    log(f"wrote {out}")
    for model, r in results.items():
        if model == "note":
            continue
        print(f"\n{model}: {r['images']} images, calibrated on {r['calibration_images']}")
        print(f"  {'runtime/config':<28} {'top1 agree':>10} {'worst cos':>9} {'mean cos':>9} {'SQNR dB':>8} "
              f"{'drop pts':>8}")
        for runtime in ("onnxruntime", "executorch"):
            for name, v in r[runtime].items():
                drop = f"{v['drop_points']:>8.2f}" if "drop_points" in v else f"{'-':>8}"
                print(f"  {runtime + '/' + name:<28} {v['top1_agreement']:>10.2%} {v['cosine_min']:>9.5f} "
                      f"{v['cosine_mean']:>9.5f} {v['sqnr_db']:>8.1f} {drop}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
