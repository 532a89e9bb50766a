"""Small helpers shared by the format readers: folder look-up and image pairing."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from msmine.errors import UserError
from msmine.train.data.imageio import list_images

log = logging.getLogger(__name__)


def first_dir(candidates: Iterable[Path]) -> Path | None:
    """The first existing folder among `candidates`, or None."""
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return None


def pair_images(visible_dir: Path, thermal_dir: Path) -> list[tuple[str, Path, Path]]:
    """(id, visible, thermal) for every visible image, sorted by id; a missing partner -> UserError."""
    visible = list_images(visible_dir)
    thermal = list_images(thermal_dir)
    if not visible:
        raise UserError(f"no images in {visible_dir}")
    pairs = []
    for pair_id, visible_path in visible.items():
        if pair_id not in thermal:
            raise UserError(f"missing thermal image for {visible_path}: no {thermal_dir}/{pair_id}.<jpg|png>")
        pairs.append((pair_id, visible_path, thermal[pair_id]))
    extra = sorted(set(thermal) - set(visible))
    if extra:
        raise UserError(f"missing visible image for {thermal[extra[0]]} ({len(extra)} thermal images unpaired)")
    return pairs


def require_files(folder: Path, ids: Iterable[str], suffix: str, what: str) -> None:
    """Fail early, naming the first missing `folder/<id><suffix>`."""
    present = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    missing = [i for i in ids if f"{i}{suffix}" not in present]
    if missing:
        raise UserError(f"missing {what}: {folder / (missing[0] + suffix)} ({len(missing)} missing)")


def split_root(root: Path, split: str, markers: Iterable[str]) -> Path:
    """root/<split> when it exists; else root itself when it holds the `markers` folders (no split folders)."""
    markers = tuple(markers)
    if all((root / split / m).is_dir() for m in markers):
        return root / split
    if all((root / m).is_dir() for m in markers):
        log.warning("%s has no %r folder; using every pair under %s for split %r", root, split, root, split)
        return root
    wanted = ", ".join(markers)
    raise UserError(f"no {wanted} folders in {root / split} (nor directly in {root})")
