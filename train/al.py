"""The paper's active-learning loop and its curves.

For each seed: draw ``initial`` random pairs (the same for every strategy of that seed), train,
then repeatedly score the unlabelled pool, label the ``step`` best pairs, fine-tune, evaluate on
the test split, until ``budget`` pairs are labelled. The strategies are ``msmine.strategies``'
(every one of them: ``random``, ``inconsistency`` (the paper), ``entropy``, ``combined``,
``inconsistency_diverse``). Selection goes through ``selector`` (numpy); training through
:func:`msmine.train.fit.fit`, the same as ``msmine train``.
"""

from __future__ import annotations

import copy
import csv
import json
import logging
import time
from pathlib import Path

import numpy as np

from msmine import strategies
from msmine.errors import UserError
from msmine.metrics_format import format_flat, format_metric

log = logging.getLogger(__name__)

STRATEGIES = strategies.NAMES  # the registry's names (kept as a name for existing callers)
KEY_COLUMNS = ["strategy", "seed", "cycle", "labelled"]


def cycle_sizes(initial: int, step: int, budget: int) -> list[int]:
    """Labelled-set sizes after each cycle: initial, initial+step, ..., up to budget."""
    if initial < 1 or step < 1 or budget < initial:
        raise UserError(f"need initial >= 1, step >= 1 and budget >= initial; got {initial}, {step}, {budget}")
    sizes = [initial]
    while sizes[-1] < budget:
        sizes.append(min(budget, sizes[-1] + step))
    return sizes


def thumbnails(pool_view, pool: list[int], size: tuple[int, int] = (12, 16)) -> np.ndarray:
    """Tiny grey visible + thermal thumbnails of the pool pairs, one row each (for diversity)."""
    import cv2

    rows = []
    for i in pool:
        sample = pool_view.prepared(i)
        grey = cv2.cvtColor(sample.visible, cv2.COLOR_RGB2GRAY)
        vis = cv2.resize(grey, size[::-1], interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
        th = cv2.resize(sample.thermal.reshape(grey.shape), size[::-1], interpolation=cv2.INTER_AREA)
        rows.append(np.concatenate([vis, th.astype(np.float32).ravel()]) / 255.0)
    return np.stack(rows)


def diverse_top(scores: np.ndarray, features: np.ndarray, count: int, seed: int) -> list[int]:
    """The best-scoring pair of each of ``count`` k-means clusters of ``features`` (positions).

    Video-like pools hold runs of near-identical frames; plain top-b picks many of one run.
    """
    from scipy.cluster.vq import kmeans2

    from msmine import selector

    _, assign = kmeans2(features, count, seed=seed, minit="++")
    picked = []
    for cluster in np.unique(assign):
        members = np.flatnonzero(assign == cluster)
        ids, _ = selector.select_top(scores[members], 1, ids=list(members))
        picked.append(int(ids[0]))
    if len(picked) < count:  # empty clusters: fill with the best remaining
        rest = [i for i in range(len(scores)) if i not in set(picked)]
        more, _ = selector.select_top(scores[rest], count - len(picked), ids=rest)
        picked += [int(i) for i in more]
    order, _ = selector.select_top(scores[picked], len(picked), ids=picked)
    return [int(i) for i in order]


def select_next(strategy: str, model, pool_view, pool: list[int], count: int, rng: np.random.Generator,
                device, kind: str, batch_size: int, amp: bool, workers: int = 0) -> list[int]:
    """Indices (into the training set) of the ``count`` pairs the strategy labels next."""
    from msmine import selector
    from msmine.train.batching import IndexedSubset
    from msmine.train.evaluate import score_pool

    strategies.get(strategy, flag="strategy")
    if count >= len(pool):
        return list(pool)
    if strategy == "random":
        return [int(i) for i in rng.choice(np.asarray(pool), size=count, replace=False)]
    inter, intra = score_pool(model, IndexedSubset(pool_view, pool), device, batch_size, kind, amp, workers)
    if strategy == "inconsistency_diverse":
        positions = diverse_top(inter, thumbnails(pool_view, pool), count, int(rng.integers(2**31)))
        return [int(pool[p]) for p in positions]
    scores = {"inconsistency": inter, "entropy": intra, "combined": None}[strategy]
    if strategy == "combined":
        scores = selector.combined(inter, intra)
    ids, _ = selector.select_top(np.asarray(scores, dtype=np.float64), count, ids=list(pool))
    return [int(i) for i in ids]


class CurveWriter:
    """Appends rows to curves.csv as they come (partial runs keep their results)."""

    def __init__(self, path: Path):
        self.path = path
        self.rows: list[dict] = []

    def add(self, row: dict) -> None:
        self.rows.append(row)
        write_curves(self.path, self.rows)


def write_curves(path: Path, rows: list[dict]) -> None:
    metric_cols = sorted({k for r in rows for k in r} - set(KEY_COLUMNS))
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=KEY_COLUMNS + metric_cols)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: r.get(k, "") for k in KEY_COLUMNS + metric_cols})


def read_curves(path: Path) -> list[dict]:
    if not Path(path).is_file():
        raise UserError(f"curves file not found: {path}")
    rows = []
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            row: dict = {"strategy": r["strategy"], "seed": int(r["seed"]), "cycle": int(r["cycle"]),
                         "labelled": int(r["labelled"])}
            for k, v in r.items():
                if k not in KEY_COLUMNS and v not in ("", None):
                    row[k] = float(v)
            rows.append(row)
    return rows


class ALRunner:
    def __init__(self, train_set, test_set, cfg, device, out_dir: Path, progress: bool = True, tag: str = ""):
        from msmine.train.batching import evaluation_view
        from msmine.train.workspace import prepared_pairs

        self.cfg = cfg
        self.tcfg = cfg.train
        self.device = device
        self.out = Path(out_dir)
        self.progress = progress
        self.train_pairs = prepared_pairs(train_set, self.tcfg, train=True, progress=progress)
        self.pool_view = evaluation_view(self.train_pairs)
        self.test_pairs = prepared_pairs(test_set, self.tcfg, train=False, progress=progress)
        self.writer = CurveWriter(self.out / "curves.csv")
        self.amp = self.tcfg.amp and device.type == "cuda"
        self.tag = tag  # appended to the strategy names in the curves (e.g. "-binary")

    # -- pieces ---------------------------------------------------------------------------------
    def _steps(self, labelled: int, epochs: int) -> int:
        """``epochs`` passes as ``msmine train`` counts them (full batches), at least ``min_cycle_steps``."""
        from msmine.train.fit import steps_for

        return max(self.cfg.min_cycle_steps, steps_for(epochs, labelled, self.tcfg.batch_size))

    def _fit(self, model, indices: list[int], seed: int, epochs: int) -> float:
        """Train ``model`` (in place) on the labelled ``indices``: ``fit()`` with data-order seed ``seed``."""
        from msmine.train.batching import IndexedSubset
        from msmine.train.fit import fit

        tcfg = copy.deepcopy(self.tcfg)
        tcfg.seed = seed
        result = fit(tcfg, IndexedSubset(self.train_pairs, indices), model=model,
                     steps=self._steps(len(indices), epochs), progress=self.progress, device=self.device)
        return result.final_loss

    def _evaluate(self, model) -> dict:
        from msmine.metrics_format import flatten_metrics
        from msmine.train.evaluate import evaluate_model

        metrics = evaluate_model(model, self.test_pairs, self.device, batch_size=max(16, self.tcfg.batch_size),
                                 splits=tuple(self.cfg.eval_splits), cfg=self.tcfg, workers=self.tcfg.data.workers)
        return flatten_metrics(metrics)

    def _new_model(self, seed: int):
        from msmine.train.models import build_model
        from msmine.train.trainer import seed_everything

        seed_everything(seed)
        return build_model(self.tcfg.model).to(self.device)

    # -- loops ----------------------------------------------------------------------------------
    def run_seed(self, seed: int, strategies: list[str], sizes: list[int]) -> None:
        n = len(self.train_pairs)
        rng = np.random.default_rng(seed)
        initial = sorted(int(i) for i in rng.choice(n, size=sizes[0], replace=False))
        started = time.perf_counter()
        model0 = self._new_model(seed)
        loss = self._fit(model0, initial, seed * 1000, self.cfg.cycle_epochs)
        metrics0 = self._evaluate(model0)
        seconds0 = round(time.perf_counter() - started, 2)
        log.info("seed %d cycle 0 (%d labelled): %s", seed, len(initial), self._brief(metrics0))
        for strategy in strategies:
            model = copy.deepcopy(model0) if self.cfg.fine_tune else None
            labelled = list(initial)
            self.writer.add({"strategy": strategy + self.tag, "seed": seed, "cycle": 0, "labelled": len(labelled),
                             **metrics0, "train_loss": loss, "seconds": seconds0})
            select_rng = np.random.default_rng([seed, 1 + STRATEGIES.index(strategy) if strategy in STRATEGIES else 99])
            for cycle, size in enumerate(sizes[1:], start=1):
                t0 = time.perf_counter()
                chosen = set(labelled)
                pool = [i for i in range(n) if i not in chosen]
                scorer = model if model is not None else model0
                picked = select_next(strategy, scorer, self.pool_view, pool, size - len(labelled), select_rng,
                                     self.device, self.tcfg.model.score_kind, max(16, self.tcfg.batch_size),
                                     self.amp, self.tcfg.data.workers)
                labelled += picked
                if not self.cfg.fine_tune:
                    model = self._new_model(seed + cycle)
                loss = self._fit(model, labelled, seed * 1000 + cycle, self.cfg.cycle_epochs)
                metrics = self._evaluate(model)
                self.writer.add({"strategy": strategy + self.tag, "seed": seed, "cycle": cycle, "labelled": len(labelled),
                                 **metrics, "train_loss": loss, "seconds": round(time.perf_counter() - t0, 2)})
                log.info("seed %d %s cycle %d (%d labelled): %s", seed, strategy, cycle, len(labelled),
                         self._brief(metrics))
            (self.out / f"labelled_{strategy}_seed{seed}.json").write_text(
                json.dumps([self.train_pairs.dataset.ids[i] for i in labelled]))

    def run_supervised(self, seed: int = 0) -> dict:
        n = len(self.train_pairs)
        t0 = time.perf_counter()
        model = self._new_model(seed)
        loss = self._fit(model, list(range(n)), seed * 1000 + 999, self.cfg.supervised_epochs)
        metrics = self._evaluate(model)
        row = {"strategy": "supervised", "seed": seed, "cycle": 0, "labelled": n, **metrics, "train_loss": loss,
               "seconds": round(time.perf_counter() - t0, 2)}
        self.writer.add(row)
        log.info("fully supervised (%d labelled): %s", n, self._brief(metrics))
        return row

    def _brief(self, metrics: dict) -> str:
        return format_flat(metrics, ("fused_AP50", "fused_mAP", "fused_mIoU", "visible_AP50", "thermal_AP50"))


# -- plots and summaries --------------------------------------------------------------------------
def default_metric(task: str) -> str:
    from msmine.train.fit import main_metric

    return main_metric(task)


def aggregate(rows: list[dict], metric: str) -> dict[str, dict[int, tuple[float, float, int]]]:
    """strategy -> labelled -> (mean, std, count) over seeds."""
    groups: dict[str, dict[int, list[float]]] = {}
    for r in rows:
        if r["strategy"] == "supervised" or metric not in r:
            continue
        groups.setdefault(r["strategy"], {}).setdefault(r["labelled"], []).append(r[metric])
    return {s: {n: (float(np.mean(v)), float(np.std(v)), len(v)) for n, v in sorted(by.items())}
            for s, by in groups.items()}


def supervised_value(rows: list[dict], metric: str) -> float | None:
    vals = [r[metric] for r in rows if r["strategy"] == "supervised" and metric in r]
    return float(np.mean(vals)) if vals else None


def plot_curves(rows: list[dict], metrics: list[str], path: Path, title: str = "") -> Path:
    """Mean +- std over seeds per strategy; the fully supervised result as a dashed line (Fig. 4)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m in metrics if any(m in r for r in rows)]
    if not metrics:
        raise UserError("no metric to plot in the curves")
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 4), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for strategy, by in aggregate(rows, metric).items():
            xs = np.array(list(by))
            mean = np.array([v[0] for v in by.values()])
            std = np.array([v[1] for v in by.values()])
            ax.plot(xs, mean, marker="o", label=strategy)
            ax.fill_between(xs, mean - std, mean + std, alpha=0.2)
        sup = supervised_value(rows, metric)
        if sup is not None:
            ax.axhline(sup, linestyle="--", color="black", label="fully supervised")
        ax.set_xlabel("labelled pairs")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def summary_table(rows: list[dict], metric: str) -> str:
    """Markdown: labelled x strategy, mean +- std (n seeds), plus the supervised reference."""
    agg = aggregate(rows, metric)
    sizes = sorted({n for by in agg.values() for n in by})
    strategies = list(agg)
    lines = [f"| labelled | {' | '.join(strategies)} |", "|---|" + "---|" * len(strategies)]
    for n in sizes:
        cells = []
        for s in strategies:
            v = agg[s].get(n)
            cells.append(f"{format_metric(v[0])} ± {format_metric(v[1])} ({v[2]})" if v else "")
        lines.append(f"| {n} | {' | '.join(cells)} |")
    sup = supervised_value(rows, metric)
    if sup is not None:
        n_sup = max(r["labelled"] for r in rows if r["strategy"] == "supervised")
        lines.append(f"\nFully supervised ({n_sup} pairs): {format_metric(sup)}")
    return "\n".join(lines)


def merge_runs(dirs: list[Path], out: Path, metrics: list[str], title: str = "") -> list[dict]:
    rows: list[dict] = []
    for d in dirs:
        path = Path(d) / "curves.csv"
        if not path.is_file():
            log.warning("skipping %s: no curves.csv", d)
            continue
        rows += read_curves(path)
    if not rows:
        raise UserError(f"no curves found in {', '.join(str(d) for d in dirs)}")
    out.mkdir(parents=True, exist_ok=True)
    write_curves(out / "curves.csv", rows)
    plot_curves(rows, metrics, out / "curves.png", title)
    (out / "summary.md").write_text("\n\n".join(f"### {m}\n\n{summary_table(rows, m)}" for m in metrics) + "\n")
    return rows
