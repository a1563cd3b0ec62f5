"""Judge an :class:`~logreg_grader.recorder.Observation` against what an exercise forbids.

A test cell names what a function may not use, as dotted names (``"torch.sigmoid"``,
``"torch.Tensor.logsumexp"``, ``"logreg_lessons.sgd"``, ``"sklearn.datasets.make_blobs"``)
or ``"AUTOGRAD"``. Each name becomes a :class:`Ban`:

- a torch name bans the **operators** it dispatches (``OPERATORS``): ``torch.sigmoid``,
  ``Tensor.sigmoid_``, ``torch.special.expit`` and ``nn.Sigmoid`` all run ``aten::sigmoid``,
  so one ban covers every route; a unit test runs each entry and checks the table;
- any other name bans the **code** of that function (or of every method of that class): the
  observation lists the code objects that ran, so imports and aliases do not matter;
- ``AUTOGRAD`` bans a backward pass (autograd's engine running) and results that carry an
  autograd graph.

Nothing here looks at the text of the student's code.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import sys
import types
from dataclasses import dataclass

from logreg_grader.recorder import Observation, code_key

AUTOGRAD = "AUTOGRAD"
# The last part of a banned torch name -> the aten operators (overload packets) it runs.
OPERATORS = {
    "sigmoid": {"sigmoid", "sigmoid_"},
    "expit": {"sigmoid", "sigmoid_"},
    "logit": {"logit", "logit_"},
    "log_sigmoid": {"log_sigmoid_forward", "log_sigmoid"},
    "logsigmoid": {"log_sigmoid_forward", "log_sigmoid"},
    "softplus": {"softplus"},
    "logsumexp": {"logsumexp"},
    "logaddexp": {"logaddexp"},
    "logaddexp2": {"logaddexp2"},
    "softmax": {"_softmax", "softmax"},
    "Softmax": {"_softmax", "softmax"},
    "log_softmax": {"_log_softmax", "log_softmax"},
    "LogSoftmax": {"_log_softmax", "log_softmax"},
    "Sigmoid": {"sigmoid", "sigmoid_"},
    "nll_loss": {"nll_loss_forward", "nll_loss2d_forward", "nll_loss", "nll_loss_nd"},
    "NLLLoss": {"nll_loss_forward", "nll_loss2d_forward", "nll_loss", "nll_loss_nd"},
    "cross_entropy": {"cross_entropy_loss", "nll_loss_forward", "nll_loss2d_forward"},
    "CrossEntropyLoss": {"cross_entropy_loss", "nll_loss_forward", "nll_loss2d_forward"},
    "binary_cross_entropy": {"binary_cross_entropy"},
    "BCELoss": {"binary_cross_entropy"},
    "binary_cross_entropy_with_logits": {"binary_cross_entropy_with_logits"},
    "BCEWithLogitsLoss": {"binary_cross_entropy_with_logits"},
    "relu": {"relu", "relu_"},
    "ReLU": {"relu", "relu_"},
    "tanh": {"tanh", "tanh_"},
    "Tanh": {"tanh", "tanh_"},
}
# Autograd's engine, as the profiler sees it when called from Python.
_ENGINE_BUILTINS = {"run_backward", "_run_backward"}


class BannedOperation(AssertionError):
    """A test failed because the function ran something it may not use (or hid what it ran).

    ``kind`` is ``"banned_operation"`` or ``"tampering"``.
    """

    def __init__(self, message: str, kind: str = "banned_operation"):
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Ban:
    """One banned name and what it means at run time."""

    name: str
    operators: frozenset[str] = frozenset()
    code: frozenset[str] = frozenset()
    autograd: bool = False

    def hit(self, obs: Observation) -> str | None:
        """A description of what ran that this ban forbids, or None."""
        if self.autograd:
            if obs.backward or obs.builtins & _ENGINE_BUILTINS:
                return "autograd (a backward pass ran)"
            if obs.graph:
                return "autograd (its result is attached to an autograd graph)"
            return None
        ops = sorted(self.operators & obs.ops)
        if ops:
            return f"{self.name} (it ran the operator aten::{ops[0]})"
        names = sorted(self.operators & obs.builtins)
        if names:
            return f"{self.name} (it called torch's builtin {names[0]})"
        code = sorted(self.code & obs.entered)
        if code:
            return f"{self.name} (it ran {code[0].rsplit(':', 1)[-1]})"
        return None


def _resolve(dotted: str):
    parts = dotted.split(".")
    obj = importlib.import_module(parts[0])
    for i, part in enumerate(parts[1:], start=2):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            obj = importlib.import_module(".".join(parts[:i]))
    return obj


def _codes(obj) -> set[str]:
    """Code keys of a function (and what it wraps) or of every method of a class."""
    out = set()
    if isinstance(obj, functools.partial):
        obj = obj.func
    if isinstance(obj, type):
        package = obj.__module__.split(".")[0]
        for cls in obj.__mro__:
            if not cls.__module__.startswith(package):
                continue
            for member in vars(cls).values():
                if isinstance(member, staticmethod | classmethod):
                    member = member.__func__
                if isinstance(member, property):
                    out |= {code_key(f.__code__) for f in (member.fget, member.fset) if f}
                elif isinstance(member, types.FunctionType):
                    out |= _codes(member)
        return out
    while obj is not None:
        func = getattr(obj, "__func__", obj)
        if isinstance(func, types.FunctionType):
            out.add(code_key(func.__code__))
        obj = getattr(func, "__wrapped__", None)
    return out


@functools.lru_cache(maxsize=512)
def ban(name: str) -> Ban:
    """The :class:`Ban` of one name; ValueError for a name nobody could have meant."""
    if name == AUTOGRAD:
        return Ban(name, autograd=True)
    if not isinstance(name, str) or "." not in name:
        raise ValueError(f"banned name {name!r}: expected a dotted name such as 'torch.sigmoid'")
    top = name.split(".")[0]
    if top == "torch":
        last = name.rsplit(".", 1)[-1]
        if last not in OPERATORS:
            raise ValueError(f"banned name {name!r}: add its operators to bans.OPERATORS")
        return Ban(name, operators=frozenset(OPERATORS[last]))
    if top not in sys.modules and top not in ("logreg_lessons",):
        # Not imported here (e.g. scikit-learn): resolved lazily by judge() when needed.
        return Ban(name)
    try:
        obj = _resolve(name)
    except (ImportError, AttributeError):
        raise ValueError(f"banned name {name!r} does not exist") from None
    codes = _codes(obj)
    if not codes and not inspect.isbuiltin(obj):
        raise ValueError(f"banned name {name!r} is neither a function nor a class")
    return Ban(name, code=frozenset(codes))


def judge(obs: Observation, banned, who: str) -> None:
    """Raise :class:`BannedOperation` if ``obs`` shows a banned use or tampering."""
    if obs.tampering:
        raise BannedOperation(
            f"{who} switched off the recording of what it runs ({obs.tampering[0]}): "
            "no points for this test",
            kind="tampering",
        )
    for name in banned:
        b = ban(name)
        if not (b.operators or b.code or b.autograd):
            top = name.split(".")[0]
            if not any(top in key for key in obs.entered):
                continue  # it never ran any of that library
            ban.cache_clear()
            importlib.import_module(top)
            b = ban(name)
        found = b.hit(obs)
        if found:
            if b.autograd:
                raise BannedOperation(
                    f"{who} used {found}, which this exercise asks you to replace with a "
                    "gradient derived by hand: no points for this test"
                )
            raise BannedOperation(
                f"{who} called {found}, which this exercise asks you to implement yourself: "
                "no points for this test"
            )


def check_names(banned) -> tuple[str, ...]:
    """Validate a ``banned=`` argument: a tuple of dotted names (or AUTOGRAD)."""
    if isinstance(banned, str):
        raise TypeError("banned must be a tuple of names, not one string")
    banned = tuple(banned)
    for name in banned:
        ban(name)
    return banned
