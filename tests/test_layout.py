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


def target_unit(module: str) -> str | None:
    """The toolchain a module of edgevit/targets/ belongs to (its folder), or None for the shared base."""
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[2] != "base" else None


def test_targets_do_not_import_each_other_in_a_cycle():
    graph: dict[str, set[str]] = {}
    for p in (PKG / "targets").rglob("*.py"):
        unit = target_unit(module_name(p))
        if unit:
            graph.setdefault(unit, set()).update(
                u for u in (target_unit(i) for i in imports(p) if i.startswith("edgevit.targets.")) if u and u != unit)
    assert {"onnx", "executorch", "coreml", "litert", "tensorrt", "coreai"} <= set(graph)
    for a, deps in graph.items():
        for b in deps:
            assert a not in graph.get(b, set()), f"targets/{a} and targets/{b} import each other"


def test_every_target_is_one_folder_with_no_module_over_350_lines():
    from edgevit.targets.base import _TARGET_MODULES

    for name, module in _TARGET_MODULES.items():
        folder = PKG / "targets" / module.split(".")[2]
        assert folder.is_dir() and (folder / "__init__.py").is_file(), f"target {name} is not a folder: {module}"
    loose = [p.name for p in (PKG / "targets").glob("*.py") if p.name not in ("__init__.py", "base.py", "common.py")]
    assert loose == [], f"modules of edgevit/targets/ outside a target's folder: {loose}"
    long = {str(p.relative_to(PKG)): n for p in (PKG / "targets").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 350}
    assert long == {}, long


# Where a target's name may still appear as a string literal in edgevit/ outside edgevit/targets/, and why. Any
# other occurrence (a branch on a target's name, a hand-kept list of targets) belongs in the target's folder.
NAME_LITERALS = {
    "config.py": (["onnx", "tflite", "litert"], "the default target and the one alias the CLI accepts"),
    "rewrites/__init__.py": (["onnx", "ort", "tensorrt", "coreml", "executorch", "litert", "onnx"],
                             "the named deployed forms (each named after the runtime it was measured for; a target "
                             "names its own with Target.form) and deploy()'s default form"),
    "manifest.py": (["executorch", "executorch"], "the rows seals made before tolerance_row was sealed may name"),
    "bench/peak.py": (["executorch", "executorch"], "the GEMM peak of ExecuTorch's runtime: a runtime's name"),
    "verify/engine.py": (["tensorrt"], "the TensorRT release in an engine record"),
    "cli.py": (["tensorrt"], "the TensorRT release in build-engine's summary"),
}


def target_name_literals(root: Path) -> dict[str, list[str]]:
    """String constants equal to a registered target name or alias, by file, outside ``root/targets``."""
    from edgevit.config import TARGET_ALIASES
    from edgevit.targets.base import list_targets

    names = set(list_targets()) | set(TARGET_ALIASES)
    found: dict[str, list[str]] = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0] == "targets":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
                found.setdefault(rel.as_posix(), []).append(node.value)
    return {k: sorted(v) for k, v in found.items()}


def test_no_code_outside_targets_names_a_target():
    """Issue 33: a toolchain is one folder; nothing else branches on, or lists, a target's name."""
    expected = {f: sorted(names) for f, (names, _) in NAME_LITERALS.items()}
    assert target_name_literals(PKG) == expected


def test_the_target_name_check_can_fail(tmp_path):
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "runner.py").write_text('if manifest["target"] == "coreai":\n    pass\n')
    (tmp_path / "targets").mkdir()
    (tmp_path / "targets" / "x.py").write_text('NAME = "coreai"\n')  # inside targets/: allowed
    assert target_name_literals(tmp_path) == {"bench/runner.py": ["coreai"]}


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
