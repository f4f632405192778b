import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgevit.bench.profiles import ingest, normalize_device_results, validate_device_results
from edgevit.bench.report import build_report, load_inputs
from edgevit.bench.runner import RESULT_KEYS, bench
from edgevit.bench.timing import interleaved, summarize
from edgevit.cli import main
from edgevit.config import ConvertConfig
from edgevit.errors import ConfigError
from edgevit.pipeline import convert

DATA = Path(__file__).resolve().parents[1] / "data"
TINY = "nextvit_test_tiny"


def test_summarize_known_values():
    st = summarize([i / 1000 for i in range(1, 101)])  # 1..100 ms
    assert st["p50_ms"] == pytest.approx(50) and st["p90_ms"] == pytest.approx(90)
    assert st["p99_ms"] == pytest.approx(99) and st["min_ms"] == pytest.approx(1)
    assert st["mean_ms"] == pytest.approx(50.5)
    assert st["std_ms"] == pytest.approx(np.std(np.arange(1, 101), ddof=1))
    assert st["runs"] == 100


def test_interleaved_with_synthetic_runners_and_clock():
    now = [0.0]
    order = []

    def runner(name, cost):
        def run():
            order.append(name)
            now[0] += cost
        return run

    runners = {"a": runner("a", 0.010), "b": runner("b", 0.030), "c": runner("c", 0.002)}
    samples = interleaved(runners, warmup=2, rounds=6, clock=lambda: now[0])
    assert {k: len(v) for k, v in samples.items()} == {"a": 6, "b": 6, "c": 6}
    assert summarize(samples["b"])["p50_ms"] == pytest.approx(30)
    assert summarize(samples["c"])["p99_ms"] == pytest.approx(2)
    timed = order[6:]  # after 2 warm-ups each
    firsts = [timed[i * 3] for i in range(6)]
    assert set(firsts) == {"a", "b", "c"}  # the order rotates: no variant always runs first


def test_min_time_extends_rounds():
    now = [0.0]

    def run():
        now[0] += 0.1

    samples = interleaved({"x": run}, warmup=0, rounds=2, min_time_s=1.0, clock=lambda: now[0])
    assert len(samples["x"]) >= 10


@pytest.fixture(scope="module")
def folders(tmp_path_factory, artifacts):
    root = tmp_path_factory.mktemp("bench")
    et = artifacts.get(model=TINY, random_init=True, target="executorch", etrecord=True)
    onnx = artifacts.get(model=TINY, random_init=True, target="onnx", dynamic_batch=True)
    return root, et, onnx


def test_bench_results_schema(folders):
    root, et, onnx = folders
    results = bench([et, onnx], threads=2, warmup=1, runs=3)
    assert [r["target"] for r in results] == ["executorch", "onnx"]
    for r in results:
        assert set(RESULT_KEYS) <= set(r)
        assert r["p50_ms"] > 0 and r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"]
        assert r["peak_rss_mb"] > 10 and r["size_mb"] > 1
        assert r["macs"] > 0 and 0 < r["roofline_fraction"] < 5
        assert r["load_ms"] > 0 and r["first_run_ms"] > 0 and r["runs"] == 3
    json.dumps(results)  # serializable


def test_bench_batch_rules(folders):
    root, et, onnx = folders
    r = bench([onnx], threads=1, warmup=1, runs=2, batch=3, memory=False, gemm=False)[0]
    assert r["batch"] == 3
    with pytest.raises(ConfigError, match="converted with batch 1"):
        bench([et], threads=1, warmup=1, runs=2, batch=3, memory=False, gemm=False)


def test_bench_cli_json_and_sweep(folders, capsys):
    root, _, _ = folders
    sweep = root / "sweep"
    args = ["bench", "--sizes", "64,96", "--model", TINY, "--target", "onnx", "--random-init", "--sweep-dir",
            str(sweep), "--runs", "2", "--warmup", "1", "--no-memory", "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["img_size"] for r in out] == [[64, 64], [96, 96]]
    assert main(args) == 0
    assert "reusing" in capsys.readouterr().err


def test_etdump_from_a_real_run(folders, tmp_path):
    root, et, _ = folders
    assert main(["profile", "run", str(et), "--out", str(tmp_path / "run.etdump"), "--runs", "3"]) == 0
    prof = ingest(tmp_path / "run.etdump", etrecord=et / "model.etrecord")
    assert prof["kind"] == "etdump" and prof["runs"] == 3 and prof["total_ms"] > 0
    types = {t["type"] for t in prof["operators"]}
    assert any("GEMM" in t for t in types) and any("Convolution" in t for t in types)
    assert all(t["delegated"] for t in prof["operators"]) and prof["portable_ms"] == 0
    assert sum(t["share"] for t in prof["operators"]) == pytest.approx(1.0)
    assert prof["operator_ms"] <= prof["total_ms"] * 1.5


def test_device_results_normalize():
    obj = json.loads((DATA / "device_results_ios.json").read_text())
    r = normalize_device_results(obj)
    lat = sorted(obj["latencies_ms"])
    assert r["p50_ms"] == pytest.approx(lat[4]) and r["min_ms"] == pytest.approx(3.8)
    assert r["p99_ms"] == pytest.approx(5.1) and r["source"] == "device"
    assert r["device"] == "iPhone15,2 (iOS 17.5)" and r["target"] == "coreml"


@pytest.mark.parametrize("mutate,text", [
    (lambda o: o.pop("latencies_ms"), "results: 'latencies_ms' is a required property"),
    (lambda o: o.__setitem__("runtime", "tflite"), "results.runtime: 'tflite' is not one of"),
    (lambda o: o.__setitem__("latencies_ms", [1.0, "fast"]), "results.latencies_ms.1: 'fast' is not of type 'number'"),
    (lambda o: o.__setitem__("latencies_ms", [1.0, -2.0]), "results.latencies_ms.1: -2.0 is less than the minimum"),
    (lambda o: o.__setitem__("latencies_ms", []), r"results.latencies_ms: \[\] should be non-empty"),
    (lambda o: o["device"].pop("os"), "results.device: 'os' is a required property"),
    (lambda o: o.__setitem__("warmup", True), "results.warmup: True is not of type 'integer'"),
    (lambda o: o.__setitem__("version", 2), "results version 2 is newer"),
])
def test_device_results_validation(mutate, text):
    obj = json.loads((DATA / "device_results_ios.json").read_text())
    mutate(obj)
    with pytest.raises(ConfigError, match=text):
        validate_device_results(obj)


def _chromium():
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI; .ci/run installs it (apt-get install chromium)")
        pytest.skip("chromium not installed here (apt-get install chromium); CI installs it")
    return path


def test_report_renders_in_headless_chromium(folders, tmp_path):
    root, et, onnx = folders
    results = bench([et, onnx], threads=2, warmup=1, runs=3, memory=False)
    (tmp_path / "bench.json").write_text(json.dumps(results))
    main(["profile", "run", str(et), "--out", str(tmp_path / "d.etdump"), "--runs", "2"])
    main(["profile", "ingest", str(tmp_path / "d.etdump"), "--etrecord", str(et / "model.etrecord"),
          "--out", str(tmp_path / "prof.json")])
    results, profiles = load_inputs([tmp_path / "bench.json", DATA / "device_results_ios.json",
                                     tmp_path / "prof.json"])
    assert len(results) == 3 and len(profiles) == 1
    paths = build_report(results, profiles, tmp_path / "report.html")
    page = paths["html"].read_text()
    assert page.count("data:image/png;base64,") == 3  # latency, drift, operators (one resolution only)
    assert "iPhone15,2" in page and "Fully Connected" in page
    assert "figure1.png" in paths["markdown"].read_text()
    shot = tmp_path / "shot.png"
    r = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                        "--no-first-run", "--disable-background-networking", "--disable-component-update",
                        "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,2000",
                        f"--screenshot={shot}", paths["html"].as_uri()], capture_output=True, text=True,
                       timeout=120)
    assert shot.is_file(), r.stderr[-2000:]
    from PIL import Image

    img = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    # a rendered page with plots: plenty of non-white pixels, not a blank or error page
    assert (img < 200).mean() > 0.02 and img.std() > 20


def test_report_errors(tmp_path):
    with pytest.raises(ConfigError, match="must end in .html"):
        build_report([{"artifact": "a", "target": "onnx", "precision": "fp32", "p50_ms": 1.0}], [],
                     tmp_path / "r.pdf")
    bad = tmp_path / "bad.json"
    bad.write_text('{"hello": 1}')
    with pytest.raises(ConfigError, match="not an edgevit bench result"):
        load_inputs([bad])


def test_report_cli(folders, tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main(["report", str(DATA / "device_results_ios.json"), "--out", str(out)]) == 0
    assert out.is_file() and out.with_suffix(".md").is_file()
    assert main(["report", str(DATA / "device_results_ios.json"), "--out", str(out)]) == 7  # no overwrite


CPUINFO_ZEN4 = "processor\t: 0\ncpu MHz\t\t: 2600.000\nflags\t\t: fpu sse2 avx avx2 fma avx512f avx512_vnni\n"
CPUINFO_AVX2 = "processor\t: 0\ncpu MHz\t\t: 3000.000\nflags\t\t: fpu sse2 avx avx2 fma\n"


def test_theoretical_peak_from_flags_and_clock():
    from edgevit.bench.peak import cpu_facts, theoretical_peak

    zen = cpu_facts(CPUINFO_ZEN4)
    assert zen["fp32_lanes"] == 16 and zen["vnni"] and zen["ghz"] == 2.6
    assert theoretical_peak(2, "fp32", zen)["gflops"] == pytest.approx(2 * 2.6 * 64)
    assert theoretical_peak(2, "int8", zen)["gflops"] == pytest.approx(4 * 2 * 2.6 * 64)  # VNNI: 4 MACs a lane
    avx2 = cpu_facts(CPUINFO_AVX2)
    assert theoretical_peak(1, "fp32", avx2)["gflops"] == pytest.approx(3.0 * 32)
    assert theoretical_peak(1, "int8", avx2)["gflops"] == pytest.approx(3.0 * 64)
    assert theoretical_peak(1, "fp32", {}) is None


def test_int8_artifacts_are_scored_against_the_int8_ceiling():
    from edgevit.bench.peak import cpu_facts, theoretical_peak
    from edgevit.bench.runner import roofline

    facts = cpu_facts(CPUINFO_ZEN4)
    theory = {p: theoretical_peak(2, p, facts) for p in ("fp32", "int8")}
    fp32 = roofline(5_000_000_000, 50.0, "fp32", 200.0, theory)  # 200 GFLOP/s achieved
    int8 = roofline(5_000_000_000, 50.0, "int8", 200.0, theory)
    assert fp32["roofline_fraction"] == pytest.approx(200.0 / theory["fp32"]["gflops"])
    assert fp32["roofline_basis"] == "fp32 ceiling" and fp32["gemm_fraction"] == pytest.approx(1.0)
    assert int8["roofline_fraction"] == pytest.approx(200.0 / theory["int8"]["gflops"])
    assert int8["roofline_basis"] == "int8 ceiling" and int8["gemm_fraction"] is None
    no_clock = roofline(5_000_000_000, 50.0, "fp32", 250.0, {"fp32": None, "int8": None})
    assert no_clock["roofline_fraction"] == pytest.approx(0.8) and "GEMM" in no_clock["roofline_basis"]


def test_paired_ratio_calls_a_tie_within_the_spread():
    from edgevit.bench.timing import paired_ratio

    noisy_a = [1.00, 1.10, 0.95, 1.02, 0.98, 1.05, 0.97, 1.01, 1.03, 0.99]
    b = [1.0] * 10
    assert paired_ratio(noisy_a, b)["verdict"] == "tie"
    faster = paired_ratio([0.8 + 0.01 * i for i in range(10)], b)
    assert faster["verdict"] == "a faster" and faster["p90"] < 1.0
    assert paired_ratio(b, [0.8] * 10)["verdict"] == "b faster"

