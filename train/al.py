"""The paper's active-learning loop and its curves.

For each seed: draw ``initial`` random pairs (the same for every strategy of that seed), train,
then repeatedly score the unlabelled pool, label the ``step`` best pairs, fine-tune, evaluate on
the test split, until ``budget`` pairs are labelled. The strategies are ``msmine.strategies``'
(every one of them: ``random``, ``inconsistency`` (the paper), ``entropy``, ``combined``,
``inconsistency_diverse``, ``random_dedup``), each optionally with a score variant
(``inconsistency.topk``, computed by ``train.scoring.variant_scores``). Selection goes through
``selector`` (numpy): plain top-b by default, or with :class:`BatchOptions` ``selector.select_batch``
(candidate pool + k-center on the model's pooled fused features, frame-window near-duplicate
removal, stratum quotas / normalisation by visible illumination, power sampling, a ProbCover
coverage-first cold start). Training goes through :func:`msmine.train.fit.fit`, the same as
``msmine train``.

Resume: after cycle 0 and after every cycle the runner writes ``OUT/state/seed<S>.pt`` (the
cycle-0 model, per strategy its labelled set, model weights and selection generator, the global
torch generator); a run started again on the same ``OUT`` with the same settings continues at the
next cycle with the same picks, keeping the finished seed x strategy x cycle rows of curves.csv.
"""

from __future__ import annotations

import copy
import csv
import json
import logging
import math
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from msmine import strategies
from msmine import strategies as strategies_mod  # run_seed's argument is called strategies
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


@dataclass
class BatchOptions:
    """How a batch is picked from the scored pool (all off by default: plain top-b, the paper's rule)."""

    candidate_factor: float = 1.0  # >1 with diversity: a candidate pool of factor x b by score
    diversity: str = "none"  # none | kcenter (k-center greedy on pooled fused features within the candidates)
    dedupe_window: float = 0.0  # no two picks (nor a pick and a labelled pair) of one clip within this many frames
    strata: str = "none"  # none | illumination (the visible image's mean luminance below night_luminance = night)
    night_luminance: float = 0.25  # luminance threshold in [0, 1] of the illumination strata
    quotas: str = "none"  # none | proportional | equal: budget caps per stratum
    normalize: str = "none"  # none | z | rank: scores normalised within each stratum
    sampling_beta: float = math.inf  # power sampling (score ** beta; softmax on normalised scores); inf = top-b
    coverage_cycles: int = 0  # the first N selections are ProbCover on the features (coverage-first cold start)
    variant_k: int = 50  # k of the topk / region_topk variants
    variant_floor: float = 0.5  # confidence floor of the detection variants
    class_weights: str | tuple[float, ...] = "none"  # detection_* / region* variants: none | inverse | one per class
    dedupe_hash: int = -1  # no two picks (nor a pick and a labelled pair) within this many dHash bits (-1 = off)

    def __post_init__(self) -> None:
        from msmine.errors import UserError

        choices = {"diversity": ("none", "kcenter"), "strata": ("none", "illumination"),
                   "quotas": ("none", "proportional", "equal"), "normalize": ("none", "z", "rank")}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise UserError(f"--{key.replace('_', '-')}: expected one of {', '.join(allowed)}, "
                                f"got {getattr(self, key)!r}")
        if not (math.isfinite(self.candidate_factor) and self.candidate_factor >= 1):
            raise UserError(f"--candidate-factor: expected a number >= 1, got {self.candidate_factor}")
        if self.diversity == "kcenter" and self.candidate_factor == 1:
            raise UserError("--diversity kcenter: expected --candidate-factor > 1 (the pool k-center spreads)")
        if (self.quotas != "none" or self.normalize != "none") and self.strata == "none":
            raise UserError("--quotas / --normalize: expected --strata illumination (strata come from the "
                            "visible image, never from file names)")
        if not (self.dedupe_window >= 0 and math.isfinite(self.dedupe_window)):
            raise UserError(f"--dedupe-window: expected a number >= 0, got {self.dedupe_window}")
        if not (self.sampling_beta >= 0):
            raise UserError(f"--sampling-beta: expected a number >= 0 (inf = top-b), got {self.sampling_beta}")
        if self.coverage_cycles < 0 or self.variant_k < 1:
            raise UserError("--coverage-cycles must be >= 0 and --variant-k >= 1")
        if isinstance(self.class_weights, str) and self.class_weights not in strategies.CLASS_WEIGHT_MODES:
            raise UserError(f"--class-weights: expected none, inverse or one weight per class, got {self.class_weights!r}")
        if not -1 <= self.dedupe_hash <= 64:
            raise UserError(f"--dedupe-hash: expected bits in 0..64 (-1 = off), got {self.dedupe_hash}")

    @property
    def dedupes(self) -> bool:
        """Near-duplicates are removed (by frame numbers or appearance hashes): random_dedup's condition."""
        return self.dedupe_window > 0 or self.dedupe_hash >= 0

    @property
    def plain(self) -> bool:
        return self == BatchOptions(variant_k=self.variant_k, variant_floor=self.variant_floor,
                                    class_weights=self.class_weights)

    @property
    def needs_features(self) -> bool:
        return self.diversity != "none" or self.coverage_cycles > 0


@dataclass
class PoolMeta:
    """What selection knows of every pair of the pool besides the model's scores."""

    frames: np.ndarray  # frame number (the first number of the id: the stand-in for capture time)
    sequences: np.ndarray  # clip key (the id without its digits)
    luminance: np.ndarray  # the visible image's mean luminance in [0, 1]
    hashes: np.ndarray  # uint64 dHash of the visible and thermal images side by side (msmine.phash)


FRAME_NUMBER = re.compile(r"(\d+)")


def pool_meta(pool_view) -> PoolMeta:
    """Frame numbers and clip keys from the ids; luminance and appearance hashes from the images (one pass)."""
    import cv2

    from msmine.phash import dhash_image

    ids = [str(i) for i in pool_view.dataset.ids]
    frames = np.array([int(m.group(1)) if (m := FRAME_NUMBER.search(i)) else -1 for i in ids], dtype=np.int64)
    sequences = np.array([FRAME_NUMBER.sub("#", i) for i in ids])
    lum, hashes = np.zeros(len(ids)), np.zeros(len(ids), dtype=np.uint64)
    for i in range(len(ids)):
        sample = pool_view.prepared(i)
        grey = cv2.cvtColor(sample.visible, cv2.COLOR_RGB2GRAY)
        lum[i] = float(grey.mean()) / 255.0
        hashes[i] = dhash_image(np.concatenate([grey, sample.thermal.reshape(grey.shape)], axis=1))
    return PoolMeta(frames, sequences, lum, hashes)


def label_counts(dataset, indices, task: str, num_classes: int) -> np.ndarray:
    """Per class, what the labelled pairs ``indices`` hold: boxes of the fused branch's labels
    (detect) or mask pixels (segment); ids outside ``[0, num_classes)`` are left out."""
    counts = np.zeros(num_classes, dtype=np.float64)
    for i in indices:
        ann = dataset.annotations(int(i), with_mask=task == "segment")
        if task == "segment":
            ids = ann.mask.ravel() if ann.mask is not None else np.zeros(0, np.int64)
        else:
            ids = np.asarray(ann.labels.get("fused", np.zeros(0, np.int64))).ravel()
        ids = ids[(ids >= 0) & (ids < num_classes)].astype(np.int64)
        counts += np.bincount(ids, minlength=num_classes)
    return counts


def resolve_class_weights(opts: BatchOptions, variant: str, dataset, labelled, task: str,
                          num_classes: int) -> tuple[float, ...] | None:
    """The class weights of this selection: None (unweighted, or a variant without class weights),
    ``inverse`` computed from the labelled set now (square-root damped inverse frequency, mean 1:
    selector.inverse_frequency_weights), or the given per-class weights."""
    from msmine import selector

    if opts.class_weights == "none" or variant not in strategies.WEIGHTED_VARIANTS:
        return None
    if opts.class_weights == "inverse":
        counts = label_counts(dataset, labelled or [], task, num_classes)
        weights = selector.inverse_frequency_weights(counts, power=0.5) * num_classes
        log.info("class weights (inverse frequency of %d labelled pairs): %s", len(labelled or []),
                 ", ".join(f"{w:.2f}" for w in weights))
        return tuple(float(w) for w in weights)
    if len(opts.class_weights) != num_classes:
        raise ValueError(f"class_weights: {len(opts.class_weights)} weights for a model of {num_classes} classes")
    return tuple(float(w) for w in opts.class_weights)


def score_pool_variant(model, pool_view, indices: list[int], device, batch_size: int, kind: str,
                       variant: str = "paper", options: BatchOptions | None = None, amp: bool = False,
                       workers: int = 0, features: bool = False,
                       class_weights: tuple[float, ...] | None = None) -> dict:
    """Image scores of ``indices``: {"inconsistency" (under ``variant``), "entropy", "features" (or None)}."""
    import torch

    from msmine.train import scoring
    from msmine.train.batching import IndexedSubset, collate, model_inputs

    opts = options or BatchOptions()
    settings = scoring.VariantSettings(k=opts.variant_k, floor=opts.variant_floor, class_weights=class_weights)
    model.eval().to(device)
    loader = torch.utils.data.DataLoader(IndexedSubset(pool_view, indices), batch_size=batch_size, shuffle=False,
                                         collate_fn=collate, num_workers=workers)
    inter, intra, feats = [], [], []
    amp = amp and device.type == "cuda"
    with torch.no_grad():
        for batch in loader:
            visible, thermal = model_inputs(batch, device)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
                outputs = model(visible, thermal)
            s = scoring.score_outputs(outputs, model.level_shapes, model.task, kind)
            if variant == "paper":
                value = s["inconsistency"]
            elif model.task == "segment":
                logits = outputs["fused"]["logits"]
                value = scoring.variant_scores(variant, [m.float() for m in s["maps"]], settings,
                                               predicted=logits.argmax(dim=1), num_classes=int(logits.shape[1]))
            else:
                dets = scoring.fused_detections(outputs["fused"], model.anchors, model.input_size)
                value = scoring.variant_scores(variant, [m.float() for m in s["maps"]], settings, detections=dets)
            inter.append(value.double().cpu().numpy())
            intra.append(s["entropy"].double().cpu().numpy())
            if features:
                feats.append(scoring.pooled_features(outputs, model.level_shapes, model.task).double().cpu().numpy())
    return {"inconsistency": np.concatenate(inter), "entropy": np.concatenate(intra),
            "features": np.concatenate(feats) if features else None}


def select_next(strategy: str, model, pool_view, pool: list[int], count: int, rng: np.random.Generator,
                device, kind: str, batch_size: int, amp: bool, workers: int = 0, *,
                options: BatchOptions | None = None, selection: int = 0, labelled: list[int] | None = None,
                meta: PoolMeta | None = None) -> list[int]:
    """Indices (into the training set) of the ``count`` pairs ``strategy`` (``name[.variant]``) labels next.

    ``selection``: how many selections came before this one (the coverage schedule counts them);
    ``labelled``: the labelled indices (near-duplicates of them are not picked; k-center / ProbCover
    spread away from them); ``meta``: :func:`pool_meta` of the whole training set (needed by the
    batch options)."""
    from msmine import selector

    spec = strategies.parse_spec(strategy, flag="strategy")
    name = spec.strategy.name
    opts = options or BatchOptions()
    if count >= len(pool):
        return list(pool)
    if name == "random":
        return [int(i) for i in rng.choice(np.asarray(pool), size=count, replace=False)]
    if name == "random_dedup" and not opts.dedupes:
        from msmine.errors import UserError

        raise UserError("strategy random_dedup: expected --dedupe-window > 0 or --dedupe-hash >= 0 (its "
                        "near-duplicate removal)")
    labelled = list(labelled or [])
    feats = None
    if name == "random_dedup":
        scores = rng.random(len(pool))
    else:
        want = opts.needs_features and name != "inconsistency_diverse"
        weights = resolve_class_weights(opts, spec.variant, pool_view.dataset, labelled, model.task,
                                        int(model.config.num_classes))
        scored = score_pool_variant(model, pool_view, list(pool) + (labelled if want else []), device, batch_size,
                                    kind, spec.variant, opts, amp, workers, features=want, class_weights=weights)
        inter = scored["inconsistency"][: len(pool)]
        intra = scored["entropy"][: len(pool)]
        feats = scored["features"]
        if name == "inconsistency_diverse":
            positions = diverse_top(inter, thumbnails(pool_view, pool), count, int(rng.integers(2**31)))
            return [int(pool[p]) for p in positions]
        if name == "entropy":
            scores = intra
        elif name == "combined":
            scores = selector.combined(inter, intra) if spec.variant == "paper" else inter + 0.5 * intra
        else:
            scores = inter
    scores = np.asarray(scores, dtype=np.float64)
    if opts.plain and name != "random_dedup":
        ids, _ = selector.select_top(scores, count, ids=list(pool))
        return [int(i) for i in ids]
    if meta is None:
        raise ValueError("meta: expected pool_meta() of the training set with batch options")
    p = np.asarray(pool)
    lab = np.asarray(labelled, dtype=np.int64)
    kw: dict = {}
    if opts.dedupe_window > 0:
        kw.update(frames=meta.frames[p], sequences=meta.sequences[p], frame_window=opts.dedupe_window,
                  labelled_frames=meta.frames[lab], labelled_sequences=meta.sequences[lab])
    if opts.dedupe_hash >= 0:
        kw.update(hashes=meta.hashes[p], hash_distance=opts.dedupe_hash, labelled_hashes=meta.hashes[lab])
    if opts.strata == "illumination":
        strata = selector.strata_by_threshold(meta.luminance, [opts.night_luminance])
        kw["strata"] = strata[p]
        if opts.quotas != "none":
            kw["quotas"] = opts.quotas
        if opts.normalize != "none":
            kw["normalize"] = opts.normalize
    if name != "random_dedup":
        if feats is not None:
            kw.update(features=feats[: len(pool)], labelled_features=feats[len(pool):] if labelled else None)
            kw.update(candidate_factor=opts.candidate_factor if opts.diversity == "kcenter" else 1.0,
                      cycle=selection, coverage_cycles=opts.coverage_cycles)
        if math.isfinite(opts.sampling_beta):
            kw.update(beta=opts.sampling_beta, sampling="softmax" if opts.normalize != "none" else "power")
    picked = selector.select_batch(scores, count, seed=int(rng.integers(2**31)), **kw)
    chosen = [int(p[i]) for i in picked]
    if len(chosen) < count:  # the constraints left too few: fill with the best remaining by score
        log.info("selection: constraints left %d of %d; filling with the best remaining", len(chosen), count)
        taken = set(chosen)
        rest = [i for i in selector.ranked(scores) if int(p[i]) not in taken]
        chosen += [int(p[i]) for i in rest[: count - len(chosen)]]
    return chosen


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


def finish_options(options: BatchOptions, class_weights: str, class_names, chosen) -> BatchOptions:
    """``options`` checked against the run's strategies ``chosen`` and with ``--class-weights`` parsed
    against the model's classes (``msmine al`` and the mining experiment): one-line UserErrors for
    random_dedup without a near-duplicate rule, or class weights no strategy's variant uses."""
    import dataclasses

    if "random_dedup" in chosen and not options.dedupes:
        raise UserError("--strategies random_dedup: expected --dedupe-window > 0 or --dedupe-hash >= 0 (its "
                        "near-duplicate removal)")
    weights = strategies.parse_class_weights(class_weights, class_names)
    if weights == "none":
        return options
    if not any(strategies.parse_spec(c).variant in strategies.WEIGHTED_VARIANTS for c in chosen):
        raise UserError(f"--class-weights: applies to the {', '.join(strategies.WEIGHTED_VARIANTS)} variants; "
                        f"none of the strategies ({', '.join(chosen)}) uses one")
    return dataclasses.replace(options, class_weights=weights)


def with_option_defaults(key: dict) -> dict:
    """A stored run key with the batch options it predates filled in at their defaults (a run made
    before an option existed ran without it), so that it compares equal to today's key."""
    defaults = json.loads(json.dumps(asdict(BatchOptions()), default=str))
    if isinstance(key.get("options"), dict):
        key = {**key, "options": {**defaults, **key["options"]}}
    return key


class ALRunner:
    def __init__(self, train_set, test_set, cfg, device, out_dir: Path, progress: bool = True, tag: str = "",
                 options: BatchOptions | None = None):
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
        self.options = options or BatchOptions()
        self._meta: PoolMeta | None = None
        self.state_dir = self.out / "state"

    @property
    def meta(self) -> PoolMeta:
        if self._meta is None:
            self._meta = pool_meta(self.pool_view)
        return self._meta

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
        model = build_model(self.tcfg.model).to(self.device)
        if self.tcfg.data.feature_cache_mb > 0:
            from msmine.train.models.prefix_cache import enable_prefix_cache

            enable_prefix_cache(model, self.tcfg.data.feature_cache_mb)
        return model

    # -- resume state ---------------------------------------------------------------------------
    def run_key(self, strategies_: list[str], sizes: list[int]) -> dict:
        """What must match for a run in ``OUT`` to be continued (settings, not the strategy list)."""
        from msmine.config import config_to_dict

        return {"sizes": list(sizes), "tag": self.tag, "options": asdict(self.options),
                "config": config_to_dict(self.cfg), "pool": len(self.train_pairs), "test": len(self.test_pairs)}

    def check_resume(self, strategies_: list[str], sizes: list[int]) -> bool:
        """Write or compare ``OUT/state/run.json``; True when an earlier run is continued."""
        from msmine.errors import UserError

        key = json.loads(json.dumps(self.run_key(strategies_, sizes), default=str))
        path = self.state_dir / "run.json"
        if path.is_file():
            old = with_option_defaults(json.loads(path.read_text()))
            if old != key:
                diff = sorted(k for k in key if old.get(k) != key.get(k))
                raise UserError(f"{self.out} holds an earlier msmine al run with other settings ({', '.join(diff)}); "
                                "use another --out, or the same settings to continue it")
            self._reload_rows()
            return True
        self.state_dir.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, json.dumps(key, indent=1).encode())
        return False

    def _reload_rows(self) -> None:
        """Keep the curves rows of the cells the state files record as finished."""
        path = self.out / "curves.csv"
        rows = read_curves(path) if path.is_file() else []
        done: dict[tuple[str, int], int] = {}
        for f in self.state_dir.glob("seed*.pt"):
            state = _load_state(f)
            for name, st in state["strategies"].items():
                done[(name + self.tag, int(state["seed"]))] = int(st["cycle"])
        kept = [r for r in rows if r["strategy"] == "supervised"
                or r["cycle"] <= done.get((r["strategy"], r["seed"]), -1)]
        seen, unique = set(), []
        for r in kept:
            key = (r["strategy"], r["seed"], r["cycle"])
            if key not in seen:
                seen.add(key)
                unique.append(r)
        self.writer.rows = unique
        write_curves(path, unique)
        log.info("resuming %s: %d finished rows kept", self.out, len(unique))

    def _save_state(self, seed: int, state: dict) -> None:
        import torch

        state["torch_rng"] = torch.get_rng_state()
        buf = __import__("io").BytesIO()
        torch.save(state, buf)
        _atomic_write(self.state_dir / f"seed{seed}.pt", buf.getvalue())

    # -- loops ----------------------------------------------------------------------------------
    def run_seed(self, seed: int, strategies: list[str], sizes: list[int]) -> None:
        import torch

        n = len(self.train_pairs)
        path = self.state_dir / f"seed{seed}.pt"
        state = _load_state(path) if path.is_file() else None
        if state is not None:
            initial, loss0 = list(state["initial"]), state["loss0"]
            metrics0, seconds0 = state["metrics0"], state["seconds0"]
            model0 = self._new_model(seed)
            model0.load_state_dict(state["model0"])
            torch.set_rng_state(state["torch_rng"])
        else:
            rng = np.random.default_rng(seed)
            initial = sorted(int(i) for i in rng.choice(n, size=sizes[0], replace=False))
            started = time.perf_counter()
            model0 = self._new_model(seed)
            loss0 = self._fit(model0, initial, seed * 1000, self.cfg.cycle_epochs)
            metrics0 = self._evaluate(model0)
            seconds0 = round(time.perf_counter() - started, 2)
            state = {"seed": seed, "initial": initial, "loss0": loss0, "metrics0": metrics0, "seconds0": seconds0,
                     "model0": copy.deepcopy(model0.state_dict()), "strategies": {}}
            self._save_state(seed, state)
        log.info("seed %d cycle 0 (%d labelled): %s", seed, len(initial), self._brief(metrics0))
        last = len(sizes) - 1
        for strategy in strategies:
            done = state["strategies"].get(strategy)
            if done is not None and done["cycle"] >= last:
                log.info("seed %d %s: finished in an earlier run", seed, strategy)
                continue
            base = strategies_mod.parse_spec(strategy, flag="strategy").strategy.name
            select_rng = np.random.default_rng([seed, 1 + STRATEGIES.index(base) if base in STRATEGIES else 99])
            if done is None:
                model = copy.deepcopy(model0) if self.cfg.fine_tune else None
                labelled = list(initial)
                start = 1
                self.writer.add({"strategy": strategy + self.tag, "seed": seed, "cycle": 0,
                                 "labelled": len(labelled), **metrics0, "train_loss": loss0, "seconds": seconds0})
            else:
                labelled = list(done["labelled"])
                start = int(done["cycle"]) + 1
                select_rng.bit_generator.state = done["rng"]
                model = self._new_model(seed + done["cycle"])
                model.load_state_dict(done["model"])
                torch.set_rng_state(state["torch_rng"])
                log.info("seed %d %s: continuing at cycle %d (%d labelled)", seed, strategy, start, len(labelled))
            for cycle, size in enumerate(sizes[1:], start=1):
                if cycle < start:
                    continue
                t0 = time.perf_counter()
                chosen = set(labelled)
                pool = [i for i in range(n) if i not in chosen]
                scorer = model if model is not None else model0
                picked = select_next(strategy, scorer, self.pool_view, pool, size - len(labelled), select_rng,
                                     self.device, self.tcfg.model.score_kind, max(16, self.tcfg.batch_size),
                                     self.amp, self.tcfg.data.workers, options=self.options, selection=cycle - 1,
                                     labelled=labelled, meta=None if self.options.plain else self.meta)
                labelled += picked
                if not self.cfg.fine_tune:
                    model = self._new_model(seed + cycle)
                loss = self._fit(model, labelled, seed * 1000 + cycle, self.cfg.cycle_epochs)
                metrics = self._evaluate(model)
                self.writer.add({"strategy": strategy + self.tag, "seed": seed, "cycle": cycle, "labelled": len(labelled),
                                 **metrics, "train_loss": loss, "seconds": round(time.perf_counter() - t0, 2)})
                log.info("seed %d %s cycle %d (%d labelled): %s", seed, strategy, cycle, len(labelled),
                         self._brief(metrics))
                state["strategies"][strategy] = {"cycle": cycle, "labelled": list(labelled),
                                                 "rng": select_rng.bit_generator.state,
                                                 "model": copy.deepcopy(model.state_dict()) if cycle < last else None}
                self._save_state(seed, state)
            (self.out / f"labelled_{strategy}_seed{seed}.json").write_text(
                json.dumps([self.train_pairs.dataset.ids[i] for i in labelled]))

    def run_supervised(self, seed: int = 0) -> dict:
        done = [r for r in self.writer.rows if r["strategy"] == "supervised" and r["seed"] == seed]
        if done:
            log.info("fully supervised: finished in an earlier run")
            return done[0]
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


def _file_name(strategy: str) -> str:
    """``inconsistency.topk`` -> ``inconsistency-topk`` (file names; ``inconsistency`` stays as it is)."""
    return strategy.replace(":", "-")


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _load_state(path: Path) -> dict:
    import torch

    from msmine.errors import UserError

    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a truncated or foreign file
        raise UserError(f"cannot read the resume state {path}: {type(exc).__name__}: {str(exc)[:200]} "
                        "(delete it to redo that seed)") from None


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
