"""A missing optional extra ends in one line naming the extra, never a ModuleNotFoundError traceback
(issue 10 item 9)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

RUN_BLOCKED = textwrap.dedent(
    """
    import importlib.abc, sys
    BLOCKED = set(sys.argv[1].split(","))

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    sys.meta_path.insert(0, Block())
    from msmine.loop.cli import main
    sys.exit(main(sys.argv[2:]))
    """
)


@pytest.mark.parametrize(("blocked", "argv", "extra"), [
    ("fastapi,uvicorn,starlette", ["serve", "--root", "{tmp}/srv", "--port", "1"], "server"),
    ("torch", ["train", "--data", "{tmp}/none", "--out", "{tmp}/out"], "train"),
    ("onnxruntime", ["calibrate", "threshold", "--model", "{tmp}/m.onnx", "--source", "synthetic",
                     "--target-rate", "10/min"], "edge"),
])
def test_missing_extra_is_one_line(tmp_path, blocked, argv, extra):
    argv = [a.format(tmp=tmp_path) for a in argv]
    (tmp_path / "m.onnx").write_bytes(b"")
    out = subprocess.run([sys.executable, "-c", RUN_BLOCKED, blocked, *argv], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert out.returncode == 1, out.stderr[-2000:]
    lines = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert lines and f"pip install 'msmine[{extra}]'" in lines[-1], out.stderr[-2000:]
    assert "Traceback" not in out.stderr


def test_a_bug_still_has_its_traceback():
    from msmine.console import run_guarded

    def broken():
        import no_such_module_of_anybody  # noqa: F401

    with pytest.raises(ModuleNotFoundError):
        run_guarded(broken)
