"""GEMM peak of this machine, measured with each runtime's own fp32 GEMM on the same threads."""

from __future__ import annotations

import tempfile
from pathlib import Path



# (M, K, N): a square GEMM, and the shapes of Next-ViT's stage-1 and stage-2 MLPs at 224, where small K
# keeps operands in cache; the peak is the best rate any runtime reaches on any of them.
SHAPES = ((1024, 1024, 1024), (3136, 96, 288), (784, 192, 576))


def gemm_runners(threads: int, runtimes: tuple[str, ...] = ("torch", "onnxruntime", "executorch"),
                 shapes: tuple[tuple[int, int, int], ...] = SHAPES):
    """{name: (callable, flops)}: fp32 matmuls of each shape in each runtime, on ``threads`` threads."""
    import warnings

    runners = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for m, k, n in shapes:
            for name, entry in _gemm_runners_one(threads, m, k, n, runtimes).items():
                runners[f"{name}_{m}x{k}x{n}"] = entry
    return runners


def _gemm_runners_one(threads: int, m: int, k: int, n: int, runtimes: tuple[str, ...]):
    import torch

    flops = 2.0 * m * k * n
    a = torch.randn(m, k)
    b = torch.randn(k, n)
    runners = {}
    if "torch" in runtimes:
        torch.set_num_threads(threads)
        runners["gemm_torch"] = (lambda: torch.mm(a, b), flops)
    lin = torch.nn.Linear(k, n, bias=False).eval()
    tmp = Path(tempfile.mkdtemp(prefix="edgevit-gemm-"))
    if "onnxruntime" in runtimes:
        from edgevit.targets.base import IOSpec
        from edgevit.targets.onnx import export_onnx, make_session

        path = tmp / "gemm.onnx"
        export_onnx(lin, a, path, IOSpec(input_name="x", input_shape=(m, k), output_names=("y",)), opset=18)
        sess = make_session(path, threads=threads)
        xa = a.numpy()
        runners["gemm_onnxruntime"] = (lambda: sess.run(None, {"x": xa}), flops)
    if "executorch" in runtimes:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower
        from executorch.runtime import Runtime

        edge = to_edge_transform_and_lower(torch.export.export(lin, (a,), strict=False),
                                           partitioner=[XnnpackPartitioner()])
        path = tmp / "gemm.pte"
        path.write_bytes(edge.to_executorch().buffer)
        method = Runtime.get().load_program(str(path)).load_method("forward")
        runners["gemm_executorch"] = (lambda: method.execute([a]), flops)
    return runners


def gflops(flops: float, seconds: float) -> float:
    return flops / seconds / 1e9 if seconds > 0 else float("nan")

