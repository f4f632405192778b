"""``edgevit evaluate``: artifacts run over a large image folder, sharded across Ray workers, each shard running the
artifacts in their own runtimes through the manifest's preprocessing beside the fp32 PyTorch model; the merged
metrics are ``verify``'s (``edgevit.quantize.accuracy.accuracy_report``: top-1/top-5 agreement with fp32 PyTorch,
cosine, SQNR), plus top-1/top-5 accuracy where the folder is labelled.

Deterministic for any shard count: images are processed in fixed chunks of ``CHUNK`` aligned to their position in
the sorted folder (shards are whole runs of chunks), every task runs with the same thread count, and the driver
concatenates the shards' outputs in order before computing any metric - so 1 shard and 3 shards hand the metric
code the same arrays.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np

from edgevit._native import torch_threads
from edgevit.errors import ConfigError, EdgeVitError
from edgevit.scale._ray import import_ray, local_cpus, node_name, ray_session

log = logging.getLogger(__name__)

CHUNK = 16  # images per runtime call; a multiple of any fixed batch up to 16 that divides it (1, 2, 4, 8, 16)


def image_list(folder: str | os.PathLike, manifests: list[dict], labels_from_folders: bool):
    """(sorted image files, class index per file or None) of ``folder``; with ``labels_from_folders`` each image's
    class is its subfolder (a class name of the artifacts' labels, or an index), as ``--eval-dir`` reads it."""
    from edgevit.preprocess import list_images
    from edgevit.quantize.calibration import folder_labels

    if not labels_from_folders:
        return list_images(folder), None
    first = manifests[0]
    names, classes = first.get("labels"), first.get("num_classes")
    for m in manifests[1:]:
        if m.get("labels") != names or m.get("num_classes") != classes:
            raise ConfigError("--labels-from-folders needs artifacts with the same classes (labels and num_classes "
                              "in their manifests); evaluate artifacts of different models separately")
    files, labels = folder_labels(folder, names, classes, required_for="--labels-from-folders")
    return files, np.asarray(labels)


def shard_bounds(n: int, shards: int, chunk: int = CHUNK) -> list[tuple[int, int]]:
    """Split ``n`` images into at most ``shards`` contiguous ranges made of whole chunks (the last may be short)."""
    chunks = max(1, -(-n // chunk))
    shards = max(1, min(shards, chunks))
    per, extra = divmod(chunks, shards)
    bounds, start = [], 0
    for s in range(shards):
        k = per + (1 if s < extra else 0)
        end = min(n, (start // chunk + k) * chunk)
        bounds.append((start, end))
        start = end
    return bounds


def evaluate_shard(folders: list[str], files: list[str], threads: int, weights: str | None = None,
                   module: str | None = None) -> dict:
    """Run every artifact folder and its fp32 PyTorch reference over ``files`` (one shard), in chunks of
    ``CHUNK``. Returns, per folder, the artifact's and the reference's first output (N, ...), the images that
    could not be read (skipped by every artifact alike, so the merged rows still line up), and where the time
    went. Artifacts of one model with the same preprocessing (fp32 and int8 of one checkpoint, say) share the
    decoded pictures and the reference's outputs: both are computed once per chunk."""
    import torch

    from edgevit.manifest import read_manifest
    from edgevit.models.factory import output_names
    from edgevit.preprocess import Preprocess, open_image
    from edgevit.targets import RuntimeSpec, get_target
    from edgevit.verify.parity import rebuild_reference, reference_for_artifact

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    spent = {"load": 0.0, "decode": 0.0, "artifact": 0.0, "reference": 0.0}
    models: dict[str, object] = {}  # one PyTorch model per weights hash
    jobs = []
    for folder in folders:
        tick = time.perf_counter()
        manifest = read_manifest(folder)
        runner = get_target(manifest["target"]).load(Path(folder) / manifest["artifact"],
                                                     RuntimeSpec.from_manifest(manifest), threads=threads)
        key = manifest["weights_sha256"]
        if key not in models:
            models[key] = rebuild_reference(manifest, weights, module)
        spent["load"] += time.perf_counter() - tick
        pre = Preprocess.from_manifest(manifest["preprocess"])
        pre_key = json.dumps(manifest["preprocess"], sort_keys=True)
        jobs.append({"folder": folder, "runner": runner, "net": models[key], "pre": pre, "pre_key": pre_key,
                     "ref_key": (key, pre_key, manifest["outputs"][0]["name"]),
                     "raw_input": manifest["input"].get("pixels") == "raw_rgb_0_255",
                     "name": manifest["outputs"][0]["name"], "got": [], "ref": []})
    unreadable: list[str] = []
    for i in range(0, len(files), CHUNK):
        decoded: dict[str, tuple] = {}  # preprocessing -> (raw, normalized) of this chunk
        references: dict[tuple, np.ndarray] = {}
        for job in jobs:
            if job["pre_key"] not in decoded:
                tick = time.perf_counter()
                raws = []
                for f in files[i:i + CHUNK]:
                    if f in unreadable:
                        continue
                    try:
                        raws.append(job["pre"].raw(open_image(f)))
                    except EdgeVitError:
                        raise
                    except Exception as e:  # noqa: BLE001 - a damaged file: skipped by every artifact, reported
                        unreadable.append(f)
                        log.warning("skipping unreadable image %s: %s", f, e)
                raw = np.stack(raws).astype(np.float32) if raws else None
                decoded[job["pre_key"]] = (raw, None if raw is None else job["pre"].normalize(raw))
                spent["decode"] += time.perf_counter() - tick
            raw, norm = decoded[job["pre_key"]]
            if raw is None:
                continue
            tick = time.perf_counter()
            job["got"].append(np.asarray(job["runner"](raw if job["raw_input"] else norm)[0]))
            spent["artifact"] += time.perf_counter() - tick
            if job["ref_key"] not in references:
                tick = time.perf_counter()
                net = job["net"]
                references[job["ref_key"]] = reference_for_artifact(net, norm, output_names(net),
                                                                     (job["name"],))[job["name"]]
                spent["reference"] += time.perf_counter() - tick
            job["ref"].append(references[job["ref_key"]])
    out = {job["folder"]: {"artifact": np.concatenate(job["got"]) if job["got"] else None,
                           "reference": np.concatenate(job["ref"]) if job["ref"] else None} for job in jobs}
    return {"outputs": out, "unreadable": unreadable, "node": node_name(), "seconds": time.perf_counter() - t0,
            "images": len(files), "timings_s": {k: round(v, 2) for k, v in spent.items()}}


def evaluate(artifacts: list[str | os.PathLike], images: str | os.PathLike, *, labels_from_folders: bool = False,
             shards: int | None = None, address: str | None = None, threads: int = 1, inline: bool = False,
             weights: str | None = None, on_shard: Callable[[dict], None] | None = None,
             module: str | None = None) -> list[dict]:
    """Metrics of each artifact folder over the images of ``images`` (see the module docstring).

    ``shards``: how many pieces the folder is cut into (default: one per local CPU, or per cluster CPU);
    ``threads``: runtime threads per task (the same for every shard count, so results do not depend on it);
    ``inline``: no Ray, the shards run one after another in this process.
    """
    from edgevit.manifest import open_artifact
    from edgevit.quantize.accuracy import accuracy_report
    from edgevit.verify.parity import artifact_tolerance

    if not artifacts:
        raise ConfigError("give at least one artifact folder to evaluate")
    if not inline:
        import_ray()
    folders = [str(Path(a).resolve()) for a in artifacts]
    manifests = []
    for f in folders:
        if not (Path(f) / "manifest.json").is_file():
            raise ConfigError(f"{f} is not an edgevit artifact folder (no manifest.json); pass folders written by "
                              "edgevit convert")
        manifests.append(open_artifact(f, "its accuracy would not describe what was verified"))
    if shards is not None and shards < 1:
        raise ConfigError(f"--shards must be >= 1, got {shards}")
    files, labels = image_list(images, manifests, labels_from_folders)
    names = [str(p) for p in files]
    t0 = time.perf_counter()
    if inline:
        bounds = shard_bounds(len(names), shards or 1)
        parts = []
        with torch_threads(threads):  # evaluate_shard sets it for its Ray worker; put back in this process
            for a, b in bounds:
                parts.append(evaluate_shard(folders, names[a:b], threads, weights, module))
                if on_shard:
                    on_shard(parts[-1])
    else:
        with ray_session(address, None if address else local_cpus()) as ray:
            cpus = int(ray.cluster_resources().get("CPU", 1))
            bounds = shard_bounds(len(names), shards or max(1, cpus // threads))
            task = ray.remote(evaluate_shard).options(num_cpus=threads, max_retries=1, retry_exceptions=False)
            refs = [task.remote(folders, names[a:b], threads, weights, module) for a, b in bounds]
            parts = [None] * len(refs)
            pending = dict(zip(refs, range(len(refs))))
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                i = pending.pop(done[0])
                parts[i] = ray.get(done[0])
                if on_shard:
                    on_shard(parts[i])
    seconds = round(time.perf_counter() - t0, 2)
    unreadable = {f for p in parts for f in p["unreadable"]}
    keep = np.asarray([n not in unreadable for n in names])
    results = []
    for folder, manifest in zip(folders, manifests):
        arts = [p["outputs"][folder]["artifact"] for p in parts if p["outputs"][folder]["artifact"] is not None]
        refs_ = [p["outputs"][folder]["reference"] for p in parts if p["outputs"][folder]["reference"] is not None]
        if not arts:
            raise ConfigError(f"no image of {images} could be read")
        out, ref = np.concatenate(arts), np.concatenate(refs_)
        lab = labels[keep] if labels is not None else None
        rep = accuracy_report(ref, out, lab, source="evaluation", tol=artifact_tolerance(manifest))
        if lab is not None and out.ndim == 2:
            rep["top5_fp32"] = _topk_accuracy(ref, lab, 5)
            rep["top5_artifact"] = _topk_accuracy(out, lab, 5)
        results.append({"artifact": folder, "model": manifest["model"], "target": manifest["target"],
                        "precision": manifest["precision"], **rep, "shards": len(bounds), "threads": threads,
                        "seconds": seconds, "nodes": sorted({p["node"] for p in parts}),
                        "timings_s": {k: round(sum(p["timings_s"][k] for p in parts), 2)
                                      for k in parts[0]["timings_s"]},
                        "unreadable": sorted(unreadable)})
    return results


def _topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean())


METRICS = ("top1_agreement", "near_ties", "top5_agreement", "cosine_mean", "cosine_min", "sqnr_db", "top1_fp32",
           "top1_artifact", "accuracy_drop_points", "top5_fp32", "top5_artifact")


def format_results(results: list[dict]) -> str:
    rows = [["artifact", "images", "top-1 agree", "near-ties", "top-5 agree", "cos mean", "cos min", "SQNR dB",
             "top-1 fp32", "top-1 art", "drop pts", "top-5 art"]]
    for r in results:
        def f(k, spec):
            return "-" if r.get(k) is None else format(r[k], spec)

        rows.append([Path(r["artifact"]).name, str(r["images"]), f("top1_agreement", ".2%"), f("near_ties", "d"),
                     f("top5_agreement", ".2%"), f("cosine_mean", ".5f"), f("cosine_min", ".5f"), f("sqnr_db", ".1f"),
                     f("top1_fp32", ".2%"), f("top1_artifact", ".2%"), f("accuracy_drop_points", ".2f"),
                     f("top5_artifact", ".2%")])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in rows]
    if results:
        r = results[0]
        lines.append(f"{r['shards']} shards x {r['threads']} threads on {', '.join(r['nodes'])}; {r['seconds']:.1f} s")
        t = r["timings_s"]
        lines.append(f"time in the shards (summed): loading {t['load']:.1f} s, decoding {t['decode']:.1f} s, "
                     f"artifacts {t['artifact']:.1f} s, PyTorch reference {t['reference']:.1f} s")
        if r["unreadable"]:
            lines.append(f"skipped {len(r['unreadable'])} unreadable images, e.g. {r['unreadable'][0]}")
    return "\n".join(lines)
