"""The layers of docs/architecture.md, enforced: one table, no file exemptions.

Two kinds of check, the way Polygraphy's tests/mod/test_dependencies.py proves its boundaries:

* statically (AST over every file of every package, lazy imports inside functions included): a
  package imports only the layers of ours that its row allows, and never the third-party modules
  its row forbids;
* at import time, one subprocess per install profile: with the modules that profile does not
  install blocked, every module of the packages that profile runs must import.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# import name -> folder (the packaging's directory mapping; pyproject.toml is the owner)
PACKAGE_DIRS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
SUBPACKAGES = {name.split(".", 1)[1] for name in PACKAGE_DIRS if "." in name}
# The pre-namespace top-level names: nothing may import them any more (they would be another
# distribution's `train` or `server`).
OLD_TOP_LEVEL = SUBPACKAGES | {"selector", "edge_runtime"}

HEAVY = {"torch", "torchvision", "onnxscript", "pycocotools", "matplotlib", "scipy", "tqdm"}
SERVER_STACK = {"fastapi", "starlette", "uvicorn", "multipart", "python_multipart"}
DEVICE_STACK = {"onnxruntime", "prometheus_client", "tensorrt", "pycuda"}
# optional server back-ends (extras `postgres`, later `s3`): imported lazily, only when configured
SERVER_BACKENDS = {"psycopg", "psycopg_pool", "boto3", "botocore"}

# layer -> (layers of ours it may import, third-party top-level modules it must never import).
# "msmine" is the ground floor (the files directly in msmine/); a layer may always import itself.
# Read a row as: the floor of the building it stands on. `loop` is the top floor: nothing imports it.
LAYERS: dict[str, tuple[set[str], set[str]]] = {
    "msmine": (set(), HEAVY | SERVER_STACK | DEVICE_STACK | SERVER_BACKENDS | {"requests"}),
    "msmine.selector": (set(), HEAVY | SERVER_STACK | DEVICE_STACK | {"requests", "cv2", "onnx"}),
    "msmine.inference": ({"msmine"}, HEAVY | SERVER_STACK),
    "msmine.train": ({"msmine", "msmine.selector"}, SERVER_STACK | DEVICE_STACK),
    "msmine.calibration": ({"msmine", "msmine.selector", "msmine.inference", "msmine.train"}, SERVER_STACK),
    "msmine.export": (
        {"msmine", "msmine.selector", "msmine.inference", "msmine.train", "msmine.calibration"},
        SERVER_STACK,
    ),
    "msmine.edge_runtime": (
        {"msmine", "msmine.selector", "msmine.inference"}, HEAVY | SERVER_STACK | SERVER_BACKENDS | {"requests"}
    ),
    "msmine.server": ({"msmine", "msmine.selector"}, HEAVY | DEVICE_STACK | {"requests"}),
    # the Label Studio connector: the ground floor (msmine.client) and urllib; it talks to both servers
    # over HTTP only, so it never imports the server's code, Label Studio's, or any heavy stack
    "msmine.label_studio": ({"msmine"}, HEAVY | SERVER_STACK | DEVICE_STACK | SERVER_BACKENDS
                            | {"requests", "label_studio", "label_studio_sdk", "cv2", "onnx"}),
    "msmine.loop": (set(PACKAGE_DIRS), set()),
}


def layer_of(module: str) -> str | None:
    """The layer an absolute module name of ours belongs to, or None for a third-party module."""
    parts = module.split(".")
    if parts[0] != "msmine":
        return None
    if len(parts) > 1 and parts[1] in SUBPACKAGES:
        return f"msmine.{parts[1]}"
    return "msmine"


def imported_modules(path: Path) -> set[str]:
    """Every absolute module a file imports, anywhere in it; `from msmine import x` counts as msmine.x."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            if node.module == "msmine":
                names.update(f"msmine.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            names.add("." * node.level + (node.module or ""))
    return names


def layer_files(layer: str) -> list[Path]:
    folder = ROOT / PACKAGE_DIRS[layer]
    if layer == "msmine":
        return sorted(folder.glob("*.py"))
    return sorted(folder.rglob("*.py"))


def test_every_package_has_a_row():
    assert set(LAYERS) == set(PACKAGE_DIRS), "pyproject's package-dir and the layer table disagree"


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_layer_imports_only_what_its_row_allows(layer):
    allowed, forbidden = LAYERS[layer]
    files = layer_files(layer)
    assert files, f"layer {layer} has no modules"
    violations = []
    for path in files:
        for module in sorted(imported_modules(path)):
            where = f"{path.relative_to(ROOT)} imports {module}"
            if module.startswith("."):
                violations.append(f"{where} (relative import: write the absolute msmine.* name)")
                continue
            top = module.split(".")[0]
            if top in OLD_TOP_LEVEL:
                violations.append(f"{where} (a pre-namespace name: use msmine.{module})")
            theirs = layer_of(module)
            if theirs is None:
                if top in forbidden:
                    violations.append(f"{where} (third-party module forbidden in {layer})")
            elif theirs != layer and theirs not in allowed:
                violations.append(f"{where} (layer {theirs} is not below {layer})")
    assert not violations, "\n".join(violations)


def test_nothing_imports_the_top_floor():
    offenders = [
        f"{path.relative_to(ROOT)} imports {module}"
        for layer in LAYERS
        if layer != "msmine.loop"
        for path in layer_files(layer)
        for module in imported_modules(path)
        if layer_of(module) == "msmine.loop"
    ]
    assert not offenders, "\n".join(offenders)


def test_wire_format_is_dependency_free():
    allowed_stdlib = set(sys.stdlib_module_names) | {"__future__"}
    extra = {m for m in imported_modules(ROOT / "msmine" / "wire.py") if m.split(".")[0] not in allowed_stdlib}
    extra = {m for m in extra if m != "msmine.errors"}
    assert not extra, f"msmine/wire.py imports non-stdlib modules: {extra}"


# install profile -> (packages whose every module must import, modules that profile lacks)
PROFILES = {
    "core": (["msmine", "msmine.label_studio"], HEAVY | SERVER_STACK | DEVICE_STACK | {"requests"}),
    "edge": (["msmine", "msmine.selector", "msmine.inference", "msmine.edge_runtime"],
             HEAVY | SERVER_STACK | SERVER_BACKENDS | {"requests"}),
    "server": (["msmine", "msmine.selector", "msmine.server"], HEAVY | DEVICE_STACK | SERVER_BACKENDS | {"requests"}),
}

IMPORT_ALL = textwrap.dedent(
    """
    import importlib, importlib.abc, pkgutil, sys
    BLOCKED = set(sys.argv[2].split(","))

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r} (blocked: not in this install profile)", name=name)
            return None

    sys.meta_path.insert(0, Block())
    for package in sys.argv[1].split(","):
        pkg = importlib.import_module(package)
        if package == "msmine":  # the ground floor alone: its own modules, not the subpackages
            names = [f"msmine.{m.name}" for m in pkgutil.iter_modules(pkg.__path__) if not m.ispkg]
        else:
            names = [m.name for m in pkgutil.walk_packages(pkg.__path__, package + ".")]
        for name in names:
            importlib.import_module(name)  # any ImportError fails the profile
    print("ok", len(sys.modules))
    """
)


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_install_profile_imports_with_only_its_dependencies(profile):
    packages, blocked = PROFILES[profile]
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL, ",".join(packages), ",".join(sorted(blocked))],
        capture_output=True, text=True, cwd="/", timeout=180,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("ok")


def test_import_all_blocker_can_fail():
    """The profile check is not vacuous: blocking a module the device needs makes it fail."""
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL, "msmine.edge_runtime", "numpy"],
        capture_output=True, text=True, cwd="/", timeout=180,
    )
    assert out.returncode != 0
    assert "blocked" in out.stderr
