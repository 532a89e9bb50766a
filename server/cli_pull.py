"""``msmine pull --server URL --token T --labelled --out DIR``: labelled pairs -> training dataset (MSRS layout)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from msmine.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", required=True, help="server URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("--token", default=os.environ.get("MSMINE_TOKEN"),
                        help="data-team token (default: $MSMINE_TOKEN)")
    parser.add_argument("--labelled", action="store_true", required=True,
                        help="pull the labelled pairs (the only mode today)")
    parser.add_argument("--out", required=True, type=Path, help="dataset directory to write")
    parser.add_argument("--split", default="train", help="split folder to write (default train)")
    parser.add_argument("--task", choices=("detect", "segment"), default=None,
                        help="which labelled pairs: detect (labels/) or segment (segmentation/<id>.png from the "
                             "imported masks); default: the task of the labelled pairs (needed when both exist)")


def run(args: argparse.Namespace) -> int:
    from msmine.server.pull import pull_labelled

    if not args.token:
        raise UserError("--token (or $MSMINE_TOKEN) is required: a data-team token")
    if not args.server.startswith(("http://", "https://")):
        raise UserError(f"--server must be an http(s) URL, got {args.server!r}")
    result = pull_labelled(args.server, args.token, args.out, split=args.split, task=args.task)
    masks = f", {result.masks} segmentation masks" if result.task == "segment" else ""
    print(f"wrote {result.pairs} labelled {result.task} pairs{masks} to {result.out} "
          f"(classes: {', '.join(result.classes) or '-'})"
          + (f"; left out {len(result.skipped)}: {result.skipped[0]}" if result.skipped else ""))
    return 0
