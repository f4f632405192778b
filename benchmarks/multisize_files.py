#!/usr/bin/env python
"""What serving several sizes from one artifact (--img-sizes) costs in file size: each target's artifact for the
primary size alone vs for every listed size, with parity at each size and (ExecuTorch) the operators left outside
XNNPACK per method. Tiny config, random init, fp32.

    .venv/bin/python benchmarks/multisize_files.py [--model nextvit_test_tiny] [--sizes 64,100x70,96x160]

Writes benchmarks/results/multisize_files.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import warnings
from pathlib import Path

from edgevit.config import ConvertConfig, parse_img_sizes
from edgevit.pipeline import convert

TARGETS = ("onnx", "executorch", "litert", "coreml")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="nextvit_test_tiny")
    ap.add_argument("--sizes", default="64,100x70,96x160")
    ap.add_argument("--coreml-sizes", default="64,96x160,128", help="CoreML takes multiples of 32 only")
    ap.add_argument("--json", default="benchmarks/results/multisize_files.json")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgevit-multisize-") as tmp:
        for target in TARGETS:
            sizes = args.coreml_sizes if target == "coreml" else args.sizes
            primary = "x".join(map(str, parse_img_sizes(sizes)[0]))
            row = {"target": target, "sizes": sizes}
            for label, extra in (("one", {"img_size": primary}), ("all", {"img_sizes": sizes})):
                out = Path(tmp) / f"{target}_{label}"
                r = convert(ConvertConfig(model=args.model, random_init=True, target=target, precision="fp32",
                                          out=str(out), **extra))
                art = out / r.manifest["artifact"]
                row[f"{label}_bytes"] = sum(f.stat().st_size for f in art.rglob("*") if f.is_file()) \
                    if art.is_dir() else art.stat().st_size
                row[f"{label}_parity"] = {k: max(m["max_rel"] for m in v)
                                          for k, v in r.manifest["parity"]["sets"].items()}
                row[f"{label}_passed"] = r.parity_passed
                if target == "executorch" and label == "all":
                    row["portable_nodes_per_method"] = {"forward": r.manifest["executorch"]["delegation"][
                        "portable_nodes"], **r.manifest["executorch"]["method_portable_nodes"]}
            row["all_vs_one"] = row["all_bytes"] / row["one_bytes"]
            rows.append(row)
            print(f"{target:<11} one size {row['one_bytes'] / 1e6:6.2f} MB  {len(parse_img_sizes(sizes))} sizes "
                  f"{row['all_bytes'] / 1e6:6.2f} MB  (x{row['all_vs_one']:.3f})  parity "
                  f"{'PASS' if row['all_passed'] else 'FAIL'} at " +
                  ", ".join(f"{k} {v:.2g}" for k, v in row["all_parity"].items()) +
                  (f"  portable nodes per method {row['portable_nodes_per_method']}"
                   if "portable_nodes_per_method" in row else ""), flush=True)
    out = Path(args.json)
    out.write_text(json.dumps({"model": args.model, "weights": "random init", "precision": "fp32",
                               "command": "benchmarks/multisize_files.py " + " ".join(argv or sys.argv[1:]),
                               "rows": rows}, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
