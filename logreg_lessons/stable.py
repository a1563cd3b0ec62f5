"""Numerically stable sigmoid, softplus, logsumexp and softmax, written without autograd.

One rule makes every function here safe in float16, float32 and float64: **never take exp of a
positive number**. ``exp(-|z|)`` lies in (0, 1], so it cannot overflow; the large part of the
answer is added back outside the exponential. For every finite input the results are finite
wherever the true value is finite, and no warning is raised.
"""

import torch

from logreg_lessons._validation import as_float_tensor


def naive_sigmoid(z):
    r"""Textbook logistic function :math:`1 / (1 + e^{-z})`, kept naive **for teaching**.

    Parameters
    ----------
    z : Tensor of any shape, floating

    Returns
    -------
    Tensor of the same shape and dtype as ``z``.

    Notes
    -----
    For very negative ``z``, ``exp(-z)`` overflows to ``inf`` (already at ``z = -12`` in
    float16, ``z = -89`` in float32). PyTorch then silently returns ``1 / inf = 0`` with no
    warning, so the probability is exactly 0, ``log`` of it is ``-inf``, and the log loss
    ``-(y log p + (1 - y) log(1 - p))`` becomes ``inf`` or, through ``0 * -inf``, ``nan``.
    Use :func:`sigmoid`, :func:`log_sigmoid` and ``bce_with_logits`` instead.

    Examples
    --------
    >>> p = naive_sigmoid(torch.tensor([-1000.0]))
    >>> p, torch.log(p)
    (tensor([0.]), tensor([-inf]))
    """
    z = as_float_tensor("z", z)
    return 1 / (1 + torch.exp(-z))


def sigmoid(z):
    r"""Stable logistic function :math:`\sigma(z) = 1 / (1 + e^{-z})`.

    Parameters
    ----------
    z : Tensor of any shape, floating

    Returns
    -------
    Tensor of the same shape and dtype as ``z``, entries in [0, 1].

    Notes
    -----
    With :math:`e = e^{-|z|} \in (0, 1]`: :math:`\sigma(z) = 1 / (1 + e)` for :math:`z \ge 0` and
    :math:`\sigma(z) = e / (1 + e)` for :math:`z < 0`. Both branches only exponentiate a
    non-positive number (the usual two-branch trick, as in ``scipy.special.expit``). They are
    merged into one formula, :math:`\sigma(z) = e^{\min(z, 0)} / (1 + e^{-|z|})`, which needs no
    ``torch.where`` (the branch select cost as much as the arithmetic) and gives the same values.

    Examples
    --------
    >>> sigmoid(torch.tensor([-1e4, 0.0, 1e4]))
    tensor([0.0000, 0.5000, 1.0000])
    >>> naive_sigmoid(torch.tensor([-1e4]))  # exp(1e4) = inf, silently rounded to 0
    tensor([0.])
    """
    z = as_float_tensor("z", z)
    # Both exponents are <= 0, so neither exp can overflow.
    return torch.exp(torch.clamp(z, max=0)) / (1 + torch.exp(-torch.abs(z)))


def softplus(z):
    r"""Stable :math:`\mathrm{softplus}(z) = \log(1 + e^{z})`.

    Parameters
    ----------
    z : Tensor of any shape, floating

    Returns
    -------
    Tensor of the same shape and dtype as ``z``, entries >= 0.

    Notes
    -----
    :math:`\log(1 + e^{z}) = \max(z, 0) + \mathrm{log1p}(e^{-|z|})`.
    """
    z = as_float_tensor("z", z)
    # log1pexp as in Maechler (2012), "Accurately computing log(1 - exp(-|a|))", CRAN Rmpfr
    # vignette: split off max(z, 0) so that exp only sees -|z| <= 0, and use log1p for the
    # small remainder (log(1 + tiny) would round to 0).
    return torch.clamp(z, min=0) + torch.log1p(torch.exp(-torch.abs(z)))


def log_sigmoid(z):
    r"""Stable :math:`\log \sigma(z) = -\mathrm{softplus}(-z)`.

    Parameters
    ----------
    z : Tensor of any shape, floating

    Returns
    -------
    Tensor of the same shape and dtype as ``z``, entries <= 0.

    Notes
    -----
    :math:`\log \sigma(z) = \min(z, 0) - \mathrm{log1p}(e^{-|z|})`, the log1pexp trick of
    Maechler (2012) applied to :math:`-z`. Note that :math:`\log(1 - \sigma(z)) =
    \log \sigma(-z)`, so the same function gives both terms of the log loss.

    Examples
    --------
    The naive composition loses everything below about -88 in float32:

    >>> torch.log(naive_sigmoid(torch.tensor([-1000.0])))
    tensor([-inf])
    >>> log_sigmoid(torch.tensor([-1000.0]))
    tensor([-1000.])
    """
    z = as_float_tensor("z", z)
    # Maechler (2012) log1pexp, as in softplus: exp only ever sees -|z| <= 0.
    return torch.clamp(z, max=0) - torch.log1p(torch.exp(-torch.abs(z)))


def _shifted(z, dim):
    # The standard max-shift for logsumexp (e.g. Blanchard, Higham & Higham 2021, "Accurately
    # computing the log-sum-exp and softmax functions", IMA J. Numer. Anal.): subtract the row
    # maximum m so that every exponent z - m is <= 0. A row that is all -inf (or has +inf) gets
    # m = 0 instead, so that -inf - (-inf) = nan never happens.
    m = torch.amax(z, dim=dim, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    return z - m, m


def logsumexp(z, dim=-1, keepdim=False):
    r"""Stable :math:`\log \sum_j e^{z_j}` along ``dim``.

    Parameters
    ----------
    z : Tensor of shape (..., C, ...), floating
    dim : int, the axis to reduce (default: the last)
    keepdim : bool, keep ``dim`` with size 1 (default False)

    Returns
    -------
    Tensor of ``z``'s shape without ``dim`` (or with size 1 there), same dtype.

    Notes
    -----
    :math:`\mathrm{logsumexp}(z) = m + \log \sum_j e^{z_j - m}` with :math:`m = \max_j z_j`.
    A row of all ``-inf`` gives ``-inf`` (the true value), not ``nan``.

    Examples
    --------
    >>> logsumexp(torch.tensor([1e4, 1e4], dtype=torch.float64)) - 1e4  # log 2
    tensor(0.6931, dtype=torch.float64)
    """
    z = as_float_tensor("z", z)
    shifted, m = _shifted(z, dim)
    out = m + torch.log(torch.sum(torch.exp(shifted), dim=dim, keepdim=True))
    return out if keepdim else out.squeeze(dim)


def softmax(z, dim=-1):
    r"""Stable :math:`\mathrm{softmax}(z)_k = e^{z_k} / \sum_j e^{z_j}` along ``dim``.

    Parameters
    ----------
    z : Tensor of shape (..., C, ...), floating
    dim : int, the axis holding the classes (default: the last)

    Returns
    -------
    Tensor of the same shape and dtype as ``z``; entries in [0, 1] summing to 1 along ``dim``.

    Notes
    -----
    Computed as :math:`e^{z_k - m} / \sum_j e^{z_j - m}` with :math:`m = \max_j z_j`: the
    largest exponent is 0, so the denominator lies in [1, C] and cannot overflow or vanish.
    """
    z = as_float_tensor("z", z)
    shifted, _ = _shifted(z, dim)
    e = torch.exp(shifted)
    return e / torch.sum(e, dim=dim, keepdim=True)


def log_softmax(z, dim=-1):
    r"""Stable :math:`\log \mathrm{softmax}(z)_k = z_k - \mathrm{logsumexp}(z)` along ``dim``.

    Parameters
    ----------
    z : Tensor of shape (..., C, ...), floating
    dim : int, the axis holding the classes (default: the last)

    Returns
    -------
    Tensor of the same shape and dtype as ``z``, entries <= 0.

    Notes
    -----
    Computed as :math:`(z_k - m) - \log \sum_j e^{z_j - m}`: subtracting the maximum first keeps
    the small differences exact, where ``z - logsumexp(z)`` would subtract two large numbers.
    """
    z = as_float_tensor("z", z)
    shifted, _ = _shifted(z, dim)
    return shifted - torch.log(torch.sum(torch.exp(shifted), dim=dim, keepdim=True))
