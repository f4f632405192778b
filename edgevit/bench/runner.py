"""``edgevit bench``: artifact folders in their desktop runtimes, one statistics method for all of them.

Per artifact: load time, first-run latency, steady-state latency (interleaved rounds across all artifacts given),
peak resident memory (measured in a child process per artifact, so one runtime's memory never counts against
another), size on disk, and the roofline fraction against a GEMM peak measured in the same run.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edgevit.bench.timing import interleaved, summarize
from edgevit.errors import ConfigError
from edgevit.manifest import input_hw, open_artifact, read_golden, read_manifest

log = logging.getLogger(__name__)

RESULT_KEYS = ("artifact", "target", "precision", "p50_ms", "p90_ms", "p99_ms", "peak_rss_mb", "size_mb")


class NotRunnableHere(ConfigError):
    """An artifact folder that cannot be timed on this machine (``bench`` reports it as skipped, with the reason)."""


@dataclass
class Loaded:
    folder: Path
    manifest: dict
    run: Callable[[], object]
    load_ms: float
    first_run_ms: float
    batch: int


def folder_size_mb(folder: Path, manifest: dict) -> float:
    files = manifest.get("files") or [manifest["artifact"]]
    total = 0
    for name in files:
        p = folder / name
        total += sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size
    return total / 1e6


def _input_for(folder: Path, manifest: dict, batch: int | None) -> np.ndarray:
    x, _ = read_golden(folder, manifest)
    fixed = manifest["input"]["shape"][0]
    if batch is None:
        return x
    if isinstance(fixed, int) and fixed != batch:
        raise ConfigError(f"{folder} was converted with batch {fixed}; re-convert with --batch {batch} "
                          f"(or --dynamic-batch for onnx/ort) to bench at batch {batch}")
    return np.repeat(x[:1], batch, axis=0)


def load_for_bench(folder: str | Path, *, threads: int, batch: int | None = None) -> Loaded:
    from edgevit.targets import RuntimeSpec, get_target

    folder = Path(folder)
    manifest = open_artifact(folder, "its timings would not describe what was verified")
    target = get_target(manifest["target"])
    reason = target.bench_problem(folder, manifest)
    if reason:
        raise NotRunnableHere(reason)  # bench's row names the folder
    x = _input_for(folder, manifest, batch)
    t0 = time.perf_counter()
    run = target.bench_run(folder, manifest, x if batch is not None else x[:1])  # e.g. an engine on the GPU
    if run is not None:
        load_ms = (time.perf_counter() - t0) * 1000
        t0 = time.perf_counter()
        run()
        first_ms = (time.perf_counter() - t0) * 1000
        return Loaded(folder=folder, manifest=manifest, run=run, load_ms=load_ms, first_run_ms=first_ms,
                      batch=len(x) if batch is not None else 1)
    target.import_runtime()  # one-time import cost is not the artifact's load time
    t0 = time.perf_counter()
    runner = target.load(folder / manifest["artifact"], RuntimeSpec.from_manifest(manifest), threads=threads)
    load_ms = (time.perf_counter() - t0) * 1000
    t0 = time.perf_counter()
    runner(x)
    first_ms = (time.perf_counter() - t0) * 1000
    return Loaded(folder=folder, manifest=manifest, run=lambda: runner(x), load_ms=load_ms, first_run_ms=first_ms,
                  batch=len(x))


def measure_memory(folder: Path, *, threads: int, batch: int | None, runs: int = 5) -> float:
    """Peak resident set (MB) of a fresh process that loads the artifact and runs it ``runs`` times."""
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec, so a child would inherit the parent's peak
    code = ("import json\n"
            "from edgevit.bench.runner import load_for_bench, peak_rss_mb\n"
            f"l = load_for_bench({str(folder)!r}, threads={threads}, batch={batch!r})\n"
            f"[l.run() for _ in range({runs})]\n"
            "print(json.dumps({'peak_rss_mb': peak_rss_mb()}))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900,
                       env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if r.returncode != 0:
        log.warning("memory measurement of %s failed: %s", folder, r.stderr.strip().splitlines()[-1:])
        return float("nan")
    return json.loads(r.stdout.strip().splitlines()[-1])["peak_rss_mb"]


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM) in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def model_macs(manifest: dict) -> int | None:
    """MACs of one image through the artifact's model at its input size (None for an unregistered model)."""
    from edgevit.models import create_model
    from edgevit.models.complexity import count_macs

    src = manifest.get("source", {})
    try:
        net = create_model(manifest["model"], num_classes=src.get("num_classes"),
                           features_only=src.get("features", False))
    except ConfigError:
        return None
    return count_macs(net, input_hw(manifest))


def bench(folders: list[str | Path], *, threads: int = 2, warmup: int = 5, runs: int = 20, min_time_s: float = 0.0,
          batch: int | None = None, memory: bool = True, gemm: bool = True,
          on_progress: Callable[[str], None] | None = None) -> list[dict]:
    """Benchmark artifact folders side by side; returns one result dict per folder (schema: RESULT_KEYS and more).
    PyTorch runs on ``threads`` threads meanwhile (its GEMM probe) and is put back afterwards. ``edgevit.benchmark``
    is this function.

    Example::

        for row in edgevit.benchmark(["out/s_onnx", "out/s_onnx_int8"], runs=10):
            print(row["artifact"], row["p50_ms"], row["size_mb"])
    """
    from edgevit._native import torch_threads

    if not folders:
        raise ConfigError("give at least one artifact folder to bench")
    with torch_threads(threads):
        return _bench(folders, threads=threads, warmup=warmup, runs=runs, min_time_s=min_time_s, batch=batch,
                      memory=memory, gemm=gemm, say=on_progress or (lambda msg: None))


def _bench(folders, *, threads, warmup, runs, min_time_s, batch, memory, gemm, say) -> list[dict]:
    from edgevit.bench.peak import gemm_runners, gflops, theoretical_peak

    loaded, skipped = [], []
    for f in folders:
        say(f"loading {f}")
        try:
            loaded.append(load_for_bench(f, threads=threads, batch=batch))
        except NotRunnableHere as e:
            m = read_manifest(f)
            skipped.append({"artifact": str(f), "model": m["model"], "target": m["target"],
                            "precision": m["precision"], "skipped": str(e)})
            say(f"skipping {f}: {e}")
    if not loaded:
        return skipped
    runners = {str(item.folder): item.run for item in loaded}
    gemms = gemm_runners(threads, runtimes=_runtimes(loaded)) if gemm else {}
    runners.update({k: fn for k, (fn, _) in gemms.items()})
    say(f"timing {len(loaded)} artifacts: {warmup} warm-up runs, then {runs} interleaved rounds")
    from edgevit._progress import rounds_bar

    samples = interleaved(runners, warmup=warmup, rounds=runs, min_time_s=min_time_s,
                          on_round=rounds_bar(runs, desc="timing rounds"))
    peak = max((gflops(fl, float(np.median(samples[k]))) for k, (_, fl) in gemms.items()), default=float("nan"))
    theory = {p: theoretical_peak(threads, p) for p in ("fp32", "int8")}
    results = []
    for item in loaded:
        m = item.manifest
        st = summarize(samples[str(item.folder)])
        per_image = model_macs(m)
        macs = per_image * item.batch if per_image is not None else None
        parity = _parity_summary(m)
        res = {
            "artifact": str(item.folder), "model": m["model"], "target": m["target"], "precision": m["precision"],
            "runtime": m.get("parity", {}).get("runtime", m["target"]), "source": "desktop",
            "img_size": list(input_hw(m)), "batch": item.batch, "threads": threads,
            "load_ms": item.load_ms, "first_run_ms": item.first_run_ms, **st,
            "size_mb": folder_size_mb(item.folder, m), "macs": macs, "gemm_peak_gflops": peak,
            **roofline(macs, st["p50_ms"], m["precision"], peak, theory),
            "peak_rss_mb": None, "parity": parity,
            "rewrite_form": m.get("rewrite", {}).get("form"),
        }
        results.append(res)
    if memory:
        for res in results:
            say(f"measuring peak memory of {res['artifact']} in a fresh process")
            res["peak_rss_mb"] = measure_memory(Path(res["artifact"]), threads=threads, batch=batch)
    return results + skipped


def roofline(macs: int | None, p50_ms: float, precision: str, measured_fp32: float, theory: dict) -> dict:
    """2 x MACs / p50 as shares of two peaks. ``roofline_fraction``: of the CPU's ceiling for the precision (fp32, or
    int8 for int8 artifacts), which no run can exceed. ``gemm_fraction`` (not for int8): of the best fp32 GEMM
    measured in the same run, a probe that a whole model can edge past by its spread. Without a readable clock
    the measured GEMM is the basis."""
    if not macs:
        return {"roofline_fraction": None, "roofline_basis": None, "gemm_fraction": None, "theoretical_peak": None}
    from edgevit.bench.peak import gflops

    rate = gflops(2.0 * macs, p50_ms / 1000)
    ceiling = theory.get("int8" if precision == "int8" else "fp32")
    gemm = rate / measured_fp32 if precision != "int8" and math.isfinite(measured_fp32) and measured_fp32 > 0 \
        else None
    if ceiling:
        frac, basis = rate / ceiling["gflops"], f"{'int8' if precision == 'int8' else 'fp32'} ceiling"
    else:
        frac, basis = gemm, "fp32 GEMM measured in this run (CPU clock not readable)"
    return {"roofline_fraction": frac, "roofline_basis": basis, "gemm_fraction": gemm, "theoretical_peak": ceiling}


def _runtimes(loaded: list[Loaded]) -> tuple[str, ...]:
    from edgevit.targets import get_target

    names = {"torch"} | {get_target(item.manifest["target"]).bench_runtime for item in loaded}
    return tuple(sorted(names))


def _parity_summary(manifest: dict) -> dict:
    p = manifest.get("parity", {})
    worst = {"passed": p.get("passed"), "max_rel": 0.0, "cosine_min": 1.0, "top1_agreement": None}
    for ms in p.get("sets", {}).values():
        for m in ms:
            worst["max_rel"] = max(worst["max_rel"], m["max_rel"])
            worst["cosine_min"] = min(worst["cosine_min"], m["cosine_min"])
            if m.get("top1_agreement") is not None:
                worst["top1_agreement"] = m["top1_agreement"] if worst["top1_agreement"] is None else \
                    min(worst["top1_agreement"], m["top1_agreement"])
    acc = manifest.get("accuracy")
    if acc:
        worst["accuracy"] = acc
    return worst


def format_table(results: list[dict]) -> str:
    head = (f"{'artifact':<34} {'target':<10} {'prec':<5} {'load ms':>8} {'1st ms':>8} {'p50 ms':>8} {'p90 ms':>8} "
            f"{'p99 ms':>8} {'std':>6} {'RSS MB':>7} {'size MB':>8} {'roofline':>8}")
    rows = [head, "-" * len(head)]
    for r in results:
        name = r["artifact"] if len(r["artifact"]) <= 34 else "..." + r["artifact"][-31:]
        if r.get("skipped"):
            rows.append(f"{name:<34} {r['target']:<10} {r['precision']:<5} skipped: {r['skipped']}")
            continue
        rss = "-" if r.get("peak_rss_mb") is None else f"{r['peak_rss_mb']:.0f}"
        roof = "-" if r.get("roofline_fraction") is None else f"{r['roofline_fraction']:.0%}"
        rows.append(f"{name:<34} {r['target']:<10} {r['precision']:<5} {r.get('load_ms', float('nan')):>8.1f} "
                    f"{r.get('first_run_ms', float('nan')):>8.1f} {r['p50_ms']:>8.2f} {r['p90_ms']:>8.2f} "
                    f"{r['p99_ms']:>8.2f} {r.get('std_ms', 0):>6.2f} {rss:>7} {r['size_mb']:>8.1f} {roof:>8}")
    results = [r for r in results if not r.get("skipped")]
    if results and results[0].get("roofline_basis"):
        rows.append(f"roofline: 2 x MACs / p50 against the CPU's ceiling for the artifact's precision; "
                    f"{results[0]['threads']} threads, runs interleaved")
    ceilings = {r["precision"] == "int8": r.get("theoretical_peak") for r in results if r.get("theoretical_peak")}
    for is_int8, c in sorted(ceilings.items()):
        rows.append(f"  {'int8' if is_int8 else 'fp32'} ceiling {c['gflops']:.0f} G{'OP' if is_int8 else 'FLOP'}/s: "
                    f"{c['basis']}")
    if results and math.isfinite(results[0].get("gemm_peak_gflops") or float("nan")):
        gemm = [f"{r['gemm_fraction']:.0%}" for r in results if r.get("gemm_fraction") is not None]
        if gemm:
            rows.append(f"  best fp32 GEMM measured in this run {results[0]['gemm_peak_gflops']:.0f} GFLOP/s; fp32 "
                        f"artifacts at {', '.join(gemm)} of it (a probe: a whole model can edge past it)")
    return "\n".join(rows)
