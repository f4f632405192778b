"""The house rules ARCHITECTURE.md states, checked on the code: the import order of the steps, and that the
documents the code cites are in the repository."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "edgevit"

# the shared core every step may use: errors, file I/O, options, the manifest, preprocessing, and the metric
# definitions with the one tolerance table (rewrites, lowering and verification all measure against it)
CORE = ("edgevit.errors", "edgevit._io", "edgevit._progress", "edgevit._native", "edgevit.config",
        "edgevit.manifest", "edgevit.preprocess", "edgevit.verify.metrics", "edgevit.verify.tolerances")
STEPS = ("load", "rewrite", "quantize", "lower", "verify", "bench", "report", "flow")


def step_of(module: str) -> str:
    if module in CORE:
        return "core"
    prefixes = (("edgevit.models", "load"), ("edgevit.rewrites", "rewrite"), ("edgevit.quantize", "quantize"),
                ("edgevit.targets", "lower"), ("edgevit.verify", "verify"), ("edgevit.bench.report", "report"),
                ("edgevit.bench", "bench"))
    for prefix, step in prefixes:
        if module == prefix or module.startswith(prefix + "."):
            return step
    return "flow"  # pipeline, cli, info, the package root


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("edgevit"):
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("edgevit"))
    return out


def violations() -> list[str]:
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        mod = module_name(path)
        mine = step_of(mod)
        for imp in imports(path):
            theirs = step_of(imp)
            if theirs == "core" or theirs == mine:
                continue
            if mine == "core" or STEPS.index(theirs) > STEPS.index(mine):
                bad.append(f"{mod} ({mine}) imports {imp} ({theirs})")
    return bad


def test_each_step_imports_only_from_steps_before_it_and_the_core():
    assert violations() == []


def test_the_import_check_can_fail():
    assert step_of("edgevit.targets.onnx") == "lower" and step_of("edgevit.verify.parity") == "verify"
    assert STEPS.index("verify") > STEPS.index("lower")  # so targets importing verify.parity would be reported


def test_targets_do_not_import_each_other_in_a_cycle():
    graph = {module_name(p): {i for i in imports(p) if i.startswith("edgevit.targets")}
             for p in (PKG / "targets").glob("*.py")}
    for a, deps in graph.items():
        for b in deps:
            assert a not in graph.get(b, set()), f"{a} and {b} import each other"


def test_documents_the_code_cites_are_in_the_repository():
    cited = set()
    for path in list(PKG.rglob("*.py")) + list((REPO / "tests").rglob("*.py")) + [REPO / "README.md",
                                                                                   REPO / "ARCHITECTURE.md"]:
        if path == Path(__file__):
            continue
        text = path.read_text()
        assert "NEXTVIT_SPEC" not in text, f"{path} cites a spec file that is not in the repository"
        cited.update(re.findall(r"\bdocs/[\w./-]+\.md\b", text))
    assert "docs/NEXTVIT.md" in cited
    for doc in cited:
        assert (REPO / doc).is_file(), doc
