"""The sample apps link the runtimes the artifacts are made with, every backend/kernel library a .pte may use, and
refuse an artifact that asks for a newer runtime. Checked on the project's own files (no SDK needed)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests/data/app_fixture"
GRADLE = REPO / "android_demo/app/build.gradle.kts"
KOTLIN_VERSIONS = REPO / "android_demo/app/src/main/java/dev/edgevit/demo/core/RuntimeVersions.kt"
PBXPROJ = REPO / "ios_demo/EdgeVitDemo.xcodeproj/project.pbxproj"
SWIFT_PRE = REPO / "ios_demo/EdgeVitDemo/Preprocessing.swift"


def minor(version: str) -> tuple[int, int]:
    major, mnr = version.split(".")[:2]
    return int(major), int(mnr)


def pyproject_range(package: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """(lowest, first excluded) minor releases of ``package`` in pyproject.toml's dependencies."""
    text = (REPO / "pyproject.toml").read_text()
    m = re.search(rf'"{package}>=([\d.]+),<([\d.]+)"', text)
    assert m, f"pyproject.toml must pin {package} to one minor release (>=X.Y,<X.Y+1): the apps link it"
    return minor(m.group(1)), minor(m.group(2))


def app_pins() -> dict[str, dict[str, str]]:
    gradle = GRADLE.read_text()
    kotlin = KOTLIN_VERSIONS.read_text()
    pbx = PBXPROJ.read_text()
    swift = SWIFT_PRE.read_text()
    return {
        "executorch": {
            "android gradle": re.search(r'executorch-android:([\d.]+)"', gradle).group(1),
            "android RuntimeVersions.kt": re.search(r'EXECUTORCH = "([\d.]+)"', kotlin).group(1),
            "ios swift package branch": re.search(r'branch = "swiftpm-([\d.]+)"', pbx).group(1),
            "ios RuntimeVersions": re.search(r'static let executorch = "([\d.]+)"', swift).group(1),
        },
        "onnxruntime": {
            "android gradle": re.search(r'onnxruntime-android:([\d.]+)"', gradle).group(1),
            "android RuntimeVersions.kt": re.search(r'ONNXRUNTIME = "([\d.]+)"', kotlin).group(1),
        },
        "litert": {  # LiteRT's Java package, the release line of the Python interpreter (ai-edge-litert)
            "android gradle": re.search(r'ai.edge.litert:litert:([\d.]+)"', gradle).group(1),
            "android RuntimeVersions.kt": re.search(r'LITERT = "([\d.]+)"', kotlin).group(1),
        },
    }


PYPI_NAME = {"executorch": "executorch", "onnxruntime": "onnxruntime", "litert": "ai-edge-litert"}


@pytest.mark.parametrize("package", ["executorch", "onnxruntime", "litert"])
def test_apps_link_the_minor_release_edgevit_converts_with(package):
    low, high = pyproject_range(PYPI_NAME[package])
    assert high == (low[0], low[1] + 1), f"{package}: pin one minor release in pyproject.toml"
    pins = app_pins()[package]
    for where, version in pins.items():
        assert minor(version) == low, f"{package} {version} in {where} skews from pyproject.toml's {low}"
    assert len(set(pins.values())) == 1 or package == "onnxruntime", pins


def test_the_installed_toolchains_match_pyproject():
    from importlib.metadata import version

    for package in ("executorch", "onnxruntime", "ai-edge-litert"):
        low, _ = pyproject_range(package)
        assert minor(version(package)) == low, f"installed {package} {version(package)} is not {low}"


def test_fixture_manifests_load_in_the_linked_runtimes():
    pins = app_pins()
    for folder in sorted(FIXTURE.iterdir()):
        req = json.loads((folder / "manifest.json").read_text())["runtime_requirements"]
        if req["runtime"] in pins:
            have = next(iter(pins[req["runtime"]].values()))
            assert minor(have) >= minor(req["min_version"]), (folder.name, req, have)
        else:
            assert req["runtime"] == "ios" and int(req["min_version"]) <= 17  # the app's deployment target


NEEDED_PRODUCTS = {"executorch", "kernels_optimized", "kernels_quantized", "backend_xnnpack", "backend_coreml"}


def project_problems(text: str) -> list[str]:
    """What an Xcode project lacks to load every .pte edgevit makes (ExecuTorch's iOS docs: link each backend and
    kernel library the program uses, with linker flags that keep their static registrations)."""
    products = set(re.findall(r"XCSwiftPackageProductDependency; package = \w+; productName = (\w+);", text))
    problems = [f"missing product {p}" for p in sorted(NEEDED_PRODUCTS - products)]
    if text.count('OTHER_LDFLAGS = "-all_load"') < 2:  # Debug and Release of the app target
        problems.append("the app target lacks OTHER_LDFLAGS -all_load")
    phase = re.search(r"isa = PBXFrameworksBuildPhase; buildActionMask = \d+; files = \(([^)]*)\)", text)
    linked = len([f for f in phase.group(1).split(",") if f.strip()]) if phase else 0
    if linked != len(products):
        problems.append(f"{len(products)} package products but {linked} linked in the app's frameworks phase")
    return problems


def test_ios_links_every_backend_and_kernel_library_a_pte_uses():
    assert project_problems(PBXPROJ.read_text()) == []


@pytest.mark.parametrize("product", sorted(NEEDED_PRODUCTS))
def test_a_project_without_a_needed_product_is_caught(product):
    text = PBXPROJ.read_text()
    stripped = re.sub(rf"\t\t\w+ = \{{isa = XCSwiftPackageProductDependency; package = \w+; "
                      rf"productName = {product}; }};\n", "", text)
    assert stripped != text
    assert f"missing product {product}" in project_problems(stripped)
    assert "lacks OTHER_LDFLAGS" in project_problems(text.replace('"-all_load"', '""'))[0]


def test_both_apps_check_the_runtime_on_load():
    kotlin = (REPO / "android_demo/app/src/main/java/dev/edgevit/demo/engine/InferenceEngine.kt").read_text()
    assert "RuntimeVersions.requireSupported(manifest)" in kotlin
    swift = (REPO / "ios_demo/EdgeVitDemo/Engine.swift").read_text()
    assert "RuntimeVersions.requireSupported(manifest" in swift
