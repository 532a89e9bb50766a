"""Per-stratum normalisation: compare a score only with scores of the same stratum (day / night).

At night the visible branch is unsure everywhere, so raw inconsistency ranks night above day
whatever the scene holds. Normalising within each stratum (as AL-MDN normalises its score types)
removes that offset and keeps the ranking inside each stratum. The strata must come from what a
device knows - capture time, or the visible image's illumination (:func:`strata_by_threshold`) -
never from dataset file names.

* :func:`stratum_normalize` - for a pool: z-scores ``(s - mean_s) / std_s`` (population std; a
  stratum with zero spread gives 0), or ranks mapped to [0, 1] (``(rank - 1) / (n_s - 1)`` with
  average ranks for ties, 0.5 for a stratum of one).
* :class:`StratumNormalizer` - for a stream: running mean and variance per stratum (Welford), so
  the device normalises each frame against the frames of its stratum seen so far.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Literal

import numpy as np

Method = Literal["z", "rank"]


def _as_scores(scores, name: str = "scores") -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"{name}: expected finite numbers, got NaN or inf")
    return s


def _as_strata(strata, n: int) -> np.ndarray:
    """Stratum labels -> dense integer codes 0..S-1 (sorted label order)."""
    labels = np.asarray(strata)
    if labels.shape != (n,):
        raise ValueError(f"strata: expected {n} labels (one per score), got shape {labels.shape}")
    if labels.dtype == object:
        try:
            _, codes = np.unique(labels.astype(str), return_inverse=True)
        except Exception:  # pragma: no cover - exotic labels
            raise ValueError("strata: expected labels numpy can compare (ints or strings)") from None
        return codes.reshape(-1)
    _, codes = np.unique(labels, return_inverse=True)
    return codes.reshape(-1)


def strata_by_threshold(values, thresholds) -> np.ndarray:
    """Stratum ids from a per-item measurement and increasing thresholds (``np.digitize``).

    E.g. the visible image's mean luminance in [0, 1] with ``thresholds=[0.25]``: 0 = dark (night),
    1 = bright (day). An item exactly at a threshold goes to the upper stratum.
    """
    v = _as_scores(values, "values")
    t = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if t.size == 0 or not np.all(np.isfinite(t)) or np.any(np.diff(t) <= 0):
        raise ValueError(f"thresholds: expected one or more finite, strictly increasing numbers, got {t.tolist()}")
    return np.digitize(v, t).astype(np.int64)


def stratum_normalize(scores, strata, method: Method = "z") -> np.ndarray:
    """Scores normalised within their stratum (module doc); returns float64 of the same length."""
    if method not in ("z", "rank"):
        raise ValueError(f"method: expected 'z' or 'rank', got {method!r}")
    s = _as_scores(scores)
    codes = _as_strata(strata, s.size)
    out = np.zeros(s.size)
    if s.size == 0:
        return out
    for code in range(int(codes.max()) + 1):
        members = np.flatnonzero(codes == code)
        values = s[members]
        if method == "z":
            std = values.std()
            out[members] = (values - values.mean()) / std if std > 0 else 0.0
        elif members.size == 1:
            out[members] = 0.5
        else:
            out[members] = (_average_ranks(values) - 1.0) / (members.size - 1)
    return out


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n (ascending), tied values sharing their average rank."""
    order = np.argsort(values, kind="stable")
    sorted_vals = values[order]
    ranks = np.empty(values.size)
    ranks[order] = np.arange(1, values.size + 1, dtype=np.float64)
    # average within runs of equal values
    _, first, counts = np.unique(sorted_vals, return_index=True, return_counts=True)
    for start, count in zip(first, counts):
        if count > 1:
            block = order[start : start + count]
            ranks[block] = ranks[block].mean()
    return ranks


class StratumNormalizer:
    """Streaming z-scores per stratum with Welford's running mean and variance.

    :meth:`update` adds a score to its stratum's statistics and returns its z-score against them
    (population std, the new score included). Until a stratum has ``warmup`` scores (and while its
    spread is 0) the z-score is 0.0, so the first frames of a stratum are neutral rather than
    extreme. After ``n`` updates the running mean and variance equal ``np.mean`` / ``np.var`` of
    that stratum's scores (up to rounding). Strata are keyed by ``str(label)`` (so ``0`` and
    ``"0"`` are one stratum, and a restored state matches). :meth:`state` / :meth:`from_state`
    carry the statistics across a restart.
    """

    def __init__(self, warmup: int = 2) -> None:
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 1:
            raise ValueError(f"warmup: expected an integer >= 1, got {warmup!r}")
        self.warmup = warmup
        self._stats: dict[str, list[float]] = {}  # str(stratum) -> [n, mean, M2]

    def update(self, stratum: Hashable, score: float) -> float:
        x = float(score)
        if not math.isfinite(x):
            raise ValueError(f"score: expected a finite number, got {score!r}")
        st = self._stats.setdefault(str(stratum), [0.0, 0.0, 0.0])
        st[0] += 1.0
        delta = x - st[1]
        st[1] += delta / st[0]
        st[2] += delta * (x - st[1])
        return self.zscore(stratum, x)

    def zscore(self, stratum: Hashable, score: float) -> float:
        """The z-score of ``score`` against the stratum's statistics so far (no update)."""
        st = self._stats.get(str(stratum))
        if st is None or st[0] < self.warmup:
            return 0.0
        std = math.sqrt(max(st[2], 0.0) / st[0])
        return (float(score) - st[1]) / std if std > 0 else 0.0

    def count(self, stratum: Hashable) -> int:
        st = self._stats.get(str(stratum))
        return 0 if st is None else int(st[0])

    def mean(self, stratum: Hashable) -> float:
        st = self._stats.get(str(stratum))
        return math.nan if st is None else st[1]

    def var(self, stratum: Hashable) -> float:
        st = self._stats.get(str(stratum))
        return math.nan if st is None else max(st[2], 0.0) / st[0]

    def state(self) -> dict:
        """JSON-friendly statistics (stratum labels become strings)."""
        return {"warmup": self.warmup,
                "strata": {k: {"n": v[0], "mean": v[1], "m2": v[2]} for k, v in self._stats.items()}}

    @classmethod
    def from_state(cls, state: dict) -> StratumNormalizer:
        try:
            norm = cls(int(state["warmup"]))
            for key, st in state["strata"].items():
                n, mean, m2 = float(st["n"]), float(st["mean"]), float(st["m2"])
                if not (n >= 1 and math.isfinite(mean) and m2 >= 0):
                    raise ValueError
                norm._stats[str(key)] = [n, mean, m2]
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ValueError("state: expected {'warmup': int, 'strata': {label: {'n', 'mean', 'm2'}}} "
                             "as written by StratumNormalizer.state()") from None
        return norm
