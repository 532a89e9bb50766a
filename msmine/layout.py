"""The dataset layout facts shared by training, the server's pull/import and the tools (stdlib only).

The MSRS layout (docs/architecture.md, "Dataset layout")::

    DIR/classes.txt                                    one class a line: ``name`` or ``id name``
    DIR/<split>/{visible,infrared}/<id>.<jpg|png>
    DIR/<split>/labels/{visible,infrared,fusion}/<id>.txt   YOLO ``class cx cy w h``, normalised
    DIR/<split>/segmentation/<id>.png                  optional, pixel value = class id
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from msmine.errors import UserError

CLASSES_FILE = "classes.txt"
SEGMENTATION_CLASSES_FILE = "segmentation_classes.txt"
VISIBLE_DIR = "visible"
THERMAL_DIR = "infrared"
LABEL_MODALITIES = ("visible", "infrared", "fusion")


def parse_class_names(text: str, source: str = CLASSES_FILE) -> list[str]:
    """Class names from ``classes.txt`` text: one per line, ``name`` or ``id name`` (the MSRS form,
    e.g. ``0 person``; ids must then be 0..N-1 in order). Blank lines are skipped; may be empty."""
    names: list[str] = []
    for number, line in enumerate(text.lstrip("\ufeff").splitlines(), start=1):
        fields = line.split(maxsplit=1)
        if not fields:
            continue
        if len(fields) == 2 and fields[0].isdigit():
            if int(fields[0]) != len(names):
                raise UserError(f"{source}, line {number}: expected class id {len(names)}, got {fields[0]}")
            names.append(fields[1].strip())
        else:
            names.append(line.strip())
    return names


def read_class_names(path: str | Path) -> list[str]:
    """:func:`parse_class_names` of a file; a missing, unreadable or empty file is a UserError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UserError(f"missing class list: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read class list {path}: {exc}") from None
    names = parse_class_names(text, str(path))
    if not names:
        raise UserError(f"class list is empty: {path}")
    return names


def format_class_names(names: Sequence[str]) -> str:
    """``id name`` lines (the MSRS classes.txt style)."""
    return "".join(f"{i} {name}\n" for i, name in enumerate(names))


def write_class_names(path: str | Path, names: Sequence[str]) -> None:
    """Write ``id name`` lines; the parent folder is created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(format_class_names(names), encoding="utf-8")
