"""`msmine` console script: a thin dispatcher over subcommands that live in their own packages.

Each subcommand module is imported lazily, so `msmine serve` never imports torch and
`msmine train` never imports the server. A subcommand module exposes
``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys

from msmine import __version__
from msmine.console import configure_logging, run_guarded

log = logging.getLogger("msmine")

# name -> (module, one-line help). Modules are imported only when the subcommand runs.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "select": ("msmine.loop.cli_select", "score a pool of predictions and select the top pairs (pure numpy)"),
    "train": ("msmine.train.cli_train", "train a dual-stream three-branch model"),
    "evaluate": ("msmine.train.cli_evaluate", "evaluate a checkpoint per branch, day/night"),
    "al": ("msmine.train.cli_al", "run the active-learning experiment (paper's loop)"),
    "pretrain": ("msmine.train.cli_pretrain", "self-supervised pre-training of both streams + fusion on unlabelled pairs"),
    "export": ("msmine.export.cli", "export a checkpoint to ONNX (FP32/FP16/INT8) with the score in-graph"),
    "calibrate": ("msmine.calibration.cli", "camera-pair registration and upload-threshold calibration"),
    "serve": ("msmine.server.cli_serve", "run the collection server"),
    "token": ("msmine.server.cli_token", "create or revoke server access tokens"),
    "pull": ("msmine.server.cli_pull", "pull labelled pairs from a server as a training dataset"),
    "label-studio": ("msmine.label_studio.cli", "push a labelling batch to Label Studio, pull its annotations back"),
    "label-import": ("msmine.loop.cli_label_import", "import a labels file (COCO, CVAT, Label Studio, YOLO, PNG masks) "
                     "into the server"),
    "publish": ("msmine.loop.cli_publish", "put a trained or exported model in the server's registry under one name"),
    "demo": ("msmine.loop.demo", "run the whole loop on an embedded default"),
    "simulate": ("msmine.loop.simulate", "fleet simulation on real data (random vs entropy vs inconsistency)"),
}


def _available() -> dict[str, tuple[str, str]]:
    """Subcommands whose module is installed in this checkout (later issues add the others)."""
    found = {}
    for name, (module, help_) in SUBCOMMANDS.items():
        if importlib.util.find_spec(module.rsplit(".", 1)[0]) is None:
            continue
        try:
            spec = importlib.util.find_spec(module)
        except ModuleNotFoundError:
            spec = None
        if spec is not None:
            found[name] = (module, help_)
    return found


def build_parser(available: dict[str, tuple[str, str]]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="msmine", description="msmine: sample mining for visible+thermal pairs")
    parser.add_argument("--version", action="version", version=f"msmine {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in available.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(_module=module)
        # Argument definitions are cheap to import for most modules; heavy imports stay inside run().
        importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    available = _available()
    parser = build_parser(available)
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    configure_logging(args.verbose)
    module = importlib.import_module(args._module)
    return run_guarded(module.run, args)


if __name__ == "__main__":
    sys.exit(main())
