"""What every console script shares: logging set-up, and turning a user's error into one line.

Both `msmine` (``msmine.loop.cli``) and `edge-runtime` (``msmine.edge_runtime.cli``) use these, so
the device needs nothing from the top floor.
"""

from __future__ import annotations

import logging
import sys

from msmine.errors import UserError

# A third-party module a command may need -> the extra that installs it.
EXTRA_FOR_MODULE: dict[str, str] = {
    "torch": "train",
    "onnxscript": "train",
    "pycocotools": "train",
    "matplotlib": "train",
    "scipy": "train",
    "tqdm": "train",
    "onnxruntime": "edge",
    "prometheus_client": "edge",
    "requests": "edge",
    "fastapi": "server",
    "uvicorn": "server",
    "multipart": "server",
    "python_multipart": "server",
    "pycuda": "gpu",
    "tensorrt": "gpu",
}


def configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def missing_extra_message(exc: ModuleNotFoundError) -> str | None:
    """One line naming the extra to install, when ``exc`` is a missing optional dependency."""
    top = (exc.name or "").split(".")[0]
    extra = EXTRA_FOR_MODULE.get(top)
    if extra is None:
        return None
    return f"this command needs {top!r}, which is not installed: pip install 'msmine[{extra}]'"


def run_guarded(func, *args) -> int:
    """Run ``func(*args)``; a UserError (or a missing optional extra) becomes one line on stderr
    and exit status 1. Bugs keep their traceback."""
    try:
        return int(func(*args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as exc:
        message = missing_extra_message(exc)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
