#!/usr/bin/env python
"""Speed by resolution of the attention variants: Next-ViT-S with each NTB attention (emhsa = the original, avgpool,
xca, hilo), every model deployed for its runtime (``edgevit.rewrites.deploy``, the forms FORMS names), on ONNX
Runtime (CPU EP, spinning off), ExecuTorch XNNPACK and LiteRT (the interpreter with XNNPACK, fp32, when the `litert`
extra is installed), 2 threads, all timed in the same interleaved rounds at each size; the ratio original/variant is the median of the per-round ratios with its 10-90% range (a range that
contains 1 is a tie). Random weights: the time does not depend on the values.

Also per size: MACs of each model (FlopCounterMode) and the attention's share of ONNX Runtime's time, from its
per-node profile: the time of the nodes the exporter scoped under an NTB's ``e_mhsa`` (name_scopes metadata, matched
through ONNX Runtime's renames by ``benchmarks/backbone.py: attention_share``) over every node's time, 3 runs after a
warm-up.

    .venv/bin/python benchmarks/variants.py                          # 224, 384, 640, 1024 (~25 min)
    .venv/bin/python benchmarks/variants.py --sizes 224 --rounds 15
    .venv/bin/python benchmarks/variants.py --runtimes lite --json benchmarks/results/variants_litert.json

Writes benchmarks/results/variants.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from backbone import attention_share as scoped_attention_share  # noqa: E402 - per-node profile by module scope
from rewrites import executorch_runner, litert_runners  # noqa: E402 - the sibling script's runners

from edgevit.bench.timing import interleaved, paired_ratio, summarize  # noqa: E402
from edgevit.models import create_model, randomize_  # noqa: E402
from edgevit.models.complexity import count_macs  # noqa: E402
from edgevit.rewrites import deploy  # noqa: E402
from edgevit.targets.base import IOSpec  # noqa: E402
from edgevit.targets.executorch.runtime import set_threads
from edgevit.targets.onnx.export import export_onnx
from edgevit.targets.onnx.runtime import make_session

ATTENTIONS = ("emhsa", "avgpool", "xca", "hilo")


def attention_share(onnx_path: Path, x: np.ndarray, threads: int, runs: int = 3) -> float:
    """Share of ONNX Runtime's node time spent in the NTB attentions (backbone.py's scope-matched profile)."""
    return scoped_attention_share(onnx_path, x, threads, runs)["e_mhsa_share_of_model"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="nextvit_small")
    ap.add_argument("--sizes", default="224,384,640,1024")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--rounds-large", type=int, default=7, help="rounds at 640 and above (a 1024 round takes ~1 min)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--runtimes", default="ort,et", help="any of ort, et, lite (LiteRT)")
    ap.add_argument("--json", default="benchmarks/results/variants.json")
    ap.add_argument("--share-only", action="store_true",
                    help="recompute only the ONNX Runtime attention shares of an existing --json (no timing)")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    set_threads(args.threads)
    torch.set_num_threads(args.threads)
    runtimes = args.runtimes.split(",")
    models = {a: randomize_(create_model(args.model, attention=a)) for a in ATTENTIONS}
    if args.share_only:
        return recompute_shares(args, models, log)
    results = {"model": args.model, "threads": args.threads, "warmup": args.warmup,
               "machine": platform.processor() or platform.machine(), "torch": torch.__version__, "sizes": {}}
    with torch.no_grad(), tempfile.TemporaryDirectory(prefix="edgevit-variants-") as tmp:
        tmp = Path(tmp)
        for s in [int(v) for v in args.sizes.split(",")]:
            size = (s, s)
            x = torch.from_numpy(np.random.default_rng(0).normal(size=(1, 3, *size)).astype(np.float32))
            xn = x.numpy()
            runners, info = {}, {}
            for a, net in models.items():
                t0 = time.perf_counter()
                info[a] = {"macs": count_macs(net, size)}
                if "ort" in runtimes:
                    dep = deploy(net, "onnx", img_size=size).model
                    path = tmp / f"{a}_{s}.onnx"
                    export_onnx(dep, x, path, IOSpec(input_name="image", input_shape=tuple(x.shape),
                                                     output_names=("logits",)), opset=18)
                    sess = make_session(path, threads=args.threads)
                    runners[f"ort_{a}"] = lambda sess=sess: sess.run(None, {"image": xn})
                    info[a]["ort_attention_share"] = attention_share(path, xn, args.threads)
                if "et" in runtimes:
                    dep = deploy(net, "executorch", img_size=size).model
                    runners[f"et_{a}"], info[a]["et_delegation"] = executorch_runner(dep, x, args.threads,
                                                                                     tmp / f"{a}_{s}.pte")
                if "lite" in runtimes:
                    dep = deploy(net, "litert", img_size=size).model
                    lite, lite_info = litert_runners({a: dep}, x, size, args.threads, tmp, log, int8=False)
                    if not lite:
                        raise SystemExit(f"LiteRT could not convert or run {a} at {s}: {lite_info}")
                    runners.update(lite)
                    info[a]["litert"] = lite_info[f"lite_{a}"]
                log(f"  built {a} at {s}x{s} in {time.perf_counter() - t0:.0f}s")
            log(f"timing {len(runners)} runners at {s}x{s} ...")
            rounds = args.rounds if s < 640 else args.rounds_large
            samples = interleaved(runners, warmup=args.warmup, rounds=rounds)
            rows = {k: summarize(v) for k, v in samples.items()}
            ratios = {}
            for rt in runtimes:
                for a in ATTENTIONS[1:]:
                    ratios[f"{rt}_{a}"] = paired_ratio(samples[f"{rt}_emhsa"], samples[f"{rt}_{a}"])
            results["sizes"][str(s)] = {"rounds": rounds, "latency": rows, "speedup_vs_original": ratios,
                                        "models": info}
            print_size(results, str(s), runtimes)
            out = Path(args.json)  # written after every size: a long run keeps what it measured
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(results, indent=2) + "\n")
    log(f"wrote {args.json}")
    return 0


def recompute_shares(args, models: dict, log) -> int:
    results = json.loads(Path(args.json).read_text())
    with torch.no_grad(), tempfile.TemporaryDirectory(prefix="edgevit-variants-") as tmp:
        for s, entry in results["sizes"].items():
            size = (int(s), int(s))
            x = torch.from_numpy(np.random.default_rng(0).normal(size=(1, 3, *size)).astype(np.float32))
            for a, net in models.items():
                path = Path(tmp) / f"{a}_{s}.onnx"
                export_onnx(deploy(net, "onnx", img_size=size).model, x, path,
                            IOSpec(input_name="image", input_shape=tuple(x.shape), output_names=("logits",)), opset=18)
                entry["models"][a]["ort_attention_share"] = attention_share(path, x.numpy(), args.threads)
                log(f"  {a} {s}: attention {entry['models'][a]['ort_attention_share']:.1%}")
            print_size(results, s, [rt for rt in ("ort", "et") if f"{rt}_emhsa" in entry["latency"]])
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


def print_size(results: dict, s: str, runtimes: list[str]) -> None:
    r = results["sizes"][s]
    print(f"\n{results['model']} {s}x{s}, {results['threads']} threads, median of {r['rounds']} interleaved "
          "rounds; speed-up = original / variant, per-round median (10-90%)")
    print(f"{'attention':<9} {'GMACs':>7} {'attn share ORT':>15} "
          + " ".join(f"{rt + ' ms':>9} {'speed-up':>22}" for rt in runtimes))
    for a in ATTENTIONS:
        m = r["models"][a]
        share = m.get("ort_attention_share")
        cells = []
        for rt in runtimes:
            ms = r["latency"][f"{rt}_{a}"]["p50_ms"]
            if a == "emhsa":
                cells.append(f"{ms:>9.1f} {'(original)':>22}")
            else:
                q = r["speedup_vs_original"][f"{rt}_{a}"]
                verdict = "tie" if q["p10"] <= 1.0 <= q["p90"] else ("faster" if q["p10"] > 1.0 else "slower")
                cells.append(f"{ms:>9.1f} {q['median']:>6.3f} ({q['p10']:.2f}-{q['p90']:.2f}) {verdict:<6}")
        print(f"{a:<9} {m['macs'] / 1e9:>7.2f} {(f'{share:.1%}' if share is not None else '-'):>15} "
              + " ".join(cells))


if __name__ == "__main__":
    sys.exit(main())
