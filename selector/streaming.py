"""Streaming selection for the device: which pairs of a live score stream to keep.

Four mechanisms, each small:

* :class:`TokenBucket` - the upload budget: ``budget`` tokens per ``window_s`` seconds, capacity
  ``budget``, starting full. ``window_s = inf`` never refills (a fixed total budget).
* :class:`OnlineQuantile` - an adaptive threshold: a stochastic-approximation quantile tracker that
  moves the threshold so that a target fraction of frames exceeds it.
* Temporal suppression - above-threshold frames less than ``suppression_gap_s`` apart form one
  event (one scene seen over consecutive frames); only the event's best frame becomes a candidate.
* A bounded candidate buffer - candidates wait ``decision_delay_s`` for a better one; when a token
  is available the best waiting candidate is kept. When the buffer is full the lowest-scoring
  candidate is discarded.

Two options, both off by default (then the behaviour is exactly the above):

* Power sampling within the budget (``sampling="power"`` or ``"softmax"``, ``sampling_beta``,
  ``seed``; Kirsch et al.'s stochastic batch acquisition): each candidate entering the buffer gets
  the key ``beta * log(score) + G`` (``"softmax"``: ``beta * score + G``), ``G`` a seeded Gumbel
  draw, and the buffer ranks by that key wherever it ranked by score (commit, flush, eviction).
  Among the buffered candidates a token thus goes to a draw without replacement with probability
  proportional to ``score ** beta`` (Gumbel-top-k); large ``beta`` approaches the plain best-first
  rule. A score <= 0 has weight 0 under ``"power"``. The threshold, temporal suppression (an
  event's best frame by score) and the token bucket are unchanged.
* Per-stratum normalisation (``normalize_strata``): :meth:`StreamingSelector.push` takes a
  ``stratum`` (e.g. day / night from capture time or the visible image's illumination) and ranks by
  the score's running z-score within it (:class:`selector.StratumNormalizer`, Welford); the
  candidate's ``score`` is the z-score, ``raw_score`` the score pushed. The threshold (adaptive,
  or the fixed ``initial_threshold``) then applies to z-scores; :attr:`StreamingSelector.normalizer`
  holds the running statistics (``state()`` / ``from_state()`` to keep them across restarts).

Every pushed id ends up exactly once in a :class:`Decision`'s ``keep`` or ``discard`` (or is still
pending), so the caller can hold a frame's data until it knows. With an unbounded window, no
suppression, no delay limit (``decision_delay_s = inf``) and a fixed threshold at or below every
score, the kept ids after :meth:`StreamingSelector.flush` are exactly the pool top-k
(:func:`selector.select_top`), ties included (earlier wins).
"""

from __future__ import annotations

import math
import random
from collections.abc import Hashable
from dataclasses import dataclass, field

from msmine.selector.strata import StratumNormalizer


@dataclass
class StreamConfig:
    budget: int = 100  # uploads per window (token-bucket capacity; the bucket starts full)
    window_s: float = 3600.0  # the window; budget/window_s tokens per second; math.inf never refills
    decision_delay_s: float = 2.0  # a candidate waits this long for a better one; math.inf = until flush
    suppression_gap_s: float = 1.0  # above-threshold frames closer than this are one event; 0 = off
    buffer_size: int = 32  # bounded candidate buffer; when full the lowest-scoring candidate goes
    adaptive_threshold: bool = True  # track a threshold admitting target_rate_factor x the budget rate
    target_rate_factor: float = 2.0  # how many candidates per budgeted upload the threshold admits
    initial_threshold: float = 0.0  # starting (or, when not adaptive, fixed) threshold
    threshold_lr: float = 0.05  # step size of the quantile tracker, relative to the score spread
    sampling: str = "top"  # "top": best buffered first; "power" / "softmax": Gumbel-perturbed keys
    sampling_beta: float = 1.0  # the power (or softmax temperature inverse) of the sampling
    seed: int = 0  # seeds the Gumbel draws of power sampling
    normalize_strata: bool = False  # rank by the running z-score within the pushed stratum
    normalize_warmup: int = 2  # a stratum's z-scores are 0 until it has this many scores

    def __post_init__(self) -> None:
        if isinstance(self.budget, bool) or not isinstance(self.budget, int) or self.budget < 0:
            raise ValueError(f"budget: expected an integer >= 0, got {self.budget!r}")
        if not self.window_s > 0:
            raise ValueError(f"window_s: expected > 0 (or inf), got {self.window_s!r}")
        if not self.decision_delay_s >= 0:
            raise ValueError(f"decision_delay_s: expected >= 0 (or inf), got {self.decision_delay_s!r}")
        if not (self.suppression_gap_s >= 0 and math.isfinite(self.suppression_gap_s)):
            raise ValueError(f"suppression_gap_s: expected a finite number >= 0, got {self.suppression_gap_s!r}")
        if isinstance(self.buffer_size, bool) or not isinstance(self.buffer_size, int) or self.buffer_size < 1:
            raise ValueError(f"buffer_size: expected an integer >= 1, got {self.buffer_size!r}")
        if not (self.target_rate_factor > 0 and math.isfinite(self.target_rate_factor)):
            raise ValueError(f"target_rate_factor: expected a finite number > 0, got {self.target_rate_factor!r}")
        if not (self.threshold_lr > 0 and math.isfinite(self.threshold_lr)):
            raise ValueError(f"threshold_lr: expected a finite number > 0, got {self.threshold_lr!r}")
        if math.isnan(self.initial_threshold):
            raise ValueError("initial_threshold: expected a number, got NaN")
        if self.sampling not in ("top", "power", "softmax"):
            raise ValueError(f"sampling: expected 'top', 'power' or 'softmax', got {self.sampling!r}")
        if not (self.sampling_beta >= 0 and math.isfinite(self.sampling_beta)):
            raise ValueError(f"sampling_beta: expected a finite number >= 0, got {self.sampling_beta!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed: expected an integer, got {self.seed!r}")
        if self.sampling == "power" and self.normalize_strata:
            raise ValueError("sampling: 'power' needs scores >= 0 but normalize_strata ranks by signed "
                             "z-scores; expected sampling='softmax' (or 'top') with normalize_strata")
        if isinstance(self.normalize_warmup, bool) or not isinstance(self.normalize_warmup, int) \
                or self.normalize_warmup < 1:
            raise ValueError(f"normalize_warmup: expected an integer >= 1, got {self.normalize_warmup!r}")


@dataclass(frozen=True)
class Candidate:
    id: Hashable
    score: float  # the score it was ranked by (the z-score with normalize_strata)
    t: float
    raw_score: float | None = None  # the score pushed, when it differs from ``score``


@dataclass
class Decision:
    keep: list[Candidate] = field(default_factory=list)  # commit these (spool them), best first
    discard: list[Hashable] = field(default_factory=list)  # drop these frames' data


class TokenBucket:
    """``capacity`` tokens, refilled continuously at ``rate`` tokens per second."""

    def __init__(self, capacity: int, rate: float) -> None:
        self.capacity = float(capacity)
        self.rate = rate
        self.tokens = float(capacity)
        self._last: float | None = None

    def refill(self, t: float) -> None:
        if self._last is not None and t > self._last and self.rate > 0:
            self.tokens = min(self.capacity, self.tokens + (t - self._last) * self.rate)
        if self._last is None or t > self._last:
            self._last = t

    def take(self) -> bool:
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class OnlineQuantile:
    """Track the ``(1 - q)`` quantile of a stream, so that a fraction ``q`` of values exceeds it.

    Stochastic approximation: ``thr += lr * spread * (1[x > thr] - q)``, where ``spread`` is a
    running mean absolute deviation, so the step adapts to the scale of the scores.
    """

    def __init__(self, initial: float, lr: float) -> None:
        self.value = float(initial)
        self.lr = lr
        self._mean: float | None = None
        self._spread = 0.0
        self._n = 0

    def update(self, x: float, exceed_fraction: float) -> float:
        self._n += 1
        if self._mean is None:
            self._mean = x
        alpha = max(1.0 / self._n, 0.01)
        self._spread += alpha * (abs(x - self._mean) - self._spread)
        self._mean += alpha * (x - self._mean)
        step = self.lr * max(self._spread, 1e-6)
        self.value += step * ((1.0 if x > self.value else 0.0) - exceed_fraction)
        return self.value


class StreamingSelector:
    """Decides, frame by frame, which ids of a score stream to keep under an upload budget."""

    def __init__(self, config: StreamConfig | None = None) -> None:
        self.config = config or StreamConfig()
        c = self.config
        rate = 0.0 if math.isinf(c.window_s) else c.budget / c.window_s
        self._bucket = TokenBucket(c.budget, rate)
        self._target_rate = rate * c.target_rate_factor  # candidates per second the threshold admits
        self._quantile = OnlineQuantile(c.initial_threshold, c.threshold_lr)
        self._rng = random.Random(c.seed) if c.sampling != "top" else None
        self.normalizer = StratumNormalizer(c.normalize_warmup) if c.normalize_strata else None
        self._adaptive = c.adaptive_threshold and rate > 0
        self._event_best: Candidate | None = None
        self._event_last_t = -math.inf
        self._buffer: list[tuple[float, int, Candidate]] = []  # (key, arrival seq, candidate); key = score by default
        self._seq = 0
        self._last_t: float | None = None
        self._dt_ema: float | None = None
        self.stats = {
            "seen": 0, "candidates": 0, "kept": 0, "discarded": 0,
            "suppressed": 0, "evicted": 0, "below_threshold": 0,
        }

    @property
    def threshold(self) -> float:
        return self._quantile.value

    @property
    def tokens(self) -> float:
        return self._bucket.tokens

    def consume(self, n: float) -> float:
        """Spend ``n`` tokens kept outside this selector (e.g. before a restart); returns what is left."""
        if not n >= 0:
            raise ValueError(f"n: expected a number >= 0, got {n!r}")
        self._bucket.tokens = max(0.0, self._bucket.tokens - n)
        return self._bucket.tokens

    def pending(self) -> int:
        """Frames whose fate is not decided yet (open event + buffer)."""
        return len(self._buffer) + (self._event_best is not None)

    # -- stream -------------------------------------------------------------------------------

    def push(self, item_id: Hashable, score: float, t: float, stratum: Hashable | None = None) -> Decision:
        """One frame's score at time ``t``; ``stratum`` is used (and needed) with ``normalize_strata``."""
        score = float(score)
        if math.isnan(score):
            raise ValueError(f"score of {item_id!r}: expected a number, got NaN")
        raw = None
        if self.normalizer is not None:
            if stratum is None:
                raise ValueError(f"stratum of {item_id!r}: expected a stratum label with normalize_strata, got None")
            if math.isinf(score):
                raise ValueError(f"score of {item_id!r}: expected a finite number with normalize_strata, got {score}")
            raw, score = score, self.normalizer.update(stratum, score)
        decision = Decision()
        self.stats["seen"] += 1
        self._advance(t)
        above = score >= self._quantile.value
        if self._adaptive:
            self._quantile.update(score, self._exceed_fraction())
        if not above:
            self.stats["below_threshold"] += 1
            self._discard(item_id, decision)
        elif self.config.suppression_gap_s > 0:
            self._extend_event(Candidate(item_id, score, t, raw), decision)
        else:
            self._offer(Candidate(item_id, score, t, raw), decision)
        self._close_event_if_due(t, decision)
        self._commit_ready(t, decision)
        return decision

    def poll(self, t: float) -> Decision:
        """Time passes without a frame: close a finished event, commit due candidates."""
        decision = Decision()
        self._advance(t, frame=False)
        self._close_event_if_due(t, decision)
        self._commit_ready(t, decision)
        return decision

    def flush(self) -> Decision:
        """End of stream: close the open event, keep what the tokens allow, discard the rest."""
        decision = Decision()
        if self._event_best is not None:
            self._offer(self._event_best, decision)
            self._event_best = None
        for _, _, cand in sorted(self._buffer, key=lambda e: (-e[0], e[1])):
            if self._bucket.take():
                self._keep(cand, decision)
            else:
                self._discard(cand.id, decision)
        self._buffer.clear()
        return decision

    # -- internals ----------------------------------------------------------------------------

    def _advance(self, t: float, frame: bool = True) -> None:
        self._bucket.refill(t)
        if frame and self._last_t is not None and t > self._last_t:
            dt = t - self._last_t
            self._dt_ema = dt if self._dt_ema is None else self._dt_ema + 0.05 * (dt - self._dt_ema)
        if frame and (self._last_t is None or t > self._last_t):
            self._last_t = t

    def _exceed_fraction(self) -> float:
        """Fraction of frames that should pass the threshold: target candidates/s x seconds/frame."""
        if self._dt_ema is None:
            return 1.0
        return min(1.0, max(1e-6, self._target_rate * self._dt_ema))

    def _extend_event(self, cand: Candidate, decision: Decision) -> None:
        best = self._event_best
        if best is not None and cand.t - self._event_last_t <= self.config.suppression_gap_s:
            self._event_last_t = max(self._event_last_t, cand.t)
            self.stats["suppressed"] += 1
            if cand.score > best.score:
                self._event_best = cand
                self._discard(best.id, decision)
            else:
                self._discard(cand.id, decision)
            return
        if best is not None:
            self._offer(best, decision)
        self._event_best = cand
        self._event_last_t = cand.t

    def _close_event_if_due(self, t: float, decision: Decision) -> None:
        if self._event_best is not None and t - self._event_last_t > self.config.suppression_gap_s:
            self._offer(self._event_best, decision)
            self._event_best = None

    def _offer(self, cand: Candidate, decision: Decision) -> None:
        """Put a candidate in the bounded buffer, discarding the lowest if it is full."""
        self.stats["candidates"] += 1
        entry = (self._key(cand.score), self._seq, cand)
        self._seq += 1
        if len(self._buffer) >= self.config.buffer_size:
            # The lowest score goes; among equal scores the latest arrival goes (earlier wins ties).
            worst = min(self._buffer, key=lambda e: (e[0], -e[1]))
            if (entry[0], -entry[1]) <= (worst[0], -worst[1]):
                self.stats["evicted"] += 1
                self._discard(cand.id, decision)
                return
            self._buffer.remove(worst)
            self.stats["evicted"] += 1
            self._discard(worst[2].id, decision)
        self._buffer.append(entry)

    def _key(self, score: float) -> float:
        """The buffer's ranking key: the score, or a Gumbel-perturbed log-weight when sampling."""
        if self._rng is None:
            return score
        u = self._rng.random()
        while u == 0.0:
            u = self._rng.random()
        gumbel = -math.log(-math.log(u))
        beta = self.config.sampling_beta
        if self.config.sampling == "softmax":
            return beta * score + gumbel
        if beta == 0:
            return gumbel
        return beta * math.log(score) + gumbel if score > 0 else -math.inf

    def _commit_ready(self, t: float, decision: Decision) -> None:
        delay = self.config.decision_delay_s
        if math.isinf(delay) or not self._buffer:
            return
        while self._bucket.tokens >= 1.0:
            ready = [e for e in self._buffer if t - e[2].t >= delay]
            if not ready:
                return
            best = min(ready, key=lambda e: (-e[0], e[1]))
            self._bucket.take()
            self._buffer.remove(best)
            self._keep(best[2], decision)

    def _keep(self, cand: Candidate, decision: Decision) -> None:
        self.stats["kept"] += 1
        decision.keep.append(cand)

    def _discard(self, item_id: Hashable, decision: Decision) -> None:
        self.stats["discarded"] += 1
        decision.discard.append(item_id)
