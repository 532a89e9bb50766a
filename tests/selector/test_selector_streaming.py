"""The device's streaming selector: budget, threshold, suppression, buffer; streaming = pool."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msmine import selector
from msmine.selector import StreamConfig, StreamingSelector


def run_stream(sel: StreamingSelector, scores, times=None):
    kept, discarded = [], []
    times = range(len(scores)) if times is None else times
    for i, (s, t) in enumerate(zip(scores, times)):
        d = sel.push(i, s, float(t))
        kept += [c.id for c in d.keep]
        discarded += d.discard
    d = sel.flush()
    kept += [c.id for c in d.keep]
    discarded += d.discard
    return kept, discarded


def pool_config(k: int) -> StreamConfig:
    return StreamConfig(
        budget=k, window_s=math.inf, decision_delay_s=math.inf, suppression_gap_s=0.0,
        buffer_size=max(k, 1), adaptive_threshold=False, initial_threshold=0.0,
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([0.0, 0.1, 0.3, 0.3, 0.5, 0.9, 1.0]) | st.floats(0, 1), max_size=60), st.integers(0, 70))
def test_unbounded_window_equals_pool_top_k(scores, k):
    kept, discarded = run_stream(StreamingSelector(pool_config(k)), scores)
    expected, _ = selector.select_top(scores, k)
    assert sorted(kept) == sorted(expected)
    # every id decided exactly once
    assert sorted(kept + discarded) == list(range(len(scores)))


def test_every_id_decided_exactly_once_with_all_mechanisms():
    rng = np.random.default_rng(3)
    scores = rng.random(5000) ** 3
    times = np.cumsum(rng.uniform(0.02, 0.06, size=5000))
    sel = StreamingSelector(StreamConfig(budget=20, window_s=60.0, decision_delay_s=1.0,
                                         suppression_gap_s=0.3, buffer_size=4))
    kept, discarded = run_stream(sel, scores, times)
    assert sorted(kept + discarded) == list(range(5000))
    assert sel.stats["kept"] == len(kept)
    assert sel.pending() == 0


def test_token_bucket_caps_uploads_per_window():
    # 2 uploads per 10 s, every frame a candidate, commit immediately.
    cfg = StreamConfig(budget=2, window_s=10.0, decision_delay_s=0.0, suppression_gap_s=0.0,
                       adaptive_threshold=False, buffer_size=1)
    sel = StreamingSelector(cfg)
    kept_times = []
    for i in range(300):  # 30 s at 10 fps
        t = i * 0.1
        kept_times += [c.t for c in sel.push(i, 0.5 + (i % 7) / 100, t).keep]
    # 2 at start (full bucket) + 2 per 10 s refill over 30 s = 8 at most
    assert 7 <= len(kept_times) <= 8
    for start in np.arange(0, 30, 1.0):
        in_window = [t for t in kept_times if start <= t < start + 10]
        assert len(in_window) <= 4  # never more than capacity + one window's refill


def test_temporal_suppression_keeps_the_best_of_each_event():
    cfg = StreamConfig(budget=10, window_s=math.inf, decision_delay_s=0.0, suppression_gap_s=0.5,
                       adaptive_threshold=False, initial_threshold=0.5, buffer_size=8)
    sel = StreamingSelector(cfg)
    #        event A (frames 1-4, best 3)    quiet      event B (frames 10-12, best 10)
    scores = [0.1, 0.6, 0.7, 0.9, 0.8, 0.1, 0.1, 0.2, 0.1, 0.3, 0.95, 0.7, 0.6, 0.1, 0.1, 0.1, 0.1, 0.1]
    kept, _ = run_stream(sel, scores, [i * 0.2 for i in range(len(scores))])
    assert kept == [3, 10]
    assert sel.stats["suppressed"] == 5


def test_decision_delay_lets_a_better_candidate_win_the_last_token():
    cfg = StreamConfig(budget=1, window_s=math.inf, decision_delay_s=2.0, suppression_gap_s=0.0,
                       adaptive_threshold=False, buffer_size=4)
    sel = StreamingSelector(cfg)
    assert sel.push("a", 0.5, 0.0).keep == []
    assert sel.push("b", 0.8, 1.0).keep == []
    d = sel.poll(3.5)
    assert [c.id for c in d.keep] == ["b"]
    assert sel.flush().discard == ["a"]


def test_bounded_buffer_discards_the_lowest():
    cfg = StreamConfig(budget=0, window_s=math.inf, decision_delay_s=math.inf, suppression_gap_s=0.0,
                       adaptive_threshold=False, buffer_size=3)
    sel = StreamingSelector(cfg)
    for i, s in enumerate([0.5, 0.2, 0.9, 0.1, 0.7, 0.3]):
        sel.push(i, s, float(i))
        assert sel.pending() <= 3
    assert sel.stats["evicted"] == 3
    assert sorted(sel.flush().discard) == [0, 2, 4]  # no tokens: the buffered best three go too


def test_adaptive_threshold_tracks_the_target_rate():
    # 360 uploads/hour = 0.1/s; factor 2 -> 0.2 candidates/s; at 10 fps -> 2 % of frames.
    cfg = StreamConfig(budget=360, window_s=3600.0, decision_delay_s=0.5, suppression_gap_s=0.0,
                       target_rate_factor=2.0, buffer_size=8)
    sel = StreamingSelector(cfg)
    rng = np.random.default_rng(0)
    scores = rng.random(40000)
    above = 0
    for i, s in enumerate(scores):
        if i >= 20000 and s >= sel.threshold:
            above += 1
        sel.push(i, s, i * 0.1)
    assert sel.threshold == pytest.approx(0.98, abs=0.01)
    assert above / 20000 == pytest.approx(0.02, abs=0.006)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"budget": -1}, "budget"), ({"window_s": 0}, "window_s"), ({"buffer_size": 0}, "buffer_size"),
     ({"suppression_gap_s": -1.0}, "suppression_gap_s"), ({"decision_delay_s": -1.0}, "decision_delay_s"),
     ({"target_rate_factor": 0.0}, "target_rate_factor"), ({"initial_threshold": float("nan")}, "NaN")],
)
def test_config_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        StreamConfig(**kwargs)


def test_nan_score_is_refused():
    with pytest.raises(ValueError, match="NaN"):
        StreamingSelector().push("x", float("nan"), 0.0)


def test_consume_spends_tokens_kept_elsewhere():
    sel = StreamingSelector(StreamConfig(budget=5, window_s=math.inf, decision_delay_s=0.0, suppression_gap_s=0.0,
                                         adaptive_threshold=False))
    assert sel.consume(3) == 2.0
    kept, _ = run_stream(sel, [0.5] * 10)
    assert len(kept) == 2
    assert sel.consume(10) == 0.0
    with pytest.raises(ValueError):
        sel.consume(-1)


# -- power sampling within the budget ------------------------------------------------------


def sampled_config(k: int, sampling: str = "power", beta: float = 1.0, seed: int = 0, **extra) -> StreamConfig:
    base = {**pool_config(k).__dict__, "sampling": sampling, "sampling_beta": beta, "seed": seed}
    base.update(extra)
    return StreamConfig(**base)


def test_explicit_top_sampling_is_the_default_behaviour():
    rng = np.random.default_rng(3)
    scores = rng.random(3000) ** 3
    times = np.cumsum(rng.uniform(0.02, 0.06, size=3000))
    cfg = {"budget": 20, "window_s": 60.0, "decision_delay_s": 1.0, "suppression_gap_s": 0.3, "buffer_size": 4}
    a = run_stream(StreamingSelector(StreamConfig(**cfg)), scores, times)
    b = run_stream(StreamingSelector(StreamConfig(**cfg, sampling="top", seed=5)), scores, times)
    assert a == b


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0.01, 1.0), max_size=40, unique=True), st.integers(0, 45), st.integers(0, 10**6))
def test_power_sampling_with_a_huge_beta_is_pool_top_k(scores, k, seed):
    kept, discarded = run_stream(StreamingSelector(sampled_config(k, beta=1e9, seed=seed)), scores)
    assert sorted(kept) == sorted(selector.select_top(scores, k)[0])
    assert sorted(kept + discarded) == list(range(len(scores)))


def test_power_sampling_with_beta_zero_is_uniform_and_seeded():
    scores = [0.9, 0.8, 0.1, 0.05, 0.5, 0.3, 0.7, 0.2, 0.6, 0.4]
    counts = np.zeros(10)
    runs = 3000
    for seed in range(runs):
        kept, _ = run_stream(StreamingSelector(sampled_config(3, beta=0.0, seed=seed, buffer_size=10)), scores)
        assert len(kept) == 3
        counts[kept] += 1
    np.testing.assert_allclose(counts / runs, 0.3, atol=0.04)  # 3 of 10; 4.8 sigma
    a = run_stream(StreamingSelector(sampled_config(3, beta=1.0, seed=11, buffer_size=10)), scores)
    assert a == run_stream(StreamingSelector(sampled_config(3, beta=1.0, seed=11, buffer_size=10)), scores)


def test_power_sampling_matches_the_pool_draw_probabilities():
    scores = [1.0, 2.0, 3.0, 4.0]
    runs = 8000
    counts = np.zeros(4)
    for seed in range(runs):
        kept, _ = run_stream(StreamingSelector(sampled_config(1, beta=1.0, seed=seed, buffer_size=4)), scores)
        counts[kept] += 1
    np.testing.assert_allclose(counts / runs, [0.1, 0.2, 0.3, 0.4], atol=0.02)


def test_power_sampling_keeps_suppression_and_the_token_bucket():
    cfg = StreamConfig(budget=10, window_s=math.inf, decision_delay_s=0.0, suppression_gap_s=0.5,
                       adaptive_threshold=False, initial_threshold=0.5, buffer_size=8, sampling="power",
                       sampling_beta=1.0, seed=3)
    scores = [0.1, 0.6, 0.7, 0.9, 0.8, 0.1, 0.1, 0.2, 0.1, 0.3, 0.95, 0.7, 0.6, 0.1, 0.1, 0.1, 0.1, 0.1]
    sel = StreamingSelector(cfg)
    kept, _ = run_stream(sel, scores, [i * 0.2 for i in range(len(scores))])
    assert kept == [3, 10]  # each event's best frame, as without sampling
    assert sel.stats["suppressed"] == 5
    # the bucket still caps uploads: 2 per 10 s over 30 s
    cfg = StreamConfig(budget=2, window_s=10.0, decision_delay_s=0.0, suppression_gap_s=0.0,
                       adaptive_threshold=False, buffer_size=1, sampling="softmax", sampling_beta=3.0)
    sel = StreamingSelector(cfg)
    kept_times = []
    for i in range(300):
        kept_times += [c.t for c in sel.push(i, 0.5 + (i % 7) / 100, i * 0.1).keep]
    assert 7 <= len(kept_times) <= 8


def test_power_sampling_every_id_decided_once_with_all_mechanisms():
    rng = np.random.default_rng(4)
    scores = rng.random(5000) ** 3
    times = np.cumsum(rng.uniform(0.02, 0.06, size=5000))
    sel = StreamingSelector(StreamConfig(budget=20, window_s=60.0, decision_delay_s=1.0, suppression_gap_s=0.3,
                                         buffer_size=4, sampling="power", sampling_beta=2.0, seed=1))
    kept, discarded = run_stream(sel, scores, times)
    assert sorted(kept + discarded) == list(range(5000))
    assert sel.pending() == 0 and sel.stats["kept"] == len(kept)
    scores[::7] = 0.0  # weight 0: still decided, never preferred
    kept, discarded = run_stream(StreamingSelector(sel.config), scores, times)
    assert sorted(kept + discarded) == list(range(5000))


# -- per-stratum normalisation -------------------------------------------------------------


def test_stratum_normalisation_removes_the_night_offset():
    rng = np.random.default_rng(5)
    n = 400
    night = np.arange(n) % 2 == 1
    scores = np.where(night, 0.6, 0.1) + 0.2 * rng.random(n)  # every night frame beats every day frame
    strata = np.where(night, "night", "day")

    def kept_night(normalize: bool) -> int:
        cfg = StreamConfig(**{**pool_config(40).__dict__, "normalize_strata": normalize, "normalize_warmup": 20})
        sel = StreamingSelector(cfg)
        kept = []
        for i in range(n):
            kept += [c for c in sel.push(i, scores[i], float(i), stratum=strata[i]).keep]
        kept += sel.flush().keep
        assert len(kept) == 40
        if normalize:
            for c in kept:
                assert c.raw_score == pytest.approx(scores[c.id]) and c.score != c.raw_score
        else:
            assert all(c.raw_score is None for c in kept)
        return sum(bool(night[c.id]) for c in kept)

    assert kept_night(False) == 40
    assert 12 <= kept_night(True) <= 28


def test_stratum_normaliser_state_is_the_selectors():
    sel = StreamingSelector(StreamConfig(normalize_strata=True, sampling="softmax"))
    for i, x in enumerate([0.1, 0.3, 0.5]):
        sel.push(i, x, float(i), stratum=0)
    assert sel.normalizer is not None and sel.normalizer.count(0) == 3
    assert sel.normalizer.mean(0) == pytest.approx(0.3)
    assert StreamingSelector().normalizer is None


def test_streaming_option_errors():
    with pytest.raises(ValueError, match="stratum of 'x': expected a stratum label"):
        StreamingSelector(StreamConfig(normalize_strata=True)).push("x", 0.5, 0.0)
    with pytest.raises(ValueError, match="finite number with normalize_strata"):
        StreamingSelector(StreamConfig(normalize_strata=True)).push("x", math.inf, 0.0, stratum="day")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"sampling": "gumbel"}, "sampling: expected 'top', 'power' or 'softmax', got 'gumbel'"),
     ({"sampling_beta": -1.0}, "sampling_beta: expected a finite number >= 0"),
     ({"sampling_beta": math.inf}, "sampling_beta"),
     ({"seed": 1.5}, "seed: expected an integer"),
     ({"sampling": "power", "normalize_strata": True}, "expected sampling='softmax'"),
     ({"normalize_warmup": 0}, "normalize_warmup: expected an integer >= 1")],
)
def test_sampling_config_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        StreamConfig(**kwargs)
