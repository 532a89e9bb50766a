"""Known values, properties and errors of the per-prediction scores."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from msmine import selector


def h2(p: float) -> float:
    """Binary entropy in bits, written out for the hand-computed table."""
    return -sum(q * math.log2(q) for q in (p, 1 - p) if q > 0)


# (p_visible, p_thermal, expected I in bits)
KNOWN_VALUES = [
    (0.0, 1.0, 1.0),  # one branch certain of 0, the other of 1: maximal
    (1.0, 0.0, 1.0),
    (0.0, 0.0, 0.0),
    (1.0, 1.0, 0.0),
    (0.5, 0.5, 0.0),  # agreeing uncertainty is not inconsistency
    (0.3, 0.3, 0.0),
    (0.0, 0.5, h2(0.25) - 0.5),  # = 0.811278 - 0.5
    (0.2, 0.9, h2(0.55) - (h2(0.2) + h2(0.9)) / 2),
    (0.1, 0.6, h2(0.35) - (h2(0.1) + h2(0.6)) / 2),
]


@pytest.mark.parametrize(("pv", "pt", "expected"), KNOWN_VALUES)
def test_inconsistency_known_values(pv, pt, expected):
    assert selector.inconsistency(pv, pt) == pytest.approx(expected, abs=1e-12)


def test_hand_computed_numbers():
    # Written out digit by digit, independent of the helper above.
    assert selector.inconsistency(0.0, 0.5) == pytest.approx(0.31127812445913283, abs=1e-12)
    assert selector.inconsistency(0.2, 0.9) == pytest.approx(0.3973126, abs=1e-6)


def test_scalar_input_gives_scalar_that_prints_one():
    value = selector.inconsistency(0.0, 1.0)
    assert np.ndim(value) == 0
    assert str(float(value)) == "1.0"


def test_broadcasting_and_shape():
    out = selector.inconsistency(np.zeros((2, 1)), np.array([0.0, 1.0, 0.5]))
    assert out.shape == (2, 3)
    assert out[0, 1] == pytest.approx(1.0)


def test_float32_stays_float32_and_safe_at_bounds():
    pv = np.array([0.0, 1.0, 0.0, 1.0], dtype=np.float32)
    pt = np.array([0.0, 1.0, 1.0, 0.0], dtype=np.float32)
    out = selector.inconsistency(pv, pt)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0, 0, 1, 1], atol=1e-6)


def test_categorical_known_values():
    one_hot_a = np.array([1.0, 0.0, 0.0])
    one_hot_b = np.array([0.0, 0.0, 1.0])
    assert selector.inconsistency(one_hot_a, one_hot_b, kind="categorical") == pytest.approx(1.0)
    assert selector.inconsistency(one_hot_a, one_hot_a, kind="categorical") == pytest.approx(0.0)
    uniform = np.full(4, 0.25)
    # JS(uniform, one-hot) = H(mix) - (2 + 0)/2, mix = (0.625, 0.125, 0.125, 0.125)
    mix = np.array([0.625, 0.125, 0.125, 0.125])
    expected = -np.sum(mix * np.log2(mix)) - 1.0
    got = selector.inconsistency(uniform, np.array([1.0, 0, 0, 0]), kind="categorical")
    assert got == pytest.approx(expected, abs=1e-12)


def test_entropy_and_combined():
    assert selector.entropy(0.5) == pytest.approx(1.0)
    assert selector.entropy(0.0) == pytest.approx(0.0)
    assert selector.entropy(np.full(5, 0.2), kind="categorical") == pytest.approx(1.0)
    assert selector.entropy(np.array([1.0, 0, 0]), kind="categorical") == pytest.approx(0.0)
    assert selector.combined(0.4, 0.5, weight=0.5) == pytest.approx(0.65)
    assert selector.combined(0.4, 0.5, weight=0.0) == pytest.approx(0.4)


ERRORS = [
    (lambda: selector.inconsistency(1.5, 0.2), "got values in \\[1.5, 1.5\\]"),
    (lambda: selector.inconsistency(-0.1, 0.2), "expected probabilities in \\[0, 1\\]"),
    (lambda: selector.inconsistency(float("nan"), 0.2), "got NaN"),
    (lambda: selector.inconsistency(np.zeros(3), np.zeros(4)), "got \\(3,\\) and \\(4,\\)"),
    (lambda: selector.inconsistency(np.array([0.5, 0.6]), np.array([0.5, 0.5]), kind="categorical"), "summing to 1"),
    (lambda: selector.inconsistency(0.5, 0.5, kind="categorical"), "last class axis"),
    (lambda: selector.inconsistency(0.5, 0.5, kind="softmax"), "'binary' or 'categorical'"),
    (lambda: selector.inconsistency("a", 0.5), "expected an array of probabilities"),
    (lambda: selector.entropy(2.0), "expected probabilities"),
    (lambda: selector.combined(0.1, 0.2, weight=-1), "weight"),
]


@pytest.mark.parametrize(("call", "message"), ERRORS)
def test_errors_state_expected_and_actual(call, message):
    with pytest.raises(ValueError, match=message):
        call()


probs = arrays(np.float64, st.integers(1, 50), elements=st.floats(0.0, 1.0))


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_range_and_symmetry(data):
    pv = data.draw(probs)
    pt = data.draw(arrays(np.float64, pv.shape, elements=st.floats(0.0, 1.0)))
    a = selector.inconsistency(pv, pt)
    b = selector.inconsistency(pt, pv)
    assert np.all(np.isfinite(a))
    assert np.all((a >= 0) & (a <= 1))
    np.testing.assert_allclose(a, b, atol=1e-12)
    np.testing.assert_allclose(selector.inconsistency(pv, pv), 0.0, atol=1e-12)


@settings(max_examples=200, deadline=None)
@given(probs, st.data())
def test_categorical_with_two_classes_equals_binary(pv, data):
    pt = data.draw(arrays(np.float64, pv.shape, elements=st.floats(0.0, 1.0)))
    binary = selector.inconsistency(pv, pt)
    categorical = selector.inconsistency(np.stack([1 - pv, pv], -1), np.stack([1 - pt, pt], -1), kind="categorical")
    np.testing.assert_allclose(categorical, binary, atol=1e-9)


@settings(max_examples=100, deadline=None)
@given(st.integers(2, 6), st.integers(1, 20), st.integers(0, 2**31 - 1))
def test_categorical_range(c, n, seed):
    rng = np.random.default_rng(seed)
    pv = rng.dirichlet(np.full(c, 0.3), size=n)
    pt = rng.dirichlet(np.full(c, 0.3), size=n)
    out = selector.inconsistency(pv, pt, kind="categorical")
    assert out.shape == (n,)
    assert np.all((out >= 0) & (out <= 1))
