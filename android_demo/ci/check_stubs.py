#!/usr/bin/env python
"""Check the Android stand-ins against the real Android API (PyPI chaquopy-stubs-android).

Every public class, constructor, method and field of the compiled stand-ins (read with javap) must exist in the
Android API stubs with the same name, parameter count and parameter types (inherited members are looked up
through the class's bases), so the demo cannot compile against a method Android does not have.

    python android_demo/ci/check_stubs.py STUBS_JAR
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

PRIMITIVES = {"int": "java.jint", "long": "java.jlong", "boolean": "java.jboolean", "float": "java.jfloat",
              "double": "java.jdouble", "byte": "java.jbyte", "short": "java.jshort", "char": "java.jchar"}


def stubs_root() -> Path:
    import importlib.util

    for entry in sys.path:
        candidate = Path(entry) / "android-stubs"
        if candidate.is_dir() and (candidate / "app" / "__init__.pyi").is_file():
            return candidate
    spec = importlib.util.find_spec("android")
    raise SystemExit(f"chaquopy-stubs-android is not installed (pip install chaquopy-stubs-android); {spec}")


@lru_cache(maxsize=None)
def module_tree(package: str) -> ast.Module | None:
    path = stubs_root().joinpath(*package.split(".")[1:], "__init__.pyi")
    return ast.parse(path.read_text()) if path.is_file() else None


def find_class(qualified: str) -> tuple[ast.ClassDef, str] | None:
    """'android.hardware.Camera.Size' -> (ClassDef, package)."""
    parts = qualified.split(".")
    for i in range(len(parts) - 1, 0, -1):
        package, names = ".".join(parts[:i]), parts[i:]
        tree = module_tree(package)
        if tree is None:
            continue
        body, node = tree.body, None
        for name in names:
            node = next((n for n in body if isinstance(n, ast.ClassDef) and n.name == name), None)
            if node is None:
                break
            body = node.body
        if node is not None:
            return node, package
    return None


def bases(node: ast.ClassDef, package: str) -> list[str]:
    out = []
    for b in node.bases:
        text = ast.unparse(b)
        if text.startswith(("typing.", "java.")):
            continue
        out.append(text if text.count(".") >= 2 else f"{package}.{text}")
    return out


def members(qualified: str, seen=None) -> list[ast.AST]:
    """Functions and annotated fields of a class and all its bases."""
    seen = seen if seen is not None else set()
    if qualified in seen:
        return []
    seen.add(qualified)
    found = find_class(qualified)
    if found is None:
        return []
    node, package = found
    out = [n for n in node.body if isinstance(n, (ast.FunctionDef, ast.AnnAssign))]
    for base in bases(node, package):
        out += members(base, seen)
    return out


def java_tokens(t: str, package: str) -> list[str]:
    """Ways the Android stubs may spell a Java parameter type: full name, or relative to the package."""
    t = re.sub(r"<.*>", "", t.strip()).replace("$", ".")
    base = t.replace("[]", "")
    if t.endswith("[]") and base in PRIMITIVES:  # int[] -> java.chaquopy.JavaArrayJInt
        return [f"JavaArrayJ{base.capitalize()}"]
    if base in PRIMITIVES:
        return [PRIMITIVES[base]]
    if base == "java.lang.Class":
        return ["typing.Type"]
    out = [base]
    if base.startswith(package + "."):
        out.append(base[len(package) + 1:])
    return out


def check_method(cls: str, name: str, params: list[str], found: list[ast.AST], package: str) -> str | None:
    target = "__init__" if name == "<init>" else name
    candidates = [f for f in found if isinstance(f, ast.FunctionDef) and f.name == target]
    if not candidates:
        return f"{cls}.{name}: no such method in the Android API"
    for f in candidates:
        args = [a for a in f.args.posonlyargs + f.args.args if a.arg != "self"]
        fixed = [p for p in params if not p.endswith("...")]
        varargs = [p for p in params if p.endswith("...")]
        if len(args) != len(fixed) or bool(varargs) != bool(f.args.vararg):
            continue
        anns = [ast.unparse(a.annotation) if a.annotation else "" for a in args]
        if all(any(tok in ann for tok in java_tokens(p, package)) or (p == "java.lang.String" and "str" in ann)
               for p, ann in zip(fixed, anns)):
            return None
    sig = f"{cls}.{name}({', '.join(params)})"
    return f"{sig}: no overload with these parameter types in the Android API"


def javap(jar: str) -> str:
    classes = subprocess.run(["jar", "tf", jar], capture_output=True, text=True, check=True).stdout.split()
    names = [c[:-6].replace("/", ".") for c in classes if c.endswith(".class")]
    return subprocess.run(["javap", "-public", "-cp", jar, *names], capture_output=True, text=True,
                          check=True).stdout


def main(argv: list[str]) -> int:
    jar = argv[1]
    errors, checked = [], 0
    cls = None
    for line in javap(jar).splitlines():
        line = line.strip()
        m = re.match(r".*\b(?:class|interface) ([\w.$]+)", line)
        if m and line.endswith("{"):
            cls = m.group(1).replace("$", ".")
            checked += 1
            if find_class(cls) is None:
                errors.append(f"{cls}: no such class in the Android API")
                cls = None
            continue
        if cls is None or line in ("}", "") or line.startswith("Compiled from"):
            continue
        found = members(cls)
        m = re.match(r"public .*?([\w$<>]+)\((.*)\)( throws .*)?;$", line)
        if m:
            name = m.group(1).replace("$", ".")
            simple = cls.split(".")[-1]
            name = "<init>" if name in (simple, cls) or name.endswith("." + simple) else name
            if "." in name and name != "<init>":
                name = name.split(".")[-1]
            params = [p.strip() for p in m.group(2).split(",") if p.strip()]
            err = check_method(cls, name, params, found, find_class(cls)[1])
            checked += 1
            if err:
                errors.append(err)
            continue
        m = re.match(r"public .*? (\w+);$", line)
        if m:
            field = m.group(1)
            checked += 1
            names = {t.target.id for t in found if isinstance(t, ast.AnnAssign) and isinstance(t.target, ast.Name)}
            if field not in names:
                errors.append(f"{cls}.{field}: no such field in the Android API")
    for e in errors:
        print(f"FAIL {e}")
    print(f"stand-ins: {checked - len(errors)} passed, {len(errors)} failed")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
