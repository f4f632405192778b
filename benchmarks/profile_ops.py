#!/usr/bin/env python
"""Where the time goes, per operator: Next-ViT original vs deployed form, in ExecuTorch (its devtools: ETDump +
ETRecord through the Inspector) and ONNX Runtime (its built-in profiler), 2 threads.

    .venv/bin/python benchmarks/profile_ops.py [--size 224] [--runs 10]

Prints the top operators of each variant and writes benchmarks/results/profile_ops.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from edgevit.bench.profiles import ingest_etdump
from edgevit.models import create_model, randomize_
from edgevit.rewrites import FORMS, deploy
from edgevit.targets.base import IOSpec
from edgevit.targets.executorch.runtime import set_threads
from edgevit.targets.onnx.export import export_onnx


def executorch_profile(model, x, tmp: Path, runs: int, threads: int) -> dict:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from executorch.extension.pybindings import portable_lib

    edge = to_edge_transform_and_lower(torch.export.export(model, (x,), strict=False),
                                       partitioner=[XnnpackPartitioner()], generate_etrecord=True)
    program = edge.to_executorch()
    (tmp / "m.pte").write_bytes(program.buffer)
    program.get_etrecord().save(str(tmp / "m.etrecord"))
    set_threads(threads)
    module = portable_lib._load_for_executorch(str(tmp / "m.pte"), enable_etdump=True, debug_buffer_size=0)
    for _ in range(runs):
        module.forward([x])
    module.write_etdump_result_to_file(str(tmp / "m.etdump"))
    prof = ingest_etdump(tmp / "m.etdump", tmp / "m.etrecord")
    return {"total_ms": prof["total_ms"], "portable_ms": prof["portable_ms"],
            "operators": [{k: t[k] for k in ("type", "count", "total_ms", "share", "delegated")}
                          for t in prof["operators"][:12]]}


def onnxruntime_profile(model, x, tmp: Path, runs: int, threads: int) -> dict:
    import onnxruntime as ort

    path = tmp / "m.onnx"
    export_onnx(model, x, path, IOSpec(input_name="image", input_shape=tuple(x.shape), output_names=("logits",)),
                opset=18)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.enable_profiling = True
    so.profile_file_prefix = str(tmp / "ortprof")
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    for _ in range(3):
        sess.run(None, {"image": x.numpy()})
    events = json.loads(Path(sess.end_profiling()).read_text())
    per_op: dict[str, list[float]] = defaultdict(list)
    for ev in events:
        if ev.get("cat") == "Node" and ev["name"].endswith("_kernel_time"):
            per_op[ev["args"]["op_name"]].append(ev["dur"] / 1000.0)
    # the first 3 runs are mixed in; report per-run averages
    table = sorted(({"type": op, "count": len(v) // 3, "total_ms": sum(v) / 3} for op, v in per_op.items()),
                   key=lambda t: -t["total_ms"])
    total = sum(t["total_ms"] for t in table)
    for t in table:
        t["share"] = t["total_ms"] / total
    return {"total_ms": total, "operators": table[:12]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="nextvit_small")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default="benchmarks/results/profile_ops.json")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    torch.set_num_threads(args.threads)
    model = randomize_(create_model(args.model))
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(1, 3, args.size, args.size)).astype(np.float32))
    variants = {
        "original": (model, model),
        "deployed": (deploy(model, "executorch", img_size=(args.size,) * 2).model,
                     deploy(model, "onnx", img_size=(args.size,) * 2).model),
    }
    out = {"model": args.model, "size": args.size, "threads": args.threads, "forms": {
        "executorch": FORMS["executorch"][0], "onnx": FORMS["onnx"][0]}, "profiles": {}}
    with torch.no_grad(), tempfile.TemporaryDirectory(prefix="edgevit-prof-") as tmp:
        for name, (et_model, ort_model) in variants.items():
            d = Path(tmp) / name
            d.mkdir()
            print(f"profiling {name} ...", file=sys.stderr, flush=True)
            out["profiles"][name] = {"executorch": executorch_profile(et_model, x, d, args.runs, args.threads),
                                     "onnxruntime": onnxruntime_profile(ort_model, x, d, args.runs, args.threads)}
    for name, runtimes in out["profiles"].items():
        for rt, prof in runtimes.items():
            extra = f", portable {prof['portable_ms']:.2f} ms" if "portable_ms" in prof else ""
            print(f"\n{name} form in {rt}: {prof['total_ms']:.1f} ms per run{extra}")
            for t in prof["operators"][:8]:
                where = "" if "delegated" not in t else ("  (XNNPACK)" if t["delegated"] else "  (portable)")
                print(f"  {t['type'][:46]:<46} x{t['count']:<4} {t['total_ms']:>7.2f} ms {t['share']:>6.1%}{where}")
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
