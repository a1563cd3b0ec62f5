"""Hand-derived gradients of the two linear classifiers' losses (no autograd).

Binary logistic regression, loss ``L = mean_i bce_with_logits(z_i, y_i)`` with ``z = X w + b``::

    dz = (sigmoid(z) - y) / n        # dL/dz_i, shape (n,)
    dw = X^T dz                      # shape (d,)
    db = sum_i dz_i = mean(sigmoid(z) - y)

Softmax regression, loss ``L = cross_entropy(Z, y)`` with ``Z = X W + b``::

    dZ = (softmax(Z) - onehot(y)) / n            # shape (n, C)
    dW = X^T dZ                                  # shape (d, C)
    db = sum over samples of dZ                  # shape (C,)

With class weights the mean becomes a weighted mean, so row ``i`` of ``dZ`` is scaled by
``w_{y_i} / sum_j w_{y_j}`` instead of ``1 / n``.
"""

from __future__ import annotations

import math
import numbers

import torch

from logreg_lessons._validation import (
    check_binary_labels,
    check_class_labels,
    check_matrix,
    check_same_dtype,
    check_scalar,
    check_vector,
)
from logreg_lessons.stable import sigmoid, softmax


def logistic_gradients(X, y, w, b):
    """Gradient of the mean binary cross-entropy of a logistic model.

    Parameters
    ----------
    X : torch.Tensor of shape (n, d), floating dtype
    y : torch.Tensor of shape (n,), values in {0, 1} (float or int)
    w : torch.Tensor of shape (d,)
    b : torch.Tensor of shape () (a scalar tensor; a Python float is accepted)

    Returns
    -------
    dw : torch.Tensor of shape (d,)
        ``X^T (sigmoid(X w + b) - y) / n``
    db : torch.Tensor of shape ()
        ``mean(sigmoid(X w + b) - y)``
    """
    X, y, w, b = _check_binary(X, y, w, b)
    return _logistic_gradients(X, y, w, b)


def _logistic_gradients(X, y, w, b):
    """Unchecked core of :func:`logistic_gradients` (the optimisers validate once, up front)."""
    n = X.shape[0]
    z = X @ w + b  # forward: logits
    dz = (sigmoid(z) - y) / n  # backward: dL/dz of the mean BCE
    dw = X.T @ dz
    db = dz.sum()
    return dw, db


def softmax_gradients(X, y, W, b, class_weights=None):
    """Gradient of the (optionally class-weighted) mean cross-entropy of a softmax model.

    Parameters
    ----------
    X : torch.Tensor of shape (n, d), floating dtype
    y : torch.Tensor of shape (n,), int64 class indices in ``[0, C)``
    W : torch.Tensor of shape (d, C)
    b : torch.Tensor of shape (C,)
    class_weights : torch.Tensor of shape (C,), optional
        Non-negative weights; the loss is ``sum_i w_{y_i} nll_i / sum_i w_{y_i}`` (the same as
        ``torch.nn.functional.cross_entropy(weight=...)``).

    Returns
    -------
    dW : torch.Tensor of shape (d, C)
        ``X^T dZ`` with ``dZ = s[:, None] * (softmax(Z) - onehot(y))``, ``Z = X W + b``,
        ``s_i = 1/n`` (or ``w_{y_i} / sum_j w_{y_j}`` with class weights).
    db : torch.Tensor of shape (C,)
        ``dZ`` summed over samples.
    """
    X, W, b = _check_softmax(X, W, b)
    y = check_class_labels("y", y, X.shape[0], num_classes=W.shape[1])
    class_weights = _check_class_weights(class_weights, y, W.shape[1], X.dtype)
    return _softmax_gradients(X, y, W, b, class_weights)


def _softmax_gradients(X, y, W, b, class_weights):
    """Unchecked core of :func:`softmax_gradients`."""
    n, C = X.shape[0], W.shape[1]
    Z = X @ W + b  # forward: logits (n, C)
    if class_weights is None:
        s = torch.full((n,), 1.0 / n, dtype=X.dtype)
    else:
        w_i = class_weights[y]  # weight of each sample's true class
        s = w_i / w_i.sum()
    onehot = torch.nn.functional.one_hot(y, C).to(X.dtype)
    dZ = (softmax(Z, dim=1) - onehot) * s[:, None]  # backward: dL/dZ
    dW = X.T @ dZ
    db = dZ.sum(dim=0)
    return dW, db


# Input checks, shared with optim, softmax_regression and mlp (built on _validation).


def _check_binary(X, y, w, b, names=("w", "b")):
    """Validate a binary problem; returns (X, y as X's dtype, w, b)."""
    X = check_matrix("X", X)
    y = check_binary_labels("y", y, X.shape[0], dtype=X.dtype)
    w = check_vector(names[0], w, length=X.shape[1], what="d", match="X's columns")
    b = check_scalar(names[1], b, dtype=X.dtype)
    check_same_dtype(X=X, **{names[0]: w, names[1]: b})
    return X, y, w, b


def _check_softmax(X, W, b, names=("W", "b")):
    """Validate the parameters of a softmax model; returns (X, W, b)."""
    X = check_matrix("X", X)
    W = check_matrix(names[0], W)
    if W.shape[0] != X.shape[1]:
        raise ValueError(
            f"{names[0]} must have shape (d, C) with d = {X.shape[1]} rows to match X's "
            f"columns, got {tuple(W.shape)}"
        )
    b = check_vector(names[1], b, length=W.shape[1], what="C", match=f"{names[0]}'s columns")
    check_same_dtype(X=X, **{names[0]: W, names[1]: b})
    return X, W, b


def _check_class_weights(class_weights, y, C, dtype):
    """Validate class weights (C,) and return them (or None)."""
    if class_weights is None:
        return None
    a = check_vector("class_weights", class_weights, length=C, what="C", match="W's columns")
    if a.dtype != dtype:
        raise ValueError(f"class_weights must have dtype {dtype} like X, got {a.dtype}")
    if bool((a < 0).any()) or not bool(torch.isfinite(a).all()):
        raise ValueError(f"class_weights must be finite and non-negative, got {a.tolist()}")
    if y.numel() and float(a[y].sum()) <= 0:
        raise ValueError("class_weights give zero total weight to the classes present in y")
    return a


def _check_rate(lr, name="lr"):
    """A finite learning rate > 0 as a float."""
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {lr!r}")
    return float(lr)


def _check_count(k, name, minimum=0):
    """An integer >= minimum (a number of steps, epochs, samples...)."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {k!r}")
    return int(k)
