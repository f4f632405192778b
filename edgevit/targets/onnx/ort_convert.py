"""ONNX -> .ort conversion in a child process, so that the same ONNX file gives the same .ort bytes.

onnxruntime writes the .ort file's kernel-type-string table in the iteration order of a hash map whose seed is an
address in its own library, so with address-space layout randomization two conversions of one model differ in
about 300 header bytes (measured with onnxruntime 1.31.1; ``tests/targets/test_reproducible.py``). On Linux the
child turns randomization off for itself (``personality(ADDR_NO_RANDOMIZE)``, which any process may do for itself)
before it starts onnxruntime; elsewhere, or where a sandbox forbids it, the conversion runs with randomization on and
the manifest says the file is not byte-reproducible. The operator config names the model it was generated from; the
child writes it with the file name only, not the private staging path.

Run as ``python -m edgevit.targets.onnx.ort_convert MODEL.onnx OUT_DIR``; it prints one JSON line on stdout.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from edgevit._io import temp_dir
from edgevit.errors import ExportError

ADDR_NO_RANDOMIZE = 0x0040000
# the re-exec trampoline: die with the parent, set the personality flag, then exec the converter, which starts
# with randomization off (both survive the exec)
_TRAMPOLINE = ("import ctypes, os, sys\n"
               "libc = ctypes.CDLL(None, use_errno=True)\n"
               "libc.prctl(1, 9)\n"  # PR_SET_PDEATHSIG, SIGKILL: the converter dies with edgevit, even a killed one
               "current = libc.personality(0xffffffff)\n"
               "ok = current != -1 and libc.personality(current | %d) != -1\n"
               "os.environ['EDGEVIT_ORT_NO_ASLR'] = '1' if ok else '0'\n"
               "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])\n") % ADDR_NO_RANDOMIZE


def convert_to_ort(onnx_path: Path, out_dir: Path) -> dict:
    """Convert ``onnx_path`` into ``out_dir``/<stem>.ort and <stem>.required_operators.config; returns what the
    manifest records about the conversion (whether randomization was off, so whether the bytes are reproducible).

    With randomization off the table order still follows the child's heap layout, which shifts with the length of
    every path and environment string it sees; so the child works in a private folder of fixed-length name on a
    copy called ``model.onnx``, with relative paths and a minimal environment."""
    package_root = str(Path(__file__).resolve().parents[3])  # the child imports this edgevit, installed or not
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONHASHSEED": "0", "PYTHONPATH": package_root,
           **{k: os.environ[k] for k in ("SYSTEMROOT", "TMPDIR") if k in os.environ}}  # Windows needs SYSTEMROOT
    child = ["-m", "edgevit.targets.onnx.ort_convert", "model.onnx", "."]
    cmd = [sys.executable, "-c", _TRAMPOLINE, *child] if sys.platform.startswith("linux") else [sys.executable,
                                                                                                 *child]
    pyc = _bytecode_cache()
    env = {**env, "PYTHONPYCACHEPREFIX": str(pyc)}
    if not (pyc / "warm").is_file():  # the warm-up run compiles the child's modules into the cache; its output goes
        _run_child(cmd, env, onnx_path)
        (pyc / "warm").touch()
    with temp_dir("ortc") as work:
        lines = _run_child(cmd, env, onnx_path, work)
        os.utime(pyc)  # in use: kept by other edgevit sources' cleanup
        for name in ("model.ort", "model.required_operators.config"):
            if not (Path(work) / name).is_file():
                raise ExportError(f".ort conversion wrote no {name}")
            shutil.move(Path(work) / name, out_dir / f"{onnx_path.stem}{name.removeprefix('model')}")
    return json.loads(lines[-1])


def _run_child(cmd: list[str], env: dict, onnx_path: Path, work: str | None = None) -> list[str]:
    """Run the converter child on a copy called ``model.onnx`` in ``work`` (a throwaway folder when None); its
    stdout lines."""
    with contextlib.ExitStack() as stack:
        if work is None:
            work = stack.enter_context(temp_dir("ortc"))
        shutil.copyfile(onnx_path, Path(work) / "model.onnx")
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=work, env=env)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise ExportError(f".ort conversion failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-2000:]}")
    return lines


def _bytecode_cache() -> Path:
    """The converter child's own Python bytecode cache (``PYTHONPYCACHEPREFIX``), one per Python, onnxruntime and
    state of edgevit's sources in ``EDGEVIT_CACHE``. A child that compiles modules allocates differently from one
    that reads them compiled, and writes another table order: the first conversion on a fresh install differed from
    the next (issue 32). So the first conversion that finds the cache cold runs the child once to fill it, and every
    kept ``.ort`` comes from a child that read all its modules from a cache no other process writes
    (``tests/targets/test_reproducible.py`` converts five times from a cold cache)."""
    import hashlib
    import platform
    from importlib.metadata import version

    # any change to edgevit's own sources (an upgrade, a developer's edit) makes a new cache: a stale entry would be
    # recompiled by the next child, which then writes another order
    sources = hashlib.sha256()
    package = Path(__file__).resolve().parents[2]  # edgevit/
    for f in sorted(package.rglob("*.py")):
        st = f.stat()
        sources.update(f"{f.relative_to(package)}:{st.st_size}:{st.st_mtime_ns};".encode())
    base = Path(os.environ.get("EDGEVIT_CACHE") or Path.home() / ".cache" / "edgevit")
    pyc = base / f"ort-pyc-{platform.python_version()}-{version('onnxruntime')}-{sources.hexdigest()[:12]}"
    if not pyc.is_dir():  # the caches of other sources (~70 MB each) go, unless one was used in the last hour
        import time

        for old in base.glob("ort-pyc-*"):
            try:
                if time.time() - old.stat().st_mtime > 3600:
                    shutil.rmtree(old, ignore_errors=True)
            except OSError:
                pass
    try:
        pyc.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ExportError(f"cannot create the .ort converter's cache {pyc} ({e}); set EDGEVIT_CACHE to a writable "
                          "folder") from None
    return pyc


def _rewrite_config_header(config: Path, model_name: str) -> None:
    """The converter lists the absolute path of each model in the config's comments; keep the file name only."""
    lines = config.read_text().splitlines()
    kept = [f"# - {model_name}" if line.startswith("# - ") else line for line in lines]
    config.write_text("\n".join(kept) + "\n")


def _main(onnx_path: Path, out_dir: Path) -> dict:
    from onnxruntime.tools import convert_onnx_models_to_ort as converter
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    make_options = converter._create_session_options

    def one_thread(*args, **kwargs):
        # worker threads allocate concurrently, so the heap addresses that seed the table's hash map (above) vary
        # from run to run even with randomization off; one thread leaves one allocation order
        so = make_options(*args, **kwargs)
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        return so

    converter._create_session_options = one_thread
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
            # 'Fixed' optimizations for the CPU EP; target 'arm' keeps x86-only kernels out of the model
            convert_onnx_models_to_ort(onnx_path, output_dir=out_dir, optimization_styles=[OptimizationStyle.Fixed],
                                       target_platform="arm")
    except Exception as e:  # noqa: BLE001 - reported to the parent, which raises ExportError
        print(captured.getvalue()[-2000:], file=sys.stderr)
        raise SystemExit(f"{type(e).__name__}: {e}") from None
    config = out_dir / f"{onnx_path.stem}.required_operators.config"
    if config.is_file():
        _rewrite_config_header(config, f"{onnx_path.stem}.ort")
    no_aslr = os.environ.get("EDGEVIT_ORT_NO_ASLR") == "1"
    return {"address_randomization_off": no_aslr, "byte_reproducible": no_aslr}


if __name__ == "__main__":
    print(json.dumps(_main(Path(sys.argv[1]), Path(sys.argv[2]))))
