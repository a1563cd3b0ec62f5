"""Helpers for the autograded test cells of the exercise notebooks.

Every test cell calls the student's function through :func:`call_student`, then compares with
:func:`assert_tensor`, :func:`assert_scalar` or :func:`assert_gradient`. The helpers turn every
failure into an ``AssertionError`` whose message tells the student what to look at, and they
keep the cell's stderr empty: nbgrader gives a test cell no points when anything reaches stderr,
even a harmless ``RuntimeWarning`` from a correct answer.

Banned references (``banned=`` of :func:`call_student`) are dotted names such as
``"torch.sigmoid"`` or ``"logreg_lessons.sigmoid"``, plus ``"AUTOGRAD"`` for any use of
autograd (``torch.autograd.grad``, ``Tensor.backward``, tensors created with ``requires_grad``).
They are caught twice: statically, by reading the bytecode of the function, of the functions
and classes of the student's notebook it refers to, and of nested functions; and at run time,
by replacing each banned attribute with a recorder for the duration of the call.
"""

from __future__ import annotations

import builtins
import contextlib
import dis
import functools
import importlib
import inspect
import io
import math
import sys
import types
import warnings

import numpy as np
import torch

__all__ = ["AUTOGRAD", "assert_gradient", "assert_scalar", "assert_tensor", "call_student"]

AUTOGRAD = "AUTOGRAD"
_AUTOGRAD_CALLS = (
    "torch.autograd.grad",
    "torch.autograd.backward",
    "torch.Tensor.backward",
    "torch.autograd.functional.jacobian",
    "torch.autograd.functional.hessian",
    "torch.autograd.functional.vjp",
    "torch.func.grad",
    "torch.func.vjp",
    "torch.func.jacrev",
)
# Attribute names that only autograd code uses (``w.grad``, ``loss.backward()``, ...).
_AUTOGRAD_NAMES = frozenset(
    {"autograd", "backward", "grad", "requires_grad", "requires_grad_", "retain_grad"}
)
_REFLECTION = frozenset({"getattr", "__getattribute__", "__dict__", "import_module", "__import__"})
_MISSING = object()


class _Ban:
    """One banned dotted name resolved to its owner, attribute and object."""

    def __init__(self, dotted, owner, attr, obj):
        self.dotted, self.owner, self.attr, self.obj = dotted, owner, attr, obj
        self.is_method = isinstance(owner, type)


def _resolve(dotted):
    parts = dotted.split(".")
    owner, obj = None, importlib.import_module(parts[0])
    for i, part in enumerate(parts[1:], start=2):
        owner = obj
        obj = getattr(obj, part, _MISSING)
        if obj is _MISSING:  # a submodule not imported yet
            obj = importlib.import_module(".".join(parts[:i]))
    return _Ban(dotted, owner, parts[-1], obj)


def _bans(banned):
    names = []
    for name in banned:
        names.extend(_AUTOGRAD_CALLS if name == AUTOGRAD else [name])
    bans = []
    for name in dict.fromkeys(names):
        if name.split(".")[0] not in sys.modules:
            # Not imported (e.g. sklearn): importing it would cost seconds per test cell.
            # The student cannot have called it without importing it, which the bytecode
            # scan sees by name; nothing to patch at run time.
            bans.append(_Ban(name, None, name.split(".")[-1], _MISSING))
            continue
        try:
            bans.append(_resolve(name))
        except (ImportError, AttributeError):
            if name not in _AUTOGRAD_CALLS:  # optional autograd entry points may be absent
                raise ValueError(f"banned name {name!r} does not exist") from None
    return bans


def _describe(fn):
    if isinstance(fn, functools.partial):
        fn = fn.func
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    return name.split("<locals>.")[-1]


def _message(fn_name, ban_name, verb):
    if ban_name in _AUTOGRAD_CALLS or ban_name.startswith("autograd"):
        return (
            f"{fn_name} {verb} {ban_name}, which this exercise asks you to replace with a "
            "gradient derived by hand: no points for this test"
        )
    return (
        f"{fn_name} {verb} {ban_name}, which this exercise asks you to implement yourself: "
        "no points for this test"
    )


# --- static scan of the bytecode ------------------------------------------------------------


def _functions_of(obj, module):
    """The Python functions to scan for ``obj``: itself, its methods, its class's methods."""
    if isinstance(obj, functools.partial):
        obj = obj.func
    if isinstance(obj, types.MethodType):
        yield obj.__func__
        obj = type(obj.__self__) if not isinstance(obj.__self__, type) else obj.__self__
    if isinstance(obj, types.FunctionType):
        yield obj
    elif isinstance(obj, type):
        for cls in obj.__mro__:
            if cls.__module__ != module:
                continue
            for member in vars(cls).values():
                if isinstance(member, staticmethod | classmethod):
                    member = member.__func__
                if isinstance(member, property):
                    yield from (f for f in (member.fget, member.fset) if f is not None)
                elif isinstance(member, types.FunctionType):
                    yield member
    elif callable(obj) and not isinstance(obj, types.BuiltinFunctionType | types.ModuleType):
        yield from _functions_of(type(obj), module)


def _scan_code(code, fn, bans, module, queue):
    """Return the first banned name ``code`` refers to; add student functions to ``queue``."""
    by_obj = {id(b.obj): b for b in bans if b.obj is not _MISSING}
    last_names = {}  # attribute name -> ban, preferring Tensor methods (``z.sigmoid()``)
    for b in sorted(bans, key=lambda b: not b.is_method):
        last_names.setdefault(b.attr, b)
    autograd = any(b.dotted in _AUTOGRAD_CALLS for b in bans)
    closure = dict(zip(code.co_freevars, fn.__closure__ or (), strict=False))
    cur, resolved, imported, walk, last_arg = _MISSING, False, None, False, None
    local_alias = {}  # local names bound to something resolved (local imports, s = torch.exp)
    for ins in dis.get_instructions(code):
        op, arg = ins.opname, ins.argval
        if op == "STORE_FAST" and resolved:
            local_alias[arg] = cur
        fromlist, last_arg = last_arg, arg  # IMPORT_NAME follows LOAD_CONST fromlist
        if op in ("LOAD_GLOBAL", "LOAD_NAME"):
            cur = fn.__globals__.get(arg, getattr(builtins, arg, _MISSING))
            resolved = cur is not _MISSING
        elif op in ("LOAD_DEREF", "LOAD_CLASSDEREF") and arg in closure:
            try:
                cur, resolved = closure[arg].cell_contents, True
            except ValueError:  # empty cell
                cur, resolved = _MISSING, False
        elif op == "LOAD_FAST":
            cur = local_alias.get(arg, _MISSING)
            resolved = cur is not _MISSING
        elif op == "IMPORT_NAME":
            # ``import a.b as c`` (no fromlist) binds ``a`` and walks down with IMPORT_FROM
            walk = fromlist is None
            imported = sys.modules.get(arg.split(".")[0] if walk else arg)
            cur, resolved = imported, imported is not None
        elif op == "IMPORT_FROM":
            cur = getattr(imported, arg, _MISSING) if imported is not None else _MISSING
            resolved = cur is not _MISSING
            if not resolved and arg in last_names:
                return last_names[arg].dotted
            if walk:
                imported = cur if resolved else None
        elif op in ("LOAD_ATTR", "LOAD_METHOD"):
            if autograd and arg in _AUTOGRAD_NAMES:
                return f"autograd (.{arg})"
            ban = last_names.get(arg)
            on_tensor = resolved and isinstance(cur, torch.Tensor)
            if ban is not None and (not resolved or (on_tensor and ban.is_method)):
                return ban.dotted  # e.g. z.sigmoid(), or F.softplus with F a local alias
            cur = getattr(cur, arg, _MISSING) if resolved else _MISSING
            resolved = cur is not _MISSING
        elif op == "KW_NAMES" and autograd and "requires_grad" in code.co_consts[ins.arg]:
            return "autograd (requires_grad=True)"
        else:
            cur, resolved = _MISSING, False
            continue
        if resolved and id(cur) in by_obj and by_obj[id(cur)].obj is cur:
            return by_obj[id(cur)].dotted
        if resolved and getattr(cur, "__module__", None) == module:
            queue.append(cur)
    if _REFLECTION & set(code.co_names):  # getattr(torch, "sigmoid") and friends
        for const in code.co_consts:
            if isinstance(const, str) and const in last_names:
                return last_names[const].dotted
    if autograd and "requires_grad" in code.co_names:
        return "autograd (requires_grad)"
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            found = _scan_code(const, fn, bans, module, queue)
            if found:
                return found
    return None


def _static_ban(fn, bans):
    target = fn.func if isinstance(fn, functools.partial) else fn
    target = getattr(target, "__func__", target)
    module = getattr(target, "__module__", None)
    queue, seen = [fn], set()
    while queue:
        obj = queue.pop()
        for func in _functions_of(obj, module):
            if id(func) in seen:
                continue
            seen.add(id(func))
            found = _scan_code(func.__code__, func, bans, module, queue)
            if found:
                return found
    return None


# --- run-time patching -----------------------------------------------------------------------


def _patch(owner, name, value, undo):
    if isinstance(owner, dict):
        old = owner[name]
        owner[name] = value
        undo.append(lambda: owner.__setitem__(name, old))
        return
    had, old = name in vars(owner), vars(owner).get(name)
    try:
        setattr(owner, name, value)
    except (AttributeError, TypeError):  # immutable builtin type: the static scan covers it
        return
    undo.append((lambda: setattr(owner, name, old)) if had else (lambda: delattr(owner, name)))


def _install_recorders(bans, fn, calls, undo):
    student_globals = [f.__globals__ for f in _functions_of(fn, getattr(fn, "__module__", None))]
    if isinstance(fn, types.FunctionType):
        student_globals.append(fn.__globals__)
    for ban in (b for b in bans if b.owner is not None):

        def recorder(*args, _name=ban.dotted, **kwargs):
            calls.append(_name)
            raise RuntimeError(f"{_name} is not allowed in this exercise")

        _patch(ban.owner, ban.attr, recorder, undo)
        home = sys.modules.get(getattr(ban.obj, "__module__", None) or "")
        if home is not None and getattr(home, ban.attr, None) is ban.obj:
            _patch(home, ban.attr, recorder, undo)
        for globs in {id(g): g for g in student_globals}.values():
            for key in [k for k, v in globs.items() if v is ban.obj]:
                _patch(globs, key, recorder, undo)


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
        yield from _tensors(list(vars(obj).values()), depth + 1)


def call_student(fn, *args, banned=(), allow_mutation=False, **kwargs):
    """Call a student's function quietly and refuse banned shortcuts.

    Parameters
    ----------
    fn : callable
        The student's function, class or bound method.
    *args, **kwargs
        Passed to ``fn``.
    banned : tuple of str
        Dotted names ``fn`` may not use (``"torch.sigmoid"``, ``"torch.Tensor.sigmoid"``,
        ``"logreg_lessons.sigmoid"``, ...), and ``"AUTOGRAD"`` for any autograd use.
    allow_mutation : bool
        If False (default), fail when ``fn`` changes one of its tensor arguments in place.

    Returns
    -------
    object
        What ``fn`` returned. Warnings are silenced and stdout/stderr are captured (dropped).

    Raises
    ------
    AssertionError
        If ``fn`` uses a banned name, modifies an argument, or (with ``"AUTOGRAD"``) returns a
        tensor attached to an autograd graph. Exceptions raised by ``fn`` propagate unchanged.
    """
    name = _describe(fn)
    # The independent grader (tools/independent.py) binds graded names to proxies whose code
    # runs in a sandbox: the ban checks happen there and in its static scan, not here.
    remote = (
        None if isinstance(fn, types.FunctionType) else getattr(fn, "_logreg_remote_call", None)
    )
    bans = [] if remote is not None else _bans(banned)
    found = _static_ban(fn, bans) if bans else None
    if found:
        raise AssertionError(_message(name, found, "calls"))
    inputs = list(args) + list(kwargs.values())
    copies = [(i, a.detach().clone()) for i, a in enumerate(inputs) if isinstance(a, torch.Tensor)]
    calls, undo, sink = [], [], io.StringIO()
    if remote is not None:
        fn = _RemoteCall(remote, tuple(banned))
    try:
        _install_recorders(bans, fn, calls, undo)
        with contextlib.ExitStack() as stack:
            stack.enter_context(warnings.catch_warnings())
            warnings.simplefilter("ignore")
            stack.enter_context(np.errstate(all="ignore"))
            stack.enter_context(contextlib.redirect_stdout(sink))
            stack.enter_context(contextlib.redirect_stderr(sink))
            try:
                result = fn(*args, **kwargs)
            except Exception:
                if calls:
                    raise AssertionError(_message(name, calls[0], "called")) from None
                raise
    finally:
        for restore in reversed(undo):
            restore()
    if calls:
        raise AssertionError(_message(name, calls[0], "called"))
    if any(b.dotted in _AUTOGRAD_CALLS for b in bans) and not any(
        a.requires_grad for _, a in copies
    ):
        if any(t.requires_grad or t.grad_fn is not None for t in _tensors(result)):
            raise AssertionError(_message(name, "autograd (requires_grad tensors)", "used"))
    if not allow_mutation:
        labels = _argument_labels(fn, args, kwargs)
        for i, before in copies:
            after = inputs[i]
            same = after.shape == before.shape and bool(
                ((after == before) | (after.isnan() & before.isnan())).all()
                if before.is_floating_point()
                else (after == before).all()
            )
            if not same:
                raise AssertionError(
                    f"{name} modified its argument {labels[i]} in place; work on a copy "
                    "(x = x.clone()) or use out-of-place operations (x = x - m, not x -= m)"
                )
    return result


class _RemoteCall:
    """fn(*args, **kwargs) -> remote(args, kwargs, banned): a proxy's call, with its bans."""

    def __init__(self, remote, banned):
        self.remote, self.banned = remote, banned

    def __call__(self, *args, **kwargs):
        return self.remote(args, kwargs, banned=self.banned)


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
