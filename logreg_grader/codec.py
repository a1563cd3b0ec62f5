"""The wire protocol between the trusted grader and a sandboxed student process.

A message is a 4-byte big-endian length followed by that many bytes of JSON (never pickle: the
student's side may only send data, not code). Values inside messages are plain JSON or one of
these tagged objects:

========================  ==========================================================
``{"__t__": dtype, ...}``  a torch tensor: dtype name, shape and raw little-endian bytes
                           (base64); a Tensor subclass crosses as its plain data only
``{"__np__": tensor}``     a NumPy array of a numeric dtype
``{"__tuple__": [...]}``   a tuple; ``{"__dict__": [[k, v], ...]}`` a dict (subclasses of
                           tuple, list and dict cross as the plain type)
``{"__dtype__": name}``    a torch dtype; ``{"__gen__": state}`` a torch.Generator
``{"__iter__": [...]}``    a generator, map, zip, ... (consumed, at most MAX_ITEMS)
``{"__dc__": name, ...}``  a dataclass instance, by field
``{"__h__": n, ...}``      a handle: an object that stays on the side that owns it
``{"__cb__": n}``          a callback: a trusted-side callable the student's code may call
========================  ==========================================================

Everything else is sent as a handle by the ``table`` callable the caller passes to
:func:`encode`, and rebuilt by the ``table`` passed to :func:`decode`.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import select
import struct
import time
import types

MAX_MESSAGE = 256 * 1024**2
MAX_ITEMS = 100_000
MAX_DEPTH = 20
DTYPES = (
    "float16",
    "bfloat16",
    "float32",
    "float64",
    "int8",
    "uint8",
    "int16",
    "int32",
    "int64",
    "bool",
    "complex64",
    "complex128",
)


class ProtocolError(Exception):
    """The other side sent something that is not a valid message."""


# --- framing --------------------------------------------------------------------------------


def send(sock, msg) -> None:
    """Write one message to a connected socket."""
    data = json.dumps(msg, allow_nan=True, separators=(",", ":")).encode()
    sock.sendall(struct.pack(">I", len(data)) + data)


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes:
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


def recv(sock, deadline: float | None = None):
    """Read one message; TimeoutError past ``deadline`` (monotonic), EOFError if closed."""
    fd = sock.fileno()
    (n,) = struct.unpack(">I", _read_exact(fd, 4, deadline))
    if n > MAX_MESSAGE:
        raise ProtocolError(f"a message of {n} bytes (at most {MAX_MESSAGE})")
    try:
        return json.loads(_read_exact(fd, n, deadline))
    except (ValueError, UnicodeDecodeError) as err:
        raise ProtocolError(f"not JSON: {err}") from None


# --- tensors --------------------------------------------------------------------------------


def _enc_tensor(t):
    import torch

    t = t.detach().cpu().contiguous()
    if type(t) is not torch.Tensor:
        t = t.as_subclass(torch.Tensor)
    dt = str(t.dtype).replace("torch.", "")
    if dt not in DTYPES:
        raise TypeError(f"tensors of dtype {dt} cannot be sent")
    if dt == "bfloat16":
        raw = t.view(torch.int16).numpy().tobytes()
    else:
        raw = t.numpy().tobytes() if t.numel() else b""
    return {"__t__": dt, "shape": list(t.shape), "b64": base64.b64encode(raw).decode()}


def _dec_tensor(obj):
    import numpy as np
    import torch

    dt = obj.get("__t__")
    if dt not in DTYPES:
        raise ProtocolError(f"tensor dtype {dt!r}")
    shape = obj.get("shape")
    if not isinstance(shape, list) or len(shape) > 16:
        raise ProtocolError("tensor shape")
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
        raise ProtocolError("tensor shape")
    raw = base64.b64decode(str(obj.get("b64", "")))
    npdt = np.dtype("int16" if dt == "bfloat16" else dt)
    count = 1
    for s in shape:
        count *= s
    if count * npdt.itemsize != len(raw):
        raise ProtocolError("tensor size does not match its shape")
    t = torch.from_numpy(np.frombuffer(raw, dtype=npdt).copy())
    if dt == "bfloat16":
        t = t.view(torch.bfloat16)
    return t.reshape(shape)


# --- values ---------------------------------------------------------------------------------


def encode(v, table, depth: int = 0):
    """Plain-data form of ``v``; ``table(obj) -> dict`` handles what is not plain data."""
    import numpy as np
    import torch

    if depth > MAX_DEPTH:
        raise ValueError("value nested too deeply")
    if v is None or type(v) in (bool, int, float, str):
        return v
    if isinstance(v, torch.Tensor):
        return _enc_tensor(v)
    if type(v) is np.ndarray and v.dtype.kind in "biufc":
        return {"__np__": _enc_tensor(torch.from_numpy(np.ascontiguousarray(v)))}
    if isinstance(v, np.generic) and type(v).__module__ == "numpy":
        return encode(v.item(), table, depth + 1)
    # Subclasses (NamedTuple, torch.return_types, OrderedDict, defaultdict) cross as the plain
    # container's data: what a test can do with one, it can do with the other.
    if isinstance(v, tuple):
        return {"__tuple__": [encode(x, table, depth + 1) for x in tuple.__iter__(v)]}
    if isinstance(v, list):
        return [encode(x, table, depth + 1) for x in list.__iter__(v)][:MAX_ITEMS]
    if isinstance(v, dict):
        items = list(dict.items(v))[:MAX_ITEMS]
        return {
            "__dict__": [
                [encode(k, table, depth + 1), encode(x, table, depth + 1)] for k, x in items
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


def decode(v, table, depth: int = 0):
    """Inverse of :func:`encode`; ``table(dict)`` rebuilds handles, callbacks and dataclasses.

    Raises :class:`ProtocolError` for anything that is not a valid value.
    """
    import torch

    if depth > MAX_DEPTH:
        raise ProtocolError("value nested too deeply")
    if v is None or isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, list):
        return [decode(x, table, depth + 1) for x in v[:MAX_ITEMS]]
    if not isinstance(v, dict):
        raise ProtocolError(f"unexpected value of type {type(v).__name__}")
    if "__t__" in v:
        return _dec_tensor(v)
    if "__np__" in v:
        return _dec_tensor(v["__np__"]).numpy()
    if "__tuple__" in v:
        return tuple(decode(x, table, depth + 1) for x in _list(v["__tuple__"]))
    if "__dict__" in v:
        out = {}
        for pair in _list(v["__dict__"]):
            if not isinstance(pair, list) or len(pair) != 2:
                raise ProtocolError("dict item")
            key = decode(pair[0], table, depth + 1)
            if not isinstance(key, str | int | float | bool | tuple | type(None)):
                raise ProtocolError("unhashable dict key")
            out[key] = decode(pair[1], table, depth + 1)
        return out
    if "__dtype__" in v:
        if v["__dtype__"] not in DTYPES:
            raise ProtocolError(f"dtype {v['__dtype__']!r}")
        return getattr(torch, v["__dtype__"])
    if "__gen__" in v:
        g = torch.Generator()
        g.set_state(_dec_tensor(v["__gen__"]).to(torch.uint8))
        return g
    if "__iter__" in v:
        return iter([decode(x, table, depth + 1) for x in _list(v["__iter__"])])
    if "__dc__" in v:
        fields = v.get("fields")
        if not isinstance(fields, dict):
            raise ProtocolError("dataclass fields")
        fields = {str(k): decode(x, table, depth + 1) for k, x in fields.items()}
        return table({"__dc__": str(v["__dc__"]), "fields": fields})
    return table(v)


def _list(v):
    if not isinstance(v, list):
        raise ProtocolError("expected a list")
    return v


def exc_info(err: BaseException) -> dict:
    """An exception as data: its type name and message (truncated)."""
    return {"type": type(err).__name__, "message": str(err)[:4000]}


def rebuild_exception(info) -> Exception:
    """A builtin exception of the same type and message (RuntimeError for any other type)."""
    import builtins

    if not isinstance(info, dict):
        return RuntimeError("the student's code failed")
    name, msg = str(info.get("type", "Exception"))[:100], str(info.get("message", ""))[:4000]
    cls = getattr(builtins, name, None)
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            return cls(msg)
        except Exception:  # noqa: BLE001 - exotic constructor signatures
            pass
    return RuntimeError(f"{name}: {msg}")
