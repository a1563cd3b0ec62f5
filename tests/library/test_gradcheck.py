"""numerical_gradient, relative_error and check_gradient's diagnoses of planted mistakes."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from logreg_lessons import (
    GradCheckResult,
    bce_with_logits,
    check_gradient,
    cross_entropy,
    logistic_gradients,
    numerical_gradient,
    relative_error,
    softmax_gradients,
)

F64 = torch.float64


def _gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def logistic():
    """A float64 logistic problem and its loss as a function of w."""
    g = _gen(0)
    n, d = 40, 3
    X = torch.randn(n, d, generator=g, dtype=F64)
    y = (torch.rand(n, generator=g) < 0.5).to(F64)
    w = torch.randn(d, generator=g, dtype=F64)
    b = torch.tensor(0.2, dtype=F64)
    return X, y, w, b


@pytest.fixture
def softmax_problem():
    """A float64 softmax problem with d == C (square W) and with d != C."""
    g = _gen(1)
    n = 30
    X = torch.randn(n, 4, generator=g, dtype=F64)
    y = torch.randint(0, 4, (n,), generator=g)
    W = torch.randn(4, 4, generator=g, dtype=F64)
    b = torch.randn(4, generator=g, dtype=F64)
    return X, y, W, b


# --- numerical_gradient -------------------------------------------------------------------


def test_numerical_gradient_of_quadratic_float64():
    x = torch.randn(3, 4, generator=_gen(2), dtype=F64)
    grad = numerical_gradient(lambda t: (t**2).sum() / 2 + t[0, 0] * t[1, 1], x)
    expected = x.clone()
    expected[0, 0] += x[1, 1]
    expected[1, 1] += x[0, 0]
    assert grad.shape == x.shape and grad.dtype == F64
    torch.testing.assert_close(grad, expected, rtol=1e-8, atol=1e-8)


def test_numerical_gradient_float32_needs_larger_h():
    x = torch.randn(5, generator=_gen(3), dtype=torch.float32)
    grad = numerical_gradient(lambda t: (t**3).sum(), x, h=1e-3)
    assert grad.dtype == torch.float32
    torch.testing.assert_close(grad, 3 * x**2, rtol=1e-2, atol=1e-2)


def test_numerical_gradient_restores_x_and_handles_0d():
    x = torch.randn(4, generator=_gen(4), dtype=F64)
    before = x.clone()
    numerical_gradient(lambda t: torch.sin(t).sum(), x)
    assert torch.equal(x, before)
    s = torch.tensor(0.7, dtype=F64)
    assert math.isclose(float(numerical_gradient(torch.exp, s)), math.exp(0.7), rel_tol=1e-8)


def test_numerical_gradient_restores_x_when_f_raises():
    x = torch.zeros(3, dtype=F64)
    calls = []

    def f(t):
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("boom")
        return t.sum()

    with pytest.raises(RuntimeError, match="boom"):
        numerical_gradient(f, x)
    assert torch.equal(x, torch.zeros(3, dtype=F64))


@pytest.mark.parametrize(
    ("x", "h", "match"),
    [
        (torch.arange(3), 1e-6, "floating-point torch.Tensor, got torch.int64"),
        ([1.0, 2.0], 1e-6, "floating-point torch.Tensor, got list"),
        (torch.zeros(2, dtype=F64), 0.0, "h must be a positive finite number"),
        (torch.zeros(2, dtype=F64), float("nan"), "h must be a positive finite number"),
    ],
)
def test_numerical_gradient_rejects_bad_input(x, h, match):
    with pytest.raises(ValueError, match=match):
        numerical_gradient(lambda t: t.sum(), x, h=h)


# --- relative_error -------------------------------------------------------------------------


def test_relative_error_cs231n_formula():
    a = torch.tensor([1.0, 0.0, 3.0], dtype=F64)
    b = torch.tensor([1.0, 0.0, 1.0], dtype=F64)
    assert relative_error(a, b) == pytest.approx(0.5)  # |3-1| / (3+1)
    assert relative_error(a, a) == 0.0
    assert relative_error(torch.tensor([1.0]), torch.tensor([-1.0])) == 1.0
    # the 1e-8 floor: two tiny numbers are not "100% different"
    assert relative_error(torch.tensor([1e-12]), torch.tensor([0.0])) == pytest.approx(1e-4)
    assert relative_error(torch.zeros(0), torch.zeros(0)) == 0.0
    assert math.isnan(relative_error(torch.tensor([float("nan")]), torch.tensor([1.0])))


def test_relative_error_shape_mismatch():
    with pytest.raises(ValueError, match=r"same shape, got \(3,\) and \(3, 1\)"):
        relative_error(torch.zeros(3), torch.zeros(3, 1))


@given(st.integers(0, 10_000), st.integers(1, 6), st.floats(0.1, 10.0))
def test_relative_error_is_symmetric_and_scale_free(seed, size, scale):
    g = _gen(seed)
    a, b = torch.randn(size, generator=g, dtype=F64), torch.randn(size, generator=g, dtype=F64)
    assert relative_error(a, b) == pytest.approx(relative_error(b, a))
    assert relative_error(a * scale, b * scale) == pytest.approx(relative_error(a, b), rel=1e-6)
    assert 0.0 <= relative_error(a, b) <= 1.0


# --- check_gradient: correct gradients pass ----------------------------------------------------


def test_correct_logistic_gradients_pass(logistic):
    X, y, w, b = logistic
    res = check_gradient(
        lambda w_: bce_with_logits(X @ w_ + b, y),
        lambda w_: logistic_gradients(X, y, w_, b)[0],
        w,
        name="w",
    )
    assert isinstance(res, GradCheckResult) and res and res.passed
    assert res.diagnosis == "ok" and res.relative_error < 1e-7
    assert res.message.startswith("dw: OK") and len(res.worst_index) == 1
    res_b = check_gradient(
        lambda b_: bce_with_logits(X @ w + b_, y),
        lambda b_: logistic_gradients(X, y, w, b_)[1],
        b,
        name="b",
    )
    assert res_b and res_b.worst_index == ()


def test_check_gradient_does_not_modify_x(logistic):
    X, y, w, b = logistic
    before = w.clone()
    check_gradient(lambda w_: bce_with_logits(X @ w_ + b, y), lambda w_: w_ * 0, w)
    assert torch.equal(w, before)


@given(st.integers(0, 10_000), st.integers(1, 4), st.integers(1, 4))
def test_check_gradient_passes_smooth_functions(seed, rows, cols):
    x = torch.randn(rows, cols, generator=_gen(seed), dtype=F64)
    res = check_gradient(
        lambda t: torch.tanh(t).sum() + (t**2).sum(), lambda t: 1 - torch.tanh(t) ** 2 + 2 * t, x
    )
    assert res.passed, res.message


# --- check_gradient: planted mistakes are caught and named -------------------------------------


def _dw(X, y, w, b):
    return logistic_gradients(X, y, w, b)[0]


@pytest.mark.parametrize(
    ("mistake", "diagnosis", "match"),
    [
        (lambda g, n: -g, "sign", r"negative of the numerical one: check the sign of \(p - y\)"),
        (lambda g, n: g * n, "factor", r"c = 40 times.*a missing 1/n: the loss is a mean"),
        (lambda g, n: g / n, "factor", r"c = 0\.025 times.*divided by n twice"),
        (lambda g, n: 2 * g, "factor", r"c = 2 times.*missing or extra constant"),
        (lambda g, n: torch.zeros_like(g), "zero", r"your gradient is zero: is the term missing"),
        (lambda g, n: g[:, None], "shape", r"expected \(3,\).*got \(3, 1\).*reduction dimension"),
        (lambda g, n: g + torch.tensor([0, 0, 0.1], dtype=F64), "wrong", r"worst entry dw\[2\]"),
        (lambda g, n: g * torch.tensor([1, float("nan"), 1], dtype=F64), "wrong", "NaN found"),
        (lambda g, n: None, "shape", "returned None: did you forget the `return`"),
        (lambda g, n: g.tolist(), "shape", r"must return a torch.Tensor of shape \(3,\), got list"),
        (lambda g, n: g.long(), "wrong", "dtype must be torch.float64.*integer gradient"),
        (lambda g, n: g.float(), "wrong", "dtype must be torch.float64.*got torch.float32"),
    ],
    ids=[
        "sign",
        "times_n",
        "over_n",
        "times_2",
        "zero",
        "column",
        "wrong",
        "nan",
        "none",
        "list",
        "int",
        "float32",
    ],
)
def test_check_gradient_names_the_mistake(logistic, mistake, diagnosis, match):
    X, y, w, b = logistic
    n = X.shape[0]
    res = check_gradient(
        lambda w_: bce_with_logits(X @ w_ + b, y),
        lambda w_: mistake(_dw(X, y, w_, b), n),
        w,
        n=n,
        name="w",
    )
    assert not res and res.diagnosis == diagnosis
    assert res.message.startswith("dw: ")
    with pytest.raises(AssertionError, match=match):
        assert res.passed, res.message


def _pm1_labels(y):
    """Labels in {-1, +1} where the loss expects {0, 1} (the seed tutorials' convention)."""
    return 2 * y - 1


def test_labels_in_pm1_are_not_called_a_constant_factor(logistic):
    """Ratios differ across the entries of dw: the message says so and names them."""
    X, y, w, b = logistic
    n = X.shape[0]
    s = _pm1_labels(y)
    res = check_gradient(
        lambda w_: bce_with_logits(X @ w_ + b, y),
        lambda w_: X.T @ (torch.sigmoid(X @ w_ + b) - s) / n,
        w,
        n=n,
        name="w",
    )
    numeric = numerical_gradient(lambda w_: bce_with_logits(X @ w_ + b, y), w.clone())
    ratio = (X.T @ (torch.sigmoid(X @ w + b) - s) / n) / numeric
    assert float(ratio.max() - ratio.min()) > 0.1  # the premise: not one constant
    assert res.diagnosis == "wrong" and "times the numerical one" not in res.message
    assert "not constant" in res.message and "dw[" in res.message


@pytest.mark.parametrize("tol", [1e-6, 1e-2])
def test_a_single_entry_never_gets_a_constant_factor_from_its_ratio_alone(logistic, tol):
    """db with labels in {-1, +1}: one entry always has *some* ratio; that is no evidence."""
    X, y, w, b = logistic
    n = X.shape[0]
    s = _pm1_labels(y)
    res = check_gradient(
        lambda b_: bce_with_logits(X @ w + b_, y),
        lambda b_: (torch.sigmoid(X @ w + b_) - s).mean(),
        b,
        n=n,
        name="b",
        tol=tol,
    )
    assert res.diagnosis == "wrong", res.message
    assert "single entry" in res.message and "c = " not in res.message


def test_a_single_entry_off_by_exactly_n_is_still_the_missing_1_over_n(logistic):
    X, y, w, b = logistic
    n = X.shape[0]
    res = check_gradient(
        lambda b_: bce_with_logits(X @ w + b_, y),
        lambda b_: (torch.sigmoid(X @ w + b_) - y).sum(),
        b,
        n=n,
        name="b",
    )
    assert res.diagnosis == "factor" and "missing 1/n" in res.message


def test_missing_bias_term_is_zero_gradient(logistic):
    X, y, w, b = logistic
    res = check_gradient(
        lambda b_: bce_with_logits(X @ w + b_, y),
        lambda b_: torch.zeros((), dtype=F64),
        b,
        name="b",
    )
    assert res.diagnosis == "zero" and "db" in res.message and "bias" in res.message


def test_nan_loss_is_reported_not_raised(logistic):
    X, y, w, b = logistic
    res = check_gradient(lambda w_: w_.sum() * float("nan"), lambda w_: torch.ones_like(w_), w)
    assert res.diagnosis == "wrong" and "NaN found" in res.message and not res


def _softmax_loss_of_W(X, y, b):
    return lambda W_: cross_entropy(X @ W_ + b, y)


def test_transposed_square_gradient(softmax_problem):
    X, y, W, b = softmax_problem
    res = check_gradient(
        _softmax_loss_of_W(X, y, b), lambda W_: softmax_gradients(X, y, W_, b)[0].T, W, name="W"
    )
    assert (
        res.diagnosis == "transposed" and "transpose" in res.message and "X.T @ dZ" in res.message
    )


def test_transposed_rectangular_gradient(softmax_problem):
    X, y, W, b = softmax_problem
    W = W[:, :3].contiguous()
    y = y % 3
    res = check_gradient(
        lambda W_: cross_entropy(X @ W_ + b[:3], y),
        lambda W_: softmax_gradients(X, y, W_, b[:3])[0].T,
        W,
        name="W",
    )
    assert res.diagnosis == "transposed"
    assert "shape (3, 4) is transposed: expected (4, 3)" in res.message


def test_bias_summed_over_the_wrong_dimension(softmax_problem):
    X, y, W, b = softmax_problem
    n = X.shape[0]

    def wrong_db(b_):
        P = torch.softmax(X @ W + b_, dim=1)
        dZ = (P - torch.nn.functional.one_hot(y, 4).to(F64)) / n
        return dZ.sum(dim=1)  # (n,) instead of (C,)

    res = check_gradient(lambda b_: cross_entropy(X @ W + b_, y), wrong_db, b, n=n, name="b")
    assert res.diagnosis == "shape" and math.isnan(res.relative_error)
    assert "expected (4,)" in res.message and f"got ({n},)" in res.message
    assert "wrong reduction dimension / shape" in res.message


def test_bool_and_fields():
    res = GradCheckResult(True, 0.0, (), "ok", "ok")
    assert bool(res) and not GradCheckResult(False, 1.0, (0,), "m", "wrong")


def test_float32_check_needs_larger_h_and_tol(logistic):
    X, y, w, b = (t.float() for t in logistic)
    res = check_gradient(
        lambda w_: bce_with_logits(X @ w_ + b, y),
        lambda w_: logistic_gradients(X, y, w_, b)[0],
        w,
        h=1e-3,
        tol=1e-2,
    )
    assert res, res.message


@pytest.mark.parametrize(
    ("x", "tol", "match"),
    [
        ([1.0, 2.0], 1e-6, "x must be a floating-point torch.Tensor, got list"),
        (torch.arange(2), 1e-6, "x must be a floating-point torch.Tensor, got torch.int64"),
        (torch.zeros(2, dtype=F64), 0.0, "tol must be a positive number, got 0.0"),
    ],
)
def test_check_gradient_rejects_bad_arguments(x, tol, match):
    with pytest.raises(ValueError, match=match):
        check_gradient(lambda t: t.sum(), lambda t: torch.ones_like(t), x, tol=tol)


def test_tiny_entries_within_round_off_pass_but_small_bugs_do_not():
    x = torch.tensor([1.0, 3e-9, -0.5], dtype=F64)
    loss = lambda t: (t**2).sum() + 1.0  # noqa: E731
    res = check_gradient(loss, lambda t: 2 * t, x)
    assert res and res.relative_error > 1e-6  # the tiny entry's relative error is noise
    assert "only where the gradient is tiny" in res.message
    bug = check_gradient(loss, lambda t: 2 * t + torch.tensor([0, 1e-6, 0], dtype=F64), x)
    assert not bug and bug.diagnosis == "wrong" and "dx[1]" in bug.message
