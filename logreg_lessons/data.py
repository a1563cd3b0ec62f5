"""Synthetic data sets, a stratified train/validation/test split and feature standardisation.

Every random function takes a ``seed`` and draws from its own ``torch.Generator``, so the same
seed gives the same data and the global RNG (``torch.manual_seed``) is never touched.
"""

import math
import numbers

import torch
from torch.distributions import MultivariateNormal

from logreg_lessons._validation import as_tensor, check_matrix, check_positive_int


def _check_dtype(dtype):
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(f"dtype must be a floating torch dtype such as torch.float32, got {dtype}")


def _gaussian(mean, cov, n, generator):
    """``n`` draws of N(mean, cov) in float64, as ``MultivariateNormal.rsample`` computes them:
    ``loc + eps @ A.T`` with ``eps ~ N(0, I)`` and ``A`` the Cholesky factor of ``cov``.
    (``rsample`` itself only uses the global RNG, hence the explicit generator here.)"""
    try:
        dist = MultivariateNormal(mean, covariance_matrix=cov)
    except (ValueError, RuntimeError):  # RuntimeError: Cholesky failure when validation is off
        raise ValueError(
            f"cov must be a symmetric positive-definite (d, d) matrix, got {cov.tolist()}"
        ) from None
    eps = torch.randn(n, mean.shape[0], generator=generator, dtype=torch.float64)
    return dist.loc + eps @ dist.scale_tril.T


def make_blobs(
    n_per_class=500,
    means=((5.0, 10.0), (0.0, 5.0)),
    cov=((1.0, 0.25), (0.25, 1.0)),
    seed=0,
    dtype=torch.float32,
):
    r"""Two Gaussian blobs, :math:`x \mid y = k \sim \mathcal{N}(\mu_k, \Sigma)`, for binary labels.

    Parameters
    ----------
    n_per_class : int, samples drawn from each blob
    means : array-like of shape (2, n_features), the centres :math:`\mu_0, \mu_1`
    cov : array-like of shape (n_features, n_features), or (2, n_features, n_features) for one
        covariance per class; symmetric positive definite
    seed : int, seed of a private ``torch.Generator``
    dtype : floating torch dtype of the outputs

    Returns
    -------
    X : Tensor of shape (2 * n_per_class, n_features), class 0 rows first
    y : Tensor of shape (2 * n_per_class,), same dtype as X, values 0.0 then 1.0
    """
    n = check_positive_int("n_per_class", n_per_class)
    _check_dtype(dtype)
    means = torch.as_tensor(means, dtype=torch.float64)
    if means.ndim != 2 or means.shape[0] != 2:
        raise ValueError(f"means must have shape (2, d), got {tuple(means.shape)}")
    d = means.shape[1]
    cov = torch.as_tensor(cov, dtype=torch.float64)
    if cov.shape not in ((d, d), (2, d, d)):
        raise ValueError(f"cov must have shape ({d}, {d}) or (2, {d}, {d}), got {tuple(cov.shape)}")
    covs = cov if cov.ndim == 3 else (cov, cov)
    g = torch.Generator().manual_seed(seed)
    X = torch.cat([_gaussian(means[k], covs[k], n, g) for k in range(2)])
    y = torch.cat([torch.zeros(n), torch.ones(n)])
    return X.to(dtype), y.to(dtype)


def make_multiclass_blobs(
    n_per_class=200, num_classes=3, seed=0, dtype=torch.float32, spread=1.0, radius=4.0
):
    r"""``num_classes`` round Gaussian blobs in 2-D with centres evenly spaced on a circle.

    Centre :math:`k` is :math:`r(\cos 2\pi k / C, \sin 2\pi k / C)` and each blob has covariance
    :math:`\text{spread}^2 I`.

    Parameters
    ----------
    n_per_class : int
    num_classes : int >= 2, ``C``
    seed : int
    dtype : floating torch dtype of X
    spread : float > 0, standard deviation of every blob along each axis
    radius : float > 0, ``r``

    Returns
    -------
    X : Tensor of shape (num_classes * n_per_class, 2), class 0 rows first
    y : Tensor of shape (num_classes * n_per_class,), int64 in {0, ..., C - 1}
    """
    n = check_positive_int("n_per_class", n_per_class)
    C = check_positive_int("num_classes", num_classes)
    if C < 2:
        raise ValueError(f"num_classes must be at least 2, got {C}")
    if not spread > 0 or not radius > 0:
        raise ValueError(f"spread and radius must be positive, got {spread!r} and {radius!r}")
    _check_dtype(dtype)
    g = torch.Generator().manual_seed(seed)
    cov = spread**2 * torch.eye(2, dtype=torch.float64)
    angles = 2 * math.pi * torch.arange(C, dtype=torch.float64) / C
    centres = radius * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    X = torch.cat([_gaussian(centres[k], cov, n, g) for k in range(C)])
    y = torch.arange(C).repeat_interleave(n)
    return X.to(dtype), y


def make_moons(n_samples=400, noise=0.1, seed=0, dtype=torch.float32):
    r"""Two interleaving half circles with Gaussian noise: a data set no line separates.

    Class 0: :math:`(\cos t, \sin t)`; class 1: :math:`(1 - \cos t, \tfrac12 - \sin t)`, with
    :math:`t` evenly spaced in :math:`[0, \pi]`, plus :math:`\mathcal{N}(0, \text{noise}^2 I)`.

    Returns
    -------
    X : Tensor of shape (n_samples, 2), class 0 rows first (``ceil(n_samples / 2)`` of them)
    y : Tensor of shape (n_samples,), int64 in {0, 1}
    """
    n = check_positive_int("n_samples", n_samples)
    if n < 2:
        raise ValueError(f"n_samples must be at least 2, got {n}")
    if not noise >= 0:
        raise ValueError(f"noise must be >= 0, got {noise!r}")
    _check_dtype(dtype)
    n0, n1 = n - n // 2, n // 2
    t0, t1 = (torch.linspace(0, math.pi, k, dtype=torch.float64) for k in (n0, n1))
    outer = torch.stack([torch.cos(t0), torch.sin(t0)], dim=1)
    inner = torch.stack([1 - torch.cos(t1), 0.5 - torch.sin(t1)], dim=1)
    g = torch.Generator().manual_seed(seed)
    X = torch.cat([outer, inner]) + noise * torch.randn(n, 2, generator=g, dtype=torch.float64)
    y = torch.cat([torch.zeros(n0, dtype=torch.int64), torch.ones(n1, dtype=torch.int64)])
    return X.to(dtype), y


def _split_counts(n, fractions):
    # Largest-remainder rounding: floors first, then the leftover samples go to the largest
    # fractional parts, so the three counts always sum to n.
    raw = [f * n for f in fractions]
    counts = [math.floor(r) for r in raw]
    order = sorted(range(3), key=lambda i: counts[i] - raw[i])
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return counts


def train_val_test_split(X, y, fractions=(0.7, 0.15, 0.15), seed=0, stratify=True):
    """Shuffle and split into training, validation and test sets.

    Parameters
    ----------
    X : Tensor of shape (n_samples, n_features)
    y : Tensor of shape (n_samples,)
    fractions : three non-negative numbers summing to 1 (train, validation, test)
    seed : int, seed of a private ``torch.Generator``
    stratify : bool, default True
        Split every class separately in the given fractions, so each part keeps the class
        proportions of ``y``. Counts are rounded per class (largest remainder) and always add
        up to the class size, so the three parts together hold every sample exactly once.

    Returns
    -------
    X_train, X_val, X_test, y_train, y_val, y_test
    """
    X = check_matrix("X", X)
    y = as_tensor("y", y)
    n = X.shape[0]
    if tuple(y.shape) != (n,):
        raise ValueError(f"y must have shape (n,) = ({n},) to match X, got {tuple(y.shape)}")
    fractions = tuple(fractions)
    if (
        len(fractions) != 3
        or not all(isinstance(f, numbers.Real) and f >= 0 for f in fractions)
        or not math.isclose(sum(fractions), 1.0, abs_tol=1e-6)
    ):
        raise ValueError(
            "fractions must be three non-negative numbers (train, val, test) summing to 1, "
            f"got {fractions}"
        )
    g = torch.Generator().manual_seed(seed)
    groups = [torch.nonzero(y == c).squeeze(1) for c in torch.unique(y)] if stratify else [None]
    parts = [[], [], []]
    for group in groups:
        idx = torch.arange(n) if group is None else group
        idx = idx[torch.randperm(idx.numel(), generator=g)]
        for k, piece in enumerate(torch.split(idx, _split_counts(idx.numel(), fractions))):
            parts[k].append(piece)
    index = [torch.cat(p) for p in parts]
    index = [i[torch.randperm(i.numel(), generator=g)] for i in index]
    return (*(X[i] for i in index), *(y[i] for i in index))


class Standardizer:
    r"""Rescale every feature to mean 0 and standard deviation 1: :math:`(x - m) / s`.

    ``fit`` learns :math:`m` (``mean_``) and :math:`s` (``std_``, the population standard
    deviation) on the training data only; ``transform`` applies them to any data. A constant
    feature has :math:`s = 0`; its ``std_`` is set to 1, so it maps to 0 instead of nan.
    """

    def __init__(self):
        self.mean_ = None
        self.std_ = None

    def fit(self, X):
        """Learn ``mean_`` and ``std_`` (shape (n_features,)) from X of shape (n, n_features)."""
        X = check_matrix("X", X)
        if X.shape[0] == 0:
            raise ValueError("X must have at least one row to fit a Standardizer, got 0")
        self.mean_ = X.mean(dim=0)
        std = X.std(dim=0, correction=0)
        self.std_ = torch.where(std > 0, std, torch.ones_like(std))
        return self

    def _check(self, name, X):
        if self.mean_ is None:
            raise ValueError("this Standardizer is not fitted yet: call fit(X_train) first")
        X = check_matrix(name, X)
        d = self.mean_.shape[0]
        if X.shape[1] != d:
            raise ValueError(f"{name} must have {d} columns as in fit, got {X.shape[1]}")
        return X

    def transform(self, X):
        """Return :math:`(X - \\mu) / s`, same shape (n, n_features) and dtype as ``X``."""
        X = self._check("X", X)
        return (X - self.mean_.to(X.dtype)) / self.std_.to(X.dtype)

    def fit_transform(self, X):
        """``fit(X)`` then ``transform(X)``."""
        return self.fit(X).transform(X)

    def inverse_transform(self, X):
        """Undo ``transform``: :math:`X s + \\mu`."""
        X = self._check("X", X)
        return X * self.std_.to(X.dtype) + self.mean_.to(X.dtype)

    def unstandardize(self, w, b):
        r"""Weights for raw features from weights learnt on standardised features.

        From :math:`((x - \mu) / s)^\top w + b = x^\top (w / s) + (b - (\mu / s)^\top w)`:
        ``w_raw = w / s`` and ``b_raw = b - (mean_ / std_) @ w``.

        Parameters
        ----------
        w : Tensor of shape (n_features,), or (n_features, n_classes) for softmax regression
        b : Tensor of shape (), or (n_classes,)

        Returns
        -------
        w_raw, b_raw : Tensors of the same shapes, so that
            ``logits(X_raw, w_raw, b_raw) == logits(transform(X_raw), w, b)``.
        """
        if self.mean_ is None:
            raise ValueError("this Standardizer is not fitted yet: call fit(X_train) first")
        w, b = as_tensor("w", w), as_tensor("b", b)
        d = self.mean_.shape[0]
        if w.ndim not in (1, 2) or w.shape[0] != d:
            raise ValueError(f"w must have shape ({d},) or ({d}, C), got {tuple(w.shape)}")
        if tuple(b.shape) != tuple(w.shape[1:]):
            expected = "()" if w.ndim == 1 else f"({w.shape[1]},)"
            raise ValueError(f"b must have shape {expected} to match w, got {tuple(b.shape)}")
        mean, std = self.mean_.to(w.dtype), self.std_.to(w.dtype)
        scale = std if w.ndim == 1 else std[:, None]
        return w / scale, b - (mean / std) @ w
