"""Linux checks of the iOS demo (no Swift compiler can be installed here): every Swift file parses with
tree-sitter-swift, the Codable keys match the manifest edgevit writes and the results schema, Info.plist has the
camera/photo usage descriptions, the Xcode project lists every source, and the shared golden vector the XCTest
replays is what the documented preprocessing gives. The XCTest itself (EdgeVitDemoTests) runs in Xcode."""

import json
import plistlib
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
IOS = REPO / "ios_demo"
FIXTURE = REPO / "tests/data/app_fixture"
SWIFT = sorted(IOS.rglob("*.swift"))


def parser():
    import tree_sitter
    import tree_sitter_swift

    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_swift.language()))


def test_there_are_swift_sources():
    names = {p.name for p in SWIFT}
    assert {"Manifest.swift", "Preprocessing.swift", "CoreAIEngine.swift", "CoreMLEngine.swift",
            "ExecuTorchEngine.swift",
            "Benchmark.swift", "CameraView.swift", "ContentView.swift", "PreprocessingTests.swift"} <= names


@pytest.mark.parametrize("path", SWIFT, ids=[p.name for p in SWIFT])
def test_swift_parses(path):
    tree = parser().parse(path.read_bytes())
    bad = []

    def walk(n):
        if n.type == "ERROR" or n.is_missing:
            bad.append(f"{n.type} at line {n.start_point[0] + 1}")
        for c in n.children:
            walk(c)

    walk(tree.root_node)
    assert not bad, f"{path.name}: {bad[:5]}"


def coding_keys(path: Path) -> dict[str, dict[str, str]]:
    """{enclosing type: {swift name: json key}} for every CodingKeys enum in a file."""
    src = path.read_bytes()
    tree = parser().parse(src)
    out: dict[str, dict[str, str]] = {}

    def type_name(node):
        for c in node.children:
            if c.type == "type_identifier":
                return src[c.start_byte:c.end_byte].decode()
        return None

    def walk(node, stack):
        if node.type == "class_declaration":
            name = type_name(node)
            if name == "CodingKeys":
                text = src[node.start_byte:node.end_byte].decode()
                out[stack[-1]] = dict(re.findall(r'(\w+) = "([^"]+)"', text))
                return
            stack = stack + [name]
        for c in node.children:
            walk(c, stack)

    walk(tree.root_node, [])
    return out


def test_manifest_decoding_keys_match_a_real_manifest():
    keys = coding_keys(IOS / "EdgeVitDemo/Manifest.swift")
    for folder in sorted(FIXTURE.iterdir()):
        m = json.loads((folder / "manifest.json").read_text())
        objects = {"Manifest": m, "Input": m["input"], "Preprocess": m["preprocess"], "Output": m["outputs"][0],
                   "Golden": m["golden"], "GoldenFile": m["golden"]["input"],
                   "ResizeCheck": m["golden"]["resize_check"], "RuntimeRequirements": m["runtime_requirements"]}
        assert set(keys) == set(objects)
        for swift_type, mapping in keys.items():
            missing = set(mapping.values()) - set(objects[swift_type])
            assert not missing, f"{swift_type} decodes keys the manifest lacks: {missing}"


def test_results_encoding_keys_match_the_schema():
    schema = json.loads((REPO / "edgevit/bench/device_results.schema.json").read_text())
    keys = coding_keys(IOS / "EdgeVitDemo/Benchmark.swift")
    props = schema["properties"]
    sections = {"DeviceResults": schema, "App": props["app"], "Device": props["device"],
                "Artifact": props["artifact"], "GoldenResult": props["golden_check"]}
    assert set(keys) == set(sections)
    for swift_type, mapping in keys.items():
        spec = sections[swift_type]
        written = set(mapping.values())
        assert written <= set(spec["properties"]), f"{swift_type}: {written - set(spec['properties'])}"
        assert set(spec.get("required", [])) <= written, f"{swift_type} omits {set(spec['required']) - written}"


def test_the_app_opens_every_apple_target_and_knows_its_runtime_requirement(artifacts):
    """Issue 33: a Core AI engine on iOS 27+, Core ML before it, both chosen from the manifest. The dispatch names
    each target, and the runtime a real Core AI manifest asks for is one the app compares (iOS's version)."""
    engine = (IOS / "EdgeVitDemo" / "Engine.swift").read_text()
    for target in ("coreai", "coreml", "executorch"):
        assert f'case "{target}"' in engine, target
    assert '["coreai", "coreml", "executorch"]' in engine and '["coreml", "executorch"]' in engine
    assert "#available(iOS 27.0, *)" in engine and "CoreAIEngine(asset:" in engine
    pytest.importorskip("coreai_torch", reason="the coreai extra makes the Core AI manifest")
    from edgevit.manifest import read_manifest

    req = read_manifest(artifacts.reference("coreai", None, "fp32"))["runtime_requirements"]
    versions = (IOS / "EdgeVitDemo" / "Preprocessing.swift").read_text()
    assert req["runtime"] == "coreai" and re.search(r'case "ios", "coreai": have = iosVersion', versions)
    assert req["min_version"].split(".")[0] == "27"


def test_info_plist_has_usage_descriptions():
    info = plistlib.loads((IOS / "EdgeVitDemo/Info.plist").read_bytes())
    for key in ("NSCameraUsageDescription", "NSPhotoLibraryUsageDescription"):
        assert isinstance(info.get(key), str) and len(info[key]) > 10, key
    assert info.get("UIFileSharingEnabled") is True  # results JSON shareable from Documents


def test_xcode_project_is_current_and_lists_every_source():
    r = subprocess.run([sys.executable, str(IOS / "ci/gen_pbxproj.py"), "--check"], capture_output=True)
    assert r.returncode == 0, "project.pbxproj is stale: run python ios_demo/ci/gen_pbxproj.py"
    text = (IOS / "EdgeVitDemo.xcodeproj/project.pbxproj").read_text()
    for path in SWIFT:
        assert f"path = {path.name};" in text, path.name
    assert text.count("{") == text.count("}")
    assert "executorch" in text and "Info.plist" in text


@pytest.mark.parametrize("name", ["digits_xnnpack", "digits_coreml"])
def test_shared_golden_vector_is_crop_and_normalise_of_the_golden_image(name):
    """What PreprocessingTests.swift asserts on device, computed here from the same files: the golden image is
    stored at the resize size, so crop + (v/255 - mean)/std (or raw pixels) must give input.bin exactly."""
    folder = FIXTURE / name
    m = json.loads((folder / "manifest.json").read_text())
    pre = m["preprocess"]
    img = np.asarray(Image.open(folder / m["golden"]["image"]).convert("RGB"), dtype=np.float32)
    h, w = pre["size"]
    assert list(img.shape[:2]) == pre["resize"]
    top, left = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
    x = img[top:top + h, left:left + w].transpose(2, 0, 1)
    if m["input"]["pixels"] != "raw_rgb_0_255":
        x = (x / 255.0 - np.array(pre["mean"], np.float32)[:, None, None]) / np.array(pre["std"], np.float32)[:, None, None]
    golden = np.fromfile(folder / m["golden"]["input"]["file"], dtype="<f4").reshape(m["golden"]["input"]["shape"])
    np.testing.assert_allclose(x[None], golden, rtol=0, atol=1e-5)
