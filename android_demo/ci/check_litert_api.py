#!/usr/bin/env python
"""Check the LiteRT stand-ins against the recorded real API (android_demo/ci/litert-api.txt).

Every public constructor, method and field of the compiled stand-ins (read with ``javap -public``) must be listed
in the record, so the demo's LiteRtEngine cannot compile against a member LiteRT's Java API does not have.

    python android_demo/ci/check_litert_api.py CLASSES_DIR
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

MODIFIERS = {"public", "protected", "abstract", "final", "static", "native", "synchronized", "default",
             "transient", "volatile"}


def erase(text: str) -> str:
    """Remove generic arguments (nested) from a javap signature."""
    while True:
        new = re.sub(r"<[^<>]*>", "", text)
        if new == text:
            return text
        text = new


def normalize(line: str) -> str:
    line = erase(line.strip().rstrip(";"))
    line = re.sub(r"\s+throws\s+.*$", "", line)
    words = line.split(" ")
    while words and words[0] in MODIFIERS:
        words.pop(0)
    return " ".join(words)


def members(classes: Path) -> list[tuple[str, str]]:
    files = sorted(str(p) for p in classes.rglob("*.class"))
    out = subprocess.run(["javap", "-public", *files], capture_output=True, text=True, check=True).stdout
    found, current = [], None
    for line in out.splitlines():
        head = re.match(r"^(?:public |final |abstract |)*(?:class|interface|enum) ([\w.$]+)", line.strip())
        if head and not line.startswith(" "):
            current = head.group(1)
            continue
        if current and line.startswith("  ") and line.strip().endswith(";"):
            member = normalize(line)
            if member.startswith("static {}"):
                continue
            found.append((current, member))
    return found


def main(classes: str) -> int:
    record = Path(__file__).with_name("litert-api.txt")
    known = {line.strip() for line in record.read_text().splitlines() if line.strip() and not line.startswith("#")}
    found = members(Path(classes))
    missing = [f"{cls}: {m}" for cls, m in found if f"{cls}: {m}" not in known]
    for m in missing:
        print(f"not in LiteRT's API record: {m}")
    print(f"litert stand-ins: {len(found)} members checked, {len(missing)} failed")
    return 1 if missing or not found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
