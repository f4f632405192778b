"""Which deployed form the Core AI target exports: each named form of ``edgevit.rewrites.FORMS`` that differs in its
attention layout (``coreml``: BCHW attention split per head; ``onnx``: BCHW attention with k^T q scores;
``executorch``: token layout as the model writes it), converted to ``.aimodel`` (fp32), with the operation counts
Core AI's own asset summary reports and the time of its Linux CPU runtime (a reference path, NOT a device figure:
the runtime on an iPhone or Mac schedules onto the Neural Engine and GPU, which this machine does not have).

    python benchmarks/coreai_forms.py [--models nextvit_test_tiny nextvit_small] [--rounds 5]

Writes benchmarks/results/coreai_forms.json and prints a table. Timings are interleaved: every round runs each
form once, in turn; the spread is min..max over rounds."""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).resolve().parent / "results" / "coreai_forms.json"
FORMS = ("coreml", "onnx", "executorch")
LAYOUT_OPS = ("transpose", "reshape", "slice", "concat", "broadcast_in_dims")


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def convert(model, size: int, folder: Path):
    import coreai_torch

    x = torch.zeros(1, 3, size, size)
    with torch.no_grad():
        program = torch.export.export(model, (x,), strict=False).run_decompositions(coreai_torch.get_decomp_table())
    t0 = time.perf_counter()
    ai = coreai_torch.TorchConverter(mode=coreai_torch.TorchConverter.Mode.RELEASE).add_exported_program(
        program, input_names=["x"], output_names=["logits"]).to_coreai()
    asset = ai.save_asset(folder / "m.aimodel")
    return asset, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["nextvit_test_tiny", "nextvit_small"])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    import edgevit
    from coreai.runtime import NDArray
    from edgevit.models.random_init import randomize_
    from edgevit.rewrites import deploy

    results = {"cpu": cpu_name(), "torch": torch.__version__, "note": "Linux CPU reference runtime of coreai-core: "
               "not a device figure; op counts are the asset's own (AIModelAsset.summary)", "models": {}}
    for name in args.models:
        net = randomize_(edgevit.create_model(name), seed=0).eval()
        size = net.cfg.default_img_size
        x = np.random.default_rng(0).normal(size=(1, 3, size, size)).astype(np.float32)
        with torch.no_grad():
            ref = net(torch.from_numpy(x)).numpy()
        rows, tmp = {}, tempfile.TemporaryDirectory()
        assets = {}
        for form in FORMS:
            deployed = deploy(net, form, img_size=(size, size)).model
            folder = Path(tmp.name) / form
            folder.mkdir()
            asset, seconds = convert(deployed, size, folder)
            ops = dict(asset.summary(include_statistics=True).operation_distribution)
            rows[form] = {"passes": list(edgevit.rewrites.FORMS[form][0]), "operations": sum(ops.values()),
                          **{k: ops.get(k, 0) for k in LAYOUT_OPS}, "convert_s": round(seconds, 1), "run_ms": []}
            assets[form] = asset

        async def timed():
            loaded = {}
            contexts = []
            for form, asset in assets.items():
                cm = asset.executable()
                model = await cm.__aenter__()
                contexts.append(cm)
                loaded[form] = model.load_function("main")
            for form, fn in loaded.items():  # warm-up, and parity against PyTorch's original model
                out = (await fn({"x": NDArray(x)}))["logits"].numpy()
                rows[form]["max_rel_vs_pytorch"] = float(np.abs(out - ref).max() / np.abs(ref).max())
            for _ in range(args.rounds):
                for form, fn in loaded.items():
                    t0 = time.perf_counter()
                    await fn({"x": NDArray(x)})
                    rows[form]["run_ms"].append((time.perf_counter() - t0) * 1000)
            for cm in contexts:
                await cm.__aexit__(None, None, None)

        asyncio.run(timed())
        tmp.cleanup()
        for row in rows.values():
            t = row.pop("run_ms")
            row["cpu_run_ms"] = {"median": round(statistics.median(t), 1), "min": round(min(t), 1),
                                 "max": round(max(t), 1)}
        results["models"][name] = {"img_size": size, "forms": rows}
        print(f"\n{name} ({size}x{size}), {results['cpu']}; Linux CPU runtime, not a device figure")
        print(f"{'form':<11}{'ops':>7}{'transpose':>10}{'reshape':>9}{'slice':>7}{'concat':>8}   CPU ms median [min..max]"
              "   max_rel vs PyTorch")
        for form, r in rows.items():
            c = r["cpu_run_ms"]
            print(f"{form:<11}{r['operations']:>7}{r['transpose']:>10}{r['reshape']:>9}{r['slice']:>7}{r['concat']:>8}   "
                  f"{c['median']:>8} [{c['min']}..{c['max']}]   {r['max_rel_vs_pytorch']:.2e}")
    OUT.write_text(json.dumps(results, indent=1))
    print(f"\nwrote {OUT}")


if __name__ == "__main__":
    main()
