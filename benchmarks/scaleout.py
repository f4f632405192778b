#!/usr/bin/env python
"""Scale-out on one machine: wall time of an 8-cell conversion matrix and of `edgevit evaluate` on a few thousand
labelled images, sequential (one process, every core: `--inline`) vs a local Ray with 2 workers, in the same run.

Each variant is a fresh `edgevit` process timed end to end (interpreter and Ray start-up included: what a user
waits for), the variants alternate (seq, ray, seq, ray, ...) so a noisy neighbour hits both, conversions are
rebuilt every round (`--force`), and the ratio is the median of the per-round ratios.

Matrix: nextvit_digits x (onnx, ort, executorch, coreml) x (fp32, int8) = 8 cells.
Evaluate: the deep reference model's (nextvit_photodigits, Next-ViT-S depth) 450 held-out pictures, each written 7
times with a different small rotation, shift and contrast (3150 images, labelled by folder), through its fp32 and
int8 ONNX artifacts; sequential with 2 runtime threads (every core, the goal's baseline), Ray with 2 shards of 1
thread, and, as a third variant, sequential with 1 thread: one Ray worker's share run alone, which separates what
Ray adds (start-up, scheduling) from what two threads in one process already get out of the second core. A fourth
variant is the ceiling of any scheduler on this machine: two plain `edgevit evaluate --inline --threads 1` processes
started at the same moment, each on half of the images (a folder of links to every other image of each class), timed
until both have finished - no Ray, no scheduling, both processes' own start-up in parallel. Those thread
counts change float sums in the last bits, so the script checks that the agreement and accuracy rates are identical
and cosine within 1e-6 (equal numbers for any shard count at one thread count are tested in tests/scale). Also
timed: starting and stopping a local Ray alone (a fixed cost in every Ray run).

    .venv/bin/python benchmarks/scaleout.py [--rounds 2] [--copies 7]

Writes benchmarks/results/scaleout.json and prints a table.
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

import numpy as np
import yaml
from PIL import Image, ImageEnhance

EDGEVIT = [sys.executable, "-m", "edgevit"]
SPEC = {"models": [{"model": "nextvit_digits"}], "targets": ["onnx", "ort", "executorch", "coreml"],
        "precisions": ["fp32", "int8"], "options": {"min_ios": 17}}


def run(cmd: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}")
    return wall, p.stdout


def write_images(src: Path, dst: Path, copies: int) -> int:
    """``copies`` variants of every image of ``src`` (class subfolders kept): rotation +-8 degrees, shift +-2 px,
    contrast 0.8-1.2, drawn from a fixed seed."""
    rng = np.random.default_rng(0)
    n = 0
    for f in sorted(src.rglob("*.png")):
        img = Image.open(f).convert("RGB")
        (dst / f.parent.name).mkdir(parents=True, exist_ok=True)
        for c in range(copies):
            v = img.rotate(float(rng.uniform(-8, 8)), resample=Image.BILINEAR,
                           translate=tuple(int(t) for t in rng.integers(-2, 3, size=2)))
            v = ImageEnhance.Contrast(v).enhance(float(rng.uniform(0.8, 1.2)))
            v.save(dst / f.parent.name / f"{f.stem}_{c}.png")
            n += 1
    return n


def halves(images: Path, dst: Path) -> list[Path]:
    """Two folders of links, each with every other image of every class of ``images``."""
    out = [dst / "half0", dst / "half1"]
    for cls in sorted(d for d in images.iterdir() if d.is_dir()):
        for i, f in enumerate(sorted(cls.iterdir())):
            (out[i % 2] / cls.name).mkdir(parents=True, exist_ok=True)
            (out[i % 2] / cls.name / f.name).symlink_to(f)
    return out


def run_together(cmds: list[list[str]]) -> float:
    """Wall time from starting every command at once until the last one has finished."""
    t0 = time.perf_counter()
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for c in cmds]
    outs = [p.communicate() for p in procs]
    wall = time.perf_counter() - t0
    for c, p, (o, e) in zip(cmds, procs, outs):
        if p.returncode != 0:
            raise SystemExit(f"{' '.join(c)} failed ({p.returncode}):\n{o[-2000:]}\n{e[-3000:]}")
    return wall


def main(argv=None) -> int:
    from edgevit.models.factory import embedded_data

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--copies", type=int, default=7)
    ap.add_argument("--json", default="benchmarks/results/scaleout.json")
    ap.add_argument("--skip-matrix", action="store_true", help="keep the matrix section of the existing --json")
    args = ap.parse_args(argv)
    out = {"machine": f"{os.cpu_count()} CPUs", "rounds": args.rounds, "spec": SPEC}
    if args.skip_matrix:
        out["matrix"] = json.loads(Path(args.json).read_text())["matrix"]
    with tempfile.TemporaryDirectory(prefix="edgevit-scaleout-") as tmp:
        tmp = Path(tmp)
        spec = tmp / "spec.yaml"
        spec.write_text(yaml.safe_dump(SPEC))
        variants = {"sequential": ["--inline"], "ray-2-workers": ["--workers", "2"]}
        times = {k: [] for k in variants}
        for r in range(0 if args.skip_matrix else args.rounds):
            for name, extra in variants.items():
                wall, _ = run([*EDGEVIT, "matrix", str(spec), "--out", str(tmp / f"m_{name}"), "--force", "--json",
                               *extra])
                cells = json.loads((tmp / f"m_{name}" / "matrix.json").read_text())["cells"]
                bad = [c["id"] for c in cells if c["status"] != "ok"]
                if bad:
                    raise SystemExit(f"matrix cells failed: {bad}")
                times[name].append(wall)
                print(f"matrix round {r + 1} {name}: {wall:.1f} s", file=sys.stderr)
        ratios = [s / p for s, p in zip(times["sequential"], times["ray-2-workers"])]
        if not args.skip_matrix:
            out["matrix"] = {"cells": 8, "wall_s": times, "speedup_per_round": ratios,
                             "speedup_median": statistics.median(ratios), "goal": 1.6}

        images = tmp / "images"
        n = write_images(Path(embedded_data("nextvit_photodigits", "eval")), images, args.copies)
        arts = []
        for p in ("fp32", "int8"):
            arts.append(str(tmp / f"photodigits_onnx_{p}"))
            run([*EDGEVIT, "convert", "--model", "nextvit_photodigits", "--target", "onnx", "--precision", p,
                 "--out", arts[-1]])
        ev_variants = {"sequential": ["--inline", "--threads", "2", "--shards", "1"],
                       "ray-2-workers": ["--shards", "2", "--threads", "1"],
                       "sequential-1-thread": ["--inline", "--threads", "1", "--shards", "1"]}
        ev_times = {k: [] for k in ev_variants}
        ev_times["ceiling-2-plain-processes"] = []
        half = halves(images, tmp / "halves")
        metrics = {}
        # untimed: the first pass over 3150 fresh files also fills the page cache (it was 10 s slower)
        run([*EDGEVIT, "evaluate", *arts, "--images", str(images), "--labels-from-folders", "--json",
             *ev_variants["sequential"]])
        for r in range(args.rounds):
            for name, extra in ev_variants.items():
                wall, stdout = run([*EDGEVIT, "evaluate", *arts, "--images", str(images), "--labels-from-folders",
                                    "--json", *extra])
                ev_times[name].append(wall)
                metrics[name] = json.loads(stdout)
                print(f"evaluate round {r + 1} {name}: {wall:.1f} s", file=sys.stderr)
            wall = run_together([[*EDGEVIT, "evaluate", *arts, "--images", str(h), "--labels-from-folders", "--json",
                                  *ev_variants["sequential-1-thread"]] for h in half])
            ev_times["ceiling-2-plain-processes"].append(wall)
            print(f"evaluate round {r + 1} ceiling (2 plain processes, 1 thread, half the images each): {wall:.1f} s",
                  file=sys.stderr)
        keys = ("top1_agreement", "top5_agreement", "cosine_mean", "cosine_min", "sqnr_db", "top1_fp32",
                "top1_artifact")
        rates = ("top1_agreement", "top5_agreement", "top1_fp32", "top1_artifact")
        pairs = [*zip(metrics["sequential"], metrics["ray-2-workers"]),
                 *zip(metrics["sequential"], metrics["sequential-1-thread"])]
        same = all(a[k] == b[k] for a, b in pairs for k in rates) and \
            all(abs(a[k] - b[k]) <= 1e-6 for a, b in pairs for k in ("cosine_mean", "cosine_min"))
        ray_start = []
        for _ in range(3):
            wall, _ = run([sys.executable, "-c", "import ray; ray.init(address='local', num_cpus=2, "
                                                 "include_dashboard=False); ray.shutdown()"])
            ray_start.append(wall)
        out["ray_start_stop_s"] = ray_start
        ratios = [s / p for s, p in zip(ev_times["sequential"], ev_times["ray-2-workers"])]
        ratios_1t = [s / p for s, p in zip(ev_times["sequential-1-thread"], ev_times["ray-2-workers"])]
        threads_gain = [a / b for a, b in zip(ev_times["sequential-1-thread"], ev_times["sequential"])]
        ceiling = [s / c for s, c in zip(ev_times["sequential"], ev_times["ceiling-2-plain-processes"])]
        out["evaluate"] = {"images": n, "artifacts": ["nextvit_photodigits onnx fp32", "nextvit_photodigits onnx int8"],
                           "wall_s": ev_times, "speedup_per_round": ratios,
                           "speedup_median": statistics.median(ratios), "goal": 1.7,
                           "speedup_vs_sequential_1_thread_per_round": ratios_1t,
                           "speedup_vs_sequential_1_thread_median": statistics.median(ratios_1t),
                           "sequential_2_threads_vs_1_thread_per_round": threads_gain,
                           "sequential_2_threads_vs_1_thread_median": statistics.median(threads_gain),
                           "ceiling_vs_sequential_per_round": ceiling,
                           "ceiling_vs_sequential_median": statistics.median(ceiling),
                           "rates_identical_cosine_within_1e-6": same,
                           "time_in_shards_s_last_round": {k: v[0]["timings_s"] for k, v in metrics.items()},
                           "metrics": {k: [{m: r.get(m) for m in keys} for r in v] for k, v in metrics.items()}}
    print(f"\n{'job':<10} {'sequential s':>14} {'ray 2 workers s':>16} {'speed-up (median)':>18} {'goal':>5}")
    for job in ("matrix", "evaluate"):
        j = out[job]
        seq, ray = statistics.median(j["wall_s"]["sequential"]), statistics.median(j["wall_s"]["ray-2-workers"])
        print(f"{job:<10} {seq:>14.1f} {ray:>16.1f} {j['speedup_median']:>17.2f}x {j['goal']:>4}x  "
              f"(per round: {', '.join(f'{x:.2f}' for x in j['speedup_per_round'])})")
    ev = out["evaluate"]
    if "sequential-1-thread" in ev["wall_s"]:
        print(f"evaluate, sequential with 1 thread: {statistics.median(ev['wall_s']['sequential-1-thread']):.1f} s; "
              f"Ray 2 workers vs it {ev['speedup_vs_sequential_1_thread_median']:.2f}x; two threads in one process "
              f"vs one {ev['sequential_2_threads_vs_1_thread_median']:.2f}x (what the 2-thread baseline already "
              "gets from the second core)")
    if "ceiling_vs_sequential_median" in ev:
        print(f"evaluate, ceiling (two plain 1-thread processes on half the images each, no Ray): "
              f"{statistics.median(ev['wall_s']['ceiling-2-plain-processes']):.1f} s = "
              f"{ev['ceiling_vs_sequential_median']:.2f}x the sequential run (per round: "
              f"{', '.join(f'{x:.2f}' for x in ev['ceiling_vs_sequential_per_round'])}; goal {ev['goal']}x)")
    print(f"evaluate: {out['evaluate']['images']} images; sequential vs sharded: rates identical, cosine within "
          f"1e-6: {out['evaluate']['rates_identical_cosine_within_1e-6']}")
    print(f"starting and stopping a local Ray alone: {', '.join(f'{x:.1f}' for x in out['ray_start_stop_s'])} s")
    Path(args.json).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
