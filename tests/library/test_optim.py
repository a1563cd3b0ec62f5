"""Gradient descent and SGD reach the unpenalised optimum; mini-batches cover every sample."""

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from logreg_lessons import FitResult, bce_with_logits, gradient_descent, minibatches, sgd

F64 = torch.float64


@pytest.fixture(scope="module")
def overlapping():
    """Standardised overlapping 2-feature data (a finite optimum exists), its Newton solution."""
    g = torch.Generator().manual_seed(0)
    n = 400
    mix = torch.tensor([[1.0, 0.3], [0.0, 1.0]], dtype=F64)
    X = torch.randn(n, 2, generator=g, dtype=F64) @ mix
    p_true = torch.sigmoid(X @ torch.tensor([1.5, -1.0], dtype=F64) + 0.3)
    y = (torch.rand(n, generator=g, dtype=F64) < p_true).to(F64)
    X = (X - X.mean(0)) / X.std(0)
    # Newton's method on theta = (w, b): theta <- theta - H^{-1} g, with the same mean loss.
    A = torch.cat([X, torch.ones(n, 1, dtype=F64)], dim=1)
    theta = torch.zeros(3, dtype=F64)
    for _ in range(25):
        p = torch.sigmoid(A @ theta)
        grad = A.T @ (p - y) / n
        hess = (A.T * (p * (1 - p))) @ A / n
        theta = theta - torch.linalg.solve(hess, grad)
    assert grad.abs().max() < 1e-12
    opt_loss = float(bce_with_logits(A @ theta, y))
    return X, y, theta, opt_loss


def test_gradient_descent_reaches_newton_and_sklearn_optimum(overlapping):
    X, y, theta, opt_loss = overlapping
    res = gradient_descent(X, y, lr=4.0, num_steps=200)
    torch.testing.assert_close(res.w, theta[:2], rtol=0, atol=1e-4)
    torch.testing.assert_close(res.b, theta[2], rtol=0, atol=1e-4)
    assert res.epoch_history[-1] == pytest.approx(opt_loss, abs=1e-9)

    from sklearn.linear_model import LogisticRegression

    # C=inf is sklearn 1.8+'s spelling of penalty=None (no regularisation)
    ref = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(X.numpy(), y.numpy())
    np.testing.assert_allclose(res.w.numpy(), ref.coef_[0], atol=1e-4)
    np.testing.assert_allclose(float(res.b), ref.intercept_[0], atol=1e-4)


def test_gradient_descent_history_semantics(overlapping):
    X, y, _, _ = overlapping
    w0 = torch.tensor([0.5, -0.5], dtype=F64)
    b0 = torch.tensor(0.25, dtype=F64)
    w0_copy, b0_copy = w0.clone(), b0.clone()
    res = gradient_descent(X, y, lr=0.5, num_steps=7, w0=w0, b0=b0)
    assert isinstance(res, FitResult) and res.num_updates == 7
    assert len(res.history) == len(res.epoch_history) == 7
    assert all(isinstance(v, float) for v in res.history + res.epoch_history)
    assert res.history[0] == pytest.approx(float(bce_with_logits(X @ w0 + b0, y)))
    assert res.history[1:] == res.epoch_history[:-1]  # loss after step k == loss before k+1
    assert res.epoch_history[-1] == pytest.approx(float(bce_with_logits(X @ res.w + res.b, y)))
    assert all(a > b for a, b in zip(res.history, res.epoch_history, strict=True))
    assert torch.equal(w0, w0_copy) and torch.equal(b0, b0_copy)
    assert res.w.dtype == res.b.dtype == F64 and res.b.shape == ()


def test_gradient_descent_defaults_to_zeros_and_zero_steps(overlapping):
    X, y, _, _ = overlapping
    res = gradient_descent(X.float(), y.float(), lr=0.1, num_steps=0)
    assert res.history == [] and res.epoch_history == [] and res.num_updates == 0
    assert torch.equal(res.w, torch.zeros(2)) and res.w.dtype == torch.float32
    assert res.b.shape == () and float(res.b) == 0.0


def test_divergence_keeps_going_silently(overlapping):
    X, y, _, _ = overlapping
    X_big = X * 1e3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = gradient_descent(X_big.float(), y.float(), lr=1e6, num_steps=30)
        res_sgd = sgd(X_big.float(), y.float(), lr=1e6, num_epochs=2, batch_size=50)
    assert len(res.history) == 30 and len(res_sgd.epoch_history) == 2
    assert max(res.history) > 1e3  # it did diverge
    assert all(isinstance(v, float) for v in res.history + res_sgd.history)


def test_sgd_approaches_the_optimum(overlapping):
    X, y, _, opt_loss = overlapping
    res = sgd(X, y, lr=0.1, num_epochs=30, batch_size=16, seed=0)
    assert res.num_updates == len(res.history) == 30 * math.ceil(400 / 16)
    assert len(res.epoch_history) == 30
    assert 0 <= res.epoch_history[-1] - opt_loss < 2e-4
    assert res.epoch_history[-1] < res.epoch_history[0]


def test_sgd_is_reproducible_and_leaves_global_rng_alone(overlapping):
    X, y, _, _ = overlapping
    state = torch.get_rng_state()
    a = sgd(X, y, lr=0.1, num_epochs=2, batch_size=32, seed=3)
    b = sgd(X, y, lr=0.1, num_epochs=2, batch_size=32, seed=3)
    c = sgd(X, y, lr=0.1, num_epochs=2, batch_size=32, seed=4)
    assert torch.equal(torch.get_rng_state(), state)
    assert a.history == b.history and torch.equal(a.w, b.w)
    assert a.history != c.history


def test_sgd_history_is_batch_loss_before_update(overlapping):
    X, y, _, _ = overlapping
    res = sgd(X, y, lr=0.1, num_epochs=1, batch_size=150, seed=1)
    assert res.num_updates == 3  # 150 + 150 + the remainder 100
    idx = list(minibatches(400, 150, torch.Generator().manual_seed(1)))
    first = float(bce_with_logits(torch.zeros(150, dtype=F64), y[idx[0]]))
    assert res.history[0] == pytest.approx(first)  # at w = 0 every batch loss is log 2
    assert res.history[0] == pytest.approx(math.log(2))


def test_sgd_full_batch_equals_gradient_descent(overlapping):
    X, y, _, _ = overlapping
    gd = gradient_descent(X, y, lr=0.5, num_steps=5)
    full = sgd(X, y, lr=0.5, num_epochs=5, batch_size=1000)
    torch.testing.assert_close(full.w, gd.w)
    assert full.epoch_history == pytest.approx(gd.epoch_history)


def test_progress_bar_is_optional(overlapping, capsys):
    X, y, _, _ = overlapping
    quiet = gradient_descent(X, y, lr=0.5, num_steps=3)
    assert capsys.readouterr().err == ""
    shown = gradient_descent(X, y, lr=0.5, num_steps=3, progress=True)
    sgd(X, y, lr=0.5, num_epochs=1, batch_size=200, progress=True)
    assert shown.history == quiet.history


@given(st.integers(0, 300), st.integers(1, 350), st.integers(0, 1000))
def test_minibatches_cover_every_index_once(n, batch_size, seed):
    batches = list(minibatches(n, batch_size, torch.Generator().manual_seed(seed)))
    assert len(batches) == math.ceil(n / batch_size)
    assert all(b.dtype == torch.int64 and b.ndim == 1 for b in batches)
    assert all(len(b) == batch_size for b in batches[:-1])
    if batches:
        assert len(batches[-1]) == n - batch_size * (len(batches) - 1)  # the remainder is kept
    covered = torch.cat(batches) if batches else torch.zeros(0, dtype=torch.int64)
    assert torch.equal(covered.sort().values, torch.arange(n))
    again = list(minibatches(n, batch_size, torch.Generator().manual_seed(seed)))
    assert all(torch.equal(a, b) for a, b in zip(batches, again, strict=True))


def test_minibatch_larger_than_n_is_one_batch():
    (only,) = minibatches(5, 64, torch.Generator().manual_seed(0))
    assert sorted(only.tolist()) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    ("n", "batch_size", "match"),
    [
        (10, 0, "batch_size must be an integer >= 1, got 0"),
        (10, -3, "batch_size must be an integer >= 1, got -3"),
        (10, 2.5, "batch_size must be an integer >= 1, got 2.5"),
        (-1, 2, "n must be an integer >= 0, got -1"),
    ],
)
def test_minibatches_errors(n, batch_size, match):
    with pytest.raises(ValueError, match=match):
        list(minibatches(n, batch_size))


X_ERR = torch.randn(6, 2, generator=torch.Generator().manual_seed(9), dtype=F64)
Y_ERR = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0, 0.0], dtype=F64)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lr": 0.0}, "lr must be a positive finite number, got 0.0"),
        ({"lr": float("nan")}, "lr must be a positive finite number, got nan"),
        ({"lr": "0.1"}, "lr must be a positive finite number, got '0.1'"),
        ({"num_steps": -1}, "num_steps must be an integer >= 0, got -1"),
        ({"num_steps": 10.0}, "num_steps must be an integer >= 0, got 10.0"),
        ({"w0": torch.zeros(3, dtype=F64)}, r"w0 must have shape \(d,\) = \(2,\)"),
        ({"w0": torch.zeros(2)}, "w0 has dtype torch.float32 but X has dtype torch.float64"),
        ({"b0": torch.zeros(1, dtype=F64)}, r"b0 must be a scalar \(0-dim\) tensor"),
        ({"y": 2 * Y_ERR - 1}, r"y must hold binary labels 0 or 1.*-1/\+1"),
        ({"y": Y_ERR[:5]}, r"y must have shape \(n,\) = \(6,\)"),
        ({"X": X_ERR.long()}, "X must be a floating tensor"),
    ],
)
def test_gradient_descent_errors(kwargs, match):
    args = {"X": X_ERR, "y": Y_ERR, "lr": 0.1, "num_steps": 2} | kwargs
    with pytest.raises(ValueError, match=match):
        gradient_descent(**args)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
        ({"num_epochs": -2}, "num_epochs must be an integer >= 0, got -2"),
        ({"lr": -1.0}, "lr must be a positive finite number, got -1.0"),
    ],
)
def test_sgd_errors(kwargs, match):
    args = {"X": X_ERR, "y": Y_ERR, "lr": 0.1, "num_epochs": 1, "batch_size": 2} | kwargs
    with pytest.raises(ValueError, match=match):
        sgd(**args)
