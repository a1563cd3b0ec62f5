"""Classification metrics: accuracy, confusion matrix, precision, recall and F1.

Labels may be int or float tensors (or numpy arrays) holding non-negative integer values, so
``make_blobs``'s float labels compare directly with ``predict``'s int64 output. Wherever a ratio
has a zero denominator (e.g. precision of a class that is never predicted) the result is 0.0,
like scikit-learn's ``zero_division=0``.
"""

import torch

from logreg_lessons._validation import (
    check_binary_labels,
    check_label_vector,
    check_positive_int,
)


def _check_pair(y_true, y_pred):
    y_true = check_label_vector("y_true", y_true)
    y_pred = check_label_vector("y_pred", y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"y_pred must have shape (n,) = {tuple(y_true.shape)} to match y_true, "
            f"got {tuple(y_pred.shape)}"
        )
    if y_true.numel() == 0:
        raise ValueError("y_true and y_pred are empty; metrics need at least one sample")
    return y_true, y_pred


def _safe_divide(num, den):
    num, den = num.double(), den.double()
    return torch.where(den > 0, num / torch.where(den > 0, den, 1.0), 0.0)


def accuracy(y_true, y_pred):
    r"""Fraction of correct predictions, :math:`\frac{1}{n} \sum_i \mathbb{1}[\hat y_i = y_i]`.

    Parameters
    ----------
    y_true, y_pred : Tensor of shape (n_samples,), integer-valued labels

    Returns
    -------
    float in [0, 1]
    """
    y_true, y_pred = _check_pair(y_true, y_pred)
    return float((y_true == y_pred).double().mean())


def confusion_matrix(y_true, y_pred, num_classes=None):
    r"""Counts :math:`M_{jk} = \#\{i : y_i = j, \hat y_i = k\}` (rows true, columns predicted).

    Parameters
    ----------
    y_true, y_pred : Tensor of shape (n_samples,), integer-valued labels in {0, ..., C - 1}
    num_classes : int, optional
        ``C``; by default one more than the largest label seen in either argument.

    Returns
    -------
    Tensor of shape (C, C), int64
    """
    y_true, y_pred = _check_pair(y_true, y_pred)
    top = int(torch.maximum(y_true.max(), y_pred.max()))
    C = top + 1 if num_classes is None else check_positive_int("num_classes", num_classes)
    if top >= C:
        raise ValueError(
            f"labels must lie in {{0, ..., num_classes - 1}} = {{0, ..., {C - 1}}}, "
            f"got a label {top}"
        )
    return torch.bincount(y_true * C + y_pred, minlength=C * C).reshape(C, C)


def precision_recall_f1(y_true, y_pred, num_classes=None):
    r"""Per-class precision, recall, F1 and support.

    For class :math:`k` with true positives :math:`TP_k`, false positives :math:`FP_k` and
    false negatives :math:`FN_k`: precision :math:`TP_k / (TP_k + FP_k)`, recall
    :math:`TP_k / (TP_k + FN_k)`, F1 :math:`2 TP_k / (2 TP_k + FP_k + FN_k)` (the harmonic mean
    of the two), support :math:`TP_k + FN_k`. A zero denominator gives 0.0.

    Parameters
    ----------
    y_true, y_pred : Tensor of shape (n_samples,), integer-valued labels
    num_classes : int, optional, see :func:`confusion_matrix`

    Returns
    -------
    dict with ``precision``, ``recall``, ``f1`` (float64 tensors of shape (C,)) and
    ``support`` (int64 tensor of shape (C,)).
    """
    M = confusion_matrix(y_true, y_pred, num_classes)
    tp = torch.diagonal(M)
    predicted = M.sum(dim=0)
    support = M.sum(dim=1)
    return {
        "precision": _safe_divide(tp, predicted),
        "recall": _safe_divide(tp, support),
        "f1": _safe_divide(2 * tp, predicted + support),
        "support": support,
    }


def _binary(y_true, y_pred, key):
    y_true, y_pred = _check_pair(y_true, y_pred)
    check_binary_labels("y_true", y_true, y_true.shape[0], against="y_pred")
    check_binary_labels("y_pred", y_pred, y_true.shape[0], against="y_true")
    return float(precision_recall_f1(y_true, y_pred, num_classes=2)[key][1])


def precision_score(y_true, y_pred):
    """Binary precision :math:`TP / (TP + FP)` of the positive class 1 (0.0 if nothing is
    predicted positive). ``y_true``, ``y_pred``: shape (n_samples,), values in {0, 1}."""
    return _binary(y_true, y_pred, "precision")


def recall_score(y_true, y_pred):
    """Binary recall :math:`TP / (TP + FN)` of the positive class 1 (0.0 if there is no
    positive). ``y_true``, ``y_pred``: shape (n_samples,), values in {0, 1}."""
    return _binary(y_true, y_pred, "recall")


def f1_score(y_true, y_pred):
    """Binary F1 :math:`2 TP / (2 TP + FP + FN)` of the positive class 1 (0.0 if the
    denominator is 0). ``y_true``, ``y_pred``: shape (n_samples,), values in {0, 1}."""
    return _binary(y_true, y_pred, "f1")
