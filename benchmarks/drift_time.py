#!/usr/bin/env python
"""Wall time of `edgevit drift` on an int8 Next-ViT-S `.pte` (random init, calibrated and checked on the seven
scikit-image photographs), with the debug program lowered in two halves at once (the default for a program this
big: `edgevit.targets.executorch.split_in_two` / `lower_halves`) and in one piece in one process.

Each run is a fresh process timed end to end (interpreter start, imports, the PyTorch reference, quantizing and
lowering the debug program, running it), the two variants alternate (split, whole, whole, split, ...: the order
flips every round) so a noisy neighbour hits both, and the ratio is the median of the per-round ratios with its
10-90% range (`edgevit.bench.timing.paired_ratio`). Both variants must print the same table.

    .venv/bin/python benchmarks/drift_time.py [--rounds 3] [--artifact DIR]     # ~8 min with the conversion

Writes benchmarks/results/drift_time.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quantization import write_photos  # noqa: E402  (benchmarks/quantization.py: the seven photographs)

from edgevit.bench.timing import paired_ratio  # noqa: E402

# the CLI with the split switched off: the same code path, one lowering in this process
WHOLE = ("import sys; import edgevit.targets.executorch as et; et.SPLIT_MIN_NODES = 10 ** 9; "
         "from edgevit.cli import main; sys.exit(main(sys.argv[1:]))")
SPLIT = "import sys; from edgevit.cli import main; sys.exit(main(sys.argv[1:]))"


def run(code: str, args: list[str], ok: tuple[int, ...] = (0,)) -> tuple[float, str]:
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                       env={**os.environ, "PYTHONWARNINGS": "ignore"})
    wall = time.perf_counter() - t0
    if p.returncode not in ok:
        raise SystemExit(f"edgevit {' '.join(args)} failed ({p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}")
    return wall, p.stdout


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--artifact", help="an int8 .pte folder made as below (skips the conversion)")
    ap.add_argument("--json", default="benchmarks/results/drift_time.json")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="edgevit-drift-time-") as tmp:
        photos = write_photos(Path(tmp) / "photos")
        art = args.artifact
        convert = ["convert", "--model", "nextvit_small", "--random-init", "--target", "executorch", "--precision",
                   "int8", "--calib-dir", photos, "--eval-dir", photos, "--keep-failed"]
        if art is None:
            art = str(Path(tmp) / "s_et8")
            # int8 random-init Next-ViT-S fails parity on the photographs (exit 3): --keep-failed keeps it for drift
            wall, _ = run(SPLIT, [*convert, "--out", art], ok=(0, 3))
            print(f"converted in {wall:.0f} s", file=sys.stderr)
        cmd = ["drift", art, "--images", photos, "--calib-dir", photos]
        times = {"split": [], "whole": []}
        tables = {}
        for r in range(args.rounds):
            order = ("split", "whole") if r % 2 == 0 else ("whole", "split")
            for name in order:
                wall, out = run(SPLIT if name == "split" else WHOLE, cmd)
                times[name].append(wall)
                tables[name] = out
                print(f"round {r + 1} {name}: {wall:.1f} s", file=sys.stderr)
    rows = {k: [ln for ln in v.splitlines()[1:] if not ln.startswith("drift of")] for k, v in tables.items()}
    same = rows["split"] == rows["whole"]
    ratio = paired_ratio(times["whole"], times["split"])
    ratio["verdict"] = {"a faster": "whole faster", "b faster": "split faster"}.get(ratio["verdict"], "tie")
    result = {"note": f"measured {time.strftime('%Y-%m-%d')} with benchmarks/drift_time.py on {os.cpu_count()} CPUs",
              "artifact": "nextvit_small --random-init, executorch int8, calibrated on the seven photographs",
              "command": "edgevit drift DIR --images PHOTOS --calib-dir PHOTOS", "rounds": args.rounds,
              "wall_s": times, "whole_over_split": ratio, "same_table": same,
              "mechanism_split": tables["split"].splitlines()[0]}
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nedgevit drift, int8 Next-ViT-S .pte, {args.rounds} interleaved rounds")
    print(f"  {'debug program':<28} {'median s':>9}  per round")
    for k, label in (("split", "two halves, two processes"), ("whole", "one piece, one process")):
        print(f"  {label:<28} {statistics.median(times[k]):>9.1f}  {', '.join(f'{t:.1f}' for t in times[k])}")
    print(f"  whole / split: {ratio['median']:.2f}x (10-90%: {ratio['p10']:.2f}-{ratio['p90']:.2f}, {ratio['verdict']});"
          f" same table: {same}")
    print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
