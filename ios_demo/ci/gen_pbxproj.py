#!/usr/bin/env python
"""Write ios_demo/EdgeVitDemo.xcodeproj/project.pbxproj from the source folders.

The project is generated (deterministic object ids) so that every Swift file is in it by construction;
tests/apps/test_ios.py regenerates it and fails if the committed file is stale.

    python ios_demo/ci/gen_pbxproj.py          # rewrite the project file
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

IOS = Path(__file__).resolve().parents[1]
APP, TESTS = "EdgeVitDemo", "EdgeVitDemoTests"
EXECUTORCH_PKG = "https://github.com/pytorch/executorch"
EXECUTORCH_BRANCH = "swiftpm-1.5.1"  # the release edgevit makes .pte files with (pyproject.toml)
# every backend and kernel library a .pte from edgevit may use (ExecuTorch iOS docs: link each one; -all_load
# below lets their static registrations run)
EXECUTORCH_PRODUCTS = ("executorch", "backend_xnnpack", "backend_coreml", "kernels_optimized", "kernels_quantized")


def oid(*parts: str) -> str:
    return hashlib.sha1("/".join(parts).encode()).hexdigest()[:24].upper()


def q(s: str) -> str:
    return s if s.replace("_", "").replace(".", "").replace("/", "").isalnum() else f'"{s}"'


def build() -> str:
    app_sources = sorted(p.name for p in (IOS / APP).glob("*.swift"))
    test_sources = sorted(p.name for p in (IOS / TESTS).glob("*.swift"))
    o: dict[str, str] = {}

    def add(key: str, body: str):
        o[key] = body

    refs = {}
    for group, files in ((APP, app_sources), (TESTS, test_sources)):
        for f in files:
            refs[(group, f)] = oid("ref", group, f)
            add(refs[(group, f)], f"{{isa = PBXFileReference; lastKnownFileType = sourcecode.swift; path = {q(f)}; "
                                  "sourceTree = \"<group>\"; }")
    plist, models = oid("ref", APP, "Info.plist"), oid("ref", APP, "Models")
    add(plist, '{isa = PBXFileReference; lastKnownFileType = text.plist.xml; path = Info.plist; sourceTree = "<group>"; }')
    add(models, '{isa = PBXFileReference; lastKnownFileType = folder; path = Models; sourceTree = "<group>"; }')
    fixture = oid("ref", "fixture")
    add(fixture, '{isa = PBXFileReference; lastKnownFileType = folder; name = app_fixture; '
                 'path = ../tests/data/app_fixture; sourceTree = SOURCE_ROOT; }')
    app_product, test_product = oid("product", APP), oid("product", TESTS)
    add(app_product, f'{{isa = PBXFileReference; explicitFileType = wrapper.application; includeInIndex = 0; '
                     f'path = {APP}.app; sourceTree = BUILT_PRODUCTS_DIR; }}')
    add(test_product, f'{{isa = PBXFileReference; explicitFileType = wrapper.cfbundle; includeInIndex = 0; '
                      f'path = {TESTS}.xctest; sourceTree = BUILT_PRODUCTS_DIR; }}')

    def build_files(group, files, phase):
        ids = []
        for f in files:
            bid = oid("build", phase, group, f)
            add(bid, f"{{isa = PBXBuildFile; fileRef = {refs[(group, f)]}; }}")
            ids.append(bid)
        return ids

    app_src = build_files(APP, app_sources, "src")
    test_src = build_files(TESTS, test_sources, "src")
    models_build, fixture_build = oid("build", "models"), oid("build", "fixture")
    add(models_build, f"{{isa = PBXBuildFile; fileRef = {models}; }}")
    add(fixture_build, f"{{isa = PBXBuildFile; fileRef = {fixture}; }}")

    pkg = oid("package", "executorch")
    add(pkg, f'{{isa = XCRemoteSwiftPackageReference; repositoryURL = "{EXECUTORCH_PKG}"; '
             f'requirement = {{kind = branch; branch = "{EXECUTORCH_BRANCH}"; }}; }}')
    product_deps, product_builds = [], []
    for name in EXECUTORCH_PRODUCTS:
        dep, bf = oid("pkgdep", name), oid("pkgbuild", name)
        add(dep, f"{{isa = XCSwiftPackageProductDependency; package = {pkg}; productName = {name}; }}")
        add(bf, f"{{isa = PBXBuildFile; productRef = {dep}; }}")
        product_deps.append(dep)
        product_builds.append(bf)

    phases = {}
    for key, isa, files in (("app_src", "PBXSourcesBuildPhase", app_src), ("test_src", "PBXSourcesBuildPhase", test_src),
                            ("app_res", "PBXResourcesBuildPhase", [models_build]),
                            ("test_res", "PBXResourcesBuildPhase", [fixture_build]),
                            ("app_fw", "PBXFrameworksBuildPhase", product_builds),
                            ("test_fw", "PBXFrameworksBuildPhase", [])):
        phases[key] = oid("phase", key)
        add(phases[key], f"{{isa = {isa}; buildActionMask = 2147483647; files = ({', '.join(files)}); "
                         "runOnlyForDeploymentPostprocessing = 0; }")

    groups = {
        "app": (oid("group", APP), [refs[(APP, f)] for f in app_sources] + [plist, models], APP),
        "tests": (oid("group", TESTS), [refs[(TESTS, f)] for f in test_sources] + [fixture], TESTS),
        "products": (oid("group", "Products"), [app_product, test_product], None),
    }
    for gid, children, path in groups.values():
        name = f"path = {path};" if path else "name = Products;"
        add(gid, f'{{isa = PBXGroup; children = ({", ".join(children)}); {name} sourceTree = "<group>"; }}')
    main_group = oid("group", "main")
    add(main_group, f'{{isa = PBXGroup; children = ({groups["app"][0]}, {groups["tests"][0]}, '
                    f'{groups["products"][0]}); sourceTree = "<group>"; }}')

    def config_list(owner: str, settings: dict[str, dict[str, str]]) -> str:
        ids = []
        for cfg, values in settings.items():
            cid = oid("config", owner, cfg)
            body = " ".join(f"{k} = {q(v)};" for k, v in sorted(values.items()))
            add(cid, f"{{isa = XCBuildConfiguration; buildSettings = {{{body}}}; name = {cfg}; }}")
            ids.append(cid)
        lid = oid("configlist", owner)
        add(lid, f"{{isa = XCConfigurationList; buildConfigurations = ({', '.join(ids)}); "
                 "defaultConfigurationIsVisible = 0; defaultConfigurationName = Release; }")
        return lid

    common = {"IPHONEOS_DEPLOYMENT_TARGET": "17.0", "SDKROOT": "iphoneos", "SWIFT_VERSION": "5.0",
              "CLANG_ENABLE_MODULES": "YES", "ENABLE_USER_SCRIPT_SANDBOXING": "YES"}
    project_list = config_list("project", {"Debug": {**common, "ONLY_ACTIVE_ARCH": "YES",
                                                     "SWIFT_OPTIMIZATION_LEVEL": "-Onone"},
                                           "Release": {**common, "SWIFT_OPTIMIZATION_LEVEL": "-O"}})
    app_settings = {"INFOPLIST_FILE": f"{APP}/Info.plist", "PRODUCT_BUNDLE_IDENTIFIER": "dev.edgevit.demo",
                    "PRODUCT_NAME": "$(TARGET_NAME)", "TARGETED_DEVICE_FAMILY": "1,2", "CODE_SIGN_STYLE": "Automatic",
                    "GENERATE_INFOPLIST_FILE": "NO", "OTHER_LDFLAGS": "-all_load"}
    app_list = config_list(APP, {"Debug": app_settings, "Release": app_settings})
    test_settings = {"BUNDLE_LOADER": "$(TEST_HOST)", "TEST_HOST": f"$(BUILT_PRODUCTS_DIR)/{APP}.app/{APP}",
                     "PRODUCT_BUNDLE_IDENTIFIER": "dev.edgevit.demo.tests", "PRODUCT_NAME": "$(TARGET_NAME)",
                     "GENERATE_INFOPLIST_FILE": "YES", "CODE_SIGN_STYLE": "Automatic"}
    test_list = config_list(TESTS, {"Debug": test_settings, "Release": test_settings})

    app_target, test_target = oid("target", APP), oid("target", TESTS)
    proxy, dependency = oid("proxy"), oid("dependency")
    project = oid("project")
    add(proxy, f"{{isa = PBXContainerItemProxy; containerPortal = {project}; proxyType = 1; "
               f"remoteGlobalIDString = {app_target}; remoteInfo = {APP}; }}")
    add(dependency, f"{{isa = PBXTargetDependency; target = {app_target}; targetProxy = {proxy}; }}")
    add(app_target, f'{{isa = PBXNativeTarget; buildConfigurationList = {app_list}; buildPhases = ({phases["app_src"]}, '
                    f'{phases["app_fw"]}, {phases["app_res"]}); buildRules = (); dependencies = (); name = {APP}; '
                    f'packageProductDependencies = ({", ".join(product_deps)}); productName = {APP}; '
                    f'productReference = {app_product}; productType = "com.apple.product-type.application"; }}')
    add(test_target, f'{{isa = PBXNativeTarget; buildConfigurationList = {test_list}; buildPhases = '
                     f'({phases["test_src"]}, {phases["test_fw"]}, {phases["test_res"]}); buildRules = (); '
                     f'dependencies = ({dependency}); name = {TESTS}; productName = {TESTS}; '
                     f'productReference = {test_product}; productType = "com.apple.product-type.bundle.unit-test"; }}')
    add(project, f'{{isa = PBXProject; attributes = {{BuildIndependentTargetsInParallel = 1; LastUpgradeCheck = 1600; }}; '
                 f'buildConfigurationList = {project_list}; compatibilityVersion = "Xcode 14.0"; developmentRegion = en; '
                 f'hasScannedForEncodings = 0; knownRegions = (en, Base); mainGroup = {main_group}; '
                 f'packageReferences = ({pkg}); productRefGroup = {groups["products"][0]}; projectDirPath = ""; '
                 f'projectRoot = ""; targets = ({app_target}, {test_target}); }}')

    lines = ["// !$*UTF8*$!", "{", "\tarchiveVersion = 1;", "\tclasses = {", "\t};", "\tobjectVersion = 60;",
             "\tobjects = {"]
    for key in sorted(o):
        lines.append(f"\t\t{key} = {o[key]};")
    lines += ["\t};", f"\trootObject = {project};", "}", ""]
    return "\n".join(lines)


def main() -> int:
    out = IOS / f"{APP}.xcodeproj" / "project.pbxproj"
    out.parent.mkdir(parents=True, exist_ok=True)
    text = build()
    if "--check" in sys.argv:
        return 0 if out.read_text() == text else 1
    out.write_text(text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
