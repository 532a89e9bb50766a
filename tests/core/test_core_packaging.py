"""The distribution installs one import namespace, ``msmine.*``, over the top-level folders.

Issue 10 item 8: a wheel that installed top-level ``train``/``server``/``export`` modules broke
whenever another distribution had one of those names. These tests build the real wheel.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_folder_is_listed():
    """A package folder (one with __init__.py) under a mapped folder that pyproject does not list
    would be silently left out of the wheel."""
    listed = set(CONFIG["packages"])
    found = set()
    for name, folder in CONFIG["package-dir"].items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base)
            found.add(".".join([name, *rel.parts]) if rel.parts else name)
    assert found - listed == set(), f"package folders missing from pyproject's packages: {found - listed}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (path,) = out.glob("msmine-*.whl")
    return path


def test_wheel_has_one_top_level_namespace(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"msmine"}
    for module in ("msmine/train/models/__init__.py", "msmine/edge_runtime/pipeline.py",
                   "msmine/server/static/index.html", "msmine/selector/scores.py", "msmine/loop/cli.py"):
        assert module in names


def test_installed_names_do_not_collide(wheel, tmp_path):
    """With another distribution's top-level ``train`` and ``server`` on the path, msmine still works."""
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    for clash in ("train", "server", "export", "selector"):
        (target / clash).mkdir()
        (target / clash / "__init__.py").write_text("raise ImportError('somebody else\\'s package')\n")
    code = ("import msmine.selector, msmine.server.config, msmine.edge_runtime.config, msmine.loop.cli;"
            "print(msmine.selector.__file__)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/",
                          env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().startswith(str(target / "msmine" / "selector"))
