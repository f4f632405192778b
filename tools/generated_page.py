"""The shared end of the scripts that generate a docs page from the code (tools/api_doc.py, tools/manifest_doc.py,
benchmarks/index.py): write the page, or with ``--check`` say whether it is current."""

from __future__ import annotations

import sys
from pathlib import Path


def write_or_check(page: Path, text: str, script: str) -> int:
    """Exit status: 0 when written (or current under ``--check``), 1 when ``--check`` finds it out of date."""
    if "--check" in sys.argv:
        if not page.exists() or page.read_text() != text:
            print(f"{page} is out of date: run python {script}", file=sys.stderr)
            return 1
        return 0
    page.write_text(text)
    print(f"wrote {page}")
    return 0
