"""On-device results into the same shape as ``edgevit bench`` results.

Two inputs:

* an ExecuTorch ETDump (from a device, or from ``edgevit profile run`` here) with the artifact's ETRecord, read
  through ExecuTorch's own devtools ``Inspector`` into a per-operator table;
* the results JSON the sample apps write, whose schema is ``device_results.schema.json`` beside this file (the
  apps' decoders are checked against it).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from edgevit._io import read_json
from edgevit.bench.timing import summarize
from edgevit.errors import ConfigError

SCHEMA_PATH = Path(__file__).with_name("device_results.schema.json")
THERMAL_STATES = ("nominal", "fair", "serious", "critical", "unknown")


def load_schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


# ---------------------------------------------------------------------------------------------------------------
# App results JSON


def validate_device_results(obj: dict, *, where: str = "results") -> None:
    """Check an app results object against ``device_results.schema.json`` with ``jsonschema``; the first error
    becomes a ConfigError naming the key path."""
    import jsonschema

    schema = load_schema()
    if not isinstance(obj, dict):
        raise ConfigError(f"{where}: expected a JSON object")
    version = obj.get("version")
    if isinstance(version, int) and not isinstance(version, bool) \
            and version > schema["properties"]["version"]["maximum"]:
        raise ConfigError(f"{where}: results version {version} is newer than this edgevit understands; upgrade "
                          "edgevit")
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(obj), key=lambda e: list(e.path))
    if errors:
        e = errors[0]
        path = ".".join([where, *map(str, e.path)])
        raise ConfigError(f"{path}: {e.message} (schema {SCHEMA_PATH.name})")


def normalize_device_results(obj: dict, *, where: str = "results") -> dict:
    """App results -> one result dict in ``edgevit bench``'s format (source 'device')."""
    validate_device_results(obj, where=where)
    st = summarize([v / 1000.0 for v in obj["latencies_ms"]])
    art = obj["artifact"]
    device = obj["device"]
    return {
        "artifact": art.get("name") or f"{art['model']}-{art['target']}-{art['precision']}",
        "model": art["model"], "target": art["target"], "precision": art["precision"],
        "runtime": obj["runtime"], "source": "device",
        "device": f"{device['model']} ({device['os']} {device['os_version']})",
        "compute_units": obj.get("compute_units"), "thermal_state": obj.get("thermal_state", "unknown"),
        "img_size": art.get("input_shape", [None, None, None, None])[2:], "batch": obj.get("batch", 1),
        "threads": obj.get("threads"), "load_ms": obj.get("load_ms"), "first_run_ms": obj.get("first_run_ms"),
        **st, "size_mb": art.get("size_bytes", 0) / 1e6, "peak_rss_mb": obj.get("peak_memory_mb"),
        "roofline_fraction": None, "macs": None, "gemm_peak_gflops": None,
        "parity": {"passed": obj.get("golden_check", {}).get("passed"),
                   "max_rel": obj.get("golden_check", {}).get("max_rel")},
        "artifact_sha256": art.get("artifact_sha256"), "timestamp": obj.get("timestamp"),
    }


# ---------------------------------------------------------------------------------------------------------------
# ExecuTorch ETDump


def run_etdump(folder: str | Path, out: str | Path, *, runs: int = 5, threads: int = 2) -> Path:
    """Run an executorch artifact here with event tracing on and write its ETDump to ``out``."""
    import torch

    from edgevit.manifest import open_artifact, read_golden
    from edgevit.targets import get_target
    from edgevit.targets.executorch.runtime import set_threads

    folder, out = Path(folder), Path(out)
    manifest = open_artifact(folder, "its profile would not describe what was verified")
    if not get_target(manifest["target"]).etdump:
        raise ConfigError(f"{folder} is a {manifest['target']} artifact; ETDump profiles need an executorch one")
    from executorch.extension.pybindings import portable_lib

    set_threads(threads)
    x, _ = read_golden(folder, manifest)
    module = portable_lib._load_for_executorch(str(folder / manifest["artifact"]), enable_etdump=True,
                                               debug_buffer_size=0)
    for _ in range(runs):
        module.forward([torch.from_numpy(x)])
    out.parent.mkdir(parents=True, exist_ok=True)
    module.write_etdump_result_to_file(str(out))
    return out


def ingest_etdump(etdump: str | Path, etrecord: str | Path | None) -> dict:
    """Per-operator table of an ETDump: time per op (p50 over the recorded runs), delegated or portable."""
    from executorch.devtools import Inspector

    etdump = Path(etdump)
    if etrecord is not None and not Path(etrecord).is_file():
        raise ConfigError(f"ETRecord {etrecord} does not exist; convert with --etrecord to get model.etrecord")
    import warnings

    try:
        with warnings.catch_warnings():  # devtools warn about every kwarg they do not render
            warnings.simplefilter("ignore")
            inspector = Inspector(etdump_path=str(etdump), etrecord=str(etrecord) if etrecord else None)
    except Exception as e:  # noqa: BLE001 - devtools raise many types for a foreign or broken file
        raise ConfigError(f"could not read ETDump {etdump}: {type(e).__name__}: {e}") from e
    ops, total_ms, runs = [], None, 0
    for block in inspector.event_blocks:
        for ev in block.events:
            if not ev.perf_data:
                continue
            p50 = float(ev.perf_data.p50)
            if ev.name == "Method::execute":
                total_ms, runs = p50, len(ev.perf_data.raw)
                continue
            if ev.name in ("DELEGATE_CALL", "Method::init", "Program::load_method") or ev.name.startswith("OPERATOR_CALL"):
                continue
            ops.append({"name": ev.name, "type": re.sub(r" #\d+$", "", ev.name), "p50_ms": p50,
                        "delegated": bool(ev.is_delegated_op), "backend": ev.delegate_backend_name or "portable",
                        "runs": len(ev.perf_data.raw)})
    by_type: dict[str, dict] = {}
    for op in ops:
        t = by_type.setdefault(op["type"], {"type": op["type"], "count": 0, "total_ms": 0.0,
                                            "delegated": op["delegated"], "backend": op["backend"]})
        t["count"] += 1
        t["total_ms"] += op["p50_ms"]
    table = sorted(by_type.values(), key=lambda t: -t["total_ms"])
    op_sum = sum(t["total_ms"] for t in table)
    for t in table:
        t["share"] = t["total_ms"] / op_sum if op_sum else 0.0
    return {"kind": "etdump", "file": str(etdump), "etrecord": str(etrecord) if etrecord else None,
            "runs": runs, "total_ms": total_ms, "operator_ms": op_sum, "operators": table,
            "slowest": sorted(ops, key=lambda o: -o["p50_ms"])[:15],
            "portable_ms": sum(t["total_ms"] for t in table if not t["delegated"])}


def ingest(path: str | Path, *, etrecord: str | Path | None = None) -> dict:
    """An ETDump (binary) or an app results JSON file -> a profile dict ('etdump') or a result dict ('device')."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"profile file {path} does not exist")
    if path.suffix == ".json":
        return {"kind": "device", "result": normalize_device_results(read_json(path), where=str(path))}
    return ingest_etdump(path, etrecord)


def format_profile(profile: dict, top: int = 15) -> str:
    if profile["kind"] == "device":
        r = profile["result"]
        return (f"{r['device']}: {r['model']} {r['target']}/{r['precision']} on {r['runtime']} "
                f"({r.get('compute_units') or '-'}), p50 {r['p50_ms']:.2f} ms, p90 {r['p90_ms']:.2f} ms, "
                f"{r['runs']} runs, thermal {r['thermal_state']}")
    rows = [f"ETDump {profile['file']}: {profile['runs']} runs, execute p50 {profile['total_ms']:.2f} ms, "
            f"{profile['portable_ms']:.2f} ms on portable kernels",
            f"  {'operator':<48} {'count':>5} {'ms':>8} {'share':>6}  where"]
    for t in profile["operators"][:top]:
        rows.append(f"  {t['type'][:48]:<48} {t['count']:>5} {t['total_ms']:>8.2f} {t['share']:>6.1%}  "
                    f"{t['backend'] if t['delegated'] else 'portable'}")
    return "\n".join(rows)
