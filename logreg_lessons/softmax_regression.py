"""Softmax (multinomial logistic) regression: ``C`` linear scores turned into probabilities.

Forward::

    Z = X W + b                  # logits, (n, C)
    P = softmax(Z, dim=1)        # probabilities, rows sum to 1
    y_hat = argmax_c Z[:, c]     # the same argmax as P: softmax is monotone

Training is full-batch gradient descent on ``cross_entropy(Z, y)`` with the hand-derived
gradients of :func:`logreg_lessons.softmax_gradients`.
"""

from __future__ import annotations

import torch

from logreg_lessons._validation import (
    check_class_labels,
    check_class_weights,
    check_count,
    check_matrix,
    check_rate,
    check_softmax_params,
)
from logreg_lessons.gradients import _softmax_gradients
from logreg_lessons.losses import cross_entropy
from logreg_lessons.optim import FitResult, _progress
from logreg_lessons.stable import softmax


def softmax_logits(X, W, b):
    """Class scores ``Z = X W + b``.

    Parameters
    ----------
    X : torch.Tensor of shape (n, d)
    W : torch.Tensor of shape (d, C)
    b : torch.Tensor of shape (C,)

    Returns
    -------
    torch.Tensor of shape (n, C)
    """
    X, W, b = check_softmax_params(X, W, b)
    return X @ W + b


def softmax_predict_proba(X, W, b):
    """Class probabilities ``softmax(X W + b, dim=1)``, shape (n, C), rows sum to 1."""
    return softmax(softmax_logits(X, W, b), dim=1)


def softmax_predict(X, W, b):
    """Predicted class ``argmax_c (X W + b)[:, c]``, shape (n,), int64."""
    return softmax_logits(X, W, b).argmax(dim=1)


def fit_softmax(
    X, y, num_classes, lr, num_steps, class_weights=None, W0=None, b0=None, progress=False
) -> FitResult:
    """Full-batch gradient descent on the (optionally class-weighted) mean cross-entropy.

    Parameters
    ----------
    X : torch.Tensor of shape (n, d), floating dtype
    y : torch.Tensor of shape (n,), int64 labels in ``[0, num_classes)``
    num_classes : int
        ``C``, >= 2.
    lr : float
        Learning rate, > 0.
    num_steps : int
        Number of updates, >= 0.
    class_weights : torch.Tensor of shape (C,), optional
        See :func:`logreg_lessons.cross_entropy`.
    W0 : torch.Tensor of shape (d, C), optional
        Initial weights (zeros by default). Not modified.
    b0 : torch.Tensor of shape (C,), optional
        Initial bias (zeros by default). Not modified.
    progress : bool, default False
        Show a tqdm progress bar.

    Returns
    -------
    FitResult
        ``w`` holds ``W`` (d, C) and ``b`` holds ``b`` (C,); ``history[k]`` is the loss before
        step ``k`` and ``epoch_history[k]`` the loss after it.
    """
    num_classes = check_count(num_classes, "num_classes", minimum=2)
    X = check_matrix("X", X)
    y = check_class_labels("y", y, X.shape[0], num_classes=num_classes)
    lr = check_rate(lr)
    num_steps = check_count(num_steps, "num_steps")
    shape = (X.shape[1], num_classes)
    W0 = torch.zeros(shape, dtype=X.dtype) if W0 is None else check_matrix("W0", W0)
    if tuple(W0.shape) != shape:
        raise ValueError(f"W0 must have shape (d, C) = {shape}, got {tuple(W0.shape)}")
    b0 = torch.zeros(num_classes, dtype=X.dtype) if b0 is None else b0
    X, W, b = check_softmax_params(X, W0, b0, names=("W0", "b0"))
    W, b = W.detach().clone(), b.detach().clone()
    class_weights = check_class_weights(class_weights, y, num_classes, X.dtype)

    def loss_at(W, b):
        return float(cross_entropy(X @ W + b, y, class_weights))

    history, epoch_history = [], []
    loss = loss_at(W, b)
    for _ in _progress(range(num_steps), progress, "softmax regression"):
        history.append(loss)
        dW, db = _softmax_gradients(X, y, W, b, class_weights)
        W, b = W - lr * dW, b - lr * db
        loss = loss_at(W, b)
        epoch_history.append(loss)
    return FitResult(W, b, history, epoch_history, num_steps)
