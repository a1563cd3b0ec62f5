"""The forward pass of binary logistic regression: logits, probabilities, class predictions."""

from logreg_lessons._validation import check_matrix, check_same_dtype, check_scalar, check_vector
from logreg_lessons.stable import sigmoid


def _check_params(X, w, b):
    X = check_matrix("X", X)
    w = check_vector("w", w, length=X.shape[1], what="d", match="X's columns")
    b = check_scalar("b", b, dtype=X.dtype)
    check_same_dtype(X=X, w=w, b=b)
    return X, w, b


def logits(X, w, b):
    r"""Logits (raw scores) of a linear model, :math:`z = X w + b`.

    Parameters
    ----------
    X : Tensor of shape (n_samples, n_features), floating
    w : Tensor of shape (n_features,), same dtype as ``X``
    b : Tensor of shape () (a Python number is converted to ``X.dtype``)

    Returns
    -------
    z : Tensor of shape (n_samples,), :math:`z_i = x_i^\top w + b`.
    """
    X, w, b = _check_params(X, w, b)
    return X @ w + b


def predict_proba(X, w, b):
    r"""Probability of class 1, :math:`\hat y = \sigma(X w + b)`.

    Parameters
    ----------
    X : Tensor of shape (n_samples, n_features), floating
    w : Tensor of shape (n_features,)
    b : Tensor of shape ()

    Returns
    -------
    y_hat : Tensor of shape (n_samples,), entries in [0, 1], computed with the stable
        :func:`~logreg_lessons.sigmoid`.
    """
    return sigmoid(logits(X, w, b))


def predict(X, w, b, threshold=0.5):
    r"""Class predictions :math:`\mathbb{1}[\sigma(X w + b) \ge \text{threshold}]`.

    Parameters
    ----------
    X : Tensor of shape (n_samples, n_features), floating
    w : Tensor of shape (n_features,)
    b : Tensor of shape ()
    threshold : float in [0, 1], default 0.5
        A probability of exactly ``threshold`` is predicted as class 1.

    Returns
    -------
    Tensor of shape (n_samples,), int64 with values in {0, 1}.
    """
    if not isinstance(threshold, int | float) or not 0 <= threshold <= 1:
        raise ValueError(f"threshold must be a probability in [0, 1], got {threshold!r}")
    return (predict_proba(X, w, b) >= threshold).long()
