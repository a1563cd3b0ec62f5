"""Gradient checking: compare a hand-derived gradient with central finite differences.

The relative error follows CS231n's ``gradient_check.py``::

    rel = max over entries of |a - b| / max(1e-8, |a| + |b|)

Rough thresholds in float64 (CS231n): about 1e-7 or less is good, 1e-4 is suspicious for a
smooth loss, above 1e-2 the gradient is almost certainly wrong. :func:`check_gradient` goes
further than a number: it guesses *which* mistake was made (sign, factor, transpose, ...).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

DIAGNOSES = ("ok", "shape", "sign", "factor", "transposed", "zero", "wrong")


@dataclass
class GradCheckResult:
    """Outcome of :func:`check_gradient`; truthy when the check passed.

    Attributes
    ----------
    passed : bool
    relative_error : float
        CS231n relative error between analytic and numerical gradient (``nan`` when they
        cannot be compared, e.g. wrong shape).
    worst_index : tuple
        Index of the entry with the largest relative error (``()`` when not applicable).
    message : str
        What went wrong and where to look, written for a student.
    diagnosis : str
        One of ``"ok", "shape", "sign", "factor", "transposed", "zero", "wrong"``.
    """

    passed: bool
    relative_error: float
    worst_index: tuple
    message: str
    diagnosis: str

    def __bool__(self) -> bool:
        return self.passed


def numerical_gradient(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, h=1e-6):
    """Central-difference gradient of a scalar function ``f`` at ``x``.

    ``df/dx[i] ~ (f(x + h e_i) - f(x - h e_i)) / (2 h)``, one entry at a time, so it costs
    ``2 * x.numel()`` calls of ``f``. Each entry of ``x`` is perturbed in place and restored
    right after (also when ``f`` raises), so ``x`` is unchanged after the call.

    Parameters
    ----------
    f : callable
        Maps a tensor shaped like ``x`` to a scalar (0-dim tensor or float).
    x : torch.Tensor of any shape, floating dtype
    h : float, default 1e-6
        Step. ``1e-6`` suits float64; in float32 use about ``1e-3`` (round-off in ``f`` is
        ~1e-7, divided by ``2h`` it would swamp the result).

    Returns
    -------
    torch.Tensor
        Same shape and dtype as ``x``.
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        got = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a floating-point torch.Tensor, got {got}")
    if not (isinstance(h, int | float) and math.isfinite(h) and h > 0):
        raise ValueError(f"h must be a positive finite number, got {h!r}")
    grad = torch.zeros_like(x)
    with torch.no_grad():
        for idx in np.ndindex(tuple(x.shape)):
            old = x[idx].item()
            try:
                x[idx] = old + h
                f_plus = float(f(x))
                x[idx] = old - h
                f_minus = float(f(x))
            finally:
                x[idx] = old  # restore: the caller's x must not change
            grad[idx] = (f_plus - f_minus) / (2 * h)
    return grad


def relative_error(a, b) -> float:
    """CS231n relative error ``max |a - b| / max(1e-8, |a| + |b|)``, computed in float64.

    ``a`` and ``b`` must have the same shape. Returns ``nan`` if either holds NaN and 0.0 for
    empty tensors.
    """
    a = torch.as_tensor(a, dtype=torch.float64)
    b = torch.as_tensor(b, dtype=torch.float64)
    if a.shape != b.shape:
        raise ValueError(
            f"a and b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if a.numel() == 0:
        return 0.0
    return float(_elementwise_error(a, b).max())


def _elementwise_error(a, b):
    return (a - b).abs() / (a.abs() + b.abs()).clamp(min=1e-8)


def _worst(a, b):
    err = _elementwise_error(a, b)
    if err.isnan().any():  # NaN first: it is the worst possible entry
        flat = int(err.isnan().flatten().nonzero()[0])
    else:
        flat = int(err.flatten().argmax())
    return tuple(int(i) for i in np.unravel_index(flat, tuple(a.shape))), float(err.max())


def _fmt(idx):
    return "[" + ", ".join(str(i) for i in idx) + "]" if idx else ""


def check_gradient(f, grad_fn, x, h=1e-6, tol=1e-6, n=None, name="x") -> GradCheckResult:
    """Check ``grad_fn(x)`` against :func:`numerical_gradient` ``(f, x, h)`` and diagnose.

    Parameters
    ----------
    f : callable
        Scalar loss as a function of ``x`` alone (close over the other arguments).
    grad_fn : callable
        Your analytic gradient of ``f`` at ``x``; must return a tensor shaped like ``x``.
    x : torch.Tensor, floating dtype (float64 recommended)
    h : float, default 1e-6
        Finite-difference step (float64; use ~1e-3 in float32 together with a looser ``tol``).
    tol : float, default 1e-6
        Pass when the relative error is at most ``tol``. About 1e-7 is typical for a correct
        gradient in float64; above 1e-2 it is wrong (CS231n). Also pass when every absolute
        difference is below the round-off of the finite differences,
        ``10 * eps * max(1, |f(x)|) / h`` (about 2e-9 in float64 with ``h = 1e-6``): on entries
        close to zero the relative error measures noise.
    n : int, optional
        Number of samples; lets the message recognise a missing (or doubled) ``1/n``.
    name : str
        Name of ``x`` used in the message (``"w"`` gives ``"dw"``).

    Returns
    -------
    GradCheckResult
        ``diagnosis`` is the first match of: ``"shape"`` (wrong shape, not a tensor, ``None``),
        ``"zero"`` (all zeros), ``"sign"`` (negated), ``"transposed"``, ``"factor"`` (off by a
        constant ``c``: the same ratio on at least two entries above the finite-difference
        noise, or on one entry when ``c`` is ``n`` or ``1/n``), ``"wrong"`` (anything else,
        including NaN and a wrong dtype; when the ratio varies, the message names the two
        entries where it is smallest and largest).
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        got = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a floating-point torch.Tensor, got {got}")
    if not (isinstance(tol, int | float) and tol > 0):
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    x = x.detach().clone()
    shape = tuple(x.shape)
    loose = max(10 * tol, 1e-5)  # pattern matches (sign, transpose, factor) need not be exact
    dname = f"d{name}"

    def result(diag, msg, err=math.nan, idx=()):
        return GradCheckResult(diag == "ok", err, idx, f"{dname}: {msg}", diag)

    analytic = grad_fn(x.clone())
    if analytic is None:
        return result("shape", "grad_fn returned None: did you forget the `return` statement?")
    if not isinstance(analytic, torch.Tensor):
        return result(
            "shape",
            f"grad_fn must return a torch.Tensor of shape {shape}, got {type(analytic).__name__}",
        )
    if not analytic.is_floating_point():
        return result(
            "wrong",
            f"dtype must be {x.dtype} like {name}, got {analytic.dtype}: an "
            "integer gradient has been rounded (did you create it with an int tensor?)",
        )
    if analytic.dtype != x.dtype:
        return result(
            "wrong",
            f"dtype must be {x.dtype} like {name}, got {analytic.dtype}: "
            "create intermediate tensors with dtype=X.dtype",
        )
    numeric = numerical_gradient(f, x, h).to(torch.float64)
    a = analytic.detach().to(torch.float64)
    got = tuple(a.shape)
    if got != shape:
        if a.ndim == 2 and got[::-1] == shape and relative_error(a.T, numeric) <= loose:
            return result(
                "transposed",
                f"shape {got} is transposed: expected {shape}; your "
                f"gradient's transpose matches. Use X.T @ dZ, not dZ.T @ X.",
            )
        return result(
            "shape",
            f"wrong shape: expected {shape} (the shape of {name}), got {got}. "
            "This looks like a wrong reduction dimension / shape: check which axis you "
            "sum or average over (dim=0 runs over samples), keepdim, and (d, 1) vs (d,).",
        )
    if not torch.isfinite(numeric).all():
        return result(
            "wrong",
            "NaN found (or inf) in the numerical gradient: the loss f itself is "
            "not finite near this x, so the gradient cannot be checked here.",
        )
    if not torch.isfinite(a).all():
        idx = tuple(int(i) for i in (~torch.isfinite(a)).nonzero()[0])
        return result(
            "wrong",
            f"NaN found (or inf) in your gradient at {dname}{_fmt(idx)} = "
            f"{a[idx].item()}; look for log(0), 0/0 or exp overflow.",
            math.nan,
            idx,
        )
    idx, err = _worst(a, numeric)
    yours, theirs = a[idx].item(), numeric[idx].item()
    where = f"worst entry {dname}{_fmt(idx)}: yours {yours:.6g}, numerical {theirs:.6g}"
    if err <= tol:
        return result("ok", f"OK, relative error {err:.2e} <= tol {tol:.0e}", err, idx)
    # Entries near zero make the relative error meaningless: finite differences carry an
    # absolute round-off of about eps * |f| / h, so differences below it are noise, not bugs.
    noise = 10 * torch.finfo(x.dtype).eps * max(1.0, abs(float(f(x)))) / h
    if float((a - numeric).abs().max()) <= noise:
        return result(
            "ok",
            f"OK, relative error {err:.2e} > tol {tol:.0e} only where the gradient is tiny "
            f"({where}); the absolute differences are below the finite-difference round-off "
            f"{noise:.1e}",
            err,
            idx,
        )
    num_scale = numeric.abs().max()
    if a.abs().max() == 0 and num_scale > 0:
        return result(
            "zero",
            "your gradient is zero: is the term missing (e.g. the bias)? "
            f"The numerical gradient is not ({where}).",
            err,
            idx,
        )
    if relative_error(-a, numeric) <= loose:
        return result(
            "sign",
            "your gradient is the negative of the numerical one: check the sign "
            f"of (p - y) and of the update (relative error {err:.2e}).",
            err,
            idx,
        )
    if a.ndim == 2 and a.shape[0] == a.shape[1] and relative_error(a.T, numeric) <= loose:
        return result(
            "transposed",
            "your gradient is the transpose of the numerical one: use "
            "X.T @ dZ (inputs on the left), not dZ.T @ X.",
            err,
            idx,
        )
    ratios = ""
    if num_scale > 0:
        c = float((a * numeric).sum() / (numeric * numeric).sum())  # least squares: a ~ c * num
        hint = None
        if n is not None and abs(c - n) <= 1e-3 * n:
            hint = " c ~ n: a missing 1/n: the loss is a mean, so divide the summed gradient by n."
        elif n is not None and abs(c * n - 1) <= 1e-3:
            hint = " c ~ 1/n: divided by n twice (a mean of something already averaged)."
        # A constant factor needs evidence: the same ratio on at least two entries that are
        # above the finite-difference noise (one entry always has *some* ratio), unless the
        # ratio is exactly the n or 1/n we were told about.
        significant = numeric.abs() > noise
        ratio = a[significant] / numeric[significant]
        fits = abs(c - 1) > 1e-3 and c != 0 and relative_error(a, c * numeric) <= loose
        if fits and (int(significant.sum()) >= 2 or hint):
            msg = f"your gradient is c = {c:.6g} times the numerical one."
            msg += hint or " Look for a missing or extra constant (a 2, a 1/n, a learning rate)."
            return result("factor", msg, err, idx)
        if ratio.numel() == 1:
            ratios = (
                f" Yours is {float(ratio[0]):.6g} times the numerical value, but with a single "
                "entry a constant factor cannot be told apart from a different formula: "
                "compare each term with the derivation (are the labels in {0, 1}?)."
            )
        elif ratio.numel() >= 2:
            places = [tuple(int(i) for i in p) for p in significant.nonzero()]
            lo, hi = int(ratio.argmin()), int(ratio.argmax())
            ratios = (
                f" The ratio yours / numerical is not constant: {float(ratio[lo]):.4g} at "
                f"{dname}{_fmt(places[lo])} but {float(ratio[hi]):.4g} at "
                f"{dname}{_fmt(places[hi])}, so it is not a missing constant: part of the "
                "formula differs (a wrong term, labels in {-1, +1} instead of {0, 1}, ...)."
            )
    return result(
        "wrong",
        f"relative error {err:.2e} > tol {tol:.0e}; {where}. About 1e-7 is "
        f"good in float64, above 1e-2 means the formula is wrong.{ratios}",
        err,
        idx,
    )
