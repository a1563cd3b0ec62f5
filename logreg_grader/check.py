"""The test-cell API: what the autograded cells of the exercise notebooks import.

Every test cell calls the student's function through :func:`call_student`, then compares with
:func:`assert_tensor`, :func:`assert_scalar` or :func:`assert_gradient`. Each failure is an
``AssertionError`` whose message tells the student what to look at, and the cell's stderr stays
empty (nbgrader gives a test cell no points when anything reaches stderr, even a harmless
``RuntimeWarning`` from a correct answer).

``banned=`` of :func:`call_student` names what the function may not use (dotted names such as
``"torch.sigmoid"`` or ``"logreg_lessons.sgd"``, and ``AUTOGRAD``). The ban is judged by what
ran (:mod:`logreg_grader.recorder`, :mod:`logreg_grader.bans`), never by the names in the code:

- in the student's own kernel, the call runs here under a :class:`~logreg_grader.recorder.
  Recorder`: instant feedback, the same verdict the grader will give;
- under the grader, the student's functions are proxies to a sandboxed process that records
  what each call ran and sends the observation back; every proxy call made while
  :func:`call_student` runs (a test helper calling the student's function included) is judged
  against its ``banned``.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import io
import math
import types
import warnings

import numpy as np
import torch

from logreg_grader import bans as _bans
from logreg_grader.bans import AUTOGRAD, BannedOperation
from logreg_grader.recorder import Observation, Recorder

__all__ = [
    "AUTOGRAD",
    "BannedOperation",
    "assert_gradient",
    "assert_scalar",
    "assert_tensor",
    "call_student",
]

# The observation the proxy calls of the running call_student add to (None outside one).
COLLECTOR: contextvars.ContextVar[Observation | None] = contextvars.ContextVar(
    "logreg_grader_collector", default=None
)
# Set by the grader: student functions are proxies, nothing runs locally under a recorder.
GRADER = {"remote": False}


def watched_dirs() -> list[str]:
    """Folders whose functions a recorder reports: the course library and scikit-learn."""
    import importlib.util
    import os

    out = []
    for name in ("logreg_lessons", "sklearn"):
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            out += [os.path.realpath(p) for p in spec.submodule_search_locations]
    return out


@functools.lru_cache(maxsize=1)
def _watched() -> tuple[str, ...]:
    return tuple(watched_dirs())


def _describe(fn):
    if isinstance(fn, functools.partial):
        fn = fn.func
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    return str(name).split("<locals>.")[-1]


def _tensors(obj, depth=0):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif depth < 3 and isinstance(obj, list | tuple | set):
        for item in obj:
            yield from _tensors(item, depth + 1)
    elif depth < 3 and isinstance(obj, dict):
        for item in obj.values():
            yield from _tensors(item, depth + 1)
    elif depth < 3 and hasattr(obj, "__dict__") and not isinstance(obj, type | types.ModuleType):
        with contextlib.suppress(TypeError):
            yield from _tensors(list(vars(obj).values()), depth + 1)


def has_graph(obj) -> bool:
    """Whether a result carries an autograd graph (a tensor with grad_fn or requires_grad)."""
    return any(t.requires_grad or t.grad_fn is not None for t in _tensors(obj))


def call_student(fn, *args, banned=(), allow_mutation=False, **kwargs):
    """Call a student's function quietly and refuse what it may not use.

    Parameters
    ----------
    fn : callable
        The student's function, class or bound method (or a helper that calls them).
    *args, **kwargs
        Passed to ``fn``.
    banned : tuple of str
        What ``fn`` may not run: dotted names (``"torch.sigmoid"``, ``"torch.Tensor.sigmoid"``,
        ``"logreg_lessons.sigmoid"``, ...) and ``AUTOGRAD`` for any use of autograd.
    allow_mutation : bool
        If False (default), fail when ``fn`` changes one of its tensor arguments in place.

    Returns
    -------
    object
        What ``fn`` returned. Warnings are silenced and stdout/stderr are captured (dropped).

    Raises
    ------
    BannedOperation
        (an ``AssertionError``) if ``fn`` ran something banned or switched the recording off.
    AssertionError
        If ``fn`` modifies an argument, or (with ``AUTOGRAD``) returns a tensor attached to an
        autograd graph. Exceptions raised by ``fn`` propagate unchanged.
    """
    banned = _bans.check_names(banned)
    name = _describe(fn)
    inputs = list(args) + list(kwargs.values())
    copies = [(i, a.detach().clone()) for i, a in enumerate(inputs) if isinstance(a, torch.Tensor)]
    obs = Observation()
    token = COLLECTOR.set(obs)
    sink = io.StringIO()
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(warnings.catch_warnings())
            warnings.simplefilter("ignore")
            stack.enter_context(np.errstate(all="ignore"))
            stack.enter_context(contextlib.redirect_stdout(sink))
            stack.enter_context(contextlib.redirect_stderr(sink))
            try:
                if GRADER["remote"]:
                    result = fn(*args, **kwargs)
                else:
                    with Recorder(_watched()) as rec:
                        try:
                            result = fn(*args, **kwargs)
                        finally:
                            obs.merge(rec.obs)
                    if not any(a.requires_grad for _, a in copies):
                        obs.graph = has_graph(result)
            except Exception:
                _bans.judge(obs, banned, name)  # a banned call that then failed: say so
                raise
    finally:
        COLLECTOR.reset(token)
    _bans.judge(obs, banned, name)
    if not allow_mutation:
        for i, before in copies:
            after = inputs[i]
            same = after.shape == before.shape and bool(
                ((after == before) | (after.isnan() & before.isnan())).all()
                if before.is_floating_point()
                else (after == before).all()
            )
            if not same:  # the labels only now: a signature of a Remote costs round trips
                labels = _argument_labels(fn, args, kwargs)
                raise AssertionError(
                    f"{name} modified its argument {labels[i]} in place; work on a copy "
                    "(x = x.clone()) or use out-of-place operations (x = x - m, not x -= m)"
                )
    return result


def _argument_labels(fn, args, kwargs):
    labels = [f"#{i + 1}" for i in range(len(args))] + [repr(k) for k in kwargs]
    with contextlib.suppress(TypeError, ValueError):
        params = list(inspect.signature(fn).parameters)
        labels[: len(args)] = [repr(p) for p in params[: len(args)]]
    return labels


# --- comparisons -----------------------------------------------------------------------------


def assert_tensor(actual, expected, *, name, rtol=1e-6, atol=1e-8, shape=None, dtype=None):
    """Check that ``actual`` is a tensor of the right shape, dtype and values.

    Parameters
    ----------
    actual : torch.Tensor
        The student's result.
    expected : torch.Tensor or array-like
        The reference values (compared in float64). Where they are finite, ``actual`` must be
        finite; where they are ``inf`` or ``nan``, ``actual`` must be the same.
    name : str
        The quantity, as the student knows it (``"sigmoid(z)"``), used in every message.
    rtol, atol : float
        Tolerances: ``|actual - expected| <= atol + rtol * |expected|`` entry by entry.
    shape : tuple of int, optional
        Required shape (default: the shape of ``expected``).
    dtype : torch.dtype, optional
        Required dtype (default: not checked).

    Raises
    ------
    AssertionError
        Naming the quantity and what differs: type, shape, dtype, non-finite entries, or the
        number of wrong entries, the maximum absolute error, the worst index and both values.
    """
    if not isinstance(actual, torch.Tensor):
        raise AssertionError(f"{name} must be a torch.Tensor, got {type(actual).__name__}")
    if not isinstance(expected, torch.Tensor):  # Python numbers: keep their float64 precision
        expected = torch.as_tensor(expected, dtype=torch.float64)
    want_shape = tuple(shape) if shape is not None else tuple(expected.shape)
    if tuple(actual.shape) != want_shape:
        raise AssertionError(
            f"{name} has shape {tuple(actual.shape)}, expected {want_shape}"
            f" (dtype {actual.dtype}, expected values of dtype {expected.dtype})"
        )
    if dtype is not None and actual.dtype != dtype:
        raise AssertionError(f"{name} has dtype {actual.dtype}, expected {dtype}")
    a = actual.detach().to(torch.float64).reshape(want_shape)
    e = expected.detach().to(torch.float64).expand(want_shape)
    finite = torch.isfinite(e)
    bad = finite & ~torch.isfinite(a)
    if bad.any():
        idx = _index(bad.nonzero()[0])
        raise AssertionError(
            f"{name} is not finite at {int(bad.sum())} of {a.numel()} entries where the "
            f"expected value is finite; first at index {idx}: expected {e[idx].item():.6g}, "
            f"got {a[idx].item()} (look for overflow in exp or a log of 0)"
        )
    special = ~finite & ~((a == e) | (a.isnan() & e.isnan()))
    if special.any():
        idx = _index(special.nonzero()[0])
        raise AssertionError(
            f"{name} at index {idx}: expected {e[idx].item()}, got {a[idx].item()}"
        )
    err = torch.where(finite, (a - e).abs(), torch.zeros_like(a))
    wrong = err > atol + rtol * e.abs().where(finite, torch.zeros_like(e))
    if wrong.any():
        excess = (err - atol - rtol * e.abs().where(finite, torch.zeros_like(e))).reshape(-1)
        idx = _index(torch.unravel_index(excess.argmax(), want_shape)) if want_shape else ()
        raise AssertionError(
            f"{name}: {int(wrong.sum())} of {a.numel()} entries differ from the expected "
            f"values (rtol={rtol:g}, atol={atol:g}); max abs error {err.max().item():.3g}; "
            f"worst at index {idx}: expected {_fmt(e[idx], expected.dtype)}, "
            f"got {_fmt(a[idx], actual.dtype)}"
        )


def _fmt(value, dtype):
    """A number with the significant digits its dtype carries (float32 0.3 prints as 0.3)."""
    digits = {torch.float16: 4, torch.bfloat16: 3, torch.float32: 7}.get(dtype, 12)
    return f"{value.item():.{digits}g}"


def _index(t):
    return tuple(int(i) for i in t)


def assert_scalar(actual, expected, *, name, rtol=1e-6, atol=1e-8):
    """Check that ``actual`` is a Python number (or 0-dim tensor) close to ``expected``."""
    if isinstance(actual, torch.Tensor):
        if actual.numel() != 1:
            raise AssertionError(f"{name} must be a single number, got shape {tuple(actual.shape)}")
        actual = actual.item()
    if not isinstance(actual, int | float | np.floating | np.integer) or isinstance(actual, bool):
        raise AssertionError(f"{name} must be a number, got {type(actual).__name__}")
    actual, expected = float(actual), float(expected)
    if not math.isclose(actual, expected, rel_tol=rtol, abs_tol=atol):
        raise AssertionError(
            f"{name}: expected {expected:.10g}, got {actual:.10g} "
            f"(abs error {abs(actual - expected):.3g}, rtol={rtol:g}, atol={atol:g})"
        )


def assert_gradient(f, grad_fn, x, *, name, tol=1e-6, n=None):
    """Compare ``grad_fn(x)`` with central finite differences of ``f`` at ``x``.

    Parameters
    ----------
    f : callable
        Maps a tensor like ``x`` to a scalar tensor.
    grad_fn : callable
        Maps ``x`` to the claimed gradient (same shape as ``x``); wrap the student's function
        in :func:`call_student` here.
    x : torch.Tensor
        The point, preferably float64.
    name : str
        The variable, as the student knows it (``"w"``), used in the message.
    tol : float
        Largest relative error accepted (CS231n's definition).
    n : int, optional
        Number of samples; lets the diagnosis recognise a missing ``1/n``.

    Raises
    ------
    AssertionError
        With the diagnosis of :func:`logreg_lessons.check_gradient` (wrong shape, sign, factor,
        transposed, zero, or the worst entry).
    """
    from logreg_lessons.gradcheck import check_gradient

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        result = check_gradient(f, grad_fn, x, tol=tol, n=n, name=name)
    if not result.passed:
        raise AssertionError(result.message)
