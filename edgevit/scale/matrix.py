"""``edgevit matrix``: every (model, target, precision, size) cell of a SPEC converted and verified as an
independent Ray task, merged into ``matrix.json`` and an HTML report.

Layout of the output folder ``DIR``::

    DIR/cells/<cell id>/      the artifact folder of each cell (written atomically by ``convert``)
    DIR/.matrix/<cell id>.json   the cell's record (status, exit code, parity, accuracy, size, times, reuse key)
    DIR/.matrix/<cell id>.attempts   one line per attempt: node, pid, start time (a killed worker's retry adds one)
    DIR/matrix.json, DIR/matrix.html

A cell whose reuse key (``spec.cell_key``: options, content of the files they name, toolchain versions) equals
the recorded one, whose record says it passed and whose folder is intact is reused, not rebuilt, unless
``force``. A failing cell is recorded with its error and exit code; the other cells go on. A worker that dies
mid-cell (killed, out of memory) is retried once by Ray (``max_retries=1``); ``convert``'s atomic folder leaves
nothing partial behind, and the retry removes the dead attempt's staging folder.

Timing (``bench``) runs after every conversion, as one task that reserves every CPU of the node it runs on, so no
conversion shares its cores; the artifacts are timed interleaved, as ``edgevit bench`` does.
"""

from __future__ import annotations

import html
import json
import logging
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from edgevit.errors import ConfigError, EdgeVitError, OutputExistsError
from edgevit.scale._ray import import_ray, local_cpus, node_name, ray_session
from edgevit.scale.spec import Cell, MatrixSpec, cell_key

log = logging.getLogger(__name__)

RECORDS = ".matrix"
CELLS = "cells"

Event = Callable[[str, dict], None]  # ("start" | "done" | "reused" | "unsupported" | "bench", record)


@dataclass
class MatrixResult:
    out: Path
    cells: list[dict]
    bench: list[dict] | None
    seconds: float

    @property
    def failed(self) -> list[dict]:
        return [c for c in self.cells if c["status"] == "failed"]

    def to_dict(self) -> dict:
        return {"out": str(self.out), "seconds": self.seconds, "cells": self.cells, "bench": self.bench,
                "summary": summary(self.cells)}


def summary(cells: list[dict]) -> dict:
    out: dict[str, int] = {}
    for c in cells:
        key = "reused" if c.get("reused") else c["status"]
        out[key] = out.get(key, 0) + 1
    return out


def toolchain_versions(targets: list[str] | None = None) -> dict[str, str]:
    """The installed release of every package whose release changes what an artifact of ``targets`` (default:
    every target) is: the core ones and each target's ``Target.distributions`` (part of a cell's reuse key)."""
    from importlib.metadata import PackageNotFoundError, version

    from edgevit.targets import get_target
    from edgevit.targets.base import CORE_DISTRIBUTIONS, distributions

    names = distributions() if targets is None else tuple(dict.fromkeys(
        [*CORE_DISTRIBUTIONS, *(d for t in targets for d in get_target(t).distributions)]))
    out = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def run_cell(cell: Cell, out_dir: str, records_dir: str, threads: int, key: str) -> dict:
    """Convert and verify one cell (the body of its Ray task; also run in-process by ``inline``). Never raises for
    a failing conversion: the record carries the error and the CLI's exit code for it."""
    from edgevit._native import torch_threads

    with torch_threads(threads):
        return _run_cell(cell, out_dir, records_dir, threads, key)


def _run_cell(cell: Cell, out_dir: str, records_dir: str, threads: int, key: str) -> dict:
    started = time.time()
    attempts = Path(records_dir) / f"{cell.id}.attempts"
    with open(attempts, "a") as f:  # read by the driver (attempt count) and by anyone watching the run
        f.write(f"{node_name()} {os.getpid()} {started:.3f}\n")
    record = {"id": cell.id, "folder": out_dir, "key": key, "node": node_name(), "pid": os.getpid(),
              "threads": threads, "options": cell.options}
    try:
        from edgevit.pipeline import convert
        from edgevit.verify import verify_dir

        cfg = cell.config(out_dir, overwrite=True)  # the matrix replaces its own cell folders, atomically
        result = convert(cfg)
        record["convert_s"] = result.seconds
        t0 = time.perf_counter()
        report = verify_dir(out_dir, images=cfg.images, weights=cfg.weights, threads=threads,
                            raise_on_failure=False, module=cfg.module)
        record["verify_s"] = round(time.perf_counter() - t0, 2)
        manifest = result.manifest
        record.update(status="ok" if report.passed else "failed", exit_code=0 if report.passed else 3,
                      parity=_parity(manifest["parity"], report), accuracy=manifest.get("accuracy"),
                      size_mb=round(manifest["artifact_bytes"] / 1e6, 3))
        if not report.passed:
            record["error"] = "verify from the folder failed:\n" + report.table()
    except EdgeVitError as e:
        record.update(status="failed", exit_code=e.exit_code, error=f"{type(e).__name__}: {e}")
    except Exception as e:  # noqa: BLE001 - a bug in one cell must not stop the matrix; the record keeps the trace
        record.update(status="failed", exit_code=1, error=f"{type(e).__name__}: {e}",
                      traceback=traceback.format_exc(limit=8))
    record["seconds"] = round(time.time() - started, 2)
    return record


def _parity(at_convert: dict, again) -> dict:
    golden = at_convert["sets"]["golden"][0]
    return {"passed": at_convert["passed"] and again.passed, "runtime": at_convert["runtime"],
            "golden_max_rel": golden["max_rel"], "golden_cosine": golden["cosine_min"],
            "failures": at_convert["failures"] + [f"verify: {f}" for f in again.failures]}


def bench_cells(folders: list[str], threads: int, runs: int) -> dict:
    """Time the cells' artifacts interleaved (``edgevit bench``) on whatever node this task landed on."""
    from edgevit.bench.runner import bench

    results = bench(folders, threads=threads, runs=runs, memory=False)
    return {"node": node_name(), "threads": threads, "results": results}


def _reusable(record_path: Path, key: str, folder: Path) -> dict | None:
    from edgevit.manifest import integrity_problems, read_manifest

    if not record_path.is_file() or not (folder / "manifest.json").is_file():
        return None
    try:
        record = json.loads(record_path.read_text())
        if record.get("key") != key or record.get("status") != "ok":
            return None
        if integrity_problems(folder, read_manifest(folder)):
            return None
    except (OSError, ValueError, EdgeVitError):
        return None
    return record


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out} exists and is not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not (out / RECORDS).is_dir():
        raise OutputExistsError(f"{out} exists, is not empty and is not an edgevit matrix folder; nothing was "
                                "written. Choose another --out (a matrix folder is reused cell by cell)")


def run_matrix(spec: MatrixSpec, out: str | os.PathLike, *, address: str | None = None, workers: int | None = None,
               force: bool = False, bench: bool = False, bench_runs: int = 20, inline: bool = False,
               on_event: Event | None = None) -> MatrixResult:
    """Convert and verify every cell of ``spec`` under ``out``; see the module docstring for the layout and the
    rules. ``workers``: cells at a time (default: one per CPU of the local machine, or per CPU of the cluster);
    ``inline``: no Ray, one cell after another in this process with every core."""
    say = on_event or (lambda kind, rec: None)
    out = Path(out)
    _check_out(out)
    if not inline:
        import_ray()  # before anything is written: a missing extra is exit 5, not an empty matrix folder
    cells = spec.cells()
    records_dir = out / RECORDS
    records_dir.mkdir(parents=True, exist_ok=True)
    (out / CELLS).mkdir(exist_ok=True)
    versions = {}  # per target: what its cells' artifacts depend on
    hashes: dict[str, str] = {}  # the calibration/evaluation folders and weights every cell shares, hashed once
    t0 = time.perf_counter()
    records: dict[str, dict] = {}
    todo: list[tuple[Cell, str]] = []
    for cell in cells:
        if cell.unsupported:
            records[cell.id] = {"id": cell.id, "status": "unsupported", "reason": cell.unsupported}
            say("unsupported", records[cell.id])
            continue
        target = cell.options["target"]
        versions.setdefault(target, toolchain_versions([target]))
        key = cell_key(cell, versions[target], hashes)
        folder = out / CELLS / cell.id
        previous = None if force else _reusable(records_dir / f"{cell.id}.json", key, folder)
        if previous is not None:
            records[cell.id] = {**previous, "reused": True}
            say("reused", records[cell.id])
        else:
            (records_dir / f"{cell.id}.attempts").unlink(missing_ok=True)
            todo.append((cell, key))
    todo = longest_first(todo, records_dir)
    bench_result = None
    if inline:
        threads = local_cpus()
        for cell, key in todo:
            say("start", {"id": cell.id})
            records[cell.id] = _finish(run_cell(cell, str(out / CELLS / cell.id), str(records_dir), threads, key),
                                       records_dir)
            say("done", records[cell.id])
        if bench:
            bench_result = bench_cells(_ok_folders(cells, records), local_cpus(), bench_runs)
    elif todo or bench:
        bench_result = _run_on_ray(cells, todo, records, out, records_dir, address=address, workers=workers,
                                   bench=bench, bench_runs=bench_runs, say=say)
    ordered = [records[c.id] for c in cells]
    if bench_result is not None:
        say("bench", bench_result)
    result = MatrixResult(out=out, cells=ordered, bench=bench_result, seconds=round(time.perf_counter() - t0, 2))
    write_outputs(result, spec)
    return result


# relative cost guesses for cells never run before (the target's is Target.cost; shipped digits model, 2 cores, matrix
# runs of 2026-11-22: an ONNX fp32 cell 6-10 s, an ExecuTorch int8 cell 45-52 s); only the start order depends on them
_PRECISION_COST = {"fp32": 1.0, "fp16": 1.2, "int8w": 1.5, "int8": 3.0, "pal8": 3.0, "pal6": 3.0, "pal4": 3.0}


def longest_first(todo: list[tuple[Cell, str]], records_dir: Path) -> list[tuple[Cell, str]]:
    """Cells ordered so that long ones start first (the last cell to finish is then not a long one started late):
    by each cell's last recorded time when every cell has one, else by a guess from target and precision."""
    measured = {}
    for cell, _ in todo:
        try:
            measured[cell.id] = float(json.loads((records_dir / f"{cell.id}.json").read_text())["seconds"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    if len(measured) == len(todo):
        return sorted(todo, key=lambda item: -measured[item[0].id])
    from edgevit.targets import get_target

    return sorted(todo, key=lambda item: -get_target(item[0].options["target"]).cost
                  * _PRECISION_COST.get(item[0].options.get("precision") or "fp32", 2.0))


def _ok_folders(cells: list[Cell], records: dict[str, dict]) -> list[str]:
    return [records[c.id]["folder"] for c in cells if records[c.id]["status"] == "ok"]


def _finish(record: dict, records_dir: Path) -> dict:
    from edgevit._io import atomic_file

    lines = (records_dir / f"{record['id']}.attempts").read_text().splitlines() \
        if (records_dir / f"{record['id']}.attempts").is_file() else []
    record["attempts"] = max(1, len(lines))
    folder = Path(record.get("folder", ""))
    if record["status"] == "failed" and (folder / "manifest.json").is_file():
        # convert replaces a cell folder only on success: what is there is an earlier run's artifact, made from
        # other inputs; say so, so that nobody ships it as this run's
        record["error"] = (f"{record.get('error', 'failed')}\n{folder} still holds an earlier run's artifact (made "
                           "from other inputs or toolchain versions); it is not this run's result")
        record["stale_folder"] = True
    with atomic_file(records_dir / f"{record['id']}.json", overwrite=True) as tmp:
        tmp.write_text(json.dumps(record, indent=1, default=str))
    return record


def _run_on_ray(cells, todo, records, out: Path, records_dir: Path, *, address, workers, bench, bench_runs, say):
    cpus = local_cpus()
    local_workers = workers or cpus
    threads = max(1, cpus // local_workers) if not address else 1
    with ray_session(address, None if address else local_workers * threads) as ray:
        total = int(ray.cluster_resources().get("CPU", 1))
        limit = workers or max(1, total // threads)
        task = ray.remote(run_cell).options(num_cpus=threads, max_retries=1, retry_exceptions=False)
        pending, queue = {}, list(todo)
        while queue or pending:
            while queue and len(pending) < limit:
                cell, key = queue.pop(0)
                ref = task.remote(cell, str((out / CELLS / cell.id).resolve()), str(records_dir.resolve()), threads,
                                  key)
                pending[ref] = cell
                say("start", {"id": cell.id})
            done, _ = ray.wait(list(pending), num_returns=1)
            cell = pending.pop(done[0])
            try:
                record = ray.get(done[0])
            except Exception as e:  # noqa: BLE001 - the worker died on every attempt (or Ray itself failed)
                record = {"id": cell.id, "status": "failed", "exit_code": 1, "folder": str(out / CELLS / cell.id),
                          "error": f"the worker running this cell died on every attempt ({type(e).__name__}: "
                                   f"{str(e).splitlines()[0] if str(e) else ''})"}
            records[cell.id] = _finish(record, records_dir)
            say("done", records[cell.id])
        if not bench:
            return None
        folders = _ok_folders(cells, records)
        if not folders:
            return {"node": None, "results": [], "note": "no cell passed; nothing to time"}
        node = max((n for n in ray.nodes() if n.get("Alive")), key=lambda n: n["Resources"].get("CPU", 0))
        node_cpus = int(node["Resources"].get("CPU", 1))
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        # every CPU of the node: nothing else of this run (or of Ray's scheduler) shares its cores while it times
        timer = ray.remote(bench_cells).options(num_cpus=node_cpus, scheduling_strategy=NodeAffinitySchedulingStrategy(
            node_id=node["NodeID"], soft=False))
        return ray.get(timer.remote(folders, min(node_cpus, local_cpus()) if not address else node_cpus,
                                    bench_runs))


def write_outputs(result: MatrixResult, spec: MatrixSpec) -> None:
    from edgevit._io import atomic_file

    data = {**result.to_dict(), "spec": {"models": spec.models, "targets": spec.targets,
                                         "precisions": spec.precisions, "sizes": spec.sizes},
            "toolchain": toolchain_versions(sorted({t.partition(":")[0] for t in spec.targets}))}
    with atomic_file(result.out / "matrix.json", overwrite=True) as tmp:
        tmp.write_text(json.dumps(data, indent=1, default=str))
    with atomic_file(result.out / "matrix.html", overwrite=True) as tmp:
        tmp.write_text(matrix_html(result))


def _fmt(v, spec: str = "") -> str:
    if v is None:
        return "-"
    return format(v, spec) if spec else str(v)


def table_rows(cells: list[dict]) -> list[list[str]]:
    """cell, status, exit, parity, top-1 agreement, worst cosine, drop, size MB, convert s, attempts, node."""
    rows = []
    for c in cells:
        acc = c.get("accuracy") or {}
        par = c.get("parity") or {}
        status = "reused" if c.get("reused") else c["status"]
        rows.append([c["id"], status, _fmt(c.get("exit_code")),
                     "-" if not par else ("PASS" if par["passed"] else "FAIL") + f" {par['golden_max_rel']:.2g}",
                     _fmt(acc.get("top1_agreement"), ".2%"), _fmt(acc.get("cosine_min"), ".4f"),
                     _fmt(acc.get("accuracy_drop_points"), ".2f"), _fmt(c.get("size_mb"), ".2f"),
                     _fmt(c.get("convert_s"), ".1f"), _fmt(c.get("attempts")), _fmt(c.get("node"))])
    return rows


HEADER = ["cell", "status", "exit", "parity (golden max_rel)", "top-1 agree", "worst cos", "drop pts", "size MB",
          "convert s", "attempts", "node"]


def format_table(result: MatrixResult) -> str:
    rows = [HEADER, *table_rows(result.cells)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    for c in result.cells:
        if c["status"] == "failed":
            lines.append(f"{c['id']}: {c.get('error', '').splitlines()[0] if c.get('error') else 'failed'}")
    if result.bench and result.bench.get("results"):
        lines.append(f"latency on {result.bench['node']} ({result.bench['threads']} threads, interleaved):")
        for r in result.bench["results"]:
            if "p50_ms" in r:
                lines.append(f"  {Path(r['artifact']).name}: p50 {r['p50_ms']:.2f} ms, p90 {r['p90_ms']:.2f} ms")
    s = summary(result.cells)
    lines.append(f"{len(result.cells)} cells: " + ", ".join(f"{v} {k}" for k, v in sorted(s.items())) +
                 f"; {result.seconds:.1f} s")
    return "\n".join(lines)


def matrix_html(result: MatrixResult) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in HEADER)
    body = []
    for c, row in zip(result.cells, table_rows(result.cells)):
        cls = {"ok": "ok", "failed": "bad"}.get(c["status"], "other")
        tip = esc(c.get("error") or c.get("reason") or "")
        body.append(f'<tr class="{cls}" title="{tip}">' + "".join(f"<td>{esc(v)}</td>" for v in row) + "</tr>")
    bench = ""
    if result.bench and result.bench.get("results"):
        rows = "".join(f"<tr><td>{esc(Path(r['artifact']).name)}</td><td>{r['p50_ms']:.2f}</td>"
                       f"<td>{r['p90_ms']:.2f}</td><td>{esc(result.bench['node'])}</td></tr>"
                       for r in result.bench["results"] if "p50_ms" in r)
        bench = (f"<h2>Latency ({result.bench['threads']} threads, interleaved, one node at a time)</h2><table>"
                 f"<tr><th>cell</th><th>p50 ms</th><th>p90 ms</th><th>measured on</th></tr>{rows}</table>")
    failures = "".join(f"<h3>{esc(c['id'])}</h3><pre>{esc(c.get('error', ''))}</pre>" for c in result.failed)
    s = summary(result.cells)
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>edgevit matrix</title><style>
body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;
padding:3px 8px;font-size:13px}} tr.ok td:nth-child(2){{color:#070}} tr.bad td:nth-child(2){{color:#b00;
font-weight:bold}} tr.other td{{color:#777}}</style></head><body><h1>edgevit matrix</h1>
<p>{len(result.cells)} cells: {esc(", ".join(f"{v} {k}" for k, v in sorted(s.items())))}; {result.seconds:.1f} s.
Artifacts under <code>{esc(str(result.out / CELLS))}</code>.</p>
<table><tr>{head}</tr>{"".join(body)}</table>{bench}{"<h2>Failures</h2>" + failures if failures else ""}
</body></html>"""


def exit_code(result: MatrixResult) -> int:
    """0 when every supported cell passed; otherwise the exit code of the first failing cell."""
    for c in result.cells:
        if c["status"] == "failed":
            return int(c.get("exit_code") or 1)
    return 0


def check_workers(workers: int | None) -> None:
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
