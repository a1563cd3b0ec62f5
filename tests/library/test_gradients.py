"""Hand-derived gradients against central differences (float64) and torch.autograd (the oracle)."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from logreg_lessons import (
    bce_with_logits,
    check_gradient,
    cross_entropy,
    logistic_gradients,
    softmax_gradients,
)

F64 = torch.float64
TOL = 1e-6


def _binary_problem(seed, n, d, scale=1.0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=dtype) * scale
    y = (torch.rand(n, generator=g) < 0.5).to(dtype)
    w = torch.randn(d, generator=g, dtype=dtype)
    b = torch.randn((), generator=g, dtype=dtype)
    return X, y, w, b


def _softmax_problem(seed, n, d, C, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=dtype)
    y = torch.randint(0, C, (n,), generator=g)
    W = torch.randn(d, C, generator=g, dtype=dtype)
    b = torch.randn(C, generator=g, dtype=dtype)
    weights = torch.rand(C, generator=g, dtype=dtype) + 0.1
    return X, y, W, b, weights


def _autograd(loss_fn, *params):
    leaves = [p.detach().clone().requires_grad_(True) for p in params]
    return torch.autograd.grad(loss_fn(*leaves), leaves)


shapes = st.tuples(st.integers(0, 10_000), st.integers(1, 12), st.integers(1, 4))


@given(shapes)
def test_logistic_gradients_match_autograd_and_finite_differences(args):
    seed, n, d = args
    X, y, w, b = _binary_problem(seed, n, d)
    dw, db = logistic_gradients(X, y, w, b)
    assert dw.shape == (d,) and db.shape == () and dw.dtype == db.dtype == F64
    ref_dw, ref_db = _autograd(
        lambda w_, b_: F.binary_cross_entropy_with_logits(X @ w_ + b_, y), w, b
    )
    torch.testing.assert_close(dw, ref_dw, rtol=TOL, atol=1e-12)
    torch.testing.assert_close(db, ref_db, rtol=TOL, atol=1e-12)
    loss_w = lambda w_: bce_with_logits(X @ w_ + b, y)  # noqa: E731
    loss_b = lambda b_: bce_with_logits(X @ w + b_, y)  # noqa: E731
    res_w = check_gradient(loss_w, lambda w_: logistic_gradients(X, y, w_, b)[0], w, n=n, name="w")
    res_b = check_gradient(loss_b, lambda b_: logistic_gradients(X, y, w, b_)[1], b, n=n, name="b")
    assert res_w, res_w.message
    assert res_b, res_b.message


@pytest.mark.parametrize("weighted", [False, True])
@given(
    args=st.tuples(st.integers(0, 10_000), st.integers(1, 12), st.integers(1, 4), st.integers(2, 5))
)
def test_softmax_gradients_match_autograd_and_finite_differences(weighted, args):
    seed, n, d, C = args
    X, y, W, b, weights = _softmax_problem(seed, n, d, C)
    cw = weights if weighted else None
    dW, db = softmax_gradients(X, y, W, b, class_weights=cw)
    assert dW.shape == (d, C) and db.shape == (C,)
    ref_dW, ref_db = _autograd(lambda W_, b_: F.cross_entropy(X @ W_ + b_, y, weight=cw), W, b)
    torch.testing.assert_close(dW, ref_dW, rtol=TOL, atol=1e-12)
    torch.testing.assert_close(db, ref_db, rtol=TOL, atol=1e-12)
    res_W = check_gradient(
        lambda W_: cross_entropy(X @ W_ + b, y, cw),
        lambda W_: softmax_gradients(X, y, W_, b, cw)[0],
        W,
        n=n,
        name="W",
    )
    res_b = check_gradient(
        lambda b_: cross_entropy(X @ W + b_, y, cw),
        lambda b_: softmax_gradients(X, y, W, b_, cw)[1],
        b,
        n=n,
        name="b",
    )
    assert res_W, res_W.message
    assert res_b, res_b.message


def test_class_weights_scale_rows_by_normalised_weight():
    X, y, W, b, _ = _softmax_problem(5, 9, 2, 3)
    uniform = torch.full((3,), 7.0, dtype=F64)  # any constant weight is the plain mean
    for got, ref in zip(
        softmax_gradients(X, y, W, b, uniform), softmax_gradients(X, y, W, b), strict=True
    ):
        torch.testing.assert_close(got, ref)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_gradients_keep_dtype_and_stay_finite_on_extreme_logits(dtype):
    X, y, w, b = _binary_problem(
        6, 20, 3, scale=1e4 if dtype == torch.float32 else 1e2, dtype=dtype
    )
    dw, db = logistic_gradients(X, y, w, b)
    assert dw.dtype == db.dtype == dtype
    assert torch.isfinite(dw).all() and torch.isfinite(db)
    X, y, W, b, _ = _softmax_problem(7, 20, 3, 4, dtype=dtype)
    dW, db = softmax_gradients(X * 100, y, W, b)
    assert dW.dtype == dtype and torch.isfinite(dW).all() and torch.isfinite(db).all()


def test_extreme_logits_float64_match_autograd():
    X, y, w, b = _binary_problem(8, 30, 2, scale=1e4)
    dw, db = logistic_gradients(X, y, w, b)
    ref_dw, ref_db = _autograd(
        lambda w_, b_: F.binary_cross_entropy_with_logits(X @ w_ + b_, y), w, b
    )
    torch.testing.assert_close(dw, ref_dw)
    torch.testing.assert_close(db, ref_db)


def test_python_float_bias_and_int_labels_are_accepted():
    X, y, w, _ = _binary_problem(9, 10, 2)
    dw1, db1 = logistic_gradients(X, y.long(), w, 0.5)
    dw2, db2 = logistic_gradients(X, y, w, torch.tensor(0.5, dtype=F64))
    torch.testing.assert_close(dw1, dw2)
    torch.testing.assert_close(db1, db2)


X0, _, W0, B0 = _binary_problem(10, 5, 2)
Y0 = torch.tensor([0.0, 1.0, 0.0, 1.0, 1.0], dtype=F64)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((X0[:, 0], Y0, W0, B0), r"X must be a 2-D tensor .* got shape \(5,\)"),
        ((X0.long(), Y0, W0, B0), "X must be a floating tensor, got torch.int64"),
        ((X0, Y0[:, None], W0, B0), r"y must have shape \(n,\) = \(5,\) .* got \(5, 1\)"),
        ((X0, 2 * Y0 - 1, W0, B0), r"binary labels 0 or 1.*-1/\+1"),
        (
            (X0, Y0, W0[:1], B0),
            r"w must have shape \(d,\) = \(2,\) to match X's columns, got \(1,\)",
        ),
        ((X0, Y0, W0, B0[None]), r"b must be a scalar \(0-dim\) tensor, got shape \(1,\)"),
        ((X0, Y0, W0.float(), B0), "w has dtype torch.float32 but X has dtype torch.float64"),
    ],
)
def test_logistic_gradients_errors(args, match):
    with pytest.raises(ValueError, match=match):
        logistic_gradients(*args)


XS, YS, WS, BS, CW = _softmax_problem(11, 6, 2, 3)


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((XS, YS.double(), WS, BS), {}, "y must hold integer class indices.*torch.float64"),
        ((XS, YS + 3, WS, BS), {}, r"class indices in \{0, \.\.\., 2\}"),
        ((XS, YS, WS.T, BS), {}, r"W must have shape \(d, C\) with d = 2 rows .* got \(3, 2\)"),
        ((XS, YS, WS, BS[:2]), {}, r"b must have shape \(C,\) = \(3,\) to match W's columns"),
        ((XS, YS, WS, BS), {"class_weights": CW[:2]}, r"class_weights must have shape \(C,\)"),
        ((XS, YS, WS, BS), {"class_weights": -CW}, "class_weights must be finite and non-negative"),
        (
            (XS, YS, WS, BS),
            {"class_weights": CW.float()},
            "class_weights must have dtype torch.float64",
        ),
        ((XS, YS, WS, BS), {"class_weights": torch.zeros(3, dtype=F64)}, "zero total weight"),
    ],
)
def test_softmax_gradients_errors(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        softmax_gradients(*args, **kwargs)
