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

import torch

from logreg_lessons._validation import (
    check_binary_problem,
    check_class_labels,
    check_class_weights,
    check_softmax_params,
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
    X, y, w, b = check_binary_problem(X, y, w, b)
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
    X, W, b = check_softmax_params(X, W, b)
    y = check_class_labels("y", y, X.shape[0], num_classes=W.shape[1])
    class_weights = check_class_weights(class_weights, y, W.shape[1], X.dtype)
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
