"""The student's side: one sandboxed process that runs a submission's cells and answers calls.

It is forked by the fork server (:mod:`logreg_grader.forkserver`), enters the sandbox
(:func:`logreg_grader.sandbox.enter`) and then serves requests on one socket:

=============  ===================================================================
``exec``       run one code cell of the student's notebook in its namespace; reply
               with its stdout/stderr (capped) and the error, if any, as text
``lookup``     the values of names of the namespace: plain data, or handles
``call``       call a name or a handle, under a :class:`~logreg_grader.recorder.
               Recorder`; reply with the value, the arguments after the call (to
               copy in-place changes back) and the observation
``getattr``    an attribute of a handle; ``repr``: its repr (short)
``bind``       set a namespace name to a course-library object, or put it back
=============  ===================================================================

Values cross as :mod:`logreg_grader.codec` data; callables the grader passes run on the
grader's side (``callback`` requests from here, answered by ``cbresult``). Nothing secret is
ever sent here: only the student's own cells and the arguments of calls.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import linecache
import os
import sys
import traceback
import types
import warnings

from logreg_grader import codec
from logreg_grader.recorder import Recorder

OUTPUT_CAP = 64 * 1024


class _Capped(io.TextIOBase):
    """A text stream keeping the first OUTPUT_CAP characters written to it."""

    def __init__(self):
        self.parts, self.size, self.dropped = [], 0, 0

    def writable(self):
        return True

    def write(self, s):
        s = str(s)
        keep = max(0, min(len(s), OUTPUT_CAP - self.size))
        if keep:
            self.parts.append(s[:keep])
            self.size += keep
        self.dropped += len(s) - keep
        return len(s)

    def text(self):
        out = "".join(self.parts)
        if self.dropped:
            out += f"\n... ({self.dropped} more characters not shown)\n"
        return out


class Server:
    """The request loop of one sandboxed student process."""

    def __init__(self, sock, watched):
        import logreg_grader.check as check
        import logreg_lessons

        self.sock, self.watched = sock, tuple(watched)
        self.library, self.check = logreg_lessons, check
        self.ns = {"__name__": "__main__", "__builtins__": builtins}
        self.objects: dict[int, object] = {}
        self.ids: dict[int, int] = {}
        self.saved: dict[str, object] = {}
        self.cell = 0

    # --- values ---------------------------------------------------------------------------

    def table_out(self, obj):
        key = id(obj)
        if key not in self.ids:
            self.ids[key] = len(self.objects) + 1
            self.objects[self.ids[key]] = obj
        return {"__h__": self.ids[key], "type": type(obj).__name__[:64], "callable": callable(obj)}

    def table_in(self, d):
        if "__h__" in d:
            return self.objects[int(d["__h__"])]
        if "__cb__" in d:
            return self._callback(int(d["__cb__"]))
        if "__dc__" in d:
            return types.SimpleNamespace(**d["fields"])
        raise codec.ProtocolError("unknown value")

    def _callback(self, cb):
        def stub(*args, **kwargs):
            Recorder.pause_all(True)  # what the grader's callable runs is not the student's
            try:
                codec.send(
                    self.sock,
                    {
                        "op": "callback",
                        "id": cb,
                        "args": codec.encode(list(args), self.table_out),
                        "kwargs": codec.encode(kwargs, self.table_out),
                    },
                )
                return self.loop(until_result=True)
            finally:
                Recorder.pause_all(False)

        return stub

    def target(self, ref):
        if "name" in ref:
            if ref["name"] not in self.ns:
                raise NameError(f"name {ref['name']!r} is not defined")
            return self.ns[ref["name"]]
        return self.objects[int(ref["handle"])]

    # --- requests -------------------------------------------------------------------------

    def do_exec(self, msg):
        self.cell += 1
        filename = f"<cell {msg.get('label', self.cell)}>"
        source = str(msg["source"])
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        out, err = _Capped(), _Capped()
        reply = {"ok": True}
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            with warnings.catch_warnings():
                warnings.simplefilter("default")
                try:
                    exec(compile(source, filename, "exec"), self.ns)
                except BaseException as e:  # noqa: BLE001 - the cell's error is its result
                    if isinstance(e, SystemExit):
                        e = RuntimeError(f"the cell called exit({e.code!r})")
                    tb = traceback.format_exception(type(e), e, e.__traceback__)
                    # Drop the frame of this server: the student sees their own cell's frames.
                    tb = [t for t in tb if __file__ not in t]
                    reply = {
                        "ok": False,
                        "ename": type(e).__name__,
                        "evalue": str(e)[:4000],
                        "traceback": "".join(tb)[-20000:],
                    }
        reply["stdout"], reply["stderr"] = out.text(), err.text()
        return reply

    def do_lookup(self, msg):
        values = {}
        for name in msg["names"]:
            name = str(name)
            if name not in self.ns or name.startswith("__"):
                continue
            value = self.ns[name]
            if isinstance(value, types.ModuleType):
                values[name] = {"module": value.__name__}
                continue
            values[name] = {"value": codec.encode(value, self.table_out)}
        return {"values": values}

    def do_call(self, msg):
        fn = self.target(msg["target"])
        args = codec.decode(msg["args"], self.table_in)
        kwargs = codec.decode(msg["kwargs"], self.table_in)
        import torch

        sink = io.StringIO()
        error, reply = None, {}
        rec = Recorder(self.watched)
        rng = torch.get_rng_state()
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with rec:
                    try:
                        result = fn(*args, **kwargs)
                        rec.obs.graph = self.check.has_graph(result)
                        # Encoded while recording: a generator's body runs only now.
                        reply["value"] = codec.encode(result, self.table_out)
                        after = [
                            a if isinstance(a, torch.Tensor | torch.Generator) else None
                            for a in list(args) + list(kwargs.values())
                        ]
                        reply["after"] = codec.encode(after, self.table_out)
                    except Exception as e:  # noqa: BLE001 - goes back to the test
                        error = e
        reply["observed"] = rec.obs.to_dict()
        now = torch.get_rng_state()
        if not torch.equal(now, rng):  # the test may check the global generator was left alone
            reply["rng"] = codec.encode(now, self.table_out)
        if error is not None:
            if "rng" in reply:
                return {
                    "error": codec.exc_info(error),
                    "observed": reply["observed"],
                    "rng": reply["rng"],
                }
            return {"error": codec.exc_info(error), "observed": reply["observed"]}
        return reply

    def do_getattr(self, msg):
        return {
            "value": codec.encode(
                getattr(self.target(msg["target"]), str(msg["name"])), self.table_out
            )
        }

    def do_repr(self, msg):
        return {"value": repr(self.target(msg["target"]))[:300]}

    def do_bind(self, msg):
        name = str(msg["name"])
        if msg.get("library"):
            self.saved.setdefault(name, self.ns.get(name, _MISSING))
            self.ns[name] = getattr(self.library, str(msg["library"]))
        elif name in self.saved:
            old = self.saved.pop(name)
            if old is _MISSING:
                self.ns.pop(name, None)
            else:
                self.ns[name] = old
        return {"value": None}

    def handle(self, msg):
        op = msg.get("op")
        method = getattr(self, f"do_{op}", None) if isinstance(op, str) else None
        if method is None:
            raise codec.ProtocolError(f"unknown request {op!r}")
        return method(msg)

    def loop(self, until_result=False):
        while True:
            msg = codec.recv(self.sock)
            if msg.get("op") == "cbresult":
                if not until_result:
                    continue
                if "error" in msg:
                    raise codec.rebuild_exception(msg["error"])
                return codec.decode(msg["value"], self.table_in)
            try:
                reply = self.handle(msg)
            except MemoryError:
                reply = {"error": {"type": "MemoryError", "message": "out of memory"}}
            except BaseException as err:  # noqa: BLE001 - reported, the loop goes on
                reply = {"error": codec.exc_info(err)}
            reply["op"] = "result"
            try:
                codec.send(self.sock, reply)
            except (TypeError, ValueError) as err:  # e.g. an unencodable value
                codec.send(self.sock, {"op": "result", "error": codec.exc_info(err)})


_MISSING = object()


def main(sock, uid: int, limits, exposure, watched) -> None:
    """Entry point of a forked child: sandbox, then serve until the grader hangs up."""
    from logreg_grader import sandbox

    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    try:
        sandbox.enter(uid, limits, exposure)
    except BaseException as err:  # noqa: BLE001 - reported to the grader, then exit
        with contextlib.suppress(Exception):
            codec.send(sock, {"op": "failed", "error": f"{type(err).__name__}: {err}"})
        os._exit(70)
    sys.stdin = open(os.devnull)  # noqa: SIM115
    sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115
    codec.send(sock, {"op": "ready", "pid": os.getpid()})
    try:
        Server(sock, watched).loop()
    except (EOFError, OSError, codec.ProtocolError):
        pass
    os._exit(0)
