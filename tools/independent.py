"""Independent grading: the score of a submission comes from checks student code cannot alter.

Only the student's solution cells (found by grade_id) run, inside a sandboxed server process
(tools/sandbox.py: its own uid, no network, rlimits, wall clock). The master notebook's test
cells, hidden tests included, run here, in the trusted grader process, with every graded name
bound to a :class:`Remote` proxy: a call crosses the process boundary as length-prefixed JSON
in which tensors, arrays, numbers, tuples, lists, dicts, dtypes and torch.Generator states are
plain data (never pickle); everything else the student returns stays in the sandbox and comes
back as a handle whose attributes and methods forward. Callbacks passed by a test (the ``f`` of
``numerical_gradient(f, x)``) run here, called back from the sandbox. In-place changes to
tensor and generator arguments are copied back, so tests of mutation still work.

A static scan of each solution cell (AST) gives no points for a function that reaches a banned
reference (directly, via an alias or an import) or that uses reflection/monkeypatching routes
(getattr, importlib, __import__, eval, exec, globals, sys.modules, builtins, assignment to a
module attribute).

Usage inside the sandbox: python tools/independent.py --serve
"""

from __future__ import annotations

import ast
import base64
import builtins
import contextlib
import dataclasses
import io
import json
import os
import re
import select
import struct
import subprocess
import sys
import time
import types
from pathlib import Path

MAX_MESSAGE = 256 * 1024**2
MAX_ITEMS = 100_000
DTYPES = (
    "float16", "bfloat16", "float32", "float64", "int8", "uint8", "int16", "int32", "int64", "bool",
    "complex64", "complex128",
)  # fmt: skip
# Names whose use in a solution cell is treated as tampering: reflection and dynamic imports (the
# indirect routes to a banned reference), and reaching the system (files, processes, sockets,
# signals, raw memory). Plain `import os` / `import sys` stay allowed (print(file=sys.stderr)).
REFLECTION = frozenset(
    {
        "getattr", "setattr", "delattr", "__import__", "importlib", "eval", "exec", "compile",
        "globals", "locals", "vars", "__dict__", "__builtins__", "builtins", "modules",
        "__getattribute__", "__subclasses__", "__globals__", "__code__", "ctypes", "gc",
        "inspect", "__class__", "__bases__", "__mro__", "subprocess", "open", "system",
        "popen", "socket", "signal", "mmap", "__loader__", "__spec__", "runpy", "_exit",
        "kill", "fork", "execv", "spawnv",
    }
)  # fmt: skip
AUTOGRAD_NAMES = frozenset(
    {"backward", "grad", "autograd", "requires_grad", "requires_grad_", "retain_grad",
     "jacrev", "jacfwd", "vjp", "jvp", "jacobian", "hessian", "functional_call"}
)  # fmt: skip


class SandboxDied(Exception):
    """The sandbox process died, hung or broke the protocol; .status says how."""

    def __init__(self, status, detail):
        super().__init__(detail)
        self.status, self.detail = status, detail


# --- framing --------------------------------------------------------------------------------


def send(stream, msg) -> None:
    data = json.dumps(msg, allow_nan=True).encode()
    stream.write(struct.pack(">I", len(data)) + data)
    stream.flush()


def _read_exact(fd, n, deadline):
    buf = bytearray()
    while len(buf) < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            ready, _, _ = select.select([fd], [], [], min(left, 1.0))
            if not ready:
                continue
        chunk = os.read(fd, min(n - len(buf), 1 << 20))
        if not chunk:
            raise EOFError
        buf.extend(chunk)
    return bytes(buf)


def recv(fd, deadline=None):
    (n,) = struct.unpack(">I", _read_exact(fd, 4, deadline))
    if n > MAX_MESSAGE:
        raise ValueError(f"message of {n} bytes")
    return json.loads(_read_exact(fd, n, deadline))


# --- values ---------------------------------------------------------------------------------


def _enc_tensor(t):
    import torch

    t = t.detach().cpu().contiguous()
    dt = str(t.dtype).replace("torch.", "")
    if dt == "bfloat16":
        raw = t.view(torch.int16).numpy().tobytes()
    else:
        raw = t.numpy().tobytes() if t.numel() else b""
    return {"__t__": dt, "shape": list(t.shape), "b64": base64.b64encode(raw).decode()}


def _dec_tensor(obj):
    import numpy as np
    import torch

    dt = obj["__t__"]
    if dt not in DTYPES:
        raise ValueError(f"dtype {dt!r}")
    shape = [int(s) for s in obj["shape"]]
    if any(s < 0 for s in shape) or len(shape) > 16:
        raise ValueError("bad shape")
    raw = base64.b64decode(obj["b64"])
    if dt == "bfloat16":
        arr = np.frombuffer(raw, dtype=np.int16).copy()
        return torch.from_numpy(arr).view(torch.bfloat16).reshape(shape)
    npdt = np.dtype(dt)
    count = 1
    for s in shape:
        count *= s
    if count * npdt.itemsize != len(raw):
        raise ValueError("tensor size does not match its shape")
    return torch.from_numpy(np.frombuffer(raw, dtype=npdt).copy()).reshape(shape)


def encode(v, table, depth=0):
    """Plain-data form of v. table(obj) -> dict handles whatever is not plain data."""
    import numpy as np
    import torch

    if depth > 20:
        raise ValueError("value nested too deeply")
    if v is None or isinstance(v, bool | int | float | str):
        if type(v) not in (bool, int, float, str, type(None)):  # subclasses (e.g. __eq__ tricks)
            return table(v)
        return v
    if type(v) is torch.Tensor or type(v) is torch.nn.Parameter:
        return _enc_tensor(v)
    if isinstance(v, torch.Tensor):  # a Tensor subclass: only its data crosses
        return _enc_tensor(
            torch.Tensor(v.detach().cpu()) if False else v.detach().as_subclass(torch.Tensor)
        )
    if type(v) is np.ndarray and v.dtype.kind in "biufc":
        return {"__np__": _enc_tensor(torch.from_numpy(np.ascontiguousarray(v)))}
    if isinstance(v, np.generic) and type(v).__module__ == "numpy":
        return encode(v.item(), table, depth + 1)
    if type(v) is tuple:
        return {"__tuple__": [encode(x, table, depth + 1) for x in v]}
    if type(v) is list:
        return [encode(x, table, depth + 1) for x in v[:MAX_ITEMS]]
    if type(v) is dict:
        return {
            "__dict__": [
                [encode(k, table, depth + 1), encode(x, table, depth + 1)] for k, x in v.items()
            ]
        }
    if isinstance(v, torch.dtype):
        return {"__dtype__": str(v).replace("torch.", "")}
    if type(v) is torch.Generator:
        return {"__gen__": _enc_tensor(v.get_state())}
    if isinstance(v, types.GeneratorType | map | filter | zip | enumerate | range):
        items = []
        for x in v:
            items.append(encode(x, table, depth + 1))
            if len(items) >= MAX_ITEMS:
                break
        return {"__iter__": items}
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        fields = {
            f.name: encode(getattr(v, f.name), table, depth + 1) for f in dataclasses.fields(v)
        }
        return {"__dc__": type(v).__name__, "fields": fields}
    return table(v)


def decode(v, table, depth=0):
    """Inverse of encode; table(dict) rebuilds handles, callbacks and dataclasses."""
    import torch

    if depth > 20:
        raise ValueError("value nested too deeply")
    if v is None or isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, list):
        return [decode(x, table, depth + 1) for x in v[:MAX_ITEMS]]
    if not isinstance(v, dict):
        raise ValueError("unexpected value")
    if "__t__" in v:
        return _dec_tensor(v)
    if "__np__" in v:
        return _dec_tensor(v["__np__"]).numpy()
    if "__tuple__" in v:
        return tuple(decode(x, table, depth + 1) for x in v["__tuple__"])
    if "__dict__" in v:
        out = {}
        for k, x in v["__dict__"]:
            key = decode(k, table, depth + 1)
            if not isinstance(key, str | int | float | bool | tuple | type(None)):
                raise ValueError("unhashable key")
            out[key] = decode(x, table, depth + 1)
        return out
    if "__dtype__" in v:
        if v["__dtype__"] not in DTYPES:
            raise ValueError("dtype")
        return getattr(torch, v["__dtype__"])
    if "__gen__" in v:
        g = torch.Generator()
        g.set_state(_dec_tensor(v["__gen__"]))
        return g
    if "__iter__" in v:
        return iter([decode(x, table, depth + 1) for x in v["__iter__"]])
    if "__dc__" in v:
        fields = {str(k): decode(x, table, depth + 1) for k, x in v["fields"].items()}
        return table({"__dc__": str(v["__dc__"]), "fields": fields})
    return table(v)


def _exc_info(err):
    return {"type": type(err).__name__, "message": str(err)[:2000]}


def rebuild_exception(info):
    name, msg = str(info.get("type", "Exception")), str(info.get("message", ""))[:2000]
    cls = getattr(builtins, name, None)
    if (
        isinstance(cls, type)
        and issubclass(cls, Exception)
        and cls not in (SystemExit, KeyboardInterrupt)
    ):
        with contextlib.suppress(Exception):
            return cls(msg)
    return RuntimeError(f"{name}: {msg}")


# --- the server (runs in the sandbox, as the student) ---------------------------------------


def serve() -> None:
    """Read the cells, exec them, then answer call/getattr/bind requests on stdin/stdout."""
    proto_out = os.fdopen(os.dup(1), "wb")
    proto_in = os.dup(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    sys.stdin = open(os.devnull)  # noqa: SIM115
    sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115
    import warnings

    warnings.simplefilter("ignore")
    import torch  # noqa: F401

    import logreg_lessons
    from logreg_lessons import grading

    objects, ids = {}, {}

    def table_out(obj):
        key = id(obj)
        if key not in ids:
            ids[key] = len(objects) + 1
            objects[ids[key]] = obj
        return {"__h__": ids[key], "type": type(obj).__name__[:64], "callable": callable(obj)}

    def table_in(d):
        if "__h__" in d:
            return objects[int(d["__h__"])]
        if "__cb__" in d:
            cb = int(d["__cb__"])

            def stub(*args, **kwargs):
                send(
                    proto_out,
                    {
                        "op": "callback",
                        "id": cb,
                        "args": encode(list(args), table_out),
                        "kwargs": encode(kwargs, table_out),
                    },
                )
                return loop(until_result=True)

            return stub
        if "__dc__" in d:
            return types.SimpleNamespace(**d["fields"])
        raise ValueError("unknown value")

    call_student = grading.call_student  # bound before any student code runs
    first = recv(proto_in)
    ns = {"__name__": "__main__", "__builtins__": builtins}
    errors = {}
    for kind, gid, source in first["cells"]:
        try:
            exec(compile(source, f"<cell {gid}>", "exec"), ns)
        except BaseException as err:  # noqa: BLE001 - a broken cell is that cell's problem
            if kind == "solution":
                errors[gid] = _exc_info(err)
    originals = {n: ns.get(n) for n in first["names"]}
    send(
        proto_out,
        {"op": "ready", "errors": errors, "defined": [n for n in first["names"] if n in ns]},
    )

    def target(ref):
        if "name" in ref:
            if ref["name"] not in ns:
                raise NameError(f"name {ref['name']!r} is not defined")
            return ns[ref["name"]]
        return objects[int(ref["handle"])]

    def handle(msg):
        op = msg["op"]
        if op == "call":
            fn = target(msg["target"])
            args = decode(msg["args"], table_in)
            kwargs = decode(msg["kwargs"], table_in)
            banned = tuple(str(b) for b in msg.get("banned") or ())
            result = call_student(fn, *args, banned=banned, allow_mutation=True, **kwargs)
            after = [
                a if isinstance(a, torch.Tensor | torch.Generator) else None
                for a in list(args) + list(kwargs.values())
            ]
            return {"value": encode(result, table_out), "after": encode(after, table_out)}
        if op == "getattr":
            return {"value": encode(getattr(target(msg["target"]), str(msg["name"])), table_out)}
        if op == "bind":
            name = str(msg["name"])
            if msg.get("lib"):
                ns[name] = getattr(logreg_lessons, str(msg["lib"]))
            else:
                ns[name] = originals.get(name)
            return {"value": None}
        if op == "repr":
            return {"value": repr(target(msg["target"]))[:200]}
        raise ValueError(f"unknown op {op!r}")

    def loop(until_result=False):
        while True:
            msg = recv(proto_in)
            if msg.get("op") == "cbresult":
                if not until_result:
                    continue
                if "error" in msg:
                    raise rebuild_exception(msg["error"])
                return decode(msg["value"], table_in)
            try:
                reply = handle(msg)
                reply["op"] = "result"
            except BaseException as err:  # noqa: BLE001
                if isinstance(err, MemoryError):
                    reply = {
                        "op": "result",
                        "error": {"type": "MemoryError", "message": "out of memory"},
                    }
                else:
                    reply = {"op": "result", "error": _exc_info(err)}
            send(proto_out, reply)

    try:
        loop()
    except EOFError:
        pass


# --- the client (trusted side) --------------------------------------------------------------


class Remote:
    """A graded name or a student object living in the sandbox; calls and attributes forward."""

    def __init__(self, session, ref, label, is_callable=True):
        object.__setattr__(self, "_session", session)
        object.__setattr__(self, "_ref", ref)
        object.__setattr__(self, "__qualname__", label)
        object.__setattr__(self, "__name__", label)
        object.__setattr__(self, "_is_callable", is_callable)

    def _logreg_remote_call(self, args, kwargs, banned=()):
        return self._session.call(self._ref, args, kwargs, banned)

    def __call__(self, *args, **kwargs):
        return self._session.call(self._ref, args, kwargs, ())

    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        value = self._session.request({"op": "getattr", "target": self._ref, "name": name})
        if isinstance(value, Remote):
            object.__setattr__(value, "__qualname__", f"{self.__qualname__}.{name}")
        return value

    def __setattr__(self, name, value):
        raise AttributeError("student objects are read-only from the grader")

    def __repr__(self):
        return f"<student object {self.__qualname__}>"


class Session:
    """One sandboxed server holding the student's solution cells."""

    def __init__(self, cells, names, scratch, slot, limits, roots, call_timeout=60.0):
        import sandbox

        self.cells, self.names, self.scratch, self.slot = cells, names, scratch, slot
        self.limits, self.roots, self.call_timeout = limits, roots, call_timeout
        self.callbacks, self.handles = {}, {}
        self.proc = sandbox.popen(
            [sys.executable, str(Path(__file__).resolve()), "--serve"],
            scratch,
            slot,
            limits,
            roots=roots,
            stderr=subprocess.DEVNULL,
        )
        self.fd = self.proc.stdout.fileno()
        self.start = time.monotonic()
        send(self.proc.stdin, {"cells": cells, "names": names})
        ready = self._recv()
        self.errors = ready.get("errors", {})
        self.defined = set(ready.get("defined", []))

    def _deadline(self, seconds):
        return min(time.monotonic() + seconds, self.start + self.limits.wall_s)

    def _recv(self, seconds=None):
        import sandbox

        try:
            return recv(self.fd, self._deadline(seconds or self.limits.wall_s))
        except TimeoutError:
            sandbox.kill(self.proc)
            raise SandboxDied(
                "timeout", "the code ran past its time limit and was killed"
            ) from None
        except (EOFError, OSError, ValueError, struct.error):
            sandbox.kill(self.proc)
            rc = self.proc.returncode
            status, detail = sandbox.classify(rc, b"", False, self.limits)
            if rc == -9 and time.monotonic() - self.start > self.limits.cpu_s - 1:
                status, detail = "timeout", "CPU-time limit exceeded"
            if status == "ok":
                status, detail = "kernel_died", "the student process stopped answering"
            raise SandboxDied(status, detail) from None

    def close(self):
        import sandbox

        sandbox.kill(self.proc)
        sandbox.kill_uid(sandbox.uid_for(self.slot))

    def _table_out(self, obj):
        if isinstance(obj, Remote):
            return dict(obj._ref)
        if callable(obj):
            key = id(obj)
            self.callbacks[key] = obj
            return {"__cb__": key}
        raise TypeError(f"cannot send a {type(obj).__name__} to the student's code")

    def _table_in(self, d):
        if "__h__" in d:
            h = int(d["__h__"])
            if h not in self.handles:
                self.handles[h] = Remote(
                    self, {"handle": h}, str(d.get("type", "object"))[:64], bool(d.get("callable"))
                )
            return self.handles[h]
        if "__dc__" in d:
            import logreg_lessons

            cls = getattr(logreg_lessons, d["__dc__"], None)
            if isinstance(cls, type) and dataclasses.is_dataclass(cls):
                with contextlib.suppress(TypeError):
                    return cls(**d["fields"])
            return types.SimpleNamespace(**d["fields"])
        raise ValueError("unexpected value from the student's code")

    def request(self, msg, seconds=None):
        send(self.proc.stdin, msg)
        while True:
            reply = self._recv(seconds or self.call_timeout)
            if reply.get("op") == "callback":
                fn = self.callbacks.get(int(reply.get("id", -1)))
                try:
                    args = decode(reply["args"], self._table_in)
                    kwargs = decode(reply["kwargs"], self._table_in)
                    value = {"value": encode(fn(*args, **kwargs), self._table_out)}
                except Exception as err:  # noqa: BLE001 - goes back to the student's code
                    value = {"error": _exc_info(err)}
                send(self.proc.stdin, {"op": "cbresult", **value})
                continue
            if reply.get("op") != "result":
                raise SandboxDied("kernel_died", "protocol error")
            if "error" in reply:
                if reply["error"].get("type") == "MemoryError":
                    raise SandboxDied("memory", "the code ran out of memory")
                raise rebuild_exception(reply["error"])
            try:
                self.last_after = reply.get("after")
                return decode(reply["value"], self._table_in)
            except (ValueError, KeyError, TypeError) as err:
                raise AssertionError(f"the value returned cannot be read: {err}") from None

    def call(self, ref, args, kwargs, banned):
        import torch

        msg = {
            "op": "call",
            "target": dict(ref),
            "args": encode(list(args), self._table_out),
            "kwargs": encode(dict(kwargs), self._table_out),
            "banned": list(banned),
        }
        self.last_after = None
        result = self.request(msg)
        after = decode(self.last_after, self._table_in) if self.last_after else []
        originals = list(args) + list(kwargs.values())
        for orig, new in zip(originals, after, strict=False):
            if isinstance(orig, torch.Tensor) and isinstance(new, torch.Tensor):
                if new.shape == orig.shape and new.dtype == orig.dtype:
                    with torch.no_grad():
                        orig.copy_(new)
            elif isinstance(orig, torch.Generator) and isinstance(new, torch.Generator):
                orig.set_state(new.get_state())
        return result

    def bind(self, name, lib=None):
        self.request({"op": "bind", "name": name, "lib": lib})


class GradedNamespace(dict):
    """The test cells' globals: ``globals()["minibatches"] = _ref.minibatches`` rebinds the
    name inside the sandbox too (sgd is then graded with the reference minibatches)."""

    def __init__(self, *a, graded=(), session=None, **kw):
        super().__init__(*a, **kw)
        self._graded, self._session = set(graded), session

    def __setitem__(self, key, value):
        if key in self._graded and self._session is not None:
            if isinstance(value, Remote):
                self._session.bind(key, None)
            elif getattr(value, "__module__", "").startswith("logreg_lessons"):
                self._session.bind(key, value.__name__)
        super().__setitem__(key, value)


# --- static analysis ------------------------------------------------------------------------


def _literal_strings(node):
    return [
        n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    ]


def bans_by_name(test_cells, graded) -> dict[str, set[str]]:
    """graded name -> banned dotted names, read from the banned= of the test cells."""
    out = {g: set() for g in graded}
    for _, source in test_cells:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        assigned = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Tuple | ast.List):
                for t in node.targets:
                    if isinstance(t, ast.Name):
                        assigned[t.id] = _literal_strings(node.value)
        banned = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == "banned":
                if isinstance(node.value, ast.Name):
                    banned.update(assigned.get(node.value.id, []))
                else:
                    banned.update(_literal_strings(node.value))
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        for g in graded:
            if g in names:
                out[g].update(banned)
    return out


def _names_in(source) -> set[str]:
    """Identifiers a cell's code uses (not its comments or strings)."""
    try:
        return {n.id for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Name)}
    except SyntaxError:
        return set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", source))


def _dotted(node):
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


_OWN = ", which this exercise asks you to implement yourself"
_HAND = ", which this exercise asks you to replace with a gradient derived by hand"


def _alias(alias) -> str:
    return f" (imported as {alias.asname})" if alias.asname else ""


def _pick(lasts, banned, last, dotted) -> str:
    """The banned dotted name a reference most likely means (exact text first, torch first)."""
    if dotted in banned:
        return dotted
    same = sorted(
        (b for b in banned if b.split(".")[-1] == last),
        key=lambda b: (not b.startswith("torch."), b.count("."), b),
    )
    return same[0] if same else lasts.get(last, dotted)


def scan(source, banned, module_names) -> tuple[str, str] | None:
    """(status, reason) if a solution cell reaches a banned reference or tampers, else None."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None  # it fails when it runs
    banned = set(banned)
    autograd = "AUTOGRAD" in banned
    lasts = {b.split(".")[-1]: b for b in banned if b != "AUTOGRAD"}
    modules = set(module_names)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                modules.add((alias.asname or alias.name).split(".")[0])
    for node in ast.walk(tree):
        # monkeypatching: assignment to an attribute of a module (or of a module's class)
        targets = []
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign | ast.Delete):
            targets = node.targets if isinstance(node, ast.Assign | ast.Delete) else [node.target]
        for t in targets:
            for sub in ast.walk(t):
                if isinstance(sub, ast.Attribute):
                    root = _dotted(sub)
                    if root and root.split(".")[0] in modules:
                        return "tampering_suspected", f"assigns to {root} (patching a module)"
        if isinstance(node, ast.Name) and node.id in REFLECTION:
            return "tampering_suspected", f"uses {node.id} (reflection, imports or the system)"
        if isinstance(node, ast.Attribute) and node.attr in REFLECTION:
            return "tampering_suspected", f"uses .{node.attr} (reflection, imports or the system)"
        if isinstance(node, ast.Import | ast.ImportFrom):
            mod = getattr(node, "module", None) or ""
            for alias in node.names:
                full = f"{mod}.{alias.name}" if mod else alias.name
                top = full.split(".")[0]
                if top in REFLECTION or mod.split(".")[0] in REFLECTION:
                    return "tampering_suspected", f"imports {full}"
                if (
                    full in banned
                    or alias.name in lasts
                    and any(
                        b.startswith(mod + ".") or b.split(".")[0] == mod.split(".")[0]
                        for b in banned
                    )
                ):
                    name = full if full in banned else _pick(lasts, banned, alias.name, full)
                    return "banned_reference", f"calls {name}{_alias(alias)}{_OWN}"
                if autograd and any(p in AUTOGRAD_NAMES for p in full.split(".")):
                    return "banned_reference", f"uses autograd ({full}){_HAND}"
        if isinstance(node, ast.Attribute):
            if node.attr in lasts:
                dotted = _dotted(node) or "." + node.attr
                return "banned_reference", f"calls {_pick(lasts, banned, node.attr, dotted)}{_OWN}"
            if autograd and node.attr in AUTOGRAD_NAMES:
                return "banned_reference", f"uses autograd (.{node.attr}){_HAND}"
        if autograd and isinstance(node, ast.keyword) and node.arg == "requires_grad":
            return "banned_reference", f"uses autograd (requires_grad){_HAND}"
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value in lasts or node.value in banned:
                name = _pick(lasts, banned, node.value, node.value)
                return "banned_reference", f"calls {name} (named in a string){_OWN}"
    return None


# --- grading one submission -----------------------------------------------------------------


def cells_of(nb):
    """[(kind, grade_id, source, points, cell)] of a notebook."""
    out = []
    for i, cell in enumerate(nb.get("cells", [])):
        meta = (cell.get("metadata") or {}).get("nbgrader") or {}
        src = cell.get("source", "")
        src = "".join(src) if isinstance(src, list) else str(src)
        gid = meta.get("grade_id")
        if cell.get("cell_type") != "code":
            kind = "markdown"
        elif meta.get("solution"):
            kind = "solution"
        elif meta.get("grade"):
            kind = "test"
        else:
            kind = "plain"
        out.append(
            (kind, str(gid) if gid else f"cell{i}", src, float(meta.get("points") or 0), cell)
        )
    return out


def _visible(src):
    out, inside = [], False
    for line in src.split("\n"):
        if "BEGIN HIDDEN TESTS" in line or "END HIDDEN TESTS" in line:
            inside = "BEGIN" in line
            continue
        if not inside and line.strip():
            out.append(line.strip())
    return out


def check_structure(master, submitted):
    """(solution sources by grade_id, problems list) comparing the submission to the master."""
    want = [gid for kind, gid, *_ in cells_of(master) if kind == "solution"]
    tests = {gid: src for kind, gid, src, *_ in cells_of(master) if kind == "test"}
    found, problems = {}, []
    counts = {}
    for _kind, gid, src, _, cell in cells_of(submitted):
        meta = (cell.get("metadata") or {}).get("nbgrader") or {}
        counts[gid] = counts.get(gid, 0) + 1
        if cell.get("cell_type") == "code" and meta.get("solution") and gid in want:
            found.setdefault(gid, src)
        if gid in tests and _visible(src) != _visible(tests[gid]):
            problems.append(f"test cell {gid} was edited: graded from the master copy")
    for gid in want:
        if gid not in found:
            problems.append(f"solution cell {gid} is missing or renamed: its tests get 0")
        elif counts.get(gid, 0) > 1:
            problems.append(f"cell {gid} appears {counts[gid]} times: the first one is graded")
    for gid in tests:
        if counts.get(gid, 0) > 1:
            problems.append(
                f"test cell {gid} appears {counts[gid]} times: graded once, from the master"
            )
    for gid in tests:
        if gid not in counts:
            problems.append(f"test cell {gid} was deleted: restored from the master copy")
    return found, problems


def grade(master, submitted, scratch, slot, limits, roots=(), hidden=()):
    """Grade one parsed submission: dict(status, reasons, cells={gid: (score, max, msg)})."""
    cells = cells_of(master)
    graded = [gid for kind, gid, *_ in cells if kind == "solution"]
    tests = [(gid, src, pts) for kind, gid, src, pts, _ in cells if kind == "test"]
    found, problems = check_structure(master, submitted)
    status, reasons = "ok", list(problems)
    if any("missing" in p or "appears" in p for p in problems):
        status = "cells_tampered"
    elif problems:
        status = "cells_tampered"
    # cells run in the sandbox: master's plain cells up to the last solution cell + solutions
    last = max((i for i, c in enumerate(cells) if c[0] == "solution"), default=-1)
    run_cells = []
    for i, (kind, gid, src, _, _) in enumerate(cells):
        if i > last:
            break
        if kind == "plain":
            run_cells.append(["plain", gid, src])
        elif kind == "solution" and gid in found:
            run_cells.append(["solution", gid, found[gid]])
    bans = bans_by_name([(g, s) for g, s, _ in tests], graded)
    setup_modules = set()
    for kind, _, src, *_ in cells:
        if kind == "plain":
            with contextlib.suppress(SyntaxError):
                for node in ast.walk(ast.parse(src)):
                    if isinstance(node, ast.Import | ast.ImportFrom):
                        for a in node.names:
                            setup_modules.add((a.asname or a.name).split(".")[0])
    zeroed = {}
    for gid, src in found.items():
        hit = scan(
            src, bans.get(gid, ()), setup_modules | {"torch", "np", "numpy", "logreg_lessons"}
        )
        if hit:
            zeroed[gid] = f"{gid} {hit[1]}: no points for its tests"
            reasons.append(zeroed[gid])
            if status == "ok" or (status == "banned_reference" and hit[0] == "tampering_suspected"):
                status = hit[0]
    for gid in graded:
        if gid not in found:
            zeroed[gid] = f"solution cell {gid} is missing"
    results, session, restarts, died = {}, None, 0, None
    import sandbox

    try:
        for gid, src, pts in tests:
            users = [g for g in graded if g in _names_in(src)]
            why = next((zeroed[g] for g in users if g in zeroed), None)
            if why:
                results[gid] = (0.0, pts, why)
                continue
            if died is not None and restarts >= 2:
                results[gid] = (0.0, pts, f"not run: {died.detail}")
                continue
            if session is None:
                try:
                    session = Session(
                        run_cells,
                        graded,
                        scratch,
                        slot,
                        limits,
                        roots,
                        call_timeout=float(os.environ.get("LOGREG_CALL_TIMEOUT", 60)),
                    )
                except SandboxDied as err:
                    died, restarts = err, restarts + 1
                    status = err.status
                    reasons.append(f"{gid}: {err.detail}")
                    results[gid] = (0.0, pts, err.detail)
                    continue
            ns = GradedNamespace(
                {"__name__": "__main__", "__builtins__": builtins}, graded=graded, session=session
            )
            for g in graded:
                if g in session.defined:
                    dict.__setitem__(ns, g, Remote(session, {"name": g}, g))
            try:
                sink = io.StringIO()
                with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                    exec(compile(src, f"<test {gid}>", "exec"), ns)
                results[gid] = (pts, pts, "")
            except SandboxDied as err:
                died, restarts = err, restarts + 1
                session.close()
                session = None
                status = err.status
                reasons.append(f"{gid}: {err.detail}")
                results[gid] = (0.0, pts, err.detail)
            except BaseException as err:  # noqa: BLE001 - a failed test
                if isinstance(err, KeyboardInterrupt):
                    raise
                msg = f"{type(err).__name__}: {err}"
                msg = "\n".join(ln for ln in msg.split("\n") if ln.strip() not in hidden)
                results[gid] = (0.0, pts, msg[:1500])
    finally:
        if session is not None:
            session.close()
    if session is None and died is None and not tests:
        pass
    return {"status": status, "reasons": reasons, "cells": results, "warnings": sandbox.warnings()}


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        serve()
