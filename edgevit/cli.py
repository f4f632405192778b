"""``edgevit`` command line: parses arguments, calls the API, maps errors to exit codes.

Exit codes (see ``edgevit.errors``): 0 ok, 1 internal error, 2 bad option/config, 3 parity failure,
4 checkpoint error, 5 missing toolchain, 6 export failure, 7 output exists.

Nothing heavy is imported at module level so that ``edgevit --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tempfile

from edgevit.errors import ConfigError, EdgeVitError, NoSpaceError, exit_codes_help, no_space

EXIT_CODES_HELP = exit_codes_help()
MODULE_HELP = ("the user module the artifact was converted from (FILE.py:FACTORY, as convert's --module): needed to "
               "rebuild its PyTorch reference; edgevit never imports a module an artifact folder names")


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))


# ---------------------------------------------------------------------------------------------------------------
# info / models


def _add_info(sub):
    p = sub.add_parser("info", help="parameters, MACs and per-stage shapes of a model",
                       description="Print parameters, MACs, per-stage output shapes and block types of a model.",
                       epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="registered model name (see `edgevit models`)")
    p.add_argument("--img-size", default=None, help="N or HxW (default: the model's own, 224 for S/B/L)")
    p.add_argument("--num-classes", type=int, default=None, help="classifier size (0 = no head)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_cmd_info)


def _cmd_info(args) -> int:
    from edgevit.info import format_info, model_info

    info = model_info(args.model, args.img_size, num_classes=args.num_classes)
    _print_json(info) if args.json else print(format_info(info))
    return 0


def _add_models(sub):
    p = sub.add_parser("models", help="list the registered models")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_models)


def _cmd_models(args) -> int:
    from edgevit.models import get_config, list_models

    rows = [{"name": n, "depths": list(get_config(n).depths), "img_size": get_config(n).default_img_size,
             "pretrained_tags": list(get_config(n).pretrained_tags)} for n in list_models()]
    if args.json:
        _print_json(rows)
    else:
        for r in rows:
            print(f"{r['name']:<20} depths={r['depths']} default size {r['img_size']}")
    return 0


# ---------------------------------------------------------------------------------------------------------------
# convert / verify


def _add_convert(sub):
    p = sub.add_parser("convert", help="checkpoint -> verified on-device artifact folder",
                       description="Convert a Next-ViT checkpoint to an on-device artifact folder (artifact, "
                                   "manifest.json, golden input/output), verified against PyTorch in the "
                                   "artifact's own runtime. Flags override --recipe values.",
                       epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", help="YAML file of convert options (see conversion_recipes/)")
    p.add_argument("--model", help="registered model name (default nextvit_small)")
    p.add_argument("--module", help="FILE.py:FACTORY: convert the whole model (detector, segmenter) that FACTORY() "
                                    "builds around an edgevit Next-ViT (--model names its backbone variant; "
                                    "--weights then takes the whole model's state dict)")
    w = p.add_mutually_exclusive_group()
    w.add_argument("--weights", help="checkpoint file (.pth/.pt/.bin/.safetensors) or hub id")
    w.add_argument("--random-init", action="store_const", const=True, default=None,
                   help="deterministic random weights with realistic BatchNorm statistics (smoke runs)")
    p.add_argument("--seed", type=int, help="seed for --random-init (default 0)")
    p.add_argument("--target", help="onnx | ort | executorch | coreml | litert (alias tflite) | tensorrt")
    p.add_argument("--precision", help="fp32 (default), fp16 (coreml default), int8; coreml also int8w, pal8, "
                                       "pal6, pal4")
    p.add_argument("--delegate", help="executorch delegate: xnnpack (default) or coreml")
    p.add_argument("--img-size", help="N or HxW (default: the model's, 224 for S/B/L)")
    p.add_argument("--img-sizes", help="several sizes served by one artifact, e.g. 512,640,800x1344 (the first is the "
                                       "primary size; README: 'Several input sizes in one artifact'); parity is "
                                       "checked at each")
    p.add_argument("--batch", type=int, help="batch size baked into the artifact (default 1)")
    p.add_argument("--dynamic-batch", action="store_const", const=True, default=None,
                   help="onnx/ort: leave the batch dimension dynamic")
    p.add_argument("--num-classes", type=int, help="classifier size (0 = pooled features, no head)")
    p.add_argument("--reset-head", action="store_const", const=True, default=None,
                   help="re-initialise the classifier when the checkpoint's class count differs")
    p.add_argument("--features", action="store_const", const=True, default=None,
                   help="backbone mode: export the four stage maps")
    p.add_argument("--attention", help="NTB attention: emhsa (the original, default), avgpool, xca or hilo; a "
                                       "variant needs a checkpoint of that variant (edgevit adapt) or --random-init")
    p.add_argument("--labels", help="text file with one class name a line")
    p.add_argument("--images", help="folder of real images to check parity on, besides the golden input")
    p.add_argument("--opset", type=int, help="ONNX opset, 18 to 26 (default 18)")
    p.add_argument("--no-rewrite", dest="rewrite", action="store_const", const=False, default=None,
                   help="export the original form, without deploy rewrites (for comparison)")
    p.add_argument("--etrecord", action="store_const", const=True, default=None,
                   help="executorch: also write model.etrecord, to read on-device ETDump profiles")
    q = p.add_argument_group("quantization (int8, fp16, int8w, pal8/6/4)")
    q.add_argument("--calib-dir", help="calibration images (jpg/png/webp/bmp, any size or mode)")
    q.add_argument("--calib-count", type=int, help="calibration images to use, a deterministic subset (default 128)")
    q.add_argument("--calib-method", choices=["minmax", "entropy", "percentile"],
                   help="onnx/ort int8 calibration method (default minmax)")
    q.add_argument("--eval-dir", help="evaluation images; DIR/<class>/*.png is labeled (accuracy), flat is not")
    q.add_argument("--eval-count", type=int, help="evaluation images to use (default all)")
    b = q.add_mutually_exclusive_group()
    b.add_argument("--max-accuracy-drop", type=float,
                   help="budget: keep the most sensitive layers in float until top-1 drops at most P points")
    b.add_argument("--min-agreement", type=float,
                   help="budget: keep layers in float until top-1 agreement with fp32 is at least A (0-1)")
    p.add_argument("--layout", choices=["nchw", "nhwc"],
                   help="litert: input layout; nhwc takes channels-last pixels (an Android bitmap's order) and the "
                        "model transposes them itself (default nchw)")
    p.add_argument("--input-type", choices=["image", "tensor"],
                   help="coreml: image (raw RGB pixels, normalisation in the model; default) or tensor")
    t = p.add_argument_group("tensorrt (the TensorRT-ready ONNX; the engine is built on the GPU server)")
    t.add_argument("--max-batch", type=int, help="largest batch of the engine's optimization profile (default: "
                                                  "--batch, which is the profile's opt batch; min is 1)")
    t.add_argument("--workspace-mib", type=int, help="TensorRT builder workspace in MiB (default 4096)")
    t.add_argument("--build", action="store_const", const=True, default=None,
                   help="also build the engine now (needs an NVIDIA GPU and pip install 'edgevit[tensorrt]'); "
                        "same as edgevit build-engine OUT afterwards")
    p.add_argument("--min-ios", type=int, help="coreml: deployment target 16, 17 or 18 (default 16)")
    p.add_argument("--compute-units", help="coreml: all (default), cpu_only, cpu_and_gpu, cpu_and_ne")
    pp = p.add_argument_group("preprocessing (default: what the checkpoint comes with; see the manifest's "
                              "preprocess.sources)")
    pp.add_argument("--mean", type=_triple, help="R,G,B mean of the [0, 1] pixels, e.g. 0.5,0.5,0.5")
    pp.add_argument("--std", type=_triple, help="R,G,B standard deviation, e.g. 0.5,0.5,0.5")
    pp.add_argument("--crop-pct", type=float, help="center crop share of the resized picture (0-1]")
    pp.add_argument("--interpolation", choices=["bicubic", "bilinear", "nearest"], help="resize filter")
    p.add_argument("--license", help="license of the weights, recorded in the artifact's metadata")
    p.add_argument("--author", help="author of the weights, recorded in the artifact's metadata")
    p.add_argument("--out", help="artifact folder (default out)")
    p.add_argument("--overwrite", action="store_const", const=True, default=None,
                   help="replace an existing output folder (only once the new one is complete)")
    p.add_argument("--keep-failed", action="store_const", const=True, default=None,
                   help="keep the artifact even if parity fails (its manifest says so); exit code is still 3")
    p.add_argument("--dry-run", action="store_true",
                   help="check every option, path and image header, print the plan and exit 0, building nothing")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary")
    p.set_defaults(func=_cmd_convert)


def _count(minimum: int):
    """argparse type: an integer of at least ``minimum``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value
    return parse


def _seconds(text: str) -> float:
    """argparse type: a finite number of seconds, zero or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds >= 0, got {text!r}")
    return value


def _triple(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three numbers R,G,B such as 0.5,0.5,0.5, got {text!r}") from None
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected three numbers R,G,B, got {len(values)} in {text!r}")
    return values


def _convert_config(args):
    from edgevit.config import ConvertConfig, load_recipe

    options = load_recipe(args.recipe) if args.recipe else {}
    for key in ("model", "module", "weights", "random_init", "seed", "target", "precision", "delegate", "img_size",
                "img_sizes", "batch", "dynamic_batch", "num_classes", "reset_head", "features", "attention", "labels",
                "images", "opset", "out",
                "overwrite", "keep_failed", "rewrite", "etrecord", "input_type", "layout", "min_ios", "compute_units",
                "calib_dir", "calib_count", "calib_method", "eval_dir", "eval_count", "max_accuracy_drop",
                "min_agreement", "mean", "std", "crop_pct", "interpolation", "license", "author", "max_batch",
                "workspace_mib", "build"):
        value = getattr(args, key)
        if value is not None:
            options[key] = value
    if args.weights is not None:
        options.pop("random_init", None)
    elif args.random_init:
        options.pop("weights", None)
    return ConvertConfig.from_dict(options, where="convert options")


def _step_printer(enabled: bool):
    def on_step(name, state, seconds):
        if not enabled:
            return
        if state == "start":
            print(f"edgevit: {name} ...", file=sys.stderr, flush=True)
        else:
            print(f"edgevit: {name} done in {seconds:.1f}s", file=sys.stderr, flush=True)
    return on_step


def _summary(result) -> dict:
    m = result.manifest
    return {"out": str(result.out_dir), "target": m["target"], "precision": m["precision"],
            "artifact": m["artifact"], "artifact_bytes": m["artifact_bytes"], "parity": m["parity"],
            "rewrite": {"form": m["rewrite"]["form"], "reason": m["rewrite"]["reason"],
                        "passes": [p["name"] for p in m["rewrite"]["passes"]],
                        "op_counts": m["rewrite"]["op_counts"]},
            "seconds": result.seconds, "details": m.get(m["target"], {})}


def _plan_summary(p) -> dict:
    return {"model": p.cfg.model, "target": p.cfg.target, "delegate": p.cfg.delegate, "precision": p.cfg.precision,
            "out": str(p.out_dir), "replaces_existing": p.out_dir.exists(), "input_size": list(p.size),
            "batch": p.cfg.batch, "preprocess": p.pre.to_manifest(), "preprocess_sources": p.pre_sources,
            "labels": len(p.labels) if p.labels else None, "tolerance": p.tol_key,
            "weights": _weights_source(p.cfg)}


def _weights_source(cfg) -> str:
    from edgevit.models.factory import embedded_weights

    if cfg.weights or cfg.random_init:
        return cfg.weights or f"random (seed {cfg.seed})"
    shipped = embedded_weights(cfg.model)
    if shipped:
        from pathlib import Path

        return f"{Path(shipped).name} (shipped with edgevit)"
    return f"the published {cfg.model} checkpoint"


def _cmd_convert(args) -> int:
    cfg = _convert_config(args)  # option errors come before the pipeline (and torch) is imported
    from edgevit.pipeline import convert

    if args.dry_run:
        from edgevit.pipeline import plan

        summary = _plan_summary(plan(cfg))
        if args.json:
            _print_json(summary)
        else:
            print("dry run: every option checked, nothing built")
            for key, value in summary.items():
                print(f"  {key}: {value}")
        return 0
    result = convert(cfg, on_step=_step_printer(True))
    if args.json:
        _print_json(_summary(result))
    else:
        m = result.manifest
        print(f"wrote {result.out_dir}/{m['artifact']} ({m['artifact_bytes'] / 1e6:.1f} MB) in {result.seconds:.1f}s")
        _print_details(dict(m, _folder=str(result.out_dir)))
        print(_parity_table(m))
        if m.get("accuracy"):
            from edgevit.quantize.accuracy import format_accuracy

            print(format_accuracy(m["accuracy"]))
    return 0 if result.parity_passed else 3


def _print_details(m: dict) -> None:
    from edgevit.targets import get_target

    rw = m["rewrite"]
    if rw["passes"]:
        before, after = rw["op_counts"]["original"], rw["op_counts"].get("deployed", {})
        bn = sum(v for k, v in before.items() if "batch_norm" in k)
        bn_after = sum(v for k, v in after.items() if "batch_norm" in k)
        print(f"rewrites: {', '.join(p['name'] for p in rw['passes'])}; graph ops {sum(before.values())} -> "
              f"{sum(after.values())}, BatchNorms {bn} -> {bn_after}")
    else:
        print("rewrites: none (original form)")
    for line in get_target(m["target"]).summary_lines(m):
        print(line)


def _parity_table(m: dict) -> str:
    p = m["parity"]
    rows = [f"parity in {p['runtime']}: {'PASS' if p['passed'] else 'FAIL'}"]
    width = max([7] + [len(d) for d in p["sets"]])
    for data, ms in p["sets"].items():
        for x in ms:
            top = "" if x.get("top1_agreement") is None else \
                (f" top1 agree {x['top1_agreement']:.0%} near-ties {x.get('near_ties', 0)} "
                 f"top5 {x['top5_agreement']:.0%}")
            rows.append(f"  {data:<{width}} {x['name']:<10} n={x['samples']:<3} max_abs {x['max_abs']:.3g} "
                        f"max_rel {x['max_rel']:.3g} cosine {x['cosine_min']:.7f} (mean {x['cosine_mean']:.7f}){top}")
    rows += [f"  FAIL {f}" for f in p["failures"]]
    return "\n".join(rows)


def _add_verify(sub):
    p = sub.add_parser("verify", help="re-run the parity check of an artifact folder",
                       description="Run an artifact folder's artifact in its own runtime and compare it with the "
                                   "PyTorch reference (golden pair, and --images when given).",
                       epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    _artifact_arguments(p, images="folder of real images to compare on (rebuilds the PyTorch reference)")
    p.set_defaults(func=_cmd_verify)


def _artifact_arguments(p, *, images: str) -> None:
    """The arguments of the commands that re-run an artifact folder against PyTorch (verify, drift)."""
    p.add_argument("dir", help="artifact folder written by edgevit convert")
    p.add_argument("--images", help=images)
    p.add_argument("--weights", help="the checkpoint the artifact came from, if not at the manifest's path")
    p.add_argument("--module", help=MODULE_HELP)
    p.add_argument("--threads", type=_count(1), help="runtime threads")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def _cmd_verify(args) -> int:
    from edgevit.verify import verify_dir

    report = verify_dir(args.dir, images=args.images, weights=args.weights, threads=args.threads,
                        raise_on_failure=False, module=args.module)
    if args.json:
        _print_json(report.to_dict())
    else:
        print(report.table())
        from edgevit.manifest import read_manifest

        accuracy = read_manifest(args.dir).get("accuracy")
        if accuracy:
            from edgevit.quantize.accuracy import format_accuracy

            print("measured at conversion: " + format_accuracy(accuracy))
    return 0 if report.passed else 3


def _add_build_engine(sub):
    p = sub.add_parser("build-engine", help="build and check the TensorRT engine of a tensorrt artifact folder (on "
                                            "the GPU server)",
                       description="Build model.plan from a folder made by `edgevit convert --target tensorrt`, with "
                                   "the manifest's optimization profile and workspace and a timing cache beside it, "
                                   "then check the engine against PyTorch (golden pair, --images) under the folder's "
                                   "tolerance row and record GPU, driver, CUDA and TensorRT versions in the manifest. "
                                   "Needs an NVIDIA GPU and pip install 'edgevit[tensorrt]' (exit 5 otherwise).",
                       epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", help="artifact folder written by edgevit convert --target tensorrt")
    p.add_argument("--images", help="folder of real images to check the engine on (rebuilds the PyTorch reference)")
    p.add_argument("--weights", help="the checkpoint the artifact came from, if not at the manifest's path")
    p.add_argument("--per-tensor", action="store_true",
                   help="also compare every tensor of the engine with ONNX Runtime (polygraphy run)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model.plan")
    p.add_argument("--json", action="store_true", help="print the engine record as JSON")
    p.set_defaults(func=_cmd_build_engine)


def _cmd_build_engine(args) -> int:
    from edgevit.verify.engine import build_engine

    record, report = build_engine(args.dir, images=args.images, weights=args.weights, per_tensor=args.per_tensor,
                          overwrite=args.overwrite, on_progress=lambda msg: print(msg, file=sys.stderr))
    if args.json:
        _print_json(record)
    else:
        print(f"built {args.dir}/{record['plan']} ({record['plan_bytes'] / 1e6:.1f} MB) in {record['build_s']}s on "
              f"{record['gpu']} (TensorRT {record['tensorrt']}, driver {record['driver']})")
        print(report.table())
    return 0


def _add_drift(sub):
    p = sub.add_parser("drift", help="where an artifact departs from PyTorch, block by block, in its own runtime",
                       description="Compare the output of every Next-ViT unit (stem, each NCB/NTB, the final "
                                   "output) in the artifact's runtime with the fp32 PyTorch model on the golden "
                                   "input (and --images), and name the first block over its budget (the "
                                   "tolerance row's cosine and max_rel).",
                       epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    _artifact_arguments(p, images="folder of real images to add to the golden input")
    p.add_argument("--html", help="also write the table as an HTML page to this file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --html file")
    p.add_argument("--calib-dir", help="int8 ExecuTorch only: where the images that calibrated the artifact are now "
                                       "(default: the folder its manifest records); they must be the same images")
    p.set_defaults(func=_cmd_drift)


def _cmd_drift(args) -> int:
    from edgevit._io import atomic_file
    from edgevit.verify.drift import drift_dir

    report = drift_dir(args.dir, images=args.images, weights=args.weights, threads=args.threads,
                       calib_dir=args.calib_dir, on_step=_step_printer(True), module=args.module)
    if args.html:
        with atomic_file(args.html, overwrite=args.overwrite) as tmp:
            tmp.write_text(report.html())
    _print_json(report.to_dict()) if args.json else print(report.table())
    return 0


# ---------------------------------------------------------------------------------------------------------------
# bench / profile / report


def _add_bench(sub):
    p = sub.add_parser("bench", help="latency, memory and size of artifact folders, side by side",
                       description="Benchmark artifact folders in their desktop runtimes with one method: warm-up, "
                                   "then interleaved rounds; load time, first run, p50/p90/p99, peak RSS (fresh "
                                   "process per artifact), size, roofline fraction. With --sizes, converts (or "
                                   "reuses) --model/--target at each size first.",
                       epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dirs", nargs="*", help="artifact folders written by edgevit convert")
    p.add_argument("--threads", type=_count(1), default=2, help="runtime threads (default 2)")
    p.add_argument("--warmup", type=_count(0), default=5, help="untimed runs per artifact first (default 5)")
    p.add_argument("--runs", type=_count(1), default=20, help="timed interleaved rounds (default 20)")
    p.add_argument("--min-time", type=_seconds, default=0.0, help="keep timing until this many seconds passed")
    p.add_argument("--batch", type=_count(1), help="batch to run (must match fixed-batch artifacts)")
    p.add_argument("--no-memory", action="store_true", help="skip the per-artifact peak-RSS measurement")
    p.add_argument("--sizes", help="resolution sweep, e.g. 224,384,512 (needs --model and --target)")
    p.add_argument("--model", help="sweep: model name")
    p.add_argument("--target", help="sweep: target")
    p.add_argument("--precision", default="fp32", help="sweep: precision")
    w = p.add_mutually_exclusive_group()
    w.add_argument("--weights", help="sweep: checkpoint")
    w.add_argument("--random-init", action="store_true", help="sweep: deterministic random weights")
    p.add_argument("--sweep-dir", default="out/sweep", help="sweep: where converted folders are kept and reused")
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per artifact")
    p.set_defaults(func=_cmd_bench)


def _sweep_folders(args) -> list[str]:
    from pathlib import Path

    from edgevit.config import ConvertConfig
    from edgevit.manifest import input_hw, read_manifest
    from edgevit.pipeline import convert, portable_source

    if not (args.model and args.target):
        raise ConfigError("--sizes needs --model and --target (and --weights or --random-init)")
    folders = []
    sizes = [v.strip() for v in args.sizes.split(",") if v.strip()]
    bad = [v for v in sizes if not v.isdigit()]
    if bad or not sizes:
        raise ConfigError(f"--sizes takes square sizes separated by commas, such as 224,384,512; got {args.sizes!r}")
    for size in map(int, sizes):
        out = Path(args.sweep_dir) / f"{args.model}_{args.target}_{args.precision}_{size}"
        cfg = ConvertConfig(model=args.model, target=args.target, precision=args.precision, weights=args.weights,
                            random_init=args.random_init, img_size=size, out=str(out), overwrite=True)
        reuse = False
        if (out / "manifest.json").is_file():
            m = read_manifest(out)
            src = m["source"]
            reuse = (m["model"], m["target"], m["precision"], list(input_hw(m)), src["random_init"],
                     src["weights"]) == (args.model, args.target, args.precision, [size, size], args.random_init,
                                         portable_source(cfg.weights))
        if reuse:
            print(f"edgevit: reusing {out}", file=sys.stderr)
        else:
            print(f"edgevit: converting {args.model} at {size} for the sweep", file=sys.stderr)
            convert(cfg, on_step=_step_printer(True))
        folders.append(str(out))
    return folders


def _cmd_bench(args) -> int:
    from edgevit.bench.runner import bench, format_table
    from edgevit.errors import ConfigError

    folders = list(args.dirs)
    if args.sizes:
        folders += _sweep_folders(args)
    if not folders:
        raise ConfigError("give artifact folders to bench, or --sizes with --model and --target")
    results = bench(folders, threads=args.threads, warmup=args.warmup, runs=args.runs, min_time_s=args.min_time,
                    batch=args.batch, memory=not args.no_memory,
                    on_progress=lambda msg: print(f"edgevit: {msg}", file=sys.stderr, flush=True))
    _print_json(results) if args.json else print(format_table(results))
    return 0


def _add_profile(sub):
    p = sub.add_parser("profile", help="on-device profiles: run an ETDump here, ingest device files",
                       epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    psub = p.add_subparsers(dest="profile_command", metavar="ACTION")
    psub.required = True
    ing = psub.add_parser("ingest", help="read an ETDump (+ETRecord) or a sample app's results JSON",
                          description="Read an ExecuTorch ETDump (with --etrecord) into a per-operator table, or a "
                                      "sample app's results JSON into edgevit's result format.")
    ing.add_argument("file")
    ing.add_argument("--etrecord", help="the artifact's model.etrecord (convert with --etrecord)")
    ing.add_argument("--out", help="write the normalized JSON here (for edgevit report)")
    ing.add_argument("--json", action="store_true")
    ing.set_defaults(func=_cmd_profile_ingest)
    run = psub.add_parser("run", help="run an executorch artifact here with ETDump tracing on",
                          description="Run an executorch artifact folder with event tracing and write an ETDump.")
    run.add_argument("dir")
    run.add_argument("--out", required=True, help="ETDump file to write")
    run.add_argument("--runs", type=_count(1), default=5)
    run.add_argument("--threads", type=_count(1), default=2)
    run.set_defaults(func=_cmd_profile_run)


def _cmd_profile_ingest(args) -> int:
    from pathlib import Path

    from edgevit._io import atomic_file
    from edgevit.bench.profiles import format_profile, ingest

    prof = ingest(args.file, etrecord=args.etrecord)
    if args.out:
        with atomic_file(Path(args.out), overwrite=True) as tmp:
            tmp.write_text(json.dumps(prof["result"] if prof["kind"] == "device" else prof, indent=2, default=str))
    _print_json(prof) if args.json else print(format_profile(prof))
    return 0


def _cmd_profile_run(args) -> int:
    from edgevit.bench.profiles import run_etdump

    path = run_etdump(args.dir, args.out, runs=args.runs, threads=args.threads)
    print(f"wrote {path}; read it with: edgevit profile ingest {path} --etrecord {args.dir}/model.etrecord")
    return 0


def _add_report(sub):
    p = sub.add_parser("report", help="HTML + Markdown report with plots from results and profiles",
                       description="Turn bench results (edgevit bench --json), app results JSON and ETDumps into "
                                   "one self-contained HTML page (plots embedded) and a Markdown twin.",
                       epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="+", help="bench JSON, app results JSON, ingested profile JSON or ETDump files")
    p.add_argument("--etrecord", help="ETRecord for ETDump inputs")
    p.add_argument("--out", required=True, help="report .html (the .md is written beside it)")
    p.add_argument("--title", default="edgevit report")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_report)


def _cmd_report(args) -> int:
    from edgevit.bench.report import build_report, load_inputs

    results, profiles = load_inputs(args.results, etrecord=args.etrecord)
    paths = build_report(results, profiles, args.out, title=args.title, overwrite=args.overwrite)
    print(f"wrote {paths['html']} and {paths['markdown']}")
    return 0


# ---------------------------------------------------------------------------------------------------------------
# scale-out on Ray: matrix / evaluate


def _scale_arguments(p):
    p.add_argument("--address", default=os.environ.get("RAY_ADDRESS") or None,
                   help="a running Ray cluster (`ray start --head` prints it; ray://HOST:10001 for a remote client; "
                        "default: $RAY_ADDRESS when set, else a new local Ray on this machine's cores)")
    p.add_argument("--inline", action="store_true", help="no Ray: run in this process, one after another")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def _add_matrix(sub):
    p = sub.add_parser("matrix", help="convert + verify every (model, target, precision, size) of a SPEC on Ray",
                       description="Each cell of SPEC (models x targets x precisions x sizes) is one convert + "
                                   "verify (+ the accuracy report for reduced precision) run as its own Ray task, "
                                   "its artifact under OUT/cells/<cell>/. Results merge into OUT/matrix.json and "
                                   "OUT/matrix.html. A failing cell does not stop the others; a cell whose inputs "
                                   "(weights, images, options, toolchain versions) are unchanged is reused unless "
                                   "--force. For a cluster, OUT and every path in SPEC must be on storage every "
                                   "node sees, and edgevit installed on every node.",
                       epilog=EXIT_CODES_HELP + "\nThe exit code is 0 when every supported cell passed, else the "
                                                "first failing cell's.",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec", help="YAML SPEC (models, targets, precisions, sizes, calib_dir, eval_dir, options)")
    p.add_argument("--out", required=True, help="the matrix folder (created; an existing matrix folder is reused)")
    p.add_argument("--workers", type=int, help="cells at a time (default: one per CPU)")
    p.add_argument("--force", action="store_true", help="rebuild every cell, even unchanged ones")
    p.add_argument("--bench", action="store_true", help="after converting, time the passing cells interleaved, on "
                                                        "one node with every CPU of it reserved")
    p.add_argument("--bench-runs", type=int, default=20, help="interleaved timing rounds (default 20)")
    _scale_arguments(p)
    p.set_defaults(func=_cmd_matrix)


def _cmd_matrix(args) -> int:
    from edgevit.scale.matrix import check_workers, exit_code, format_table, run_matrix
    from edgevit.scale.spec import load_spec

    check_workers(args.workers)
    spec = load_spec(args.spec)
    total = len(spec.cells())
    done = [0]

    def on_event(kind: str, rec: dict) -> None:
        if args.json:
            return
        if kind == "start":
            print(f"edgevit: cell {rec['id']} ...", file=sys.stderr)
        elif kind in ("done", "reused", "unsupported"):
            done[0] += 1
            what = {"reused": "reused (unchanged inputs)", "unsupported": "unsupported"}.get(kind, rec["status"])
            extra = f" in {rec.get('seconds', 0):.1f} s" if kind == "done" else ""
            if kind == "done" and rec.get("attempts", 1) > 1:
                extra += f" (attempt {rec['attempts']})"
            print(f"edgevit: [{done[0]}/{total}] {rec['id']}: {what}{extra}", file=sys.stderr)
        elif kind == "bench":
            print(f"edgevit: timed {len(rec.get('results', []))} artifacts on {rec.get('node')}", file=sys.stderr)

    result = run_matrix(spec, args.out, address=args.address, workers=args.workers, force=args.force,
                        bench=args.bench, bench_runs=args.bench_runs, inline=args.inline, on_event=on_event)
    if args.json:
        _print_json(result.to_dict())
    else:
        print(format_table(result))
        print(f"wrote {result.out / 'matrix.json'} and {result.out / 'matrix.html'}")
    return exit_code(result)


def _add_evaluate(sub):
    p = sub.add_parser("evaluate", help="artifacts over a large image folder, sharded across Ray workers",
                       description="Run each artifact folder in its own runtime, through its manifest's "
                                   "preprocessing, beside its fp32 PyTorch model, over every image of --images, "
                                   "split into shards that run as Ray tasks; the merged metrics use verify's names "
                                   "(top-1/top-5 agreement, cosine, SQNR) plus top-1/top-5 accuracy for a labelled "
                                   "folder. The numbers do not depend on --shards.",
                       epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("artifacts", nargs="+", help="artifact folders written by edgevit convert")
    p.add_argument("--images", required=True, help="image folder (with --labels-from-folders: one subfolder per "
                                                   "class, named by a label or a class index)")
    p.add_argument("--labels-from-folders", action="store_true", help="each image's class is its subfolder")
    p.add_argument("--shards", type=int, help="pieces the folder is cut into (default: one per CPU)")
    p.add_argument("--threads", type=int, default=1, help="runtime threads per shard task (default 1)")
    p.add_argument("--weights", help="the checkpoint the artifacts were converted from, where their manifests' "
                                     "path no longer holds it")
    p.add_argument("--module", help=MODULE_HELP)
    _scale_arguments(p)
    p.set_defaults(func=_cmd_evaluate)


def _cmd_evaluate(args) -> int:
    from edgevit.scale.evaluate import evaluate, format_results

    if args.threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {args.threads}")
    seen = [0]

    def on_shard(part: dict) -> None:
        seen[0] += part["images"]
        if not args.json:
            print(f"edgevit: {seen[0]} images done ({part['node']}, {part['seconds']:.1f} s)", file=sys.stderr)

    results = evaluate(args.artifacts, args.images, labels_from_folders=args.labels_from_folders,
                       shards=args.shards, address=args.address, threads=args.threads, inline=args.inline,
                       weights=args.weights, on_shard=on_shard, module=args.module)
    _print_json(results) if args.json else print(format_results(results))
    return 0


def _add_adapt(sub) -> None:
    p = sub.add_parser("adapt", help="carry a trained checkpoint over to an attention variant by distillation",
                       description="Initialise an attention variant (avgpool, xca, hilo) from an E-MHSA checkpoint "
                                   "wherever the parameters carry over, then distil on unlabeled images: each NTB's "
                                   "attention against the original's, then the whole model's outputs. Resumable "
                                   "(rerun the same command), deterministic with --seed. Writes the checkpoint and "
                                   "OUT.report.json.",
                       epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--attention", required=True, help="the variant: avgpool, xca or hilo")
    p.add_argument("--weights", help="the trained E-MHSA checkpoint (default: the model's shipped one)")
    p.add_argument("--data", required=True, help="folder of unlabeled images (any layout)")
    p.add_argument("--out", required=True, help="the adapted checkpoint (.safetensors)")
    p.add_argument("--model", default="nextvit_small", help="registered model name (default nextvit_small)")
    p.add_argument("--eval-dir", help="held-out images; with one subfolder per class, top-1 is reported")
    p.add_argument("--img-size", type=int, help="training resolution (default: the checkpoint's)")
    p.add_argument("--max-images", type=int, default=512, help="images of --data used (default 512)")
    p.add_argument("--batch", type=int, default=16, help="batch size (default 16)")
    p.add_argument("--block-steps", type=int, default=300, help="attention-by-attention steps (default 300)")
    p.add_argument("--model-steps", type=int, default=300, help="whole-model steps (default 300)")
    p.add_argument("--block-lr", type=float, default=1e-3, help="Adam rate, block stage (default 1e-3)")
    p.add_argument("--model-lr", type=float, default=1e-5, help="Adam rate, model stage (default 1e-5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-every", type=int, default=50,
                   help="steps between resumable states and kept-out checks (default 50)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_cmd_adapt)


def _cmd_adapt(args) -> int:
    from edgevit.adapt import AdaptConfig, adapt, format_report

    keys = ("attention", "weights", "data", "out", "model", "eval_dir", "img_size", "max_images", "batch",
            "block_steps", "model_steps", "block_lr", "model_lr", "seed", "save_every", "overwrite")
    result = adapt(AdaptConfig(**{k: getattr(args, k) for k in keys}), progress=not args.json)
    if args.json:
        _print_json(result.report)
    else:
        print(format_report(result.report))
        print(f"wrote {result.checkpoint} and {result.report_path}")
    return 0


# ---------------------------------------------------------------------------------------------------------------


COMMANDS = [_add_convert, _add_verify, _add_build_engine, _add_drift, _add_bench, _add_profile, _add_report,
            _add_matrix, _add_evaluate, _add_adapt, _add_info, _add_models]


def _own_records_only(record: logging.LogRecord) -> bool:
    return record.name.startswith("edgevit") or record.levelno >= logging.ERROR


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgevit",
        description="Next-ViT from a PyTorch checkpoint to fast, verified on-device artifacts.",
        epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    from edgevit import __version__

    parser.add_argument("--version", action="version", version=f"edgevit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if args.verbose < 2:  # toolchains log their internals at WARNING/INFO (and reset their own levels); -vv shows them
        for handler in logging.getLogger().handlers:
            handler.addFilter(_own_records_only)
        for name in ("torch.utils._pytree", "torch.onnx._internal.exporter._registration"):  # torch's own handlers
            logging.getLogger(name).setLevel(logging.ERROR)
    from edgevit import _progress

    _progress.enable(not getattr(args, "json", False))
    _terminate_like_interrupt()
    try:  # every command stages files or captures runtimes' output in temporary files
        tempfile.gettempdir()
    except FileNotFoundError:
        print(f"edgevit {args.command}: error: no writable temporary folder (tried TMPDIR, /tmp, /var/tmp, /usr/tmp "
              "and the working folder); set TMPDIR to a writable folder", file=sys.stderr)
        return 2
    from edgevit._io import clean_stale_temp

    clean_stale_temp()  # what killed runs left in TMPDIR (their staging folders beside --out go in convert)

    def json_error(code: int, kind: str, message: str) -> None:
        """With --json, stdout stays machine-readable on failure too: one object naming the error."""
        if getattr(args, "json", False):
            print(json.dumps({"error": {"exit_code": code, "type": kind, "message": message}}), flush=True)

    def interrupted() -> int:
        print(f"edgevit {args.command}: interrupted; nothing partial was kept", file=sys.stderr)
        json_error(130, "Interrupted", "interrupted; nothing partial was kept")
        return 130

    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt as e:
        _release_interrupted_frames(e)
        return interrupted()
    except Exception as e:
        if _INTERRUPTED[0]:  # the error is the interrupt's doing (a half-imported runtime, a half-read file)
            return interrupted()
        full = no_space(e)
        if full is not None and not isinstance(e, NoSpaceError):  # staging folders are removed on the way out
            e = NoSpaceError(f"no space left on the device writing {full.filename or 'an output'}: free space there "
                             "(or point --out, or TMPDIR for temporary files, at another disk); nothing partial was "
                             "kept")
        if not isinstance(e, EdgeVitError):
            raise
        print(f"edgevit {args.command}: error: {e}", file=sys.stderr)
        json_error(e.exit_code, type(e).__name__, str(e))
        return e.exit_code


def _release_interrupted_frames(interrupt: BaseException) -> None:
    """Free what the interrupted frames held, with finalizer errors kept off the terminal.

    An interrupt can land inside a third-party constructor, leaving an object whose ``__del__`` then fails (seen:
    onnxruntime's ``ModelProtoWithShapeInfo`` interrupted before it set ``_tmp_model_path`` printed "Exception
    ignored ... Traceback" after our message). Those errors are a consequence of the interrupt, not news for the
    user; they go to the debug log.
    """
    import traceback

    def quiet(unraisable):
        logging.getLogger(__name__).debug("after the interrupt, %s raised %r", unraisable.object,
                                          unraisable.exc_value)

    previous, sys.unraisablehook = sys.unraisablehook, quiet
    try:
        traceback.clear_frames(interrupt.__traceback__)
        interrupt.__traceback__ = None
        import gc

        gc.collect()
    finally:
        sys.unraisablehook = previous


_INTERRUPTED = [False]  # set by the SIGINT/SIGTERM handlers: an interrupt wins over any error it caused


def _terminate_like_interrupt() -> None:
    """SIGTERM (``kill``, a CI timeout, a container stop) unwinds like Ctrl-C, so staging folders are removed and
    an existing output is left as it was. Both handlers remember that an interrupt came: one that lands inside an
    import or a file read can surface as another error (a half-imported runtime reads as "not installed", a
    half-read file as "damaged"), and ``main`` then still exits 130."""
    import signal

    _INTERRUPTED[0] = False

    def handler(signum, frame):
        _INTERRUPTED[0] = True
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            signal.signal(sig, handler)
        except ValueError:  # not the main thread (main() called from a worker): leave the default
            pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
