"""edgevit matrix / evaluate on a real local Ray (2 workers): a 2 x 2 x 2 matrix, a failing cell, a worker killed
mid-cell, a rerun that reuses every cell, and evaluate giving the same metrics for 1 and 3 shards."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from edgevit.errors import ConfigError, OutputExistsError
from edgevit.models.factory import embedded_data
from edgevit.scale.evaluate import METRICS, evaluate, shard_bounds
from edgevit.scale.matrix import RECORDS, exit_code, longest_first, run_matrix
from edgevit.scale.spec import MatrixSpec, load_spec
from edgevit.verify import verify_dir

pytestmark = pytest.mark.xdist_group("ray")  # one local Ray cluster at a time: each reserves every CPU

ray = pytest.importorskip("ray", reason="the scale extra (pip install 'edgevit[scale]') is not installed")

EVAL = embedded_data("nextvit_digits", "eval")  # 450 labelled digit scans, one subfolder per class


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray with 2 CPUs for the module (its start-up is seconds; every run_matrix/evaluate joins it)."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def write_spec(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def matrix_2x2x2(local_ray, tmp_path_factory):
    """The 2 x 2 x 2 matrix, run once per test session. Kept on disk with its result: under pytest-xdist a
    module-scoped fixture was built twice in one worker (two minutes of both CPUs each time)."""
    import pickle
    import shutil

    root = tmp_path_factory.getbasetemp() / "matrix-2x2x2"
    done = root / "result.pickle"
    if done.exists():
        return pickle.loads(done.read_bytes())
    shutil.rmtree(root, ignore_errors=True)  # a build that did not finish
    root.mkdir()
    spec = write_spec(root / "spec.yaml", {
        "models": [{"model": "nextvit_digits"}, {"model": "nextvit_test_tiny", "name": "tiny", "random_init": True}],
        "targets": ["onnx", "ort"], "precisions": ["fp32", "fp16"]})
    t0 = time.perf_counter()
    result = run_matrix(load_spec(spec), root / "out", workers=2)
    built = (root, spec, result, time.perf_counter() - t0)
    done.write_bytes(pickle.dumps(built))
    return built


def test_matrix_converts_and_verifies_every_cell(matrix_2x2x2):
    root, _, result, _ = matrix_2x2x2
    ids = [c["id"] for c in result.cells]
    assert ids == [f"{m}_{t}_{p}" for m in ("nextvit_digits", "tiny") for t in ("onnx", "ort")
                   for p in ("fp32", "fp16")]
    assert [c["status"] for c in result.cells] == ["ok"] * 8, [c.get("error") for c in result.cells]
    assert exit_code(result) == 0
    for c in result.cells:
        folder = root / "out" / "cells" / c["id"]
        assert verify_dir(folder).passed  # an independent re-check of what the cell left
        manifest = json.loads((folder / "manifest.json").read_text())
        assert (manifest["target"], manifest["precision"]) == tuple(c["id"].split("_")[-2:])
        assert c["parity"]["passed"] and c["size_mb"] > 0 and c["attempts"] == 1
    fp16 = [c for c in result.cells if c["id"].endswith("fp16")]
    assert all(c["accuracy"]["images"] > 0 for c in fp16 if c["id"].startswith("nextvit_digits"))
    merged = json.loads((root / "out" / "matrix.json").read_text())
    assert [c["id"] for c in merged["cells"]] == ids and merged["summary"] == {"ok": 8}
    html = (root / "out" / "matrix.html").read_text()
    assert all(i in html for i in ids)
    assert len({c["pid"] for c in result.cells}) >= 2  # more than one Ray worker process converted cells


def test_rerun_reuses_every_unchanged_cell_and_force_rebuilds(matrix_2x2x2, tmp_path):
    root, spec, first, _ = matrix_2x2x2
    again = run_matrix(load_spec(spec), root / "out", workers=2)
    assert [c.get("reused") for c in again.cells] == [True] * 8
    assert [c["key"] for c in again.cells] == [c["key"] for c in first.cells]
    # a changed input (other calibration images would change an int8 cell; here: another seed) is rebuilt; on a
    # copy, so that the shared folder keeps the records of the spec the other tests run
    import shutil

    copy = shutil.copytree(root / "out", tmp_path / "copy")
    data = yaml.safe_load(spec.read_text())
    data["models"][1]["seed"] = 1
    changed = run_matrix(load_spec(write_spec(tmp_path / "spec.yaml", data)), copy, workers=2)
    assert [bool(c.get("reused")) for c in changed.cells] == [True] * 4 + [False] * 4
    assert [c["status"] for c in changed.cells] == ["ok"] * 8
    # a rebuild that fails leaves the earlier artifact in place (convert replaces only on success): the record
    # says the folder is not this run's
    (tmp_path / "empty").mkdir()
    data["images"] = str(tmp_path / "empty")  # a parity folder without images: every rebuilt cell fails (exit 2)
    data["models"] = data["models"][1:]  # the 4 tiny cells are enough
    broken = run_matrix(load_spec(write_spec(tmp_path / "spec.yaml", data)), copy, inline=True)
    assert {(c["status"], c["exit_code"]) for c in broken.cells} == {("failed", 2)}
    assert all(c["stale_folder"] and "earlier run's artifact" in c["error"] for c in broken.cells)


def test_a_damaged_cell_is_rebuilt_not_reused(matrix_2x2x2, tmp_path):
    """Issue 32: a cell whose model.onnx had one byte flipped was "reused (unchanged inputs)"."""
    import shutil

    root, spec, first, _ = matrix_2x2x2
    out = shutil.copytree(root / "out", tmp_path / "copy")
    cell = next(c for c in first.cells if c["id"] == "tiny_onnx_fp32")
    artifact = out / "cells" / cell["id"] / "model.onnx"
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0x01
    artifact.write_bytes(bytes(data))
    again = run_matrix(load_spec(spec), out, inline=True)
    assert [bool(c.get("reused")) for c in again.cells] == [c["id"] != cell["id"] for c in first.cells]
    assert [c["status"] for c in again.cells] == ["ok"] * 8
    assert verify_dir(out / "cells" / cell["id"]).passed


def test_bench_cells_run_after_conversion_on_one_node_with_every_cpu(matrix_2x2x2):
    """--bench: the passing cells' artifacts are timed interleaved in one task holding both CPUs of the local Ray
    (while it runs, nothing else of the run can be scheduled); the record says which node measured them."""
    root, spec, _, _ = matrix_2x2x2
    result = run_matrix(load_spec(spec), root / "out", workers=2, bench=True, bench_runs=3)
    assert [c["status"] for c in result.cells] == ["ok"] * 8
    timed = {Path(r["artifact"]).name: r for r in result.bench["results"]}
    assert sorted(timed) == sorted(c["id"] for c in result.cells)
    assert result.bench["threads"] == 2 and result.bench["node"] == result.cells[0]["node"]
    assert all(r["p50_ms"] > 0 and r["threads"] == 2 for r in timed.values())
    merged = json.loads((root / "out" / "matrix.json").read_text())
    assert merged["bench"]["node"] == result.bench["node"]
    assert "p50 ms" in (root / "out" / "matrix.html").read_text()


def test_failing_cell_is_reported_and_a_killed_worker_is_retried(local_ray, tmp_path):
    """One cell's weights are not a checkpoint (exit 4); the other's worker is SIGKILLed mid-conversion: Ray
    retries it once, it passes, and no partial folder is left. The failing cell does not stop it."""
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a checkpoint")
    spec = write_spec(tmp_path / "spec.yaml", {
        "models": [{"model": "nextvit_digits"}, {"model": "nextvit_digits", "name": "broken", "weights": str(broken)}],
        "targets": ["onnx"], "precisions": ["fp32"]})
    out = tmp_path / "out"
    victim = "nextvit_digits_onnx_fp32"
    killed = {}

    def kill_mid_cell():
        deadline = time.time() + 120
        while time.time() < deadline and not killed:
            staging = [p for p in (out / "cells").glob(f".{victim}.*.partial")] if (out / "cells").is_dir() else []
            if staging:
                pid = int(staging[0].name.split(".")[2])
                os.kill(pid, signal.SIGKILL)
                killed["pid"] = pid
            time.sleep(0.02)

    killer = threading.Thread(target=kill_mid_cell)
    killer.start()
    result = run_matrix(load_spec(spec), out, workers=2)
    killer.join()
    assert killed, "the conversion finished before its staging folder was seen"
    cells = {c["id"]: c for c in result.cells}
    assert cells["broken_onnx_fp32"]["status"] == "failed"
    assert cells["broken_onnx_fp32"]["exit_code"] == 4
    assert "CheckpointError" in cells["broken_onnx_fp32"]["error"]
    assert exit_code(result) == 4
    ok = cells[victim]
    assert ok["status"] == "ok" and ok["attempts"] == 2 and ok["pid"] != killed["pid"]
    assert len((out / RECORDS / f"{victim}.attempts").read_text().splitlines()) == 2
    assert sorted(p.name for p in (out / "cells").iterdir()) == [victim]  # nothing partial, no broken folder
    assert verify_dir(out / "cells" / victim).passed


def test_evaluate_gives_the_same_metrics_for_any_shard_count(matrix_2x2x2):
    root, _, _, _ = matrix_2x2x2
    folders = [root / "out" / "cells" / f"nextvit_digits_onnx_{p}" for p in ("fp32", "fp16")]
    one = evaluate(folders, EVAL, labels_from_folders=True, shards=1)
    three = evaluate(folders, EVAL, labels_from_folders=True, shards=3)
    assert [r["shards"] for r in one + three] == [1, 1, 3, 3]
    for a, b in zip(one, three):
        assert {k: a.get(k) for k in METRICS} == {k: b.get(k) for k in METRICS}
        assert a["images"] == 450 and a["top1_fp32"] > 0.95  # the shipped model on its own held-out scans
    assert one[0]["top1_agreement"] == 1.0 and one[0]["cosine_min"] > 0.99999  # fp32 ONNX vs fp32 PyTorch
    # the same numbers as verify --images on the same folder (one set of metric names, one computation)
    rep = verify_dir(folders[1], images=EVAL)
    assert rep.sets["images"][0].top1_agreement == one[1]["top1_agreement"]
    assert rep.sets["images"][0].cosine_min == pytest.approx(one[1]["cosine_min"], abs=1e-6)


def test_shards_are_whole_chunks_covering_every_image():
    for n in (1, 15, 16, 17, 450):
        for shards in (1, 2, 3, 7, 100):
            bounds = shard_bounds(n, shards, chunk=16)
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(a == b_prev for (a, _), (_, b_prev) in zip(bounds[1:], bounds[:-1]))
            assert all(a % 16 == 0 for a, _ in bounds) and len(bounds) <= shards


def test_without_ray_the_error_names_the_extra_and_nothing_is_written(tmp_path, monkeypatch):
    import sys

    from edgevit.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    spec = MatrixSpec(models=[{"model": "nextvit_digits"}], targets=["onnx"], precisions=["fp32"])
    with pytest.raises(MissingDependencyError, match=r"edgevit\[scale\].*--inline") as e:
        run_matrix(spec, tmp_path / "out")
    assert e.value.exit_code == 5 and not (tmp_path / "out").exists()
    with pytest.raises(MissingDependencyError, match=r"edgevit\[scale\]"):
        evaluate([tmp_path], EVAL)


def test_cells_start_longest_first(tmp_path):
    cells = MatrixSpec(models=[{"model": "nextvit_digits"}], targets=["onnx", "executorch"],
                       precisions=["fp32", "int8"]).cells()
    todo = [(c, "key") for c in cells]
    guessed = [c.id for c, _ in longest_first(todo, tmp_path)]
    assert guessed[0] == "nextvit_digits_executorch_int8" and guessed[-1] == "nextvit_digits_onnx_fp32"
    for c, seconds in zip(cells, (50.0, 2.0, 1.0, 9.0)):  # recorded times win over the guess once all exist
        (tmp_path / f"{c.id}.json").write_text(json.dumps({"seconds": seconds}))
    assert [c.id for c, _ in longest_first(todo, tmp_path)] == [cells[i].id for i in (0, 3, 1, 2)]


def test_spec_errors_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'target'"):
        load_spec(write_spec(tmp_path / "a.yaml", {"models": [{"model": "nextvit_digits"}], "target": ["onnx"],
                                                   "targets": ["onnx"], "precisions": ["fp32"]}))
    with pytest.raises(ConfigError, match="options sets 'out'"):
        MatrixSpec(models=[{"model": "nextvit_digits"}], targets=["onnx"], precisions=["fp32"],
                   options={"out": "x"})
    with pytest.raises(ConfigError, match="models\\[0\\] has unknown key 'precision'"):
        MatrixSpec(models=[{"model": "nextvit_digits", "precision": "int8"}], targets=["onnx"], precisions=["fp32"])
    with pytest.raises(ConfigError, match="matrix cell nextvit_digits_onnx_fp32.*batch"):
        MatrixSpec(models=[{"model": "nextvit_digits"}], targets=["onnx"], precisions=["fp32"],
                   options={"batch": "two"}).cells()
    cells = MatrixSpec(models=[{"model": "nextvit_digits"}], targets=["coreml", "executorch:coreml"],
                       precisions=["pal8"]).cells()
    assert cells[0].unsupported is None and "does not support precision 'pal8'" in cells[1].unsupported
    # typos are errors, not "unsupported" cells (issue 32: targets [onxx] ran and exited 0)
    with pytest.raises(ConfigError, match="unknown target 'onxx' \\(did you mean 'onnx'\\?\\)"):
        MatrixSpec(models=[{"model": "nextvit_digits"}], targets=["onxx"], precisions=["fp32"])
    with pytest.raises(ConfigError, match="unknown precision 'fp23' \\(did you mean 'fp32'\\?\\)"):
        MatrixSpec(models=[{"model": "nextvit_digits"}], targets=["onnx"], precisions=["fp23"])
    with pytest.raises(ConfigError, match="unknown delegate 'executorch:xnpack'"):
        MatrixSpec(models=[{"model": "nextvit_digits"}], targets=["executorch:xnpack"], precisions=["fp32"])
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    spec = MatrixSpec(models=[{"model": "nextvit_digits"}], targets=["onnx"], precisions=["fp32"])
    with pytest.raises(OutputExistsError, match="not an edgevit matrix folder"):
        run_matrix(spec, tmp_path / "taken", inline=True)
    assert sorted(p.name for p in (tmp_path / "taken").iterdir()) == ["notes.txt"]


def test_cli_matrix_inline_prints_the_table_and_exits_with_the_failing_cells_code(tmp_path, capsys):
    from edgevit.cli import main

    spec = write_spec(tmp_path / "spec.yaml", {"models": [{"model": "nextvit_test_tiny", "random_init": True}],
                                               "targets": ["onnx"], "precisions": ["fp32", "int8"]})
    rc = main(["matrix", str(spec), "--out", str(tmp_path / "out"), "--inline"])
    out = capsys.readouterr()
    assert rc == 2  # int8 without calibration images: a configuration error (exit 2), fp32 converted
    assert "nextvit_test_tiny_onnx_fp32" in out.out and "calib-dir" in out.out
    assert "[2/2]" in out.err
    merged = json.loads((tmp_path / "out" / "matrix.json").read_text())
    assert [c["status"] for c in merged["cells"]] == ["ok", "failed"]
    assert np.isfinite(merged["cells"][0]["convert_s"])


def test_shipped_matrix_specs_are_valid(tmp_path):
    """conversion_recipes/matrix/*.yaml load and expand into cells (folders they name made empty in a copy)."""
    import shutil

    specs = sorted((Path(__file__).resolve().parents[2] / "conversion_recipes" / "matrix").glob("*.yaml"))
    assert len(specs) >= 2
    for src in specs:
        copy = tmp_path / src.stem / src.name
        copy.parent.mkdir()
        shutil.copy(src, copy)
        data = yaml.safe_load(src.read_text())
        for key in ("calib_dir", "eval_dir", "images"):
            if key in data:
                (copy.parent / data[key]).mkdir(parents=True)
        cells = load_spec(copy).cells()
        spec = load_spec(copy)
        assert len(cells) == len(spec.models) * len(spec.targets) * len(spec.precisions) * max(1, len(spec.sizes))
        assert any(c.unsupported is None for c in cells)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_evaluate_joins_a_running_cluster_with_token_auth(matrix_2x2x2, tmp_path):
    """The --address path against a real `ray start --head` with token authentication on: the CLI in a fresh process
    joins it with the cluster's token and gives the same numbers as a local run; with another token it exits 2 and
    its error names the token as a possible cause. (`edgevit matrix` joins through the same `ray_session`.)"""
    import secrets
    import shutil
    import socket
    import subprocess
    import sys
    import tempfile

    ray_cli = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
    if ray_cli is None:
        pytest.skip("the ray command line is not installed beside this Python")
    root, _, _, _ = matrix_2x2x2
    folder = root / "out" / "cells" / "nextvit_digits_onnx_fp32"
    port, token = _free_port(), secrets.token_hex(32)
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, "PYTHONWARNINGS": "ignore"}
    env.pop("RAY_ADDRESS", None)
    # its own temp dir: a head started with the default one leaves /tmp/ray/ray_current_cluster behind, which a
    # bare ray.init() elsewhere on the machine would then try to join (short path: Ray's sockets live in it)
    temp_dir = tempfile.mkdtemp(prefix="ev-ray-")
    head = subprocess.Popen([ray_cli, "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
                             "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp_dir}"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        address = f"127.0.0.1:{port}"
        cmd = [sys.executable, "-m", "edgevit", "evaluate", str(folder), "--images", EVAL, "--labels-from-folders",
               "--shards", "2", "--json", "--address", address]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the head takes seconds to listen; a client started earlier retries ~10 s
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.5)
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr[-3000:]
        joined = json.loads(p.stdout)[0]
        local = evaluate([folder], EVAL, labels_from_folders=True, shards=2)[0]
        assert joined["shards"] == 2
        assert {k: joined.get(k) for k in METRICS} == {k: local.get(k) for k in METRICS}

        # (Ray retries a refused connection once a second for ~10 s; RAY_gcs_server_port_wait_time_s shortens it)
        bad = subprocess.run(cmd, env={**env, "RAY_AUTH_TOKEN": "0" * 64, "RAY_gcs_server_port_wait_time_s": "2"},
                             capture_output=True, text=True, timeout=120)
        assert bad.returncode == 2
        assert "could not connect to the Ray cluster" in bad.stderr and "RAY_AUTH_TOKEN" in bad.stderr
    finally:
        head.send_signal(signal.SIGINT)  # --block: the head stops its Ray processes on Ctrl-C
        try:
            head.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        shutil.rmtree(temp_dir, ignore_errors=True)
