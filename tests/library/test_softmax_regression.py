"""Softmax regression: forward pass, training by gradient descent, agreement with scikit-learn."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from logreg_lessons import (
    FitResult,
    accuracy,
    cross_entropy,
    fit_softmax,
    make_multiclass_blobs,
    softmax_logits,
    softmax_predict,
    softmax_predict_proba,
)

F64 = torch.float64


@pytest.fixture(scope="module")
def overlapping3():
    """Standardised overlapping 3-class data: a finite unpenalised optimum exists."""
    g = torch.Generator().manual_seed(0)
    n = 300
    y = torch.arange(n) % 3
    centres = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]], dtype=F64)
    X = torch.randn(n, 2, generator=g, dtype=F64) + centres[y]
    return (X - X.mean(0)) / X.std(0), y


def test_forward_shapes_and_consistency():
    g = torch.Generator().manual_seed(1)
    X = torch.randn(7, 3, generator=g, dtype=F64)
    W = torch.randn(3, 4, generator=g, dtype=F64)
    b = torch.randn(4, generator=g, dtype=F64)
    Z = softmax_logits(X, W, b)
    assert Z.shape == (7, 4)
    torch.testing.assert_close(Z, X @ W + b)
    P = softmax_predict_proba(X, W, b)
    torch.testing.assert_close(P, torch.softmax(Z, dim=1))
    torch.testing.assert_close(P.sum(dim=1), torch.ones(7, dtype=F64))
    pred = softmax_predict(X, W, b)
    assert pred.dtype == torch.int64 and torch.equal(pred, P.argmax(dim=1))


def test_extreme_logits_give_finite_probabilities():
    X = torch.tensor([[1e4, -1e4]], dtype=torch.float32)
    W = torch.eye(2, dtype=torch.float32)
    P = softmax_predict_proba(X, W, torch.zeros(2))
    assert torch.isfinite(P).all() and torch.equal(P, torch.tensor([[1.0, 0.0]]))


def test_fit_softmax_learns_separable_blobs():
    X, y = make_multiclass_blobs(n_per_class=100, num_classes=3, seed=0, dtype=F64)
    res = fit_softmax(X, y, num_classes=3, lr=0.1, num_steps=200)
    assert isinstance(res, FitResult)
    assert res.w.shape == (2, 3) and res.b.shape == (3,)
    assert accuracy(y, softmax_predict(X, res.w, res.b)) > 0.95
    assert res.epoch_history[-1] < res.history[0] / 5


def test_fit_softmax_matches_sklearn_multinomial(overlapping3):
    from sklearn.linear_model import LogisticRegression

    X, y = overlapping3
    res = fit_softmax(X, y, num_classes=3, lr=2.0, num_steps=300)
    # C=inf is sklearn 1.8+'s spelling of penalty=None; lbfgs fits the multinomial model
    ref = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(X.numpy(), y.numpy())
    P = softmax_predict_proba(X, res.w, res.b).numpy()
    np.testing.assert_allclose(P, ref.predict_proba(X.numpy()), atol=1e-4)
    # W is identifiable only up to a constant per row (softmax ignores a shift of all logits)
    W_centred = res.w - res.w.mean(dim=1, keepdim=True)
    np.testing.assert_allclose(
        W_centred.numpy(), ref.coef_.T - ref.coef_.T.mean(1, keepdims=True), atol=1e-3
    )


def test_fit_softmax_history_semantics_and_initial_values(overlapping3):
    X, y = overlapping3
    W0 = torch.full((2, 3), 0.1, dtype=F64)
    b0 = torch.tensor([0.0, 0.5, -0.5], dtype=F64)
    copies = W0.clone(), b0.clone()
    res = fit_softmax(X, y, 3, lr=0.5, num_steps=4, W0=W0, b0=b0)
    assert res.num_updates == len(res.history) == len(res.epoch_history) == 4
    assert res.history[0] == pytest.approx(float(cross_entropy(X @ W0 + b0, y)))
    assert res.history[1:] == res.epoch_history[:-1]
    assert torch.equal(W0, copies[0]) and torch.equal(b0, copies[1])
    empty = fit_softmax(X.float(), y, 3, lr=0.5, num_steps=0)
    assert empty.history == [] and empty.w.dtype == torch.float32
    assert torch.equal(empty.w, torch.zeros(2, 3)) and torch.equal(empty.b, torch.zeros(3))


def test_class_weights_change_the_weighted_loss_minimised(overlapping3):
    X, y = overlapping3
    weights = torch.tensor([5.0, 1.0, 1.0], dtype=F64)
    plain = fit_softmax(X, y, 3, lr=1.0, num_steps=200)
    weighted = fit_softmax(X, y, 3, lr=1.0, num_steps=200, class_weights=weights)
    recall0 = lambda r: float((softmax_predict(X, r.w, r.b)[y == 0] == 0).double().mean())  # noqa: E731
    assert recall0(weighted) > recall0(plain)  # the up-weighted class is found more often
    ref = F.cross_entropy(X @ weighted.w + weighted.b, y, weight=weights)
    assert weighted.epoch_history[-1] == pytest.approx(float(ref))


X_ERR = torch.randn(6, 2, generator=torch.Generator().manual_seed(2), dtype=F64)
Y_ERR = torch.tensor([0, 1, 2, 0, 1, 2])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_classes": 1}, "num_classes must be an integer >= 2, got 1"),
        ({"num_classes": 2}, r"y must hold class indices in \{0, \.\.\., 1\}"),
        ({"y": Y_ERR.double()}, "y must hold integer class indices"),
        ({"lr": 0}, "lr must be a positive finite number, got 0"),
        ({"num_steps": -5}, "num_steps must be an integer >= 0, got -5"),
        ({"W0": torch.zeros(2, 4, dtype=F64)}, r"W0 must have shape \(d, C\) = \(2, 3\)"),
        (
            {"W0": torch.zeros(3, 3, dtype=F64)},
            r"W0 must have shape \(d, C\) = \(2, 3\), got \(3, 3\)",
        ),
        ({"b0": torch.zeros(2, dtype=F64)}, r"b0 must have shape \(C,\) = \(3,\)"),
        ({"class_weights": torch.ones(2, dtype=F64)}, r"class_weights must have shape \(C,\)"),
        ({"X": X_ERR[:, 0]}, "X must be a 2-D tensor"),
    ],
)
def test_fit_softmax_errors(kwargs, match):
    args = {"X": X_ERR, "y": Y_ERR, "num_classes": 3, "lr": 0.1, "num_steps": 1} | kwargs
    with pytest.raises(ValueError, match=match):
        fit_softmax(**args)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((X_ERR, torch.zeros(3, 3, dtype=F64), torch.zeros(3, dtype=F64)), "W must have shape"),
        ((X_ERR, torch.zeros(2, 3, dtype=F64), torch.zeros(3)), "b has dtype torch.float32"),
        ((X_ERR.long(), torch.zeros(2, 3), torch.zeros(3)), "X must be a floating tensor"),
    ],
)
def test_forward_errors(args, match):
    for fn in (softmax_logits, softmax_predict_proba, softmax_predict):
        with pytest.raises(ValueError, match=match):
            fn(*args)
