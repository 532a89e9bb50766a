"""Markdown tables of a mining experiment (what docs/results.md shows under "Mining").

    .venv/bin/python bench/mining_table.py docs/results/al_detect_final.csv [--metric fused_AP50] \\
        [--runs runs/mining/dt_s0,runs/mining/dt_s1,...] [--initial 50]

Reads the curves in ``msmine al``'s format (``strategy,seed,cycle,labelled,<metrics>``; the
``supervised`` row is the reference) and prints: the metric per labelled size and strategy (mean ±
std over seeds, the number of seeds when not all of them reached the cell); each strategy minus
random, paired over seeds (mean ± std, paired t-test p) per size and for the area under the budget
curve; each pair of model-based strategies against each other at every size; the per-seed values
at the last size. With ``--runs`` (the run folders with ``labelled_<strategy>_seed<k>.json``), also
the night share (MSRS ids ending in ``N``; no strategy sees them) and the near-duplicate rate of
each strategy's picks after the first ``--initial``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from itertools import combinations
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))  # mining_experiment: its paired test, area and duplicate rate


def _fmt_diff(d: tuple[float, float, float], p: bool = True) -> str:
    mean, std, pval = d
    text = f"{mean:+.3f} ± {std:.3f}"
    return f"{text} (p {pval:.3f})" if p and pval == pval else text


def tables(rows: list[dict], metric: str, runs: list[Path], initial: int) -> str:
    import mining_experiment as mod

    from msmine.errors import UserError

    values: dict[str, dict[int, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))  # s -> n -> seed -> v
    reference = [r[metric] for r in rows if r["strategy"] == "supervised" and metric in r]
    for r in rows:
        if r["strategy"] != "supervised" and metric in r:
            values[r["strategy"]][int(r["labelled"])][int(r["seed"])] = float(r[metric])
    strategies = list(values)
    sizes = sorted({n for by in values.values() for n in by})
    seeds = sorted({s for by in values.values() for cell in by.values() for s in cell})
    out = [f"{metric}, mean ± std over seeds {', '.join(map(str, seeds))} (n when fewer reached the cell):", "",
           f"| labelled | {' | '.join(strategies)} |", "|---|" + "---|" * len(strategies)]
    for n in sizes:
        cells = []
        for s in strategies:
            v = list(values[s].get(n, {}).values())
            if not v:
                cells.append("")
                continue
            text = f"{statistics.mean(v):.3f}" + (f" ± {statistics.stdev(v):.3f}" if len(v) > 1 else "")
            cells.append(text + (f" ({len(v)})" if len(v) < len(seeds) else ""))
        out.append(f"| {n} | {' | '.join(cells)} |")
    if reference:
        out.append(f"\nFully supervised reference (the same recipe on the whole pool): {statistics.mean(reference):.3f}")

    def paired(a: str, b: str, n: int):
        common = sorted(set(values[a].get(n, {})) & set(values[b].get(n, {})))
        return common, mod._paired([values[a][n][s] for s in common], [values[b][n][s] for s in common])

    others = [s for s in strategies if s != "random"]
    out += ["", f"Paired differences against random (std over seeds; paired t-test p); area: mean {metric} "
            "over the labelled span, minus random's:", "",
            f"| strategy - random | {' | '.join(str(n) for n in sizes[1:])} | area |",
            "|---|" + "---|" * len(sizes)]
    for s in others:
        cells = []
        for n in sizes[1:]:
            common, d = paired(s, "random", n)
            cells.append(_fmt_diff(d) + (f" [{len(common)}]" if len(common) < len(seeds) else "") if common else "")
        full = [k for k in seeds if all(k in values[s].get(n, {}) and k in values["random"].get(n, {})
                                        for n in sizes)]
        auc = [mod._auc([(n, values[s][n][k]) for n in sizes]) for k in full]
        auc_r = [mod._auc([(n, values["random"][n][k]) for n in sizes]) for k in full]
        cells.append(_fmt_diff(mod._paired(auc, auc_r), p=False) + f" [{len(full)}]" if full else "")
        out.append(f"| {s} | {' | '.join(cells)} |")
    if len(others) > 1:
        out += ["", "Model-based strategies against each other, paired:", "",
                f"| a - b | {' | '.join(str(n) for n in sizes[1:])} |", "|---|" + "---|" * (len(sizes) - 1)]
        for a, b in combinations(others, 2):
            cells = []
            for n in sizes[1:]:
                common, d = paired(a, b, n)
                cells.append(_fmt_diff(d) if len(common) > 1 else "")
            out.append(f"| {a} - {b} | {' | '.join(cells)} |")
    last = sizes[-1]
    out += ["", f"Per seed at {last} labelled (seeds {', '.join(map(str, seeds))}):", ""]
    for s in strategies:
        cell = values[s].get(last, {})
        out.append(f"- {s}: " + " / ".join(f"{cell[k]:.3f}" if k in cell else "-" for k in seeds))
    if runs:
        picked = ["", f"The picks after the first {initial} (night share: ids ending in N; near-duplicates: within "
                  "3 frames of another pick of the clip), per seed:", "",
                  "| strategy | night share of the picks | near-duplicate rate |", "|---|---|---|"]
        for s in strategies:
            night, dups = [], []
            for k in seeds:
                for folder in runs:
                    f = folder / f"labelled_{s}_seed{k}.json"
                    if f.is_file():
                        picks = [str(i) for i in json.loads(f.read_text())][initial:]
                        night.append(f"{100 * sum(i.endswith('N') for i in picks) / max(1, len(picks)):.0f}")
                        dups.append(f"{mod.duplicate_rate(picks, 3):.2f}")
                        break
            if night:
                picked.append(f"| {s} | {' / '.join(night)} % | {' / '.join(dups)} |")
        if len(picked) == 5:
            raise UserError(f"--runs {','.join(map(str, runs))}: no labelled_<strategy>_seed<k>.json files there")
        out += picked
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    from msmine.console import configure_logging, run_guarded
    from msmine.errors import UserError
    from msmine.train.al import read_curves

    p = argparse.ArgumentParser(prog="mining_table", description=__doc__.split("\n\n")[0])
    p.add_argument("curves", help="curves CSV in msmine al's format (e.g. docs/results/al_detect_final.csv)")
    p.add_argument("--metric", default="", help="default: fused_AP50, or fused_mIoU for segmentation curves")
    p.add_argument("--runs", default="", help="comma-separated run folders holding the picks files")
    p.add_argument("--initial", type=int, default=50, help="initial labelled pairs (not picks)")
    args = p.parse_args(argv)
    configure_logging(False)

    def run() -> int:
        path = Path(args.curves)
        if not path.is_file():
            raise UserError(f"{path}: no such curves file")
        rows = read_curves(path)
        metric = args.metric or ("fused_mIoU" if any("fused_mIoU" in r for r in rows) else "fused_AP50")
        if not any(r["strategy"] == "random" for r in rows):
            raise UserError(f"{path}: no random rows to compare against")
        if not any(metric in r for r in rows):
            raise UserError(f"{path}: no {metric} column")
        runs = [Path(d) for d in args.runs.split(",") if d.strip()]
        print(tables(rows, metric, runs, args.initial))
        return 0

    return run_guarded(run)


if __name__ == "__main__":
    sys.exit(main())
