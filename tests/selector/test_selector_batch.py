"""Batch selection: power sampling, near-duplicate removal, k-center, ProbCover, quotas, select_batch."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msmine import selector


def clusters(rng: np.random.Generator, sizes, dim: int = 8, spread: float = 0.05):
    """Well-separated clusters (centres 10 apart on the axes), shuffled; returns (features, labels)."""
    labels = np.concatenate([np.full(size, c) for c, size in enumerate(sizes)])
    centres = 10.0 * np.eye(max(dim, len(sizes)))[: len(sizes), :dim]
    x = centres[labels] + rng.normal(0, spread, (labels.size, dim))
    perm = rng.permutation(labels.size)
    return x[perm], labels[perm]


# -- ranking and power sampling -------------------------------------------------------------


def test_ranked_matches_select_top():
    scores = [0.2, 0.7, 0.7, 0.1]
    assert selector.ranked(scores).tolist() == [1, 2, 0, 3]
    assert selector.ranked(scores).tolist() == selector.select_top(scores, 4)[0]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from([0.0, 0.2, 0.5, 0.5, 1.0]) | st.floats(0, 1), max_size=30), st.integers(0, 35),
       st.integers(0, 1000), st.sampled_from(["power", "softmax", "softrank"]))
def test_power_sample_shape_and_beta_inf_is_top_k(scores, k, seed, mode):
    picks = selector.power_sample(scores, k, 2.0, seed=seed, mode=mode)
    assert picks.size == min(k, len(scores)) and np.unique(picks).size == picks.size
    assert np.all((picks >= 0) & (picks < max(len(scores), 1)))
    top = selector.power_sample(scores, k, math.inf, seed=seed, mode=mode)
    assert top.tolist() == selector.select_top(scores, k)[0]
    # seeded: the same seed, the same draw
    assert selector.power_sample(scores, k, 2.0, seed=seed, mode=mode).tolist() == picks.tolist()


def test_large_beta_approaches_top_k():
    scores = np.linspace(0.1, 1.0, 10)
    hits = sum(sorted(selector.power_sample(scores, 3, 200.0, seed=s).tolist()) == [7, 8, 9] for s in range(200))
    assert hits >= 195


def test_beta_zero_is_uniform():
    rng = np.random.default_rng(0)
    scores = np.array([0.9, 0.1, 0.5, 0.0, 0.3])
    for mode in ("power", "softmax", "softrank"):
        counts = np.zeros(5)
        for _ in range(20000):
            counts[selector.power_sample(scores, 2, 0.0, seed=rng, mode=mode)] += 1
        # each item is in a uniform 2-of-5 sample with probability 0.4; 4 sigma = 0.014
        np.testing.assert_allclose(counts / 20000, 0.4, atol=0.014)


def test_power_sampling_follows_score_to_the_beta():
    rng = np.random.default_rng(1)
    scores = np.array([1.0, 2.0, 3.0, 4.0])
    p = scores / scores.sum()
    first = np.zeros(4)
    included = np.zeros(4)
    draws = 20000
    for _ in range(draws):
        picks = selector.power_sample(scores, 2, 1.0, seed=rng)
        first[picks[0]] += 1
        included[picks] += 1
    np.testing.assert_allclose(first / draws, p, atol=0.015)
    # without replacement: P(i in 2) = p_i + sum_{j != i} p_j p_i / (1 - p_j)
    expected = [p[i] + sum(p[j] * p[i] / (1 - p[j]) for j in range(4) if j != i) for i in range(4)]
    np.testing.assert_allclose(included / draws, expected, atol=0.015)
    # beta = 2 squares the weights
    sq = scores ** 2 / (scores ** 2).sum()
    first2 = np.bincount([selector.power_sample(scores, 1, 2.0, seed=rng)[0] for _ in range(draws)], minlength=4)
    np.testing.assert_allclose(first2 / draws, sq, atol=0.015)


def test_zero_scores_come_last_in_power_mode():
    scores = [0.0, 0.5, 0.0, 0.1]
    for seed in range(50):
        assert sorted(selector.power_sample(scores, 2, 1.0, seed=seed).tolist()) == [1, 3]


@pytest.mark.parametrize(("call", "message"), [
    (lambda: selector.power_sample([-0.1, 0.2], 1, 1.0), "mode='power' expects scores >= 0, got a minimum of -0.1"),
    (lambda: selector.power_sample([0.1], 1, -1.0), "beta: expected a number >= 0"),
    (lambda: selector.power_sample([0.1], 1, math.nan), "beta"),
    (lambda: selector.power_sample([0.1], -1, 1.0), "k: expected an integer >= 0, got -1"),
    (lambda: selector.power_sample([0.1], 1, 1.0, mode="boltzmann"), "'power', 'softmax' or 'softrank'"),
    (lambda: selector.power_sample([math.inf], 1, 1.0), "finite"),
    (lambda: selector.ranked([[0.1]]), "1-D"),
])
def test_power_sample_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# -- near-duplicates ------------------------------------------------------------------------


def test_dedupe_frames_known_values():
    frames = [10, 11, 13, 20, 12]
    assert selector.dedupe_frames([0, 1, 2, 3, 4], frames, window=2).tolist() == [0, 2, 3]
    assert selector.dedupe_frames([0, 1, 2, 3, 4], frames, sequences=["a", "b", "a", "a", "b"],
                                  window=2).tolist() == [0, 1, 2, 3]
    assert selector.dedupe_frames([4, 3, 2, 1, 0], frames, window=2).tolist() == [4, 3]  # order decides
    assert selector.dedupe_frames([4, 3, 2, 1, 0], frames, window=1).tolist() == [4, 3, 0]
    assert selector.dedupe_frames([0, 1], [5, 5], window=0).tolist() == [0]  # same frame, window 0


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 60), st.integers(1, 3), st.integers(0, 5), st.integers(0, 2**31 - 1))
def test_dedupe_frames_never_keeps_two_neighbours(n, nseq, window, seed):
    rng = np.random.default_rng(seed)
    frames, seqs = rng.integers(0, 80, n), rng.integers(0, nseq, n)
    order = rng.permutation(n)
    kept = selector.dedupe_frames(order, frames, sequences=seqs, window=window)
    for a in kept:
        for b in kept:
            if a != b and seqs[a] == seqs[b]:
                assert abs(int(frames[a]) - int(frames[b])) > window
    # greedy: every dropped item has a kept neighbour ahead of it in the order
    position = {int(i): p for p, i in enumerate(order)}
    for i in set(range(n)) - set(kept.tolist()):
        assert any(seqs[j] == seqs[i] and abs(int(frames[j]) - int(frames[i])) <= window and position[j] < position[i]
                   for j in kept)


def test_dedupe_hashes_known_values():
    full = 2**64 - 1
    hashes = [0b0000, 0b0001, 0b0111, full]  # python ints: the last needs uint64
    assert selector.dedupe_hashes([0, 1, 2, 3], hashes, max_distance=1).tolist() == [0, 2, 3]
    assert selector.dedupe_hashes([0, 1, 2, 3], hashes, max_distance=0).tolist() == [0, 1, 2, 3]
    assert selector.dedupe_hashes([0, 1, 2, 3], hashes, max_distance=3).tolist() == [0, 3]
    signed = np.array([-1, 0], dtype=np.int64)  # -1 is all 64 bits set
    assert selector.dedupe_hashes([0, 1], signed, max_distance=63).tolist() == [0, 1]
    assert selector.dedupe_hashes([0, 1], signed, max_distance=64).tolist() == [0]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=40), st.integers(0, 40))
def test_dedupe_hashes_keeps_only_distant_hashes(hashes, distance):
    kept = selector.dedupe_hashes(list(range(len(hashes))), np.array(hashes, dtype=np.uint64), max_distance=distance)
    assert kept[0] == 0
    for a in kept:
        for b in kept:
            if a < b:
                assert bin(hashes[a] ^ hashes[b]).count("1") > distance


# -- k-center and ProbCover -----------------------------------------------------------------


def test_k_center_known_values():
    x = np.array([[0.0], [1.0], [10.0], [11.0], [5.0]])
    assert selector.k_center_greedy(x, 3, metric="l2").tolist() == [0, 3, 4]
    assert selector.k_center_greedy(x, 3, metric="l2", first=2).tolist() == [2, 0, 4]
    assert selector.k_center_greedy(x, 2, metric="l2", labelled_features=[[0.0]]).tolist() == [3, 4]
    assert selector.k_center_greedy(x, 9, metric="l2").tolist() == [0, 3, 4, 1, 2]  # k > n: all
    # cosine: direction only
    y = np.array([[1.0, 0.0], [5.0, 0.1], [0.0, 2.0], [-1.0, 0.0]])
    assert selector.k_center_greedy(y, 2).tolist() == [0, 3]


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 6), st.integers(0, 2**31 - 1), st.sampled_from(["l2", "cosine"]))
def test_k_center_picks_one_per_cluster_before_a_second(nclusters, seed, metric):
    rng = np.random.default_rng(seed)
    x, labels = clusters(rng, rng.integers(3, 20, nclusters))
    picks = selector.k_center_greedy(x, 2 * nclusters, metric=metric, first=int(rng.integers(0, len(x))))
    assert sorted(labels[picks[:nclusters]].tolist()) == list(range(nclusters))


@settings(max_examples=60, deadline=None)
@given(st.integers(3, 40), st.integers(1, 10), st.integers(0, 2**31 - 1))
def test_k_center_does_not_depend_on_row_order(n, k, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    picks = selector.k_center_greedy(x, k, metric="l2", first=0)
    perm = np.concatenate([[0], 1 + rng.permutation(n - 1)])  # the first pick stays row 0
    moved = selector.k_center_greedy(x[perm], k, metric="l2", first=0)
    assert sorted(perm[moved].tolist()) == sorted(picks.tolist())


def test_probcover_known_values():
    x = np.array([[0.0], [0.1], [0.2], [5.0], [5.1], [9.0]])
    # ball sizes 2, 3, 2, 2, 2, 1; then uncovered {3, 4, 5}; then {5}; then all covered: farthest
    assert selector.probcover(x, 4, radius=0.15, metric="l2").tolist() == [1, 3, 5, 0]
    assert selector.probcover(x, 1, radius=0.15, metric="l2", labelled_features=[[0.1]]).tolist() == [3]


def test_probcover_covers_the_largest_clusters_first():
    rng = np.random.default_rng(4)
    x, labels = clusters(rng, [30, 20, 10, 5], spread=0.05)
    picks = selector.probcover(x, 4, radius=1.0, metric="l2")
    assert labels[picks].tolist() == [0, 1, 2, 3]
    # the default radius (median distance to the 5th neighbour) stays inside a cluster
    assert selector.default_radius(x, metric="l2") < 1.0


@pytest.mark.parametrize(("call", "message"), [
    (lambda: selector.k_center_greedy(np.zeros(3), 1), r"2-D \[n, d\] array, got shape \(3,\)"),
    (lambda: selector.k_center_greedy(np.zeros((3, 2)), 1, metric="manhattan"), "'cosine' or 'l2'"),
    (lambda: selector.k_center_greedy(np.zeros((3, 2)), 1, first=3), r"first: expected an index in \[0, 3\)"),
    (lambda: selector.k_center_greedy(np.full((3, 2), np.nan), 1), "finite"),
    (lambda: selector.k_center_greedy(np.zeros((3, 2)), 1, labelled_features=np.zeros((1, 3))),
     "expected 2 columns like features, got 3"),
    (lambda: selector.probcover(np.zeros((3, 2)), 1, radius=-1.0), "radius: expected a finite number >= 0"),
    (lambda: selector.probcover(np.zeros((3, 2)), -2), "k: expected an integer >= 0"),
    (lambda: selector.dedupe_frames([0, 0], [1, 2]), "each index at most once"),
    (lambda: selector.dedupe_frames([0, 5], [1, 2]), r"indices in \[0, 2\), got \[0, 5\]"),
    (lambda: selector.dedupe_frames([0], [1], window=-1), "window: expected a finite number >= 0"),
    (lambda: selector.dedupe_frames([0, 1], [1, 2], sequences=["a"]), r"expected 2 labels"),
    (lambda: selector.dedupe_frames([0], [[1]]), "1-D array of frame numbers"),
    (lambda: selector.dedupe_hashes([0], [1.5]), "64-bit unsigned integers, got 1.5"),
    (lambda: selector.dedupe_hashes([0], np.array([1.5])), "64-bit unsigned integers, got dtype float64"),
    (lambda: selector.dedupe_hashes([0], [1], max_distance=-1), "max_distance: expected an integer >= 0"),
    (lambda: selector.dedupe_hashes([0], [2**65]), "64-bit unsigned integers"),
])
def test_diversity_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# -- quotas ---------------------------------------------------------------------------------


def test_quotas_known_values():
    strata = ["a"] * 7 + ["b"] * 3
    assert selector.proportional_quotas(strata, 5) == {"a": 4, "b": 1}  # 3.5 / 1.5: the tie goes to "a"
    assert selector.proportional_quotas(strata, 10) == {"a": 7, "b": 3}
    assert selector.proportional_quotas(strata, 4) == {"a": 3, "b": 1}  # 2.8 / 1.2
    assert selector.equal_quotas(strata, 5) == {"a": 3, "b": 2}
    assert selector.proportional_quotas([1, 1, 0], 3) == {0: 1, 1: 2}


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=1, max_size=50), st.integers(0, 60))
def test_quotas_sum_to_the_budget(strata, budget):
    for quotas in (selector.proportional_quotas(strata, budget), selector.equal_quotas(strata, budget)):
        assert sum(quotas.values()) == budget
        assert set(quotas) == set(strata)
    share = selector.proportional_quotas(strata, budget)
    for key, q in share.items():
        assert abs(q - budget * strata.count(key) / len(strata)) < 1.0


# -- select_batch ---------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from([0.0, 0.3, 0.3, 1.0]) | st.floats(0, 1), max_size=40), st.integers(0, 45))
def test_select_batch_defaults_are_top_b(scores, b):
    assert selector.select_batch(scores, b).tolist() == selector.select_top(scores, b)[0]
    # features alone (candidate_factor 1) change nothing
    feats = np.arange(2 * len(scores), dtype=float).reshape(-1, 2) if scores else np.zeros((0, 2))
    assert selector.select_batch(scores, b, features=feats).tolist() == selector.select_top(scores, b)[0]


def test_select_batch_removes_frame_neighbours_and_fills_the_budget():
    scores = np.array([0.9, 0.95, 0.85, 0.1, 0.2, 0.3, 0.8])
    frames = np.array([10, 11, 12, 40, 50, 60, 13])
    # rank: 1 (f11), 0 (f10), 2 (f12), 6 (f13), 5 (f60), 4 (f50), 3 (f40)
    assert selector.select_batch(scores, 3, frames=frames, frame_window=2).tolist() == [1, 5, 4]
    assert selector.select_batch(scores, 3, frames=frames, frame_window=1).tolist() == [1, 6, 5]
    assert selector.select_batch(scores, 3, frames=frames, frame_window=0).tolist() == [1, 0, 2]


def test_select_batch_with_frames_window_and_hashes():
    scores = np.array([0.9, 0.95, 0.85, 0.1, 0.2, 0.3, 0.8])
    frames = np.array([10, 11, 12, 40, 50, 60, 14])
    assert selector.select_batch(scores, 3, frames=frames, frame_window=2).tolist() == [1, 6, 5]
    hashes = np.array([0, 0, 7, 1, 3, 0, 255], dtype=np.uint64)
    # Hamming <= 1 removed: 1 (0), 0 (0, dup), 2 (7: 3 bits) kept, 6 (255) kept
    assert selector.select_batch(scores, 3, hashes=hashes, hash_distance=1).tolist() == [1, 2, 6]


def test_select_batch_skips_neighbours_of_labelled_items():
    scores = np.linspace(1.0, 0.1, 10)
    frames = np.arange(10) * 3  # 0, 3, ..., 27
    # labelled frames 0 and 13 block pool frames 0, 3, 12, 15 (window 3)
    assert selector.select_batch(scores, 4, frames=frames, frame_window=3, labelled_frames=[0, 13]).tolist() == [2, 6, 8]
    seqs = ["a"] * 5 + ["b"] * 5
    picks = selector.select_batch(scores, 4, frames=frames, sequences=seqs, frame_window=3,
                                  labelled_frames=[0, 13], labelled_sequences=["b", "a"])
    assert picks.tolist() == [0, 2, 5, 7]  # only (a, 12) is near a labelled frame of its sequence
    hashes = np.arange(10, dtype=np.uint64)
    assert selector.select_batch(scores, 4, hashes=hashes, hash_distance=0, labelled_hashes=[0, 1, 2]).tolist() == [
        3, 4, 5, 6]


@settings(max_examples=80, deadline=None)
@given(st.integers(2, 60), st.integers(0, 20), st.integers(0, 2**31 - 1), st.floats(0.01, 100.0),
       st.sampled_from([None, 0.5, 2.0]))
def test_select_batch_invariances(n, b, seed, factor, beta):
    rng = np.random.default_rng(seed)
    scores = rng.random(n) + 0.01  # distinct almost surely, > 0 for power sampling
    feats = rng.normal(size=(n, 3))
    kwargs = {"features": feats, "candidate_factor": 3.0, "beta": beta, "seed": seed}
    picks = selector.select_batch(scores, b, **kwargs)
    # positive scaling: the ranking, and the power-sampling distribution (score ** beta scales by a
    # constant, so with the same seed the very same draw)
    assert selector.select_batch(scores * factor, b, **kwargs).tolist() == picks.tolist()
    if beta is None:
        # permutation equivariance: the same items, whatever their positions
        perm = rng.permutation(n)
        moved = selector.select_batch(scores[perm], b, features=feats[perm], candidate_factor=3.0)
        assert perm[moved].tolist() == picks.tolist()


@settings(max_examples=80, deadline=None)
@given(st.integers(5, 80), st.integers(1, 20), st.integers(0, 3), st.integers(0, 2**31 - 1),
       st.sampled_from([1.0, 2.0, 4.0]), st.sampled_from([None, 0.0, 1.0, 5.0]))
def test_select_batch_constraints_hold(n, b, window, seed, factor, beta):
    rng = np.random.default_rng(seed)
    scores = rng.random(n)
    frames, seqs = rng.integers(0, 3 * n, n), rng.integers(0, 2, n)
    strata = rng.integers(0, 2, n)
    feats = rng.normal(size=(n, 4))
    quotas = selector.proportional_quotas(strata, min(b, n))
    picks = selector.select_batch(scores, b, features=feats, candidate_factor=factor, frames=frames,
                                  sequences=seqs, frame_window=window, strata=strata, quotas=quotas,
                                  beta=beta, seed=seed)
    assert picks.size <= min(b, n) and np.unique(picks).size == picks.size
    for a in picks:
        for c in picks:
            if a != c and seqs[a] == seqs[c]:
                assert abs(int(frames[a]) - int(frames[c])) > window
    for key, q in quotas.items():
        assert int((strata[picks] == key).sum()) <= q
    again = selector.select_batch(scores, b, features=feats, candidate_factor=factor, frames=frames,
                                  sequences=seqs, frame_window=window, strata=strata, quotas=quotas,
                                  beta=beta, seed=seed)
    assert again.tolist() == picks.tolist()  # deterministic given the seed


def test_select_batch_quotas_fix_a_night_bias():
    rng = np.random.default_rng(2)
    strata = np.array(["night"] * 50 + ["day"] * 50)
    scores = np.concatenate([0.6 + 0.3 * rng.random(50), 0.1 + 0.3 * rng.random(50)])  # night always higher
    assert set(strata[selector.select_batch(scores, 10)]) == {"night"}
    picks = selector.select_batch(scores, 10, strata=strata, quotas="proportional")
    assert (strata[picks] == "night").sum() == 5 and (strata[picks] == "day").sum() == 5
    # the best of each stratum
    assert set(picks[strata[picks] == "day"].tolist()) == set((50 + np.argsort(-scores[50:])[:5]).tolist())
    # normalising within strata instead of quotas also mixes them
    normed = selector.select_batch(scores, 10, strata=strata, normalize="rank")
    assert 3 <= (strata[normed] == "night").sum() <= 7
    # a stratum missing from a mapping gets nothing; a quota above its supply leaves the budget short
    assert set(strata[selector.select_batch(scores, 10, strata=strata, quotas={"day": 10})]) == {"day"}
    assert selector.select_batch(scores, 10, strata=strata, quotas={"day": 3}).size == 3


def test_select_batch_diversity_spreads_a_clustered_top():
    rng = np.random.default_rng(3)
    x, labels = clusters(rng, [20, 20, 20, 20])
    scores = np.where(labels == 0, 0.9, 0.5) + 0.01 * rng.random(labels.size)  # cluster 0 scores highest
    plain = selector.select_batch(scores, 4, features=x)
    assert set(labels[plain]) == {0}
    spread = selector.select_batch(scores, 4, features=x, candidate_factor=20.0)
    assert sorted(labels[spread].tolist()) == [0, 1, 2, 3]
    assert spread[0] == int(np.argmax(scores))  # k-center starts from the best candidate
    # candidates are the top-m by score: a factor of 5 (m = 20) only sees cluster 0
    assert set(labels[selector.select_batch(scores, 4, features=x, candidate_factor=5.0)]) == {0}
    # with labelled items in cluster 0, the first pick already leaves it
    labelled = x[labels == 0][:3]
    away = selector.select_batch(scores, 3, features=x, candidate_factor=20.0, labelled_features=labelled)
    assert 0 not in labels[away].tolist()


def test_select_batch_cold_start_schedule():
    rng = np.random.default_rng(5)
    x, labels = clusters(rng, [30, 20, 10])
    scores = np.where(labels == 2, 0.9, 0.1) + 0.01 * rng.random(labels.size)
    kwargs = {"features": x, "metric": "l2", "coverage_cycles": 2, "coverage_radius": 1.0}
    for cycle in (0, 1):
        cover = selector.select_batch(scores, 3, cycle=cycle, **kwargs)
        assert labels[cover].tolist() == [0, 1, 2]  # coverage: the largest clusters, scores ignored
        assert cover.tolist() == selector.probcover(x, 3, radius=1.0, metric="l2").tolist()
    later = selector.select_batch(scores, 3, cycle=2, **kwargs)
    assert later.tolist() == selector.select_top(scores, 3)[0]  # uncertainty from the switch on
    assert selector.select_batch(scores, 3, **kwargs).tolist() == later.tolist()  # no cycle: uncertainty
    # constraints hold in the coverage cycles too
    strata = labels
    capped = selector.select_batch(scores, 3, cycle=0, strata=strata, quotas={0: 1, 1: 0, 2: 2}, **kwargs)
    assert sorted(labels[capped].tolist()) == [0, 2, 2]


def test_select_batch_power_sampling_is_seeded_and_spans_beta():
    scores = np.linspace(0.01, 1.0, 50)
    a = selector.select_batch(scores, 5, beta=1.0, seed=7)
    assert a.tolist() == selector.select_batch(scores, 5, beta=1.0, seed=7).tolist()
    assert a.tolist() != selector.select_batch(scores, 5, beta=1.0, seed=8).tolist()
    assert selector.select_batch(scores, 5, beta=math.inf).tolist() == selector.select_top(scores, 5)[0]
    z = selector.stratum_normalize(scores, np.zeros(50))
    assert selector.select_batch(z, 5, beta=math.inf, sampling="softmax").tolist() == selector.select_top(z, 5)[0]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"budget": -1}, "budget: expected an integer >= 0, got -1"),
    ({"candidate_factor": 0.5}, "candidate_factor: expected a finite number >= 1, got 0.5"),
    ({"features": np.zeros((3, 2))}, "features: expected 4 rows"),
    ({"frames": [1, 2]}, "frames: expected 4 frame numbers"),
    ({"frames": [1, 2, 3, 4], "frame_window": -1}, "frame_window"),
    ({"sequences": ["a"] * 4}, "sequences: expected frames="),
    ({"hashes": [1, 2]}, r"hashes: expected 4 hashes"),
    ({"hashes": [1, 2, 3, 4], "hash_distance": -1}, "hash_distance"),
    ({"quotas": "proportional"}, "quotas: expected strata="),
    ({"quotas": "fair", "strata": [0, 0, 1, 1]}, "'proportional', 'equal' or a mapping"),
    ({"quotas": {0: -1}, "strata": [0, 0, 1, 1]}, r"quotas\[0\]: expected an integer >= 0"),
    ({"strata": [0, 1], "quotas": "equal"}, "strata: expected 4 labels"),
    ({"normalize": "z"}, "normalize: expected strata="),
    ({"normalize": "minmax", "strata": [0, 0, 1, 1]}, "'z', 'rank' or None"),
    ({"cycle": 0, "coverage_cycles": 1}, "features: expected .* for the coverage cycles"),
    ({"cycle": -1}, "cycle: expected an integer >= 0"),
    ({"coverage_cycles": 1.5}, "coverage_cycles"),
    ({"metric": "dot"}, "'cosine' or 'l2'"),
    ({"labelled_frames": [1]}, "labelled_frames: expected frames= for the pool too"),
    ({"frames": [1, 2, 3, 4], "labelled_frames": [[1]]}, "labelled_frames: expected a 1-D array"),
    ({"frames": [1, 2, 3, 4], "sequences": ["a"] * 4, "labelled_frames": [1]}, "labelled_sequences: expected sequence"),
    ({"frames": [1, 2, 3, 4], "sequences": ["a"] * 4, "labelled_frames": [1], "labelled_sequences": ["a", "b"]},
     "expected 1 keys"),
    ({"labelled_hashes": [1]}, "labelled_hashes: expected hashes= for the pool too"),
    ({"hashes": [1, 2, 3, 4], "labelled_hashes": 5}, "labelled_hashes: expected a 1-D array"),
    ({"beta": -1.0}, "beta"),
    ({"features": np.zeros((4, 2)), "labelled_features": np.zeros((1, 3))}, "expected 2 columns"),
    ({"features": np.zeros((4, 2)), "cycle": 0, "coverage_cycles": 1, "coverage_radius": math.nan},
     "coverage_radius"),
])
def test_select_batch_errors(kwargs, message):
    args = {"budget": 2, **kwargs}
    budget = args.pop("budget")
    with pytest.raises(ValueError, match=message):
        selector.select_batch([0.1, 0.2, 0.3, 0.4], budget, **args)
