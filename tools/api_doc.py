"""Write docs/api.md from the docstrings of edgevit's curated API (``edgevit.DOCUMENTED``).

    python tools/api_doc.py          # rewrite docs/api.md
    python tools/api_doc.py --check  # exit 1 when docs/api.md is not what the docstrings make

tests/test_api.py runs the check, so the page cannot drift from the code."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generated_page import write_or_check  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "api.md"
sys.path.insert(0, str(REPO))  # this checkout's edgevit, whatever is installed


def render() -> str:
    import edgevit

    out = ["# Python API", "",
           "Everything below is importable from `edgevit` itself (`import edgevit; edgevit.convert(...)`), lazily: "
           "`import edgevit` does not import torch. Generated from the docstrings by `tools/api_doc.py`; do not edit "
           "by hand.", ""]
    for name in edgevit.DOCUMENTED:
        obj = getattr(edgevit, name)
        kind = "class" if inspect.isclass(obj) else "function"
        where = f"{obj.__module__}.{obj.__qualname__}"
        try:
            signature = str(inspect.signature(obj))
        except (TypeError, ValueError):
            signature = "(...)"
        out += [f"## `edgevit.{name}`", "", f"{kind} `{where}`", "", "```python", f"{name}{signature}", "```", "",
                inspect.getdoc(obj).replace("Example::", "Example:"), ""]
    return "\n".join(_fence_examples(out)).rstrip("\n") + "\n"


def _fence_examples(lines: list[str]) -> list[str]:
    """reST ``Example::`` blocks (indented) become fenced Python blocks."""
    text = "\n".join(lines)
    result, in_block = [], False
    for line in text.split("\n"):
        if line == "Example:":
            result += ["Example:", "", "```python"]
            in_block = True
            continue
        if in_block:
            if not line.strip() and result[-1] == "```python":
                continue
            if line.startswith("    ") or not line.strip():
                result.append(line[4:])
                continue
            while result and not result[-1].strip():
                result.pop()
            result += ["```", ""]
            in_block = False
        result.append(line)
    return result


def main() -> int:
    return write_or_check(PAGE, render(), "tools/api_doc.py")

if __name__ == "__main__":
    sys.exit(main())
