"""``msmine label-import FILE --server URL --token T``: labels made in a labelling tool into the server.

    msmine label-import instances_visible.json --server http://127.0.0.1:8080 --token $TEAM_TOKEN
    msmine label-import "task_7-coco 1.0.zip" --server $URL --modality fusion
    msmine label-import project-3-at-2026-12-01.json --class-map pedestrian=person   # $MSMINE_SERVER, $MSMINE_TOKEN

FILE is what the labelling tool wrote: COCO JSON (boxes, polygon or RLE masks; the batch export's
``annotations/instances_*.json`` edited), CVAT's "COCO 1.0" zip, a Label Studio JSON export, one
YOLO ``<upload_id>.txt`` or class-id PNG ``<upload_id>.png``, or a zip of such files. ``--format
auto`` tells them apart; ``--modality auto`` takes the modality from the file's name or folder
(``instances_visible.json``, ``infrared/instances.json``), else labels every modality.

The server imports all or nothing: on a refusal (a class it does not know, a box out of the image,
labels naming pairs it does not hold, ...) the command prints the server's reason on one line, exits
1, and nothing stored has changed. On success it prints one line: pairs labelled, label sets, masks,
Label Studio tasks skipped (no finished annotation) and names that matched no pair.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from msmine.client import LABEL_FORMATS, LABEL_MODALITIES, LabelImport, ServerClient, ServerError
from msmine.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="labels file: COCO JSON, CVAT COCO 1.0 zip, Label Studio JSON export, "
                                     "<upload_id>.txt (YOLO), <upload_id>.png (class-id mask), or a zip of them")
    parser.add_argument("--server", default=os.environ.get("MSMINE_SERVER"),
                        help="collection server URL, e.g. http://127.0.0.1:8080 (default: $MSMINE_SERVER)")
    parser.add_argument("--token", default=os.environ.get("MSMINE_TOKEN"),
                        help="data-team token (default: $MSMINE_TOKEN)")
    parser.add_argument("--modality", choices=LABEL_MODALITIES, default="auto",
                        help="which modality's labels these are (default: auto, from the file's name or folder, "
                             "else all)")
    parser.add_argument("--format", choices=LABEL_FORMATS, default="auto", dest="fmt",
                        help="the file's format (default: auto, told from its content)")
    parser.add_argument("--class-map", default="", metavar="FILE_CLASS=CLASS,...",
                        help="the file's class names onto the pairs' (e.g. pedestrian=person); same names match "
                             "unasked")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the server (default: 300)")


def upload_name(path: Path) -> str:
    """The name the server sees: the file name and its folder (the folder may name the modality,
    ``infrared/instances.json``); no other part of the local path."""
    folder = path.absolute().parent.name
    return f"{folder}/{path.name}" if folder else path.name


def summary(result: LabelImport, file: str, server: str) -> str:
    line = (f"imported {file} into {server}: {result.pairs_labelled} pair(s) labelled, {result.label_sets} "
            f"label set(s), {result.masks} mask(s), {len(result.skipped)} task(s) skipped")
    if result.skipped:
        line += f" (no finished annotation, first: {result.skipped[0]})"
    if result.unmatched:
        line += f", {len(result.unmatched)} name(s) matched no pair (first: {result.unmatched[0]})"
    return line


def run(args: argparse.Namespace) -> int:
    if not args.server:
        raise UserError("--server (or $MSMINE_SERVER) is required: the collection server's URL")
    if not args.token:
        raise UserError("--token (or $MSMINE_TOKEN) is required: a data-team token")
    path = Path(args.file)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    client = ServerClient(args.server, args.token, timeout=args.timeout)
    try:
        result = client.post_labels(data, upload_name(path), fmt=args.fmt, modality=args.modality,
                                    class_map=args.class_map)
    except ServerError as exc:
        if exc.status is not None and 400 <= exc.status < 500:  # answered and refused: all or nothing
            raise UserError(f"refused ({exc.status}): {exc.detail}; nothing was imported") from None
        raise
    print(summary(result, str(path), client.base_url))
    return 0
