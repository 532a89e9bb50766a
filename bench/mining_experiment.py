"""The mining experiment (issue 12): every selection strategy against random, fairly, on MSRS.

    .venv/bin/python bench/mining_experiment.py --data ../shared/data/msrs --task detect --phase val \\
        --strategies random,random_dedup,entropy,inconsistency,combined,inconsistency.topk,inconsistency.detection_max \\
        --initial 50 --step 50 --budget 300 --seeds 5 --dedupe-window 3 --out runs/mining/detect_val

Protocol (the same for every strategy):

* the pool is MSRS ``train`` less a validation part of 20 % held out in contiguous blocks of 40
  frames (:func:`msmine.train.workspace.carve`, seed 0, as ``bench/models_experiment.py``), so no
  validation frame's neighbours are ever labelled;
* ``--phase val`` evaluates every cycle on that validation part: choose every hyper-parameter
  (variant k / floor, candidate factor, dedupe window, beta, quotas, coverage cycles) there;
  ``--phase test`` evaluates on the ``test`` split, once the choices are made;
* per seed: one initial random set and one cycle-0 model shared by every strategy
  (:class:`msmine.train.al.ALRunner`), one training recipe (``--config`` / ``--set``) for all;
* the batch options apply to every model-based strategy alike; ``random`` stays the plain draw,
  ``random_dedup`` is random with the same near-duplicate removal.

Writes ``OUT/curves.csv`` (``msmine al``'s format; the run resumes like ``msmine al`` when started
again with the same command) and the comparison CSV (``--csv``, default
``docs/results/mining_<task>_<phase>.csv``) with the command and its cost in header comments:
per strategy and cycle, the mean ± std over seeds of the metric, the paired difference against
random (mean, std, paired t-test p), the same for the night split, the area under the budget
curve (trapezoid over labelled pairs, divided by their span) and the near-duplicate rate of the
picks (share of picked pairs within ``--dup-window`` frames of another pick of the same clip).

Split over processes: ``--seed-list 0,2 --out A`` and ``--seed-list 1 --out B`` (one thread each),
then ``--merge A,B --out M`` writes the comparison of all seeds (the run settings must match).

``--smoke``: a tiny run on real pairs for CI (small backbone at 64x80, 32 pairs (26 in the pool), 2 seeds,
4 + 4 + 4 labelled, one step per cycle; the CSV goes to OUT unless ``--csv`` is given). It checks
the plumbing, not the science.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import shlex
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
VAL_FRACTION = 0.2  # msmine al --val-fraction 0.2: the same pool and validation blocks
SMOKE_SETTINGS = ["model.input_size=[64,80]", "model.backbone=small", "batch_size=4", "data.limit=32",
                  "data.val_limit=8", "min_cycle_steps=1", "cycle_epochs=1", "supervised_epochs=0",
                  "eval_splits=[all,day,night]"]
COLUMNS = ["task", "phase", "strategy", "cycle", "labelled", "metric", "seeds", "mean", "std", "diff_mean",
           "diff_std", "diff_p", "night_mean", "night_diff_mean", "night_diff_std", "auc", "auc_diff_mean",
           "auc_diff_std", "dup_rate"]

log = logging.getLogger("mining_experiment")


def build_parser() -> argparse.ArgumentParser:
    from msmine.train.workspace import add_config_arguments

    p = argparse.ArgumentParser(prog="mining_experiment", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "msrs"), help="MSRS root")
    p.add_argument("--task", choices=["detect", "segment"], default="detect")
    p.add_argument("--phase", choices=["val", "test"], default="val",
                   help="val: evaluate on the carved validation blocks (tune here); test: on the test split")
    p.add_argument("--strategies", default="random,random_dedup,entropy,inconsistency,combined,inconsistency.topk",
                   help="comma-separated msmine al strategies (random is always added)")
    p.add_argument("--initial", type=int, default=50)
    p.add_argument("--step", type=int, default=50)
    p.add_argument("--budget", type=int, default=300)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--seed-list", default="",
                   help="run only these seeds (comma-separated, e.g. 0,2), to split one experiment over processes "
                        "or machines, each with its own --out; --merge then compares them together")
    p.add_argument("--merge", default="",
                   help="comma-separated run folders (same settings, other seeds): compare their curves together "
                        "without training (writes OUT/curves.csv, the merged curves, and the comparison CSV)")
    p.add_argument("--dup-window", type=float, default=3, help="frames: what counts as a near-duplicate pick")
    p.add_argument("--out", required=True, help="run folder (curves.csv, state/ for resume)")
    p.add_argument("--csv", default="", help="comparison CSV (default docs/results/mining_<task>_<phase>.csv)")
    p.add_argument("--smoke", action="store_true", help="tiny CI run on real pairs (module doc)")
    p.add_argument("--reference", choices=["no", "also", "only"], default="no",
                   help="the fully supervised reference (the Fig. 4 dashed line): the loop recipe on the whole pool, "
                        "--reference-epochs passes, seed = the first of the seeds; 'only' trains nothing else "
                        "(its own --out, merged like a seed folder)")
    p.add_argument("--reference-epochs", type=int, default=0,
                   help="passes over the pool for --reference (default: the config's cycle_epochs)")
    p.add_argument("--png", default="", help="also plot the curves (mean ± std over seeds, the reference dashed)")
    for flag, kw in (("--candidate-factor", dict(type=float, default=1.0)), ("--diversity", dict(default="none")),
                     ("--dedupe-window", dict(type=float, default=0.0)), ("--strata", dict(default="none")),
                     ("--night-luminance", dict(type=float, default=0.25)), ("--quotas", dict(default="none")),
                     ("--normalize", dict(default="none")), ("--sampling-beta", dict(type=float, default=math.inf)),
                     ("--coverage-cycles", dict(type=int, default=0)), ("--variant-k", dict(type=int, default=50)),
                     ("--variant-floor", dict(type=float, default=0.5)), ("--class-weights", dict(default="none")),
                     ("--dedupe-hash", dict(type=int, default=-1))):
        p.add_argument(flag, help="as msmine al", **kw)
    add_config_arguments(p)
    return p


def _paired(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """Mean and std (ddof 1) of the paired differences a - b, and the paired t-test's two-sided p."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if d.size < 2:
        return float(d.mean()) if d.size else math.nan, math.nan, math.nan
    std = float(d.std(ddof=1))
    if std == 0:
        return float(d.mean()), 0.0, 1.0 if d.mean() == 0 else 0.0
    from scipy import stats

    return float(d.mean()), std, float(stats.ttest_rel(a, b).pvalue)


def _auc(points: list[tuple[int, float]]) -> float:
    """Area under the budget curve over the labelled span, divided by it (a mean metric)."""
    pts = sorted(points)
    if len(pts) < 2:
        return pts[0][1] if pts else math.nan
    x = np.array([p[0] for p in pts], dtype=np.float64)
    y = np.array([p[1] for p in pts], dtype=np.float64)
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2.0 / (x[-1] - x[0]))


def duplicate_rate(ids: list[str], window: float) -> float:
    """Share of ``ids`` within ``window`` frame numbers of another id of the same clip (id less digits)."""
    from msmine.train.al import FRAME_NUMBER

    keyed = []
    for i in ids:
        m = FRAME_NUMBER.search(i)
        keyed.append((FRAME_NUMBER.sub("#", i), int(m.group(1)) if m else -1))
    near = 0
    for j, (clip, frame) in enumerate(keyed):
        if any(k != j and c == clip and abs(f - frame) <= window for k, (c, f) in enumerate(keyed)):
            near += 1
    return near / len(keyed) if keyed else math.nan


def compare(rows: list[dict], metric: str, task: str, phase: str, picks: dict[tuple[str, int], list[str]],
            dup_window: float) -> list[dict]:
    """The comparison table (module doc) from ``msmine al`` curves rows."""
    night = metric.replace("fused_", "fused_night_")
    by: dict[tuple[str, int], dict[int, dict]] = {}
    for r in rows:
        if r["strategy"] != "supervised":
            by.setdefault((r["strategy"], r["seed"]), {})[r["cycle"]] = r
    strategies = list(dict.fromkeys(r["strategy"] for r in rows if r["strategy"] != "supervised"))
    seeds = sorted({s for _, s in by})
    out = []
    for strategy in strategies:
        paired_seeds = [s for s in seeds if (strategy, s) in by and ("random", s) in by]
        cycles = sorted({c for s in paired_seeds for c in by[(strategy, s)]})
        # the area only over seeds whose curves (this strategy's and random's) reach every cycle: a
        # seed still running would otherwise count a shorter span
        complete = [s for s in paired_seeds if all(c in by[(strategy, s)] and c in by[("random", s)]
                                                   for c in cycles)]
        aucs = {s: _auc([(r["labelled"], r[metric]) for r in by[(strategy, s)].values() if metric in r])
                for s in complete}
        aucs_r = {s: _auc([(r["labelled"], r[metric]) for r in by[("random", s)].values() if metric in r])
                  for s in complete}
        auc_d = _paired([aucs[s] for s in complete], [aucs_r[s] for s in complete])
        dups = [duplicate_rate(picks[(strategy, s)], dup_window) for s in paired_seeds if (strategy, s) in picks]
        for cycle in cycles:
            have = [s for s in paired_seeds if cycle in by[(strategy, s)] and cycle in by[("random", s)]
                    and metric in by[(strategy, s)][cycle]]
            if not have:
                continue
            vals = [by[(strategy, s)][cycle][metric] for s in have]
            rand = [by[("random", s)][cycle][metric] for s in have]
            d_mean, d_std, d_p = _paired(vals, rand)
            nv = [by[(strategy, s)][cycle].get(night, math.nan) for s in have]
            nr = [by[("random", s)][cycle].get(night, math.nan) for s in have]
            nd_mean, nd_std, _ = _paired(nv, nr) if all(map(math.isfinite, nv + nr)) else (math.nan,) * 3
            out.append({
                "task": task, "phase": phase, "strategy": strategy, "cycle": cycle,
                "labelled": by[(strategy, have[0])][cycle]["labelled"], "metric": metric, "seeds": len(have),
                "mean": float(np.mean(vals)), "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else math.nan,
                "diff_mean": d_mean, "diff_std": d_std, "diff_p": d_p,
                "night_mean": float(np.mean(nv)) if all(map(math.isfinite, nv)) else math.nan,
                "night_diff_mean": nd_mean, "night_diff_std": nd_std,
                "auc": float(np.mean(list(aucs.values()))) if aucs else math.nan, "auc_diff_mean": auc_d[0], "auc_diff_std": auc_d[1],
                "dup_rate": float(np.mean(dups)) if dups else math.nan,
            })
    return out


def write_table(path: Path, table: list[dict], header: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        for line in header:
            fh.write(f"# {line}\n")
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        for r in table:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


def _seed_list(text: str, count: int) -> list[int]:
    from msmine.errors import UserError

    if not text.strip():
        return list(range(count))
    try:
        seeds = sorted({int(s) for s in text.split(",") if s.strip()})
    except ValueError:
        raise UserError(f"--seed-list {text!r}: expected comma-separated integers, e.g. 0,2") from None
    if not seeds or min(seeds) < 0:
        raise UserError(f"--seed-list {text!r}: expected seeds >= 0")
    return seeds


def _merged_rows(folders: list[Path], key: dict) -> list[dict]:
    """The curves of several run folders of one experiment (their settings must equal ``key``)."""
    from msmine.errors import UserError
    from msmine.train.al import read_curves, with_option_defaults

    want = json.loads(json.dumps(key, default=str))
    rows, seen = [], set()
    for folder in folders:
        run, curves = folder / "state" / "run.json", folder / "curves.csv"
        if not run.is_file() or not curves.is_file():
            raise UserError(f"--merge {folder}: not a mining run folder (no state/run.json or curves.csv)")
        if with_option_defaults(json.loads(run.read_text())) != want:
            raise UserError(f"--merge {folder}: its run settings differ from this command's (task, sizes, "
                            "config, batch options); merge only folders of one experiment")
        for r in read_curves(curves):
            cell = (r["strategy"], r["seed"], r["cycle"])
            if cell in seen:
                raise UserError(f"--merge: {r['strategy']} seed {r['seed']} cycle {r['cycle']} is in more than "
                                f"one folder ({folder})")
            seen.add(cell)
            rows.append(r)
    return rows


def main(argv: list[str] | None = None) -> int:
    import dataclasses

    from msmine.config import load_config
    from msmine.console import configure_logging, run_guarded

    args = build_parser().parse_args(argv)
    configure_logging(False)

    def run() -> int:
        from msmine import strategies
        from msmine.errors import UserError
        from msmine.train.al import (
            ALRunner,
            BatchOptions,
            cycle_sizes,
            default_metric,
            finish_options,
            read_curves,
            write_curves,
        )
        from msmine.train.config import ALConfig
        from msmine.train.trainer import resolve_device
        from msmine.train.workspace import AL_VAL_SEED, al_splits, apply_thread_limit, fit_model_to_dataset

        apply_thread_limit()
        started = time.perf_counter()
        sets = list(SMOKE_SETTINGS if args.smoke else []) + list(args.overrides)
        if args.smoke:
            args.initial, args.step, args.budget, args.seeds = 4, 4, 12, 2
        own = {f.name for f in dataclasses.fields(ALConfig)}
        overrides = [o if o.split("=", 1)[0].split(".")[0] in own else f"train.{o}" for o in sets]
        overrides.append(f"train.model.task={args.task}")
        if args.device:
            overrides.append(f"train.device={args.device}")
        cfg = load_config(ALConfig, args.config, overrides)
        names = list(strategies.parse_list(args.strategies, task=args.task))
        if "random" not in names:
            names.insert(0, "random")
        options = BatchOptions(candidate_factor=args.candidate_factor, diversity=args.diversity,
                               dedupe_window=args.dedupe_window, strata=args.strata,
                               night_luminance=args.night_luminance, quotas=args.quotas, normalize=args.normalize,
                               sampling_beta=args.sampling_beta, coverage_cycles=args.coverage_cycles,
                               variant_k=args.variant_k, variant_floor=args.variant_floor,
                               dedupe_hash=args.dedupe_hash)
        sizes = cycle_sizes(args.initial, args.step, args.budget)
        train_all, pool, evaluation = al_splits(args.data, cfg.train.data, VAL_FRACTION, args.phase)
        held = len(train_all) - len(pool)
        if args.budget > len(pool):
            raise UserError(f"--budget {args.budget} exceeds the {len(pool)} pairs of the pool")
        fit_model_to_dataset(cfg.train, train_all)
        options = finish_options(options, args.class_weights, cfg.train.model.class_names, names)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        seeds = _seed_list(args.seed_list, args.seeds)
        runner = ALRunner(pool, evaluation, cfg, resolve_device(cfg.train.device), out, progress=False,
                          options=options)
        if args.merge:
            folders = [Path(d) for d in args.merge.split(",") if d.strip()]
            rows = _merged_rows(folders, runner.run_key(names, sizes))
            write_curves(out / "curves.csv", rows)
        else:
            folders = [out]
            runner.check_resume(names, sizes)
            if args.reference != "only":
                for seed in seeds:
                    runner.run_seed(seed, names, sizes)
            if args.reference != "no":  # after the run key was taken: the reference does not change the cells
                epochs = args.reference_epochs or cfg.cycle_epochs
                runner.cfg = dataclasses.replace(cfg, supervised_epochs=epochs)
                runner.run_supervised(seeds[0] if seeds else 0)
            rows = read_curves(out / "curves.csv")
        metric = cfg.metric or default_metric(args.task)
        picks = {}
        for folder in folders:
            for name in names:
                for seed in range(max(seeds) + 1 if seeds else 0):
                    f = folder / f"labelled_{name}_seed{seed}.json"
                    if f.is_file():
                        picks[(name, seed)] = json.loads(f.read_text())[args.initial:]
        table = compare(rows, metric, args.task, args.phase, picks, args.dup_window)
        csv_path = Path(args.csv) if args.csv else (out / f"mining_{args.task}_{args.phase}.csv" if args.smoke else
                                                    ROOT / "docs" / "results" / f"mining_{args.task}_{args.phase}.csv")
        seconds = time.perf_counter() - started
        command = "python bench/mining_experiment.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
        write_table(csv_path, table, [
            f"command: {command}",
            f"pool {len(pool)} pairs (train less {held} validation pairs in blocks, carve seed {AL_VAL_SEED}); "
            f"evaluated on {'validation' if args.phase == 'val' else 'test'} ({len(evaluation)} pairs); "
            f"sizes {sizes}; seeds {', '.join(map(str, sorted({r['seed'] for r in rows})))}; device {cfg.train.device}",
            f"cost: {seconds:.0f} s wall in this invocation (a resumed run counts only its own part)",
            "diff_*: paired over seeds against random (std ddof 1, paired t-test p); auc: mean metric over the "
            "labelled span (trapezoid); dup_rate: picks within --dup-window frames of another pick of the clip",
        ])
        if args.png:
            from msmine.train.al import plot_curves

            plot_curves(rows, [metric], Path(args.png),
                        title=f"MSRS {args.task}, {args.phase}, {len({r['seed'] for r in rows})} seeds")
        print(f"wrote {csv_path} ({len(table)} rows) and {out / 'curves.csv'} in {seconds:.0f} s")
        return 0

    return run_guarded(run)


if __name__ == "__main__":
    sys.exit(main())
