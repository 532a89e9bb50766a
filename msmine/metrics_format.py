"""Metrics as flat names and as text: the one place that turns metric numbers into keys and strings.

Metrics come nested, ``{branch: {split: {name: value}}}`` (``msmine evaluate``'s JSON ``"metrics"``,
``msmine train``'s ``"val"``). :func:`flatten_metrics` names each scalar ``<branch>_<name>`` (split
``all``) or ``<branch>_<split>_<name>`` (``fused_AP50``, ``fused_night_mIoU``), the column names of
every CSV the project writes. Every metric is a fraction in [0, 1] (AP, mAP, LAMR, IoU, overlap) and
is shown with :func:`format_metric`: three decimals, on screen and in logs alike.

Pure Python (no numpy): any layer may import it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

DECIMALS = 3  # every metric on screen and in logs: 0.946, never 0.95 in one place and 0.9460 in another


def format_metric(value) -> str:
    """A metric (a fraction in [0, 1]) as text: ``0.946``; NaN/None (undefined, e.g. no ground truth) as ``nan``."""
    if value is None:
        return "nan"
    value = float(value)
    if math.isnan(value):
        return "nan"
    return f"{value:.{DECIMALS}f}"


def metric_key(branch: str, split: str, name: str) -> str:
    return f"{branch}_{name}" if split == "all" else f"{branch}_{split}_{name}"


def flatten_metrics(metrics: Mapping) -> dict[str, float]:
    """{branch: {split: {name: v}}} -> {"fused_AP50": v, "fused_night_AP50": v, ...}; scalars only.

    Entries that are not nested dicts (e.g. a ``"task"`` string beside the branches) and non-scalar
    values (per-class lists) are left out.
    """
    flat: dict[str, float] = {}
    for branch, by_split in metrics.items():
        if not isinstance(by_split, Mapping):
            continue
        for split, values in by_split.items():
            if not isinstance(values, Mapping):
                continue
            for name, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    flat[metric_key(branch, split, name)] = float(value)
    return flat


def format_flat(flat: Mapping[str, float], keys: Sequence[str] | None = None) -> str:
    """``fused_AP50=0.230 fused_mAP=0.101`` (the given keys in order, or all in sorted order)."""
    keys = list(keys) if keys is not None else sorted(flat)
    return " ".join(f"{k}={format_metric(flat[k])}" for k in keys if k in flat)


def summary_line(metrics: Mapping) -> str:
    """The split-``all`` metrics of every branch on one line (what ``msmine train`` prints)."""
    flat = flatten_metrics(metrics)
    keys = [metric_key(b, "all", n) for b, by_split in metrics.items() if isinstance(by_split, Mapping)
            for n, v in (by_split.get("all") or {}).items() if isinstance(v, (int, float))]
    return format_flat(flat, keys)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *rows]]


def format_table(metrics: Mapping, class_names: Sequence[str] | None = None) -> str:
    """One row per branch and split, one column per scalar metric; then per-class tables.

    A value that is a list with one entry per class (``per_class`` IoU of segmentation, ``per_class_AP50``
    where the detection metrics give it) becomes a table with one column per class name.
    """
    names: list[str] = []
    rows: list[tuple[str, str, Mapping]] = []
    per_class: dict[str, list[tuple[str, str, Sequence]]] = {}
    for branch, by_split in metrics.items():
        if not isinstance(by_split, Mapping):
            continue
        for split, values in by_split.items():
            if not isinstance(values, Mapping):
                continue
            rows.append((branch, split, values))
            for name, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    if name not in names:
                        names.append(name)
                elif isinstance(value, (list, tuple)):
                    per_class.setdefault(name, []).append((branch, split, value))
    lines = _table(["branch", "split", *names],
                   [[b, s, *(format_metric(v.get(n)) if n in v else "" for n in names)] for b, s, v in rows])
    for name, entries in per_class.items():
        count = max(len(v) for _, _, v in entries)
        classes = list(class_names or [])
        if len(classes) != count:
            classes = [str(i) for i in range(count)]
        label = "IoU" if name == "per_class" else name.removeprefix("per_class_")
        lines += ["", f"per-class {label}"]
        lines += _table(["branch", "split", *classes],
                        [[b, s, *(format_metric(x) for x in v)] for b, s, v in entries])
    return "\n".join(lines)
