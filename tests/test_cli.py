import json
import subprocess
import sys

import pytest

from edgevit.cli import main


def run_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "edgevit", *args], capture_output=True, text=True, timeout=timeout)


def test_info_json_reports_published_size():
    r = run_cli("info", "--model", "nextvit_small", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert isinstance(info["params"], int) and isinstance(info["macs"], int)
    assert abs(info["params"] / 1e6 - 31.7) <= 0.1
    assert abs(info["macs"] / 1e9 - 5.8) / 5.8 < 0.02
    assert [s["shape"] for s in info["stages"]] == [[1, 96, 56, 56], [1, 256, 28, 28], [1, 512, 14, 14],
                                                    [1, 1024, 7, 7]]
    assert info["stages"][1]["blocks"] == ["NCB", "NCB", "NCB", "NTB"]


def test_info_text_nonsquare(capsys):
    assert main(["info", "--model", "nextvit_test_tiny", "--img-size", "96x64"]) == 0
    out = capsys.readouterr().out
    assert "(1, 192, 3, 2)" in out and "MACs" in out


@pytest.mark.parametrize("args,code,text", [
    (["info", "--model", "nextvit_smal"], 2, "Did you mean 'nextvit_small'"),
    (["info", "--model", "nextvit_small", "--img-size", "abc"], 2, "not N or HxW"),
    (["info", "--model", "nextvit_small", "--img-size", "16"], 2, "at least 32x32"),
])
def test_errors_map_to_exit_codes(capsys, args, code, text):
    assert main(args) == code
    assert text in capsys.readouterr().err


def test_help_is_fast_and_imports_no_toolchain():
    code = ("import sys\nfrom edgevit.cli import build_parser\nbuild_parser()\nimport edgevit\n"
            "heavy = [m for m in ('torch', 'onnx', 'onnxruntime', 'executorch', 'coremltools') if m in sys.modules]\n"
            "print(heavy)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


@pytest.mark.parametrize("cmd", [[], ["info"], ["models"], ["build-engine"]])
def test_every_help_works(cmd):
    r = run_cli(*cmd, "--help", timeout=60)
    assert r.returncode == 0 and "usage: edgevit" in r.stdout


def test_models_lists_registry(capsys):
    assert main(["models", "--json"]) == 0
    names = [m["name"] for m in json.loads(capsys.readouterr().out)]
    assert {"nextvit_small", "nextvit_base", "nextvit_large", "nextvit_test_tiny"} <= set(names)


def test_executorch_native_log_lines_stay_out_of_the_terminal(tmp_path):
    """ExecuTorch's runtime prints [cpuinfo_utils.cpp ...] lines to fd 2 when its thread pool starts: they go to the
    log (shown with -v), never straight to the user's terminal."""
    import subprocess
    import sys

    out = tmp_path / "o"
    quiet = subprocess.run([sys.executable, "-m", "edgevit", "convert", "--model", "nextvit_test_tiny",
                            "--random-init", "--target", "executorch", "--out", str(out)],
                           capture_output=True, text=True, timeout=600)
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert "cpuinfo_utils" not in quiet.stderr and "parity" in quiet.stdout
    # verify starts the same runtime (and its thread pool) without a second conversion
    verbose = subprocess.run([sys.executable, "-m", "edgevit", "-v", "verify", str(out)], capture_output=True,
                             text=True, timeout=600)
    assert verbose.returncode == 0, verbose.stderr[-2000:]
    # replayed through the log at INFO, when this machine's runtime prints them at all
    lines = [line for line in verbose.stderr.splitlines() if "cpuinfo_utils" in line]
    assert all("executorch runtime: [cpuinfo_utils" in line for line in lines), lines[:3]


def test_one_exit_code_table_in_errors_cli_help_and_docs():
    """errors.EXIT_CODES is the table: every error class's code is in it, the CLI's help prints it, and
    docs/exit-codes.md's table has exactly its rows (both ways)."""
    import inspect
    import re
    from pathlib import Path

    from edgevit import errors
    from edgevit.cli import build_parser

    table = dict(errors.EXIT_CODES)
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, errors.EdgeVitError)]
    assert {c.exit_code for c in classes} <= set(table)
    assert {0, 1, 130} <= set(table)
    epilog = build_parser().epilog
    for code, meaning in errors.EXIT_CODES:
        assert f"  {code:<3}  {meaning.replace('`', '')}" in epilog
    section = (Path(__file__).resolve().parents[1] / "docs" / "exit-codes.md").read_text()
    rows = dict((int(c), m.strip()) for c, m in re.findall(r"^\| (\d+) \| (.+) \|$", section, re.M))
    assert rows == table


@pytest.mark.parametrize("caused", ["MissingDependencyError", "CheckpointError", "ImportError"])
def test_an_interrupt_wins_over_the_error_it_caused(monkeypatch, capsys, tmp_path, caused):
    """Issue 32: Ctrl-C landing inside a runtime import exited 5 "onnxruntime ... not installed", inside a file read
    exit 4 "download it again", once exit 1 with an ImportError: an interrupt is always exit 130."""
    import os
    import signal
    import time

    from edgevit import cli, errors

    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def command(args):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        except KeyboardInterrupt:  # what a half-done import or read turns the interrupt into
            raise (getattr(errors, caused, None) or ImportError)("partially initialized module") from None

    monkeypatch.setattr(cli, "_cmd_verify", command)
    try:
        assert cli.main(["verify", str(tmp_path)]) == 130
    finally:
        for s, h in saved.items():
            signal.signal(s, h)
    err = capsys.readouterr().err
    assert "interrupted" in err and "not installed" not in err and "partially" not in err


def test_version(capsys):
    from edgevit import __version__
    from edgevit.cli import main

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"edgevit {__version__}"
    from importlib.metadata import version

    assert __version__ == version("edgevit")  # the package's own number, not a second one
