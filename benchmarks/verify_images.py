"""`edgevit verify --images` against `edgevit evaluate --inline` on the same large folder of small pictures.

verify used to decode every picture before running any (12 min 48 s and 2.76 GB on 10,000 pictures, where evaluate
--inline took 55 s and 402 MB); it now streams them in chunks. Both commands run as the user runs them (a child
process each), alternating, on one artifact of the shipped model; wall time and the child's own peak resident memory
(``wait4``'s rusage) per run. The goal: verify within 1.5x of evaluate, under 600 MB.

    .venv/bin/python benchmarks/verify_images.py [--images 10000] [--rounds 2] \
        [--json benchmarks/results/verify_images.json]
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

REPO = Path(__file__).resolve().parents[1]


def _pictures(folder: Path, count: int) -> None:
    """``count`` distinct small PNGs: the shipped held-out digits, shifted and tinted so that no two are equal."""
    import numpy as np
    from PIL import Image

    from edgevit.models.factory import embedded_data

    seeds = sorted(Path(embedded_data("nextvit_digits", "eval")).rglob("*.png"))
    rng = np.random.default_rng(0)
    for i in range(count):
        base = np.asarray(Image.open(seeds[i % len(seeds)]).convert("RGB"), np.int16)
        shifted = np.roll(base, (int(rng.integers(-3, 4)), int(rng.integers(-3, 4))), (0, 1))
        tint = rng.integers(-12, 13, 3)
        Image.fromarray(np.clip(shifted + tint, 0, 255).astype(np.uint8)).save(folder / f"{i:05d}.png")


def _run(cmd: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    out, err = proc.stdout.read().decode(), proc.stderr.read().decode()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {code}: {err[-2000:]}")
    return {"wall_s": round(wall, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "stdout_tail": out[-300:]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", default="benchmarks/results/verify_images.json")
    args = ap.parse_args(argv)
    edgevit = [sys.executable, "-m", "edgevit"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        images, art = tmp / "images", tmp / "digits_onnx"
        images.mkdir()
        _pictures(images, args.images)
        subprocess.run([*edgevit, "convert", "--model", "nextvit_digits", "--target", "onnx", "--out", str(art)],
                       check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        commands = {"verify --images": [*edgevit, "verify", str(art), "--images", str(images)],
                    "evaluate --inline": [*edgevit, "evaluate", str(art), "--images", str(images), "--inline"]}
        runs = {name: [] for name in commands}
        for r in range(args.rounds):  # alternating, the order flipped every round
            for name in (list(commands) if r % 2 == 0 else list(commands)[::-1]):
                runs[name].append(_run(commands[name]))
                print(f"round {r + 1} {name}: {runs[name][-1]['wall_s']} s, {runs[name][-1]['peak_rss_mb']} MB",
                      flush=True)
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), "?")
    summary = {name: {"wall_s_median": statistics.median(r["wall_s"] for r in rs),
                      "wall_s": [r["wall_s"] for r in rs],
                      "peak_rss_mb_max": max(r["peak_rss_mb"] for r in rs)} for name, rs in runs.items()}
    ratios = [v["wall_s"] / e["wall_s"] for v, e in zip(runs["verify --images"], runs["evaluate --inline"])]
    result = {"cpu": cpu, "cores": os.cpu_count(), "images": args.images, "rounds": args.rounds,
              "artifact": "nextvit_digits onnx fp32", "summary": summary,
              "verify_over_evaluate_per_round": [round(x, 3) for x in ratios],
              "goal": "verify within 1.5x of evaluate --inline, under 600 MB peak",
              "goal_met": max(ratios) <= 1.5 and summary["verify --images"]["peak_rss_mb_max"] < 600}
    print(f"\n{'command':<20} {'median s':>9} {'runs s':>18} {'peak MB':>8}   ({cpu}, {args.images} pictures)")
    for name, v in summary.items():
        print(f"{name:<20} {v['wall_s_median']:>9.1f} {str(v['wall_s']):>18} {v['peak_rss_mb_max']:>8.0f}")
    print(f"verify / evaluate per round: {result['verify_over_evaluate_per_round']}; goal met: {result['goal_met']}")
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
