"""Write docs/manifest.md from edgevit/manifest.schema.json.

    python tools/manifest_doc.py          # rewrite docs/manifest.md
    python tools/manifest_doc.py --check  # exit 1 when docs/manifest.md is not what the schema makes"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generated_page import write_or_check  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "edgevit" / "manifest.schema.json"
PAGE = REPO / "docs" / "manifest.md"


def _type(node: dict, defs: dict) -> str:
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[1]
        return {"sha256": "sha256 (64 hex digits)", "name": "file name inside the folder", "hw": "[height, width]",
                "rgb": "[r, g, b] numbers", "shape4": "4 sizes (a dimension may be named)",
                "dims": "sizes (a dimension may be named)", "blob": "float32 file: {file, shape, dtype}"}.get(
                    name, _type(defs[name], defs))
    if "const" in node:
        return f"`{json.dumps(node['const'])}`"
    if "enum" in node:
        return "one of " + ", ".join(f"`{v}`" for v in node["enum"])
    if "oneOf" in node:
        return " or ".join(_type(n, defs) for n in node["oneOf"])
    kind = node.get("type", "any")
    if isinstance(kind, list):
        return " or ".join(kind)
    if kind == "array" and "items" in node:
        return f"array of {_type(node['items'], defs)}"
    return kind


def render() -> str:
    schema = json.loads(SCHEMA.read_text())
    defs = schema.get("$defs", {})
    out = ["# The manifest", "",
           "Every artifact folder's `manifest.json` follows `edgevit/manifest.schema.json` (JSON Schema draft "
           "2020-12; this page is generated from it by `tools/manifest_doc.py`, do not edit it by hand). edgevit "
           "checks each manifest against it when it writes one and when a command opens a folder: a key that "
           "departs is exit 3 naming the key (`manifest key input.dtype: 'float32' was expected`). "
           "`format_version` is the schema's version.", "", schema["description"], "",
           "| key | required | type | notes |", "|---|---|---|---|"]
    required = set(schema["required"])
    for key, node in schema["properties"].items():
        out.append(f"| `{key}` | {'yes' if key in required else ''} | {_type(node, defs)} | "
                   f"{node.get('description', '')} |")
        for sub, subnode in node.get("properties", {}).items():
            req = "yes" if sub in node.get("required", []) else ""
            out.append(f"| `{key}.{sub}` | {req} | {_type(subnode, defs)} | {subnode.get('description', '')} |")
    return "\n".join(out) + "\n"


def main() -> int:
    return write_or_check(PAGE, render(), "tools/manifest_doc.py")

if __name__ == "__main__":
    sys.exit(main())
