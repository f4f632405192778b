#!/usr/bin/env python
"""ExecuTorch lowering time with and without ``edgevit.targets.executorch.shared_provenance``.

The model is quantized once (XNNPACK int8, calibrated on 4 synthetic images: lowering time does not depend on the
values), exported once per lowering, and lowered with ``to_edge_transform_and_lower`` + ``to_executorch`` in
alternating rounds (plain, shared, plain, shared, ...; the order rotates each round), after one untimed warm-up
lowering. The ratio plain/shared is the median of the per-round ratios with its range; the .pte bytes of every
lowering are compared too.

    .venv/bin/python benchmarks/executorch_lowering.py                     # Next-ViT-S int8 at 224, 3 rounds (~7 min)
    .venv/bin/python benchmarks/executorch_lowering.py --model nextvit_test_tiny --size 64

Writes benchmarks/results/executorch_lowering.json and prints a table.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import logging
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from edgevit.bench.timing import paired_ratio
from edgevit.models import create_model, randomize_
from edgevit.rewrites import deploy
from edgevit.targets.executorch.export import shared_provenance


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="nextvit_small")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--precision", choices=("int8", "fp32"), default="int8")
    ap.add_argument("--json", default="benchmarks/results/executorch_lowering.json")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    from edgevit.quantize.executorch_quant import quantize_xnnpack

    torch.manual_seed(0)
    size = (args.size, args.size)
    net = deploy(randomize_(create_model(args.model)), "executorch", img_size=size).model
    calib = np.random.default_rng(0).normal(size=(4, 3, *size)).astype(np.float32)
    example = torch.from_numpy(calib[:1])
    module = quantize_xnnpack(net, example, calib).module if args.precision == "int8" else net

    def lower(shared: bool) -> tuple[float, str]:
        exported = torch.export.export(module, (example,), strict=False)
        t0 = time.perf_counter()
        with shared_provenance() if shared else contextlib.nullcontext(), contextlib.redirect_stdout(io.StringIO()):
            buffer = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()]).to_executorch().buffer
        return time.perf_counter() - t0, hashlib.sha256(buffer).hexdigest()

    print(f"warm-up lowering of {args.model} {args.precision} at {args.size} ...", file=sys.stderr, flush=True)
    lower(False)
    times: dict[str, list[float]] = {"plain": [], "shared": []}
    digests = set()
    for r in range(args.rounds):
        order = ("plain", "shared") if r % 2 == 0 else ("shared", "plain")
        for name in order:
            seconds, digest = lower(name == "shared")
            times[name].append(seconds)
            digests.add(digest)
            print(f"round {r + 1}/{args.rounds} {name}: {seconds:.1f} s", file=sys.stderr, flush=True)
    ratio = paired_ratio(times["plain"], times["shared"])
    result = {"model": args.model, "size": args.size, "precision": args.precision, "rounds": args.rounds,
              "torch": torch.__version__, "seconds": times, "plain_over_shared": ratio,
              "pte_identical": len(digests) == 1}
    print(f"| lowering {args.model} {args.precision} {args.size} | median s | rounds |")
    print("|---|---|---|")
    for name, xs in times.items():
        print(f"| {name} | {float(np.median(xs)):.1f} | {', '.join(f'{x:.1f}' for x in xs)} |")
    print(f"plain/shared per round: median {ratio['median']:.2f}x (range {ratio['p10']:.2f}-{ratio['p90']:.2f}, "
          f"{ {'a faster': 'plain faster', 'b faster': 'shared faster'}.get(ratio['verdict'], 'tie')}); .pte bytes identical in every lowering: {len(digests) == 1}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
