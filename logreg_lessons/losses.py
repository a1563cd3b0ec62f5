"""Losses for logistic and softmax regression, each a mean over samples.

Following scikit-learn's loss module, the losses take *raw predictions* (logits), never
probabilities: ``bce_with_logits(z, y)``, not ``bce(sigmoid(z), y)``. ``bce_from_probs`` is kept
only to show, in the book, why the probability route is worse.
"""

import torch

from logreg_lessons._validation import (
    check_binary_labels,
    check_class_labels,
    check_matrix,
    check_probabilities,
    check_same_dtype,
    check_vector,
)
from logreg_lessons.stable import log_sigmoid, log_softmax


def bce_with_logits(z, y):
    r"""Mean binary cross-entropy computed from logits.

    .. math::
        L = -\frac{1}{n} \sum_i \big[ y_i \log \sigma(z_i) + (1 - y_i) \log \sigma(-z_i) \big]

    Parameters
    ----------
    z : Tensor of shape (n_samples,), floating
        Logits :math:`z_i = x_i^\top w + b`.
    y : Tensor of shape (n_samples,)
        Labels in {0, 1} (bool, int or float; compared as values).

    Returns
    -------
    Tensor of shape () and the dtype of ``z``.

    Notes
    -----
    :math:`\log(1 - \sigma(z)) = \log \sigma(-z)`, and :func:`~logreg_lessons.log_sigmoid` is
    stable, so the loss is exact even for logits of +-1e4: a label 0 with logit 1e4 costs 1e4,
    a label 1 with logit 1e4 costs 0. Each label selects one term, so no large terms cancel.
    """
    z = check_vector("z", z, what="n")
    y = check_binary_labels("y", y, z.shape[0], dtype=z.dtype, against="z")
    nll = -(y * log_sigmoid(z) + (1 - y) * log_sigmoid(-z))
    return nll.mean()


def bce_from_probs(p, y, eps=1e-12):
    r"""Mean binary cross-entropy from probabilities clamped to ``[eps, 1 - eps]``.

    .. math::
        L = -\frac{1}{n} \sum_i \big[ y_i \log \tilde p_i + (1 - y_i) \log(1 - \tilde p_i) \big],
        \qquad \tilde p_i = \min(\max(p_i, \varepsilon), 1 - \varepsilon)

    Kept **for teaching**; use :func:`bce_with_logits`. The clamp keeps the loss finite when
    ``p`` rounded to exactly 0 or 1, but it caps the loss at ``-log(eps)`` (about 27.6) and its
    gradient is zero outside the clamp: a confidently wrong prediction stops being corrected.

    Parameters
    ----------
    p : Tensor of shape (n_samples,), floating
        Probabilities in [0, 1], e.g. ``sigmoid(z)``.
    y : Tensor of shape (n_samples,)
        Labels in {0, 1}.
    eps : float, default 1e-12

    Returns
    -------
    Tensor of shape () and the dtype of ``p``.

    Notes
    -----
    The clamp and the logs run in float64, then the mean is rounded back to ``p.dtype``:
    ``1 - 1e-12`` rounds to exactly 1 in float32 and float16, so clamping in those dtypes
    would leave ``log(1 - p) = log(0) = -inf``.
    """
    p = check_probabilities("p", check_vector("p", p, what="n"))
    y = check_binary_labels("y", y, p.shape[0], dtype=torch.float64, against="p")
    if not 0 < eps < 0.5:
        raise ValueError(f"eps must be in (0, 0.5), got {eps!r}")
    p64 = torch.clamp(p.to(torch.float64), eps, 1 - eps)
    nll = -(y * torch.log(p64) + (1 - y) * torch.log1p(-p64))
    return nll.mean().to(p.dtype)


def cross_entropy(Z, y, class_weights=None):
    r"""Mean (optionally class-weighted) multiclass cross-entropy computed from logits.

    .. math::
        \ell_i = -\log \mathrm{softmax}(Z_i)_{y_i}, \qquad
        L = \frac{1}{n} \sum_i \ell_i \quad\text{or}\quad
        L = \frac{\sum_i a_{y_i} \ell_i}{\sum_i a_{y_i}}

    The weighted form (class weights :math:`a`) is the one of
    ``torch.nn.functional.cross_entropy(Z, y, weight=a)``.

    Parameters
    ----------
    Z : Tensor of shape (n_samples, n_classes), floating
        Logits :math:`Z = X W + b`.
    y : Tensor of shape (n_samples,), int64
        Class indices in {0, ..., n_classes - 1}.
    class_weights : Tensor of shape (n_classes,), optional
        Non-negative weight per class, same dtype as ``Z``.

    Returns
    -------
    Tensor of shape () and the dtype of ``Z``.
    """
    Z = check_matrix("Z", Z)
    n, num_classes = Z.shape
    y = check_class_labels("y", y, n, num_classes=num_classes, against="Z")
    nll = -log_softmax(Z, dim=1).gather(1, y[:, None]).squeeze(1)
    # Accumulate in at least float32: a float16 sum overflows long before the mean does.
    acc = torch.promote_types(Z.dtype, torch.float32)
    if class_weights is None:
        return nll.mean(dtype=acc).to(Z.dtype)
    a = check_vector(
        "class_weights", class_weights, length=num_classes, what="C", match="Z's columns"
    )
    check_same_dtype(Z=Z, class_weights=a)
    if bool((a < 0).any()):
        raise ValueError(f"class_weights must be non-negative, got {a.tolist()}")
    a_y = a[y]
    return ((a_y * nll).sum(dtype=acc) / a_y.sum(dtype=acc)).to(Z.dtype)
