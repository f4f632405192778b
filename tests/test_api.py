"""The curated Python API: every name importable from ``edgevit`` itself, each with an example that parses and uses
only names that exist, ``import edgevit`` without torch, and docs/api.md generated from the docstrings."""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

import edgevit

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", edgevit.DOCUMENTED)
def test_each_documented_name_has_an_example_that_parses(name):
    obj = getattr(edgevit, name)
    doc = inspect.getdoc(obj) or ""
    assert "Example::" in doc, f"edgevit.{name} has no Example:: block"
    block = doc.split("Example::", 1)[1]
    lines = [line[4:] for line in block.splitlines() if line.startswith("    ") or not line.strip()]
    if any(line.startswith(">>> ") for line in lines):  # a doctest: its statements, not its printed results
        lines = [line[4:] for line in lines if line.startswith((">>> ", "... "))]
    code = "\n".join(lines)
    tree = ast.parse(code)
    used = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
            and n.value.id == "edgevit"}
    used |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id in edgevit.__all__}
    assert used, f"the example of edgevit.{name} calls no edgevit name"
    for called in used:
        assert hasattr(edgevit, called), called


def test_the_lazy_api_keeps_import_edgevit_light():
    code = "import sys, edgevit; assert callable(edgevit.__getattr__); print('torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert r.stdout.strip() == "False"


def test_an_api_name_survives_its_subpackages_being_imported():
    """A top-level API name that is also a subpackage's name is replaced by the module once that subpackage is
    imported (``edgevit.bench`` was the function until ``edgevit.bench.runner`` loaded, then the package)."""
    import importlib
    import pkgutil

    for info in pkgutil.walk_packages(edgevit.__path__, "edgevit."):
        if info.name.count(".") == 1:
            assert info.name.split(".")[1] not in edgevit.__all__, info.name
    importlib.import_module("edgevit.bench.runner")
    assert callable(edgevit.benchmark) and edgevit.benchmark.__name__ == "bench"


def test_every_public_name_resolves():
    for name in edgevit.__all__:
        assert getattr(edgevit, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        edgevit.nope  # noqa: B018


def test_docs_api_page_is_generated_from_the_docstrings():
    r = subprocess.run([sys.executable, str(REPO / "tools" / "api_doc.py"), "--check"], capture_output=True,
                       text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    page = (REPO / "docs" / "api.md").read_text()
    assert re.findall(r"^## `edgevit\.(\w+)`$", page, re.M) == list(edgevit.DOCUMENTED)
