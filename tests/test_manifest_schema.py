"""edgevit/manifest.schema.json: a valid JSON Schema that says what the code says (required keys, targets,
precisions), holds for every manifest edgevit writes (write_manifest refuses one that departs, so every conversion
in the suite checks it) and names the key of one that departs; docs/manifest.md is generated from it."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _schema() -> dict:
    from edgevit.manifest import SCHEMA_PATH

    return json.loads(SCHEMA_PATH.read_text())


def test_the_schema_is_valid_and_says_what_the_code_says():
    import jsonschema

    from edgevit.manifest import FORMAT_VERSION, REQUIRED_KEYS
    from edgevit.targets import get_target
    from edgevit.targets.base import supported_combinations

    schema = _schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["required"] == list(REQUIRED_KEYS)
    assert schema["properties"]["format_version"]["const"] == FORMAT_VERSION
    combos = supported_combinations()
    assert set(schema["properties"]["precision"]["enum"]) == {p for _, _, p in combos}
    # the schema names no target: any registered name fits its pattern, and a name outside it is refused
    pattern = schema["properties"]["target"]["pattern"]
    for target in {t for t, _, _ in combos}:
        assert get_target(target).name == target and re.fullmatch(pattern.strip("^$"), target)
    assert not re.fullmatch(pattern.strip("^$"), "../onnx")


def test_a_written_manifest_conforms_and_a_departing_key_is_named(artifacts, tmp_path):
    from edgevit.manifest import read_manifest, schema_problems, write_manifest

    manifest = read_manifest(artifacts.reference("onnx"))
    assert schema_problems(manifest) == []
    cases = {("input", "layout"): "NCWH", ("preprocess", "crop_pct"): 1.5, ("golden", "sha256"): {"x": "nothex"},
             ("source", "seed"): "zero"}
    for (section, key), value in cases.items():
        bad = copy.deepcopy(manifest)
        bad[section][key] = value
        problems = schema_problems(bad)
        assert len(problems) == 1 and problems[0].startswith(f"manifest key {section}.{key}"), problems
        with pytest.raises(RuntimeError, match=f"manifest key {section}.{key}"):
            write_manifest(tmp_path, bad)
    assert not (tmp_path / "manifest.json").exists()  # nothing written for a manifest that departs


def test_docs_manifest_page_is_generated_from_the_schema():
    r = subprocess.run([sys.executable, str(REPO / "tools" / "manifest_doc.py"), "--check"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    page = (REPO / "docs" / "manifest.md").read_text()
    for key in _schema()["properties"]:
        assert f"| `{key}` |" in page, key
