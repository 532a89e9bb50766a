"""The dependency rules of docs/architecture.md, checked statically and at import time."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = {"msmine", "selector", "train", "export", "calibration", "edge_runtime", "server"}

# package -> top-level modules it must never import (ours or third-party), anywhere, lazily or not
FORBIDDEN = {
    "selector": (OURS - {"selector"}) | {"torch"},
    "edge_runtime": {"torch", "train", "export", "server"},
    "server": {"torch", "train", "export", "edge_runtime"},
    "train": {"export", "edge_runtime", "server"},
    "calibration": {"edge_runtime", "server"},
    "export": {"edge_runtime", "server"},
}
# The core package is imported by the device and the server; only the orchestration commands
# (demo, simulate) may reach the trainer, and they do so lazily.
CORE_FORBIDDEN = {"torch", "train", "export"}
CORE_ORCHESTRATION = {"demo.py", "simulate.py"}


def imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def package_files(package: str):
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_respects_dependency_rules(package):
    files = package_files(package)
    assert files, f"package {package} has no modules"
    violations = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in files
        for name in sorted(imported_top_levels(path) & FORBIDDEN[package])
    ]
    assert not violations, "\n".join(violations)


def test_core_respects_dependency_rules():
    violations = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in package_files("msmine")
        if path.name not in CORE_ORCHESTRATION
        for name in sorted(imported_top_levels(path) & CORE_FORBIDDEN)
    ]
    assert not violations, "\n".join(violations)


def test_wire_format_is_dependency_free():
    allowed_stdlib = set(sys.stdlib_module_names) | {"__future__"}
    extra = imported_top_levels(ROOT / "msmine" / "wire.py") - allowed_stdlib
    assert not extra, f"msmine/wire.py imports non-stdlib modules: {extra}"


def test_device_and_server_imports_do_not_load_torch():
    code = (
        "import sys, importlib, pkgutil\n"
        "import selector, edge_runtime, server, msmine, msmine.wire, msmine.loop.cli\n"
        "for pkg in (edge_runtime, server, selector):\n"
        "    for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        try:\n"
        "            importlib.import_module(info.name)\n"
        "        except ImportError as exc:\n"
        "            if 'torch' in str(exc): raise\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'train', 'export'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"torch/train/export imported by device/server code: {out.stdout}"
