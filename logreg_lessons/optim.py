"""Full-batch gradient descent and mini-batch SGD for binary logistic regression.

Both minimise the mean binary cross-entropy with the hand-derived gradients of
:func:`logreg_lessons.logistic_gradients`::

    w <- w - lr * dw,    b <- b - lr * db

A learning rate that is too large makes the loss grow to ``inf`` (or ``nan``). The optimisers
keep going without raising or warning so that the book can show the divergence; the histories
then contain ``inf``/``nan`` floats.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from logreg_lessons._validation import check_binary_problem, check_count, check_matrix, check_rate
from logreg_lessons.gradients import _logistic_gradients
from logreg_lessons.losses import bce_with_logits


@dataclass
class FitResult:
    """Parameters and loss curves returned by the optimisers.

    Attributes
    ----------
    w : torch.Tensor
        Final weights, ``(d,)`` (``(d, C)`` for :func:`fit_softmax`).
    b : torch.Tensor
        Final bias, ``()`` (``(C,)`` for :func:`fit_softmax`).
    history : list of float
        One entry per update: the mean loss on the batch used by that update, computed
        *before* the update (for gradient descent the batch is the whole data set, so
        ``history[0]`` is the loss at the initial parameters).
    epoch_history : list of float
        Full-data mean loss at the end of every epoch (for gradient descent, after every
        step, so ``epoch_history[k] == history[k + 1]``).
    num_updates : int
        Number of parameter updates, ``len(history)``.
    """

    w: torch.Tensor
    b: torch.Tensor
    history: list[float] = field(default_factory=list)
    epoch_history: list[float] = field(default_factory=list)
    num_updates: int = 0


def _progress(iterable, progress, desc):
    """Wrap ``iterable`` in a transient tqdm bar when ``progress`` is true."""
    if not progress:
        return iterable
    from tqdm.auto import tqdm  # lazy: tqdm is only needed when asked for

    return tqdm(iterable, desc=desc, leave=False)


def _setup(X, y, w0, b0):
    """Validated data and copies of ``w0``/``b0`` (zeros when ``None``); inputs are untouched."""
    X = check_matrix("X", X)
    w0 = torch.zeros(X.shape[1], dtype=X.dtype) if w0 is None else w0
    b0 = torch.zeros((), dtype=X.dtype) if b0 is None else b0
    X, y, w, b = check_binary_problem(X, y, w0, b0, names=("w0", "b0"))
    return X, y, w.detach().clone(), b.detach().clone()


def _loss(X, y, w, b) -> float:
    return float(bce_with_logits(X @ w + b, y))


def gradient_descent(X, y, lr, num_steps, w0=None, b0=None, progress=False) -> FitResult:
    """Full-batch gradient descent on the mean binary cross-entropy.

    Parameters
    ----------
    X : torch.Tensor of shape (n, d), floating dtype
    y : torch.Tensor of shape (n,), values in {0, 1}
    lr : float
        Learning rate (step size), > 0.
    num_steps : int
        Number of updates, >= 0.
    w0 : torch.Tensor of shape (d,), optional
        Initial weights (zeros by default). Not modified.
    b0 : torch.Tensor of shape (), optional
        Initial bias (zero by default). Not modified.
    progress : bool, default False
        Show a tqdm progress bar (it writes to stderr).

    Returns
    -------
    FitResult
        ``history[k]`` is the loss before step ``k``; ``epoch_history[k]`` after it.
    """
    X, y, w, b = _setup(X, y, w0, b0)
    lr = check_rate(lr)
    num_steps = check_count(num_steps, "num_steps")
    history, epoch_history = [], []
    loss = _loss(X, y, w, b)
    for _ in _progress(range(num_steps), progress, "gradient descent"):
        history.append(loss)
        dw, db = _logistic_gradients(X, y, w, b)
        w, b = w - lr * dw, b - lr * db
        loss = _loss(X, y, w, b)
        epoch_history.append(loss)
    return FitResult(w, b, history, epoch_history, num_steps)


def minibatches(n, batch_size, generator=None):
    """Yield the indices of one epoch of shuffled mini-batches.

    A single ``torch.randperm(n, generator=generator)`` is cut into consecutive chunks of
    ``batch_size``; the last chunk holds the remainder ``n % batch_size`` and is **kept**.
    (A loop over ``range(n // batch_size)``, as in one of the source tutorials, silently drops
    those samples every epoch.) ``batch_size > n`` gives a single batch of all ``n`` indices.

    Parameters
    ----------
    n : int
        Number of samples, >= 0.
    batch_size : int
        Samples per batch, >= 1.
    generator : torch.Generator, optional
        Source of randomness; pass a seeded one for reproducible batches.

    Yields
    ------
    torch.Tensor of shape (batch_size,) or smaller, int64
        Every index in ``range(n)`` appears exactly once per epoch.
    """
    n = check_count(n, "n")
    batch_size = check_count(batch_size, "batch_size", minimum=1)
    perm = torch.randperm(n, generator=generator)
    for start in range(0, n, batch_size):
        yield perm[start : start + batch_size]


def sgd(X, y, lr, num_epochs, batch_size, seed=0, w0=None, b0=None, progress=False) -> FitResult:
    """Mini-batch stochastic gradient descent on the mean binary cross-entropy.

    Each epoch shuffles the data (with a ``torch.Generator`` seeded by ``seed``, so the global
    RNG is untouched and runs are reproducible) and makes one update per mini-batch of
    :func:`minibatches`, i.e. ``ceil(n / batch_size)`` updates per epoch.

    Parameters
    ----------
    X, y, lr, w0, b0, progress
        As in :func:`gradient_descent`.
    num_epochs : int
        Passes over the data, >= 0.
    batch_size : int
        Samples per update, >= 1 (``batch_size >= n`` is full-batch gradient descent).
    seed : int, default 0

    Returns
    -------
    FitResult
        ``history`` has one (noisy) batch loss per update, ``epoch_history`` one full-data
        loss per epoch.
    """
    X, y, w, b = _setup(X, y, w0, b0)
    lr = check_rate(lr)
    num_epochs = check_count(num_epochs, "num_epochs")
    batch_size = check_count(batch_size, "batch_size", minimum=1)
    generator = torch.Generator().manual_seed(int(seed))
    history, epoch_history = [], []
    for _ in _progress(range(num_epochs), progress, "sgd epochs"):
        for idx in minibatches(X.shape[0], batch_size, generator):
            X_batch, y_batch = X[idx], y[idx]
            history.append(_loss(X_batch, y_batch, w, b))
            dw, db = _logistic_gradients(X_batch, y_batch, w, b)
            w, b = w - lr * dw, b - lr * db
        epoch_history.append(_loss(X, y, w, b))
    return FitResult(w, b, history, epoch_history, len(history))
