#!/usr/bin/env python
"""Does leaving LiteRT int8's non-delegated ops unannotated in PT2E help? Next-ViT-S random init, deployed form;
int8 as edgevit makes it, then with batch matmuls (and pools) excluded from PT2E's annotation; the partition report
of each .tflite and fp32/int8 latency ratios over 10 interleaved rounds, 2 threads. Result:
benchmarks/results/litert_int8_float_ops.txt (the converter quantizes those ops anyway: no change).

    .venv/bin/python benchmarks/litert_int8_float_ops.py [SIZE]
"""
import time, contextlib, io, warnings, numpy as np, torch, tempfile, sys
warnings.simplefilter("ignore")
from pathlib import Path
import litert_torch
from litert_torch.quantize import pt2e_quantizer as pq
from litert_torch.quantize.quant_config import QuantConfig
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
from edgevit.models.factory import build_model
from edgevit.rewrites import deploy
from edgevit.targets.litert.graph import graph_report
from edgevit.targets.litert.quantize import io_modules as _io_modules
from edgevit.targets.litert.runtime import interpreter_class, quiet as _quiet
from edgevit.quantize.executorch_quant import _in_any, module_paths
size = int(sys.argv[1]) if len(sys.argv) > 1 else 224
net = build_model(model="nextvit_small", weights=None, random_init=True)
dep = deploy(net, "litert", img_size=(size, size)).model.eval()
x = torch.randn(1, 3, size, size)
calib = [torch.randn(1, 3, size, size) for _ in range(4)]
io_float = _io_modules(dep, x)
FLOAT_OPS = {"bmm": {torch.ops.aten.matmul.default, torch.ops.aten.bmm.default},
             "pool": {torch.ops.aten.avg_pool2d.default, torch.ops.aten.avg_pool1d.default, torch.ops.aten.adaptive_avg_pool2d.default, torch.ops.aten.mean.dim}}
def build(name, float_ops):
    class Q(pq.PT2EQuantizer):
        def _annotate_all_static_patterns(self, gm, config, filter_fn=None):
            def keep(node):
                return (filter_fn is None or filter_fn(node)) and _in_any(module_paths(node), io_float) is None and node.target not in float_ops
            return super()._annotate_all_static_patterns(gm, config, keep)
    q = Q().set_global(pq.get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))
    g = torch.export.export(dep, (x,), strict=False).module()
    p = prepare_pt2e(g, q)
    with torch.no_grad():
        for c in calib: p(c)
    conv = convert_pt2e(p, fold_quantize=False)
    path = f"/tmp/lite_{name}.tflite"
    with _quiet():
        litert_torch.convert(conv, (x,), quant_config=QuantConfig(pt2e_quantizer=q)).export(path)
    r = graph_report(Path(path))
    print(name, "partitions", r["xnnpack_partitions"], "not delegated", r["not_delegated"], flush=True)
    return path
paths = {"int8": build("int8", set()), "int8_bmmf": build("int8_bmmf", FLOAT_OPS["bmm"]),
         "int8_bmmpoolf": build("int8_bmmpoolf", FLOAT_OPS["bmm"] | FLOAT_OPS["pool"])}
with _quiet():
    litert_torch.convert(dep, (x,)).export("/tmp/lite_fp32.tflite")
paths["fp32"] = "/tmp/lite_fp32.tflite"
I = interpreter_class()
runs = {}
for k, pth in paths.items():
    it = I(model_path=pth, num_threads=2); it.allocate_tensors()
    inp = it.get_input_details()[0]["index"]
    it.set_tensor(inp, x.numpy()); it.invoke()
    runs[k] = it
times = {k: [] for k in runs}
for r in range(10):
    for k, it in runs.items():
        t = time.perf_counter(); it.invoke(); times[k].append(time.perf_counter() - t)
med = {k: float(np.median(v)) * 1000 for k, v in times.items()}
print({k: round(v, 1) for k, v in med.items()})
for k in ("int8", "int8_bmmf", "int8_bmmpoolf"):
    ratios = [a / b for a, b in zip(times["fp32"], times[k])]
    print(k, "speed-up median", round(float(np.median(ratios)), 2), "p10", round(float(np.percentile(ratios, 10)), 2))
