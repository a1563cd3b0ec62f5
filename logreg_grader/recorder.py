"""Record what a graded function actually executed, whatever names it used to get there.

While a :class:`Recorder` is active it collects an :class:`Observation`:

- ``ops``: every torch operator dispatched (``aten`` overload packets such as ``sigmoid``,
  ``sigmoid_``, ``_log_softmax``), seen by a ``TorchDispatchMode`` below every Python route
  to a kernel: ``torch.sigmoid``, ``Tensor.sigmoid_``, ``torch.special.expit``,
  ``nn.Sigmoid``, ``torch.ops.aten``, private ``torch._C`` entry points;
- ``builtins``: the names of torch's builtin functions and tensor methods called from Python
  (a second witness for the operators, seen by the profiler hook);
- ``entered``: the Python functions of the watched libraries (the course library,
  scikit-learn) that ran, by code object (``file:line:qualname``), so any import, alias or
  copied function object is caught;
- ``backward``: whether autograd's engine ran a backward pass (``graph``: whether the result
  carries an autograd graph);
- ``tampering``: attempts to switch the recorder off (replacing the profiler hook, popping
  the dispatch mode, disabling Python dispatch) — switching it off is itself the observation.

The recorder only observes; :mod:`logreg_grader.bans` judges an observation against what an
exercise forbids, on the trusted side.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field

import torch
from torch.utils._python_dispatch import TorchDispatchMode

_TORCH_DIR = torch.__file__.rsplit("/", 1)[0]
# The mode stack's own entry points, bound before anything can wrap or replace them (the
# public TorchDispatchMode.__enter__ would import torch._dynamo: seconds on first use).
_push_mode = torch._C._push_on_torch_dispatch_stack
_pop_mode = torch._C._pop_torch_dispatch_stack
_stack_len = torch._C._len_torch_dispatch_stack
_stack_at = torch._C._get_dispatch_stack_at
_excluded = torch._C._dispatch_tls_is_dispatch_key_excluded
_PYTHON_KEY = torch._C.DispatchKey.Python
_OPS_FILE = _TORCH_DIR + "/_ops.py"  # OpOverload.__call__: torch.ops.aten.<op> from Python
_WATCHED, _OPS_CALL, _INTERNAL = 1, 2, 4
# The mode stack's builtins: calling one from outside torch is tampering, however obtained.
_STACK_BUILTINS = {
    id(f): f"torch._C.{f.__name__}"
    for f in (
        _push_mode,
        _pop_mode,
        getattr(torch._C, "_set_dispatch_mode", None),
        getattr(torch._C, "_unset_dispatch_mode", None),
    )
    if f is not None
}
# Entry points that turn the recording off; calling them from outside torch is tampering.
_SWITCHES = (
    ("torch._C", "_DisableTorchDispatch"),
    ("torch._C", "DisableTorchFunction"),
    ("torch._C", "DisableTorchFunctionSubclass"),
    ("torch._C", "_ExcludeDispatchKeyGuard"),
    ("torch._C", "_pop_torch_dispatch_stack"),
    ("torch._C", "_set_dispatch_mode"),
    ("torch._C", "_unset_dispatch_mode"),
    ("torch.utils._python_dispatch", "_pop_mode"),
    ("torch.utils._python_dispatch", "_disable_current_modes"),
)


@dataclass
class Observation:
    """What one graded call executed (see the module docstring)."""

    ops: set[str] = field(default_factory=set)
    builtins: set[str] = field(default_factory=set)
    entered: set[str] = field(default_factory=set)
    backward: bool = False
    graph: bool = False  # the result carries an autograd graph
    tampering: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "ops": sorted(self.ops),
            "builtins": sorted(self.builtins),
            "entered": sorted(self.entered),
            "backward": self.backward,
            "graph": self.graph,
            "tampering": self.tampering[:20],
        }

    @classmethod
    def from_dict(cls, d) -> Observation:
        """Rebuild from :meth:`to_dict` output (values from the sandbox: checked types)."""
        d = d if isinstance(d, dict) else {}

        def strings(key):
            v = d.get(key)
            return {str(x)[:300] for x in v[:10_000]} if isinstance(v, list) else set()

        tamper = d.get("tampering")
        return cls(
            ops=strings("ops"),
            builtins=strings("builtins"),
            entered=strings("entered"),
            backward=d.get("backward") is True,
            graph=d.get("graph") is True,
            tampering=[str(t)[:300] for t in tamper[:20]] if isinstance(tamper, list) else [],
        )

    def merge(self, other: Observation) -> None:
        self.ops |= other.ops
        self.builtins |= other.builtins
        self.entered |= other.entered
        self.backward |= other.backward
        self.graph |= other.graph
        self.tampering += other.tampering


def code_key(code) -> str:
    """How a function is named in ``Observation.entered``: its code object's identity."""
    return f"{code.co_filename}:{code.co_firstlineno}:{code.co_qualname}"


class _Mode(TorchDispatchMode):
    @classmethod
    def _should_skip_dynamo(cls):
        return False  # no torch.compile here; wrapping would import torch._dynamo (seconds)

    def __init__(self, recorder):
        super().__init__()
        self.recorder = recorder

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        rec = self.recorder
        if not rec.paused:
            rec.obs.ops.add(func._overloadpacket.__name__)
            if not rec.obs.backward and torch._C._current_graph_task_id() != -1:
                rec.obs.backward = True
        rec.dispatching += 1  # the mode is off the stack while the kernel runs: not tampering
        try:
            return func(*args, **(kwargs or {}))
        finally:
            rec.dispatching -= 1


class Recorder:
    """Context manager: ``with Recorder(watched_dirs) as rec: fn(...)``; then ``rec.obs``.

    Parameters
    ----------
    watched : sequence of str
        Folders whose Python functions are recorded in ``entered`` when they run (the course
        library, scikit-learn). Torch's own Python code is not listed: its operators are.
    """

    _active: list[Recorder] = []

    def __init__(self, watched=()):
        self.watched = tuple(str(w).rstrip("/") + "/" for w in watched)
        self.obs = Observation()
        self.paused = False
        self.dispatching = 0
        self._noted = False
        self._seen: dict = {}
        self._mode = _Mode(self)
        self._undo: list = []
        self._bound_hook = self._hook  # one bound method: compared by identity on exit

    # The profiler hook sees every Python call and every builtin call made from Python.
    def _flags(self, code) -> int:
        """What matters about a code object, computed once: watched, torch's op call, torch's
        own (or this module's) code."""
        flags = self._seen.get(code)
        if flags is None:
            name = code.co_filename
            flags = (
                (_WATCHED if name.startswith(self.watched) else 0)
                | (_OPS_CALL if name == _OPS_FILE else 0)
                | (_INTERNAL if name.startswith((_TORCH_DIR, __file__)) else 0)
            )
            self._seen[code] = flags
            if flags & _WATCHED:
                self.obs.entered.add(code_key(code))
        return flags

    def _hook(self, frame, event, arg):
        # The hot path: runs on every call and builtin call of the code under test. It must
        # never raise: an exception here would change what the student's code does.
        if self.paused or (event != "call" and event != "c_call"):
            return
        try:
            if event == "call":
                # Whatever switched it off, the effect shows: Python dispatch excluded while
                # the code under test calls one of torch's operators.
                if self._flags(frame.f_code) & _OPS_CALL and not self.dispatching:
                    if frame.f_back is not None and not self._flags(frame.f_back.f_code) & (
                        _INTERNAL
                    ):
                        self._check_dispatch()
                return
            module = getattr(arg, "__module__", None)
            torch_builtin = isinstance(module, str) and module.startswith("torch")
            if torch_builtin or isinstance(getattr(arg, "__self__", None), torch.Tensor):
                self.obs.builtins.add(str(getattr(arg, "__name__", "?")))
                if not self.dispatching and not self._flags(frame.f_code) & _INTERNAL:
                    self._check_dispatch()
                    if id(arg) in _STACK_BUILTINS:
                        self.obs.tampering.append(f"called {_STACK_BUILTINS[id(arg)]}")
            elif arg is sys.setprofile or arg is threading.setprofile:
                if not self._flags(frame.f_code) & _INTERNAL:
                    self.obs.tampering.append("replaced the profiler hook (sys.setprofile)")
        except Exception:  # noqa: BLE001, S110 - observing never breaks the observed
            pass

    def _check_dispatch(self) -> None:
        if not self._noted and _excluded(_PYTHON_KEY):
            self._noted = True
            self.obs.tampering.append("the recording of torch operators was switched off")

    def _guard_switches(self):
        """Wrap the recording's off switches so a call from outside torch is observed."""
        import importlib

        for module_name, attr in _SWITCHES:
            module = importlib.import_module(module_name)
            original = getattr(module, attr, None)
            if original is None:
                continue

            def wrapper(*args, _original=original, _name=f"{module_name}.{attr}", **kwargs):
                caller = sys._getframe(1).f_code.co_filename
                if not caller.startswith(_TORCH_DIR) and not self.paused:
                    self.obs.tampering.append(f"called {_name}, which turns recording off")
                return _original(*args, **kwargs)

            setattr(module, attr, wrapper)
            self._undo.append((module, attr, original))

    def __enter__(self) -> Recorder:
        self._outer_profile = sys.getprofile()
        self._guard_switches()
        self._depth = _stack_len()
        _push_mode(self._mode)
        sys.setprofile(self._bound_hook)
        threading.setprofile(self._bound_hook)
        Recorder._active.append(self)
        return self

    def __exit__(self, *exc) -> None:
        hook = sys.getprofile()
        sys.setprofile(self._outer_profile)
        threading.setprofile(self._outer_profile)
        if hook is not self._bound_hook:
            self.obs.tampering.append("the profiler hook was replaced during the call")
        depth = _stack_len()
        top = _stack_at(depth - 1) if depth else None
        if depth != self._depth + 1 or top is not self._mode:
            self.obs.tampering.append("the dispatch mode stack was changed during the call")
        while _stack_len() > self._depth:  # back as it was before the call
            _pop_mode(None)
        if torch._C._dispatch_tls_is_dispatch_key_excluded(torch._C.DispatchKey.Python):
            self.obs.tampering.append("Python dispatch was left disabled")
        for module, attr, original in reversed(self._undo):
            setattr(module, attr, original)
        self._undo.clear()
        if Recorder._active and Recorder._active[-1] is self:
            Recorder._active.pop()

    @classmethod
    def pause_all(cls, paused: bool) -> None:
        """Stop (or resume) recording in every active recorder, e.g. during a callback."""
        for rec in cls._active:
            rec.paused = paused
