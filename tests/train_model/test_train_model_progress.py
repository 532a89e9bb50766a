"""Progress bars stay out of logs: no carriage-return flood when stderr is not a terminal (issue 15 item 9)."""

from __future__ import annotations

import subprocess
import sys

CODE = (
    "from msmine.train.progress import progress_bar\n"
    "for _ in progress_bar(range(200), desc='x', mininterval=0): pass\n"
)


def test_no_bar_when_stderr_is_not_a_terminal():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "\r" not in out.stderr and "x:" not in out.stderr
