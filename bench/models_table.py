"""Markdown tables of ``docs/results/models.csv`` (what docs/results.md shows under "Models").

    .venv/bin/python bench/models_table.py [docs/results/models.csv]

Per (task, recipe, init, labelled, split, metric): mean ± std over seeds (n shown); then, for each
labelled size with both arms, the paired difference imagenet - scratch (and imagenet+pretrain -
imagenet) per seed, mean ± std.
"""

from __future__ import annotations

import csv
import statistics
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADLINE = {"detect": ["fused_AP50", "fused_mAP", "fused_LAMR", "fused_day_AP50", "fused_night_AP50"],
            "segment": ["fused_mIoU", "fused_day_mIoU", "fused_night_mIoU"]}
PAIRS = [("imagenet", "scratch"), ("imagenet+pretrain", "imagenet")]


def read(path: Path) -> list[dict]:
    with path.open() as f:
        return [r for r in csv.DictReader(f)]


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def tables(rows: list[dict], split: str = "test") -> str:
    by = defaultdict(dict)  # (task, recipe, init, labelled, metric) -> {seed: value}
    for r in rows:
        if r["split"] == split:
            by[(r["task"], r["recipe"], r["init"], int(r["labelled"]), r["metric"])][int(r["seed"])] = float(r["value"])
    out = []
    for task, metrics in HEADLINE.items():
        arms = sorted({k[1:4] for k in by if k[0] == task}, key=lambda a: (a[2], a[0], a[1]))
        if not arms:
            continue
        out.append(f"| {task} ({split}) | recipe | init | labelled | seeds | " + " | ".join(metrics) + " |")
        out.append("|---" * (5 + len(metrics)) + "|")
        for recipe, init, labelled in arms:
            cells = []
            seeds = 0
            for m in metrics:
                values = list(by.get((task, recipe, init, labelled, m), {}).values())
                seeds = max(seeds, len(values))
                cells.append(mean_std(values) if values else "")
            out.append(f"| | {recipe} | {init} | {labelled} | {seeds} | " + " | ".join(cells) + " |")
        out.append("")
        for a, b in PAIRS:
            for recipe, init, labelled in arms:
                if init != a:
                    continue
                key_a = (task, recipe, a, labelled, metrics[0])
                key_b = (task, recipe, b, labelled, metrics[0])
                common = sorted(set(by.get(key_a, {})) & set(by.get(key_b, {})))
                if common:
                    diffs = [by[key_a][s] - by[key_b][s] for s in common]
                    out.append(f"- {task}, {labelled} labelled, {metrics[0]}: {a} - {b} = {mean_std(diffs)} "
                               f"(paired over seeds {', '.join(map(str, common))})")
        out.append("")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else ROOT / "docs" / "results" / "models.csv"
    rows = read(path)
    print(tables(rows, "test"))
    print(tables(rows, "val"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
