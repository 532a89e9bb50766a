"""Batch selection for a pool: beyond top-b by score.

Plain top-b on a video pool picks runs of neighbouring frames, and early in the loop a weak
model's scores mean little. The pieces here, each usable alone, and :func:`select_batch`, which
composes them:

* :func:`power_sample` - stochastic batch acquisition (Kirsch et al., TMLR 2023): sample without
  replacement with probability proportional to ``score ** beta`` (``mode="power"``),
  ``exp(beta * score)`` (``"softmax"``, any real score, e.g. z-scores) or ``rank ** -beta``
  (``"softrank"``), via the Gumbel-top-k trick (equivalent to sequential sampling). ``beta = inf``
  is top-k; ``beta = 0`` is uniform.
* Near-duplicate removal, greedy in rank order: :func:`dedupe_frames` (no two kept items of one
  sequence within ``window`` frame numbers) and :func:`dedupe_hashes` (no two kept items whose 64-bit
  appearance hashes are within ``max_distance`` bits).
* :func:`k_center_greedy` - diversity (Sener & Savarese; PPAL's step after its uncertainty step):
  each pick is the point farthest from those picked (and from already-labelled features).
* :func:`probcover` - coverage for the cold start (Yehuda et al., ProbCover; Hacohen et al.,
  TypiClust): each pick covers the most not-yet-covered points within ``radius``.
* Stratum quotas: :func:`proportional_quotas` / :func:`equal_quotas`, enforced as caps.

Features are the model's pooled fused features (one vector per item), compared by cosine
distance ``1 - cos`` (``metric="cosine"``, rows normalised; a zero row is at distance 1 from
everything) or Euclidean distance (``"l2"``). Everything is deterministic: ties go to the
earlier item, and the only randomness (power sampling) comes from ``seed``.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from msmine.selector.strata import _as_strata, stratum_normalize

Metric = Literal["cosine", "l2"]
SamplingMode = Literal["power", "softmax", "softrank"]


# -- checks -----------------------------------------------------------------------------------


def _as_1d_scores(scores, name: str = "scores") -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"{name}: expected finite numbers, got NaN or inf")
    return s


def _check_count(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name}: expected an integer >= 0, got {value!r}")
    return int(value)


def _check_metric(metric: str) -> None:
    if metric not in ("cosine", "l2"):
        raise ValueError(f"metric: expected 'cosine' or 'l2', got {metric!r}")


def _as_features(features, n: int | None, name: str = "features", metric: str = "cosine") -> np.ndarray:
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D [n, d] array, got shape {x.shape}")
    if n is not None and x.shape[0] != n:
        raise ValueError(f"{name}: expected {n} rows (one per item), got {x.shape[0]}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name}: expected finite numbers, got NaN or inf")
    if metric == "cosine":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    return x


def _as_hashes(hashes, n: int) -> np.ndarray:
    """64-bit hashes as uint64: an integer array (int64 read as its two's complement bits) or a
    sequence of Python ints in [-2**63, 2**64)."""
    if isinstance(hashes, np.ndarray) and hashes.dtype != object:
        arr = hashes
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"hashes: expected 64-bit unsigned integers, got dtype {arr.dtype}")
        if arr.dtype.itemsize != 8:
            arr = arr.astype(np.int64)
    else:
        values = list(np.asarray(hashes, dtype=object).reshape(-1)) if np.ndim(hashes) else [hashes]
        bits = []
        for h in values:
            if isinstance(h, (bool, np.bool_)) or not isinstance(h, (int, np.integer)) or not -2**63 <= int(h) < 2**64:
                raise ValueError(f"hashes: expected 64-bit unsigned integers, got {h!r}")
            bits.append(int(h) & (2**64 - 1))
        arr = np.array(bits, dtype=np.uint64).reshape(np.shape(hashes))
    if arr.shape != (n,):
        raise ValueError(f"hashes: expected {n} hashes (one per item), got shape {arr.shape}")
    return arr.view(np.uint64)


def _as_order(order, n: int) -> np.ndarray:
    o = np.asarray(order)
    if o.ndim != 1 or (o.size and not np.issubdtype(o.dtype, np.integer)):
        raise ValueError(f"order: expected a 1-D array of item indices, got shape {o.shape} dtype {o.dtype}")
    if o.size and (o.min() < 0 or o.max() >= n):
        raise ValueError(f"order: expected indices in [0, {n}), got [{o.min()}, {o.max()}]")
    if np.unique(o).size != o.size:
        raise ValueError("order: expected each index at most once")
    return o.astype(np.int64)


def _distances(x: np.ndarray, centre: np.ndarray, metric: str) -> np.ndarray:
    if metric == "cosine":
        return np.clip(1.0 - x @ centre, 0.0, 2.0)
    return np.sqrt(np.maximum(((x - centre) ** 2).sum(axis=1), 0.0))


def _pairwise(x: np.ndarray, y: np.ndarray, metric: str) -> np.ndarray:
    if metric == "cosine":
        return np.clip(1.0 - x @ y.T, 0.0, 2.0)
    sq = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * x @ y.T
    return np.sqrt(np.maximum(sq, 0.0))


# -- constraints ------------------------------------------------------------------------------


@dataclass
class _Constraints:
    """Which items may still be picked, given those picked: dedupe windows and stratum caps."""

    available: np.ndarray
    sequences: np.ndarray | None = None
    frames: np.ndarray | None = None
    window: float = 0.0
    hashes: np.ndarray | None = None
    max_distance: int = -1
    codes: np.ndarray | None = None
    caps: np.ndarray | None = None  # per stratum code

    def __post_init__(self) -> None:
        self.taken = np.zeros(0 if self.caps is None else self.caps.size, dtype=np.int64)
        if self.caps is not None and self.codes is not None:
            self.available &= self.caps[self.codes] > 0

    def accept(self, i: int) -> None:
        self.available[i] = False
        if self.frames is not None:
            near = np.abs(self.frames - self.frames[i]) <= self.window
            if self.sequences is not None:
                near &= self.sequences == self.sequences[i]
            self.available &= ~near
        if self.hashes is not None and self.max_distance >= 0:
            self.available &= np.bitwise_count(self.hashes ^ self.hashes[i]) > self.max_distance
        if self.caps is not None and self.codes is not None:
            code = self.codes[i]
            self.taken[code] += 1
            if self.taken[code] >= self.caps[code]:
                self.available &= self.codes != code


def _walk(order: np.ndarray, limit: int, cons: _Constraints) -> list[int]:
    picked: list[int] = []
    for i in order:
        if len(picked) >= limit:
            break
        if cons.available[i]:
            picked.append(int(i))
            cons.accept(int(i))
    return picked


def _frame_arrays(sequences, frames, n: int) -> tuple[np.ndarray | None, np.ndarray]:
    f = np.asarray(frames)
    if f.shape != (n,) or not (np.issubdtype(f.dtype, np.integer) or np.issubdtype(f.dtype, np.floating)):
        raise ValueError(f"frames: expected {n} frame numbers (one per item), got shape {f.shape} dtype {f.dtype}")
    f = f.astype(np.float64)
    if not np.all(np.isfinite(f)):
        raise ValueError("frames: expected finite frame numbers, got NaN or inf")
    seq = None
    if sequences is not None:
        seq = _as_strata(sequences, n)  # sequence keys -> integer codes
    return seq, f


# -- public pieces ----------------------------------------------------------------------------


def ranked(scores) -> np.ndarray:
    """Indices by score descending, ties by position (earlier first): :func:`select_top`'s order."""
    s = _as_1d_scores(scores)
    return np.lexsort((np.arange(s.size), -s))


def power_sample(scores, k: int, beta: float, *, seed: int | np.random.Generator = 0,
                 mode: SamplingMode = "power") -> np.ndarray:
    """``k`` indices sampled without replacement, in draw order (module doc).

    ``mode="power"`` needs scores >= 0; items scoring 0 come after every positive one (in uniform
    random order), since their weight is 0 for ``beta > 0``. ``beta = inf`` returns the top-k
    (:func:`ranked`); ``beta = 0`` a uniform sample.
    """
    s = _as_1d_scores(scores)
    k = min(_check_count(k, "k"), s.size)
    if mode not in ("power", "softmax", "softrank"):
        raise ValueError(f"mode: expected 'power', 'softmax' or 'softrank', got {mode!r}")
    if math.isnan(beta) or beta < 0:
        raise ValueError(f"beta: expected a number >= 0 (or inf), got {beta!r}")
    if mode == "power" and s.size and s.min() < 0:
        raise ValueError(f"scores: mode='power' expects scores >= 0, got a minimum of {s.min():g} "
                         "(use mode='softmax' or 'softrank' for signed scores, e.g. z-scores)")
    if math.isinf(beta):
        return ranked(s)[:k]
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    gumbel = rng.gumbel(size=s.size)
    tier = np.zeros(s.size)  # 1 = weight 0 (power mode, score 0, beta > 0): drawn last
    if mode == "power":
        if beta > 0:
            positive = s > 0
            log_w = np.where(positive, beta * np.log(np.where(positive, s, 1.0)), 0.0)
            tier = (~positive).astype(np.float64)
        else:
            log_w = np.zeros(s.size)
    elif mode == "softmax":
        log_w = beta * (s - (s.max() if s.size else 0.0))
    else:
        rank = np.empty(s.size)
        rank[ranked(s)] = np.arange(1, s.size + 1)
        log_w = -beta * np.log(rank)
    keys = log_w + gumbel
    return np.lexsort((np.arange(s.size), -keys, tier))[:k]


def dedupe_frames(order, frames, *, sequences=None, window: float = 2) -> np.ndarray:
    """Walk ``order`` (best first) and keep an item unless a kept item of the same sequence lies
    within ``window`` frame numbers of it (``|f_i - f_j| <= window``). ``sequences`` ``None``: one
    sequence. Returns the kept indices in ``order``'s order."""
    frames_arr = np.asarray(frames)
    n = frames_arr.shape[0] if frames_arr.ndim == 1 else -1
    if n < 0:
        raise ValueError(f"frames: expected a 1-D array of frame numbers, got shape {frames_arr.shape}")
    o = _as_order(order, n)
    if not (np.isfinite(window) and window >= 0):
        raise ValueError(f"window: expected a finite number >= 0, got {window!r}")
    seq, f = _frame_arrays(sequences, frames_arr, n)
    cons = _Constraints(np.ones(n, dtype=bool), sequences=seq, frames=f, window=float(window))
    return np.asarray(_walk(o, n, cons), dtype=np.int64)


def dedupe_hashes(order, hashes, *, max_distance: int = 8) -> np.ndarray:
    """Walk ``order`` and keep an item unless a kept item's 64-bit hash is within ``max_distance``
    bits of its own (Hamming distance <= ``max_distance``; 0 removes only identical hashes).
    Returns the kept indices in ``order``'s order."""
    if np.ndim(hashes) != 1:
        raise ValueError(f"hashes: expected a 1-D array of 64-bit hashes, got shape {np.shape(hashes)}")
    h = _as_hashes(hashes, len(hashes))
    o = _as_order(order, h.size)
    md = _check_count(max_distance, "max_distance")
    cons = _Constraints(np.ones(h.size, dtype=bool), hashes=h, max_distance=md)
    return np.asarray(_walk(o, h.size, cons), dtype=np.int64)


def _kcenter(x: np.ndarray, k: int, metric: str, cons: _Constraints, first: int | None,
             centres: np.ndarray | None) -> list[int]:
    n = x.shape[0]
    nearest = np.full(n, np.inf)
    if centres is not None and centres.shape[0]:
        for c in centres:
            np.minimum(nearest, _distances(x, c, metric), out=nearest)
    picked: list[int] = []
    while len(picked) < k and cons.available.any():
        if not picked and first is not None and (centres is None or not centres.shape[0]) and cons.available[first]:
            i = first
        else:
            gap = np.where(cons.available, nearest, -np.inf)
            i = int(np.argmax(gap))  # first maximum: the earlier item wins ties
        picked.append(i)
        cons.accept(i)
        np.minimum(nearest, _distances(x, x[i], metric), out=nearest)
    return picked


def k_center_greedy(features, k: int, *, metric: Metric = "cosine", first: int = 0,
                    labelled_features=None) -> np.ndarray:
    """``k`` indices by greedy k-center: each pick maximises its distance to the nearest pick.

    The first pick is ``first`` (e.g. the best-scoring item) unless ``labelled_features`` is given:
    then every pick, the first included, is the item farthest from the labelled set and the picks.
    Ties go to the earlier item. Returns the indices in pick order.
    """
    _check_metric(metric)
    x = _as_features(features, None, metric=metric)
    n = x.shape[0]
    k = min(_check_count(k, "k"), n)
    if isinstance(first, bool) or not isinstance(first, (int, np.integer)) or not 0 <= first < max(n, 1):
        raise ValueError(f"first: expected an index in [0, {n}), got {first!r}")
    centres = None if labelled_features is None else _as_features(labelled_features, None, "labelled_features", metric)
    if centres is not None and centres.shape[1] != x.shape[1]:
        raise ValueError(f"labelled_features: expected {x.shape[1]} columns like features, got {centres.shape[1]}")
    cons = _Constraints(np.ones(n, dtype=bool))
    return np.asarray(_kcenter(x, k, metric, cons, int(first), centres), dtype=np.int64)


def default_radius(features, *, metric: Metric = "cosine", neighbours: int = 5) -> float:
    """A heuristic ProbCover radius: the median distance from a point to its ``neighbours``-th
    nearest other point (so a typical ball holds about that many points)."""
    _check_metric(metric)
    x = _as_features(features, None, metric=metric)
    if x.shape[0] < 2:
        return 0.0
    d = _pairwise(x, x, metric)
    np.fill_diagonal(d, np.inf)
    kth = min(max(int(neighbours), 1), x.shape[0] - 1) - 1
    return float(np.median(np.partition(d, kth, axis=1)[:, kth]))


def _probcover(x: np.ndarray, k: int, metric: str, radius: float, cons: _Constraints,
               centres: np.ndarray | None) -> list[int]:
    n = x.shape[0]
    ball = _pairwise(x, x, metric) <= radius  # ball[i, j]: i covers j (and j covers i)
    covered = np.zeros(n, dtype=bool)
    nearest = np.full(n, np.inf)
    if centres is not None and centres.shape[0]:
        dc = _pairwise(centres, x, metric)
        covered |= (dc <= radius).any(axis=0)
        nearest = dc.min(axis=0)
    gain = ball[:, ~covered].sum(axis=1).astype(np.int64)  # uncovered points each item would cover
    picked: list[int] = []
    while len(picked) < k and cons.available.any():
        masked = np.where(cons.available, gain, -1)
        if masked.max() > 0:
            i = int(np.argmax(masked))
        else:  # everything reachable is covered: fall back to the farthest point (k-center)
            i = int(np.argmax(np.where(cons.available, nearest, -np.inf)))
        picked.append(i)
        cons.accept(i)
        newly = np.flatnonzero(ball[i] & ~covered)
        if newly.size:
            gain -= ball[:, newly].sum(axis=1)
            covered[newly] = True
        np.minimum(nearest, _distances(x, x[i], metric), out=nearest)
    return picked


def probcover(features, k: int, *, radius: float | None = None, metric: Metric = "cosine",
              labelled_features=None) -> np.ndarray:
    """``k`` indices by greedy max coverage: each pick covers the most points (within ``radius``)
    that no pick or labelled item covers yet; once all is covered, the farthest point. ``radius``
    ``None``: :func:`default_radius`. Memory O(n^2): meant for pools up to ~10k items."""
    _check_metric(metric)
    x = _as_features(features, None, metric=metric)
    k = min(_check_count(k, "k"), x.shape[0])
    r = default_radius(x, metric=metric) if radius is None else radius
    if not (np.isfinite(r) and r >= 0):
        raise ValueError(f"radius: expected a finite number >= 0, got {radius!r}")
    centres = None if labelled_features is None else _as_features(labelled_features, None, "labelled_features", metric)
    if centres is not None and centres.shape[1] != x.shape[1]:
        raise ValueError(f"labelled_features: expected {x.shape[1]} columns like features, got {centres.shape[1]}")
    cons = _Constraints(np.ones(x.shape[0], dtype=bool))
    return np.asarray(_probcover(x, k, metric, float(r), cons, centres), dtype=np.int64)


def proportional_quotas(strata, budget: int) -> dict[Hashable, int]:
    """Budget per stratum in proportion to the pool's strata (largest remainder; ties: the
    stratum first in sorted label order). The quotas sum to ``budget``."""
    b = _check_count(budget, "budget")
    labels = np.asarray(strata)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"strata: expected a non-empty 1-D array of labels, got shape {labels.shape}")
    keys, counts = np.unique(labels, return_counts=True)
    exact = counts * b / counts.sum()
    quota = np.floor(exact).astype(np.int64)
    rest = b - int(quota.sum())
    order = np.lexsort((np.arange(keys.size), -(exact - quota)))
    quota[order[:rest]] += 1
    return {k.item() if hasattr(k, "item") else k: int(q) for k, q in zip(keys, quota)}


def equal_quotas(strata, budget: int) -> dict[Hashable, int]:
    """The budget split equally over the pool's strata (the remainder to the first in sorted order)."""
    b = _check_count(budget, "budget")
    labels = np.asarray(strata)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"strata: expected a non-empty 1-D array of labels, got shape {labels.shape}")
    keys = np.unique(labels)
    base, rest = divmod(b, keys.size)
    return {k.item() if hasattr(k, "item") else k: base + (1 if i < rest else 0) for i, k in enumerate(keys)}


# -- the composition --------------------------------------------------------------------------


def _resolve_caps(strata, quotas, n: int, budget: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    if quotas is None:
        return None, None
    if strata is None:
        raise ValueError("quotas: expected strata= (one label per item) with quotas, got strata=None")
    labels = np.asarray(strata)
    if labels.shape != (n,):
        raise ValueError(f"strata: expected {n} labels (one per score), got shape {labels.shape}")
    if isinstance(quotas, str):
        if quotas == "proportional":
            quotas = proportional_quotas(labels, budget)
        elif quotas == "equal":
            quotas = equal_quotas(labels, budget)
        else:
            raise ValueError(f"quotas: expected 'proportional', 'equal' or a mapping stratum -> count, got {quotas!r}")
    if not isinstance(quotas, Mapping):
        raise ValueError(f"quotas: expected 'proportional', 'equal' or a mapping stratum -> count, got {quotas!r}")
    keys = np.unique(labels)
    codes = np.searchsorted(keys, labels)
    caps = np.zeros(keys.size, dtype=np.int64)  # strata missing from the mapping get 0
    lookup = {k.item() if hasattr(k, "item") else k: c for c, k in enumerate(keys)}
    for key, count in quotas.items():
        q = _check_count(count, f"quotas[{key!r}]")
        if key in lookup:
            caps[lookup[key]] = q
    return codes, caps


def _near_labelled(n: int, sequences, frames: np.ndarray | None, window: float, labelled_frames,
                   labelled_sequences, hashes: np.ndarray | None, max_distance: int, labelled_hashes) -> np.ndarray:
    """Pool items within the frame window or hash distance of an already-labelled item."""
    blocked = np.zeros(n, dtype=bool)
    if labelled_frames is not None:
        if frames is None:
            raise ValueError("labelled_frames: expected frames= for the pool too, got frames=None")
        if (labelled_sequences is None) != (sequences is None):
            raise ValueError("labelled_sequences: expected sequence keys for both the pool and the labelled items "
                             "(or for neither)")
        lf_raw = np.asarray(labelled_frames)
        if lf_raw.ndim != 1:
            raise ValueError(f"labelled_frames: expected a 1-D array of frame numbers, got shape {lf_raw.shape}")
        lseq, lf = _frame_arrays(None, lf_raw, lf_raw.size)
        if sequences is not None:
            keys = np.concatenate([np.asarray(sequences).astype(str), np.asarray(labelled_sequences).astype(str)])
            if np.asarray(labelled_sequences).shape != (lf.size,):
                raise ValueError(f"labelled_sequences: expected {lf.size} keys (one per labelled frame), "
                                 f"got shape {np.asarray(labelled_sequences).shape}")
            joint = _as_strata(keys, keys.size)
            pseq, lseq = joint[:n], joint[n:]
        else:
            pseq, lseq = np.zeros(n, dtype=np.int64), np.zeros(lf.size, dtype=np.int64)
        for code in np.unique(lseq):
            marks = np.sort(lf[lseq == code])
            members = np.flatnonzero(pseq == code)
            pos = np.searchsorted(marks, frames[members])
            before = np.abs(frames[members] - marks[np.maximum(pos - 1, 0)])
            after = np.abs(marks[np.minimum(pos, marks.size - 1)] - frames[members])
            blocked[members] |= np.minimum(before, after) <= window
    if labelled_hashes is not None:
        if hashes is None:
            raise ValueError("labelled_hashes: expected hashes= for the pool too, got hashes=None")
        if np.ndim(labelled_hashes) != 1:
            raise ValueError(f"labelled_hashes: expected a 1-D array of 64-bit hashes, got shape {np.shape(labelled_hashes)}")
        lh = _as_hashes(labelled_hashes, len(labelled_hashes))
        for start in range(0, lh.size, 256):
            chunk = lh[start:start + 256]
            blocked |= (np.bitwise_count(hashes[:, None] ^ chunk[None, :]) <= max_distance).any(axis=1)
    return blocked


def select_batch(
    scores,
    budget: int,
    *,
    features=None,
    labelled_features=None,
    metric: Metric = "cosine",
    candidate_factor: float = 1.0,
    hashes=None,
    hash_distance: int = 8,
    frames=None,
    sequences=None,
    frame_window: float = 2,
    labelled_frames=None,
    labelled_sequences=None,
    labelled_hashes=None,
    strata=None,
    quotas: str | Mapping | None = None,
    normalize: Literal["z", "rank"] | None = None,
    beta: float | None = None,
    sampling: SamplingMode = "power",
    cycle: int | None = None,
    coverage_cycles: int = 0,
    coverage_radius: float | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Pick up to ``budget`` pool items; returns their indices in pick order, deterministic given ``seed``.

    The steps, each switched on by its arguments:

    1. ``normalize`` (``"z"`` or ``"rank"``, needs ``strata``): scores normalised within strata
       (:func:`stratum_normalize`).
    2. Rank: by score (ties: earlier item), or, with ``beta``, a power-sampled order of the whole
       pool (:func:`power_sample` with ``sampling`` as its mode and ``seed``).
    3. Constraints held by every later pick: near-duplicates (``frames`` [+ ``sequences``] within
       ``frame_window``; ``hashes`` within ``hash_distance`` bits) and stratum caps (``quotas``:
       ``"proportional"``, ``"equal"`` or a mapping stratum -> count; a stratum missing from a
       mapping gets 0). Fewer than ``budget`` items come back when the constraints leave too few.
       ``labelled_frames`` (+ ``labelled_sequences``) and ``labelled_hashes`` describe the
       already-labelled items: pool items within the window / distance of one are never picked.
    4. Without ``features`` or with ``candidate_factor == 1``: the first ``budget`` items of the
       order that satisfy the constraints. Otherwise a candidate pool of the first
       ``ceil(candidate_factor * budget)`` constraint-satisfying items (per stratum, up to
       ``ceil(candidate_factor * quota)``), then k-center greedy on their ``features`` (first pick:
       the best-ranked candidate, or the farthest from ``labelled_features`` when given).
    5. Cold start: when ``cycle is not None and cycle < coverage_cycles``, scores are ignored and
       the batch is :func:`probcover` on ``features`` over the whole pool (``coverage_radius``,
       ``labelled_features``), under the same constraints. From cycle ``coverage_cycles`` on, the
       uncertainty steps above.
    """
    s = _as_1d_scores(scores)
    n = s.size
    b = min(_check_count(budget, "budget"), n)
    _check_metric(metric)
    if not (np.isfinite(candidate_factor) and candidate_factor >= 1):
        raise ValueError(f"candidate_factor: expected a finite number >= 1, got {candidate_factor!r}")
    coverage_cycles = _check_count(coverage_cycles, "coverage_cycles")
    if cycle is not None:
        cycle = _check_count(cycle, "cycle")
    x = None if features is None else _as_features(features, n, metric=metric)
    centres = None
    if labelled_features is not None:
        centres = _as_features(labelled_features, None, "labelled_features", metric)
        if x is not None and centres.shape[0] and centres.shape[1] != x.shape[1]:
            raise ValueError(f"labelled_features: expected {x.shape[1]} columns like features, got {centres.shape[1]}")
    seq = f = h = None
    if frames is not None:
        if not (np.isfinite(frame_window) and frame_window >= 0):
            raise ValueError(f"frame_window: expected a finite number >= 0, got {frame_window!r}")
        seq, f = _frame_arrays(sequences, frames, n)
    elif sequences is not None:
        raise ValueError("sequences: expected frames= with sequences=, got frames=None")
    if hashes is not None:
        h = _as_hashes(hashes, n)
        hash_distance = _check_count(hash_distance, "hash_distance")
    blocked = _near_labelled(n, sequences, f, float(frame_window), labelled_frames, labelled_sequences,
                             h, hash_distance, labelled_hashes)
    codes, caps = _resolve_caps(strata, quotas, n, b)
    if normalize is not None:
        if normalize not in ("z", "rank"):
            raise ValueError(f"normalize: expected 'z', 'rank' or None, got {normalize!r}")
        if strata is None:
            raise ValueError("normalize: expected strata= (one label per item), got strata=None")
        s = stratum_normalize(s, strata, method=normalize)

    def constraints(stratum_caps: np.ndarray | None) -> _Constraints:
        return _Constraints(~blocked, sequences=seq, frames=f, window=float(frame_window),
                            hashes=h, max_distance=hash_distance if h is not None else -1,
                            codes=codes, caps=stratum_caps)

    if b == 0:
        return np.zeros(0, dtype=np.int64)
    if cycle is not None and cycle < coverage_cycles:
        if x is None:
            raise ValueError(f"features: expected [n, d] features for the coverage cycles (cycle {cycle} < "
                             f"coverage_cycles {coverage_cycles}), got None")
        radius = default_radius(x, metric=metric) if coverage_radius is None else coverage_radius
        if not (np.isfinite(radius) and radius >= 0):
            raise ValueError(f"coverage_radius: expected a finite number >= 0, got {coverage_radius!r}")
        return np.asarray(_probcover(x, b, metric, float(radius), constraints(caps), centres), dtype=np.int64)

    order = ranked(s) if beta is None else power_sample(s, n, beta, seed=seed, mode=sampling)
    if x is None or candidate_factor == 1:
        return np.asarray(_walk(order, b, constraints(caps)), dtype=np.int64)
    m = min(n, math.ceil(candidate_factor * b))
    candidate_caps = None if caps is None else np.ceil(candidate_factor * caps).astype(np.int64)
    pool = np.asarray(_walk(order, m, constraints(candidate_caps)), dtype=np.int64)
    if pool.size == 0:
        return pool
    # The candidates are mutually non-duplicate (the walk saw to it); the caps still apply.
    sub = _Constraints(np.ones(pool.size, dtype=bool), codes=None if codes is None else codes[pool], caps=caps)
    picks = _kcenter(x[pool], b, metric, sub, 0, centres)
    return pool[np.asarray(picks, dtype=np.int64)]
