"""``import msmine.inference`` loads neither torch nor TensorRT nor pycuda (nor onnxruntime)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.conftest import REPO_ROOT

BLOCKED = ("torch", "tensorrt", "pycuda", "onnxruntime")

SCRIPT = textwrap.dedent(f"""
    import importlib.abc, sys

    BLOCKED = {BLOCKED!r}

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"blocked: {{name}}")
            return None

    sys.meta_path.insert(0, Block())
    import msmine.inference
    from msmine.inference import OnnxRuntimeRunner, TensorRTRunner, open_runner, write_engine
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    assert not loaded, loaded

    import pathlib, tempfile
    from msmine.errors import UserError
    path = write_engine(pathlib.Path(tempfile.mkdtemp()) / "m.engine", b"PLAN", {{"metadata": {{}}}})
    runner = open_runner(path)
    assert isinstance(runner, TensorRTRunner) and runner.max_batch == 1  # the header, without TensorRT
    try:
        runner.activate()
    except UserError as exc:
        assert "TensorRT is not installed" in str(exc) and "tensorrt" in str(exc), exc
    else:
        raise AssertionError("activate() without TensorRT must be a UserError")
    print("ok")
""")


def test_import_needs_no_torch_tensorrt_pycuda_or_onnxruntime():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
