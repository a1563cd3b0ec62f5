"""Shared input checks: every public function validates its arguments through these helpers.

Each helper takes the argument's *name* first, so that a failure message names the argument,
what was expected and what arrived, and says how to fix it. Each one returns the argument as a
tensor (converted where that is safe), so callers write ``X = check_matrix("X", X)``.

Conversion policy: a ``torch.Tensor`` passes through unchanged. A numpy array, a (nested) list
or tuple, or a Python number is converted with ``torch.as_tensor`` (students often hold numpy
data; a float64 numpy array becomes a float64 tensor, a list of Python floats becomes float32).
Anything else raises ``TypeError``. Wrong shapes, dtypes and label values raise ``ValueError``.

Helpers (stable names, also used by the gradient, optimiser and network modules):

- ``as_tensor(name, x)``: any array-like to a tensor, no dtype check.
- ``as_float_tensor(name, x)``: a floating tensor of any shape (integer tensors are refused).
- ``check_matrix(name, X)``: a floating 2-D tensor ``(n, d)``.
- ``check_vector(name, v, length=None, what="d", match=None)``: a floating ``(length,)`` tensor.
- ``check_scalar(name, b, dtype=None)``: a floating 0-dim tensor; Python numbers are converted.
- ``check_same_dtype(**tensors)``: all floating arguments share the first one's dtype.
- ``check_binary_labels(name, y, n, dtype=None, against="X")``: ``(n,)`` labels in {0, 1}.
- ``check_class_labels(name, y, n, num_classes=None, against="X")``: ``(n,)`` int64 indices.
- ``check_label_vector(name, y)``: a 1-D vector of non-negative integer values (int64 out).
- ``check_probabilities(name, p)``: a floating tensor with every entry in [0, 1].
- ``check_positive_int(name, k)``: a Python int >= 1.
- ``check_binary_problem``, ``check_softmax_params``, ``check_class_weights``, ``check_rate``,
  ``check_count``: whole-problem checks shared by the gradient, optimiser and network modules.
"""

import math
import numbers

import numpy as np
import torch

_CONVERTIBLE = (np.ndarray, np.generic, list, tuple, numbers.Number)


def as_tensor(name, x):
    """Return ``x`` as a tensor; numpy arrays, lists and numbers go through ``torch.as_tensor``."""
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, _CONVERTIBLE):
        try:
            return torch.as_tensor(x)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(f"{name} could not be converted to a tensor: {err}") from None
    raise TypeError(
        f"{name} must be a torch.Tensor (numpy arrays and lists are converted with "
        f"torch.as_tensor), got {type(x).__name__}"
    )


def as_float_tensor(name, x):
    """Return ``x`` as a tensor and require a floating dtype (float16, bfloat16, 32 or 64)."""
    x = as_tensor(name, x)
    if not x.is_floating_point():
        raise ValueError(
            f"{name} must be a floating tensor, got {x.dtype}; convert with {name}.float() "
            f"(or {name}.double() for float64)"
        )
    return x


def check_matrix(name, X):
    """Require a floating 2-D tensor ``(n_samples, n_features)``."""
    X = as_float_tensor(name, X)
    if X.ndim != 2:
        hint = f"; for a single feature use {name}.reshape(-1, 1)" if X.ndim == 1 else ""
        raise ValueError(
            f"{name} must be a 2-D tensor of shape (n_samples, n_features), "
            f"got shape {tuple(X.shape)}{hint}"
        )
    return X


def check_vector(name, v, length=None, what="d", match=None):
    """Require a floating 1-D tensor of shape ``(length,)`` (any length when ``length`` is None)."""
    v = as_float_tensor(name, v)
    if v.ndim == 1 and (length is None or v.shape[0] == length):
        return v
    expected = f"({what},)" if length is None else f"({what},) = ({length},)"
    to_match = f" to match {match}" if match else ""
    hint = f"; use {name}.reshape(-1)" if v.ndim == 2 and 1 in v.shape else ""
    raise ValueError(f"{name} must have shape {expected}{to_match}, got {tuple(v.shape)}{hint}")


def check_scalar(name, b, dtype=None):
    """Require a floating 0-dim tensor; a Python number becomes one of ``dtype``."""
    if isinstance(b, numbers.Number) and not isinstance(b, bool):
        return torch.tensor(float(b), dtype=dtype or torch.get_default_dtype())
    b = as_float_tensor(name, b)
    if b.ndim != 0:
        hint = f"; use {name}.squeeze()" if b.numel() == 1 else ""
        raise ValueError(
            f"{name} must be a scalar (0-dim) tensor, got shape {tuple(b.shape)}{hint}"
        )
    return b


def check_same_dtype(**tensors):
    """Require all given tensors to share the dtype of the first one (keyword order)."""
    items = list(tensors.items())
    first_name, first = items[0]
    names = ", ".join(tensors)
    for name, t in items[1:]:
        if t.dtype != first.dtype:
            raise ValueError(
                f"{name} has dtype {t.dtype} but {first_name} has dtype {first.dtype}; "
                f"{names} must share one dtype: convert with {name}.to({first_name}.dtype)"
            )


def _check_label_shape(name, y, n, against):
    if tuple(y.shape) == (n,):
        return
    msg = f"{name} must have shape (n,) = ({n},) to match {against}, got {tuple(y.shape)}"
    if tuple(y.shape) == (n, 1):
        msg += (
            f"; a (n, 1) label column would broadcast against (n,) into an (n, n) matrix: "
            f"use {name}.reshape(-1)"
        )
    raise ValueError(msg)


def _show_values(values, limit=10):
    shown = [v.item() for v in values[:limit]]
    shown = [int(v) if float(v).is_integer() else v for v in shown]
    return str(shown)[:-1] + (", ...]" if len(values) > limit else "]")


def check_binary_labels(name, y, n, dtype=None, against="X"):
    """Require labels of shape ``(n,)`` with values in {0, 1} (bool, int or float dtype).

    Returns ``y`` converted to ``dtype`` when given (e.g. the logits' dtype), else unchanged.
    """
    y = as_tensor(name, y)
    _check_label_shape(name, y, n, against)
    if y.is_complex():
        raise ValueError(f"{name} must be a real tensor of 0/1 labels, got {y.dtype}")
    y_ = y.detach()
    if not bool(((y_ == 0) | (y_ == 1)).all()):  # one pass; unique() sorts, so only on error
        values = torch.unique(y_)
        msg = f"{name} must hold binary labels 0 or 1, got values {_show_values(values)}"
        if bool(((values == -1) | (values == 1)).all()):
            msg += f"; these look like -1/+1 labels: convert with ({name} + 1) / 2"
        raise ValueError(msg)
    return y if dtype is None else y.to(dtype)


def check_class_labels(name, y, n, num_classes=None, against="X"):
    """Require integer class indices of shape ``(n,)`` in {0, ..., num_classes - 1}; int64 out."""
    y = as_tensor(name, y)
    _check_label_shape(name, y, n, against)
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ValueError(
            f"{name} must hold integer class indices (torch.int64), got {y.dtype}; "
            f"convert with {name}.long()"
        )
    if y.numel() > 0:
        low = int(y.min())
        high = int(y.max())
        if low < 0 or (num_classes is not None and high >= num_classes):
            values = torch.unique(y)
            top = "C - 1" if num_classes is None else f"{num_classes - 1}"
            raise ValueError(
                f"{name} must hold class indices in {{0, ..., {top}}}, "
                f"got values {_show_values(values)}"
            )
    return y.long()


def check_label_vector(name, y):
    """Require a 1-D vector of non-negative integer values (any dtype); returns int64."""
    y = as_tensor(name, y)
    if y.ndim != 1:
        raise ValueError(
            f"{name} must be a 1-D tensor of labels of shape (n,), got shape {tuple(y.shape)}"
            + (f"; use {name}.reshape(-1)" if y.ndim == 2 and 1 in y.shape else "")
        )
    if y.is_complex():
        raise ValueError(f"{name} must hold integer labels, got {y.dtype}")
    if y.is_floating_point() and not bool((y == torch.round(y)).all()):
        raise ValueError(
            f"{name} must hold integer labels, got non-integer values; "
            "did you pass probabilities? threshold them first (e.g. predict)"
        )
    if y.numel() > 0 and bool((y < 0).any()):
        raise ValueError(
            f"{name} must hold labels >= 0, got values {_show_values(torch.unique(y))}"
        )
    return y.long()


def check_probabilities(name, p):
    """Require a floating tensor with every entry in [0, 1] (NaN fails)."""
    p = as_float_tensor(name, p)
    inside = (p >= 0) & (p <= 1)
    if not bool(inside.all()):
        raise ValueError(
            f"{name} must hold probabilities in [0, 1], got values in "
            f"[{float(p.min())}, {float(p.max())}]; if these are logits, use bce_with_logits"
        )
    return p


def check_positive_int(name, k):
    """Require a Python (or numpy) integer >= 1."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"{name} must be a positive integer, got {k!r}")
    return int(k)


# Checks of whole problems, shared by gradients, optim, softmax_regression and mlp.


def check_binary_problem(X, y, w, b, names=("w", "b")):
    """Validate a binary problem; returns (X, y as X's dtype, w, b)."""
    X = check_matrix("X", X)
    y = check_binary_labels("y", y, X.shape[0], dtype=X.dtype)
    w = check_vector(names[0], w, length=X.shape[1], what="d", match="X's columns")
    b = check_scalar(names[1], b, dtype=X.dtype)
    check_same_dtype(X=X, **{names[0]: w, names[1]: b})
    return X, y, w, b


def check_softmax_params(X, W, b, names=("W", "b")):
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


def check_class_weights(class_weights, y, C, dtype):
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


def check_rate(lr, name="lr"):
    """A finite learning rate > 0 as a float."""
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {lr!r}")
    return float(lr)


def check_count(k, name, minimum=0):
    """An integer >= minimum (a number of steps, epochs, samples...)."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {k!r}")
    return int(k)
