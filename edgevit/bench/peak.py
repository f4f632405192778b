"""Compute peaks of this machine: a measured fp32 GEMM peak (each runtime's own GEMM, several shapes, the same
threads as the model) and a theoretical peak from the CPU's vector flags and clock, for fp32 and int8.

The measured peak is the best rate any runtime reaches on any shape, including Next-ViT's own largest GEMM
shapes; a model can still edge past it when its runtime tiles a whole network better than one GEMM, which is why
the theoretical peak is printed beside it: nothing can exceed that one.
"""

from __future__ import annotations

import re
from pathlib import Path

from edgevit._io import temp_dir

# (M, K, N): a square GEMM; Next-ViT-S's stage-1 and stage-2 MLPs at 224 (small K, operands in cache); its
# stage-3 MLP at 224 and 384 and its stage-4 MLP at 384, the shapes most of its MACs run in.
SHAPES = ((1024, 1024, 1024), (3136, 96, 288), (784, 192, 576), (196, 384, 1152), (576, 384, 1152),
          (144, 768, 2304))


def cpu_facts(cpuinfo: str | None = None) -> dict:
    """Vector width, VNNI and clock of this CPU from /proc/cpuinfo (Linux x86 and ARM); {} where unreadable."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return {}
    flags = set((re.search(r"^(?:flags|Features)\s*:\s*(.*)$", cpuinfo, re.M) or [None, ""])[1].split())
    mhz = [float(v) for v in re.findall(r"^cpu MHz\s*:\s*([\d.]+)", cpuinfo, re.M)]
    if "avx512f" in flags:
        lanes, isa = 16, "avx512f"
    elif "avx2" in flags or "avx" in flags:
        lanes, isa = 8, "avx2" if "avx2" in flags else "avx"
    elif "asimd" in flags:
        lanes, isa = 4, "neon"
    else:
        lanes, isa = 4, "sse"
    return {"isa": isa, "fp32_lanes": lanes, "fma": "fma" in flags or isa == "neon",
            "vnni": bool({"avx512_vnni", "avx_vnni"} & flags) or "asimddp" in flags,
            "ghz": max(mhz) / 1000 if mhz else None}


def theoretical_peak(threads: int, precision: str = "fp32", facts: dict | None = None) -> dict | None:
    """Upper bound in GFLOP/s (GOP/s for int8): threads x GHz x ops per cycle, assuming two full-width FMA units
    per core (Zen 4 has two 256-bit units that double-pump AVX-512, so its real rate is half: this is a ceiling,
    not an estimate). int8 with a dot-product instruction (VNNI / ARM dotprod) does 4 MACs per 32-bit lane, else
    2 (pmaddubsw-style). None when the clock is not readable."""
    facts = cpu_facts() if facts is None else facts
    if not facts or not facts.get("ghz"):
        return None
    per_cycle = facts["fp32_lanes"] * 2 * 2  # lanes x (mul + add) x 2 units
    if precision == "int8":
        per_cycle *= 4 if facts["vnni"] else 2
    gflops = threads * facts["ghz"] * per_cycle
    return {"gflops": gflops, "basis": f"{threads} threads x {facts['ghz']:.2f} GHz (cpuinfo) x {per_cycle} "
                                       f"{'int8 ops' if precision == 'int8' else 'fp32 flops'}/cycle ({facts['isa']}"
                                       f"{', vnni' if precision == 'int8' and facts['vnni'] else ''}, 2 FMA units "
                                       "assumed)"}


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
    with temp_dir("gemm") as folder:  # runtimes hold the models in memory
        _runtime_gemms(runners, lin, a, Path(folder), threads, runtimes, flops)
    return runners


def _runtime_gemms(runners, lin, a, tmp: Path, threads: int, runtimes, flops) -> None:
    import torch

    m, k = a.shape
    if "onnxruntime" in runtimes:
        from edgevit.targets.base import IOSpec
        from edgevit.targets.onnx.export import export_onnx
        from edgevit.targets.onnx.runtime import make_session

        path = tmp / "gemm.onnx"
        export_onnx(lin, a, path, IOSpec(input_name="x", input_shape=(m, k), output_names=("y",)), opset=18)
        sess = make_session(path, threads=threads)
        xa = a.numpy()
        runners["gemm_onnxruntime"] = (lambda: sess.run(None, {"x": xa}), flops)
    if "executorch" in runtimes:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

        from edgevit.targets.executorch.runtime import executorch_runtime

        edge = to_edge_transform_and_lower(torch.export.export(lin, (a,), strict=False),
                                           partitioner=[XnnpackPartitioner()])
        path = tmp / "gemm.pte"
        path.write_bytes(edge.to_executorch().buffer)
        method = executorch_runtime(threads).load_program(str(path)).load_method("forward")
        runners["gemm_executorch"] = (lambda: method.execute([a]), flops)


def gflops(flops: float, seconds: float) -> float:
    return flops / seconds / 1e9 if seconds > 0 else float("nan")

