"""The trusted side of a sandboxed student process: the fork server, a session, proxies.

- :class:`ForkServer` starts :mod:`logreg_grader.forkserver` by exec and asks it for
  children;
- :class:`Session` is one submission's student process: it runs cells, calls functions, and
  when the process hangs or dies it is restarted and the cells that had run are replayed, so a
  fault costs only the tests that touched it;
- :class:`Remote` stands for a student object: calls and attribute reads go to the process,
  and each call's observation of what ran is judged (:mod:`logreg_grader.bans`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
from dataclasses import asdict

from logreg_grader import bans, codec, forkserver, sandbox
from logreg_grader.check import COLLECTOR
from logreg_grader.recorder import Observation


class SandboxLost(BaseException):  # noqa: N818 - not an Exception: test code cannot catch it
    """The student process hung, ran out of memory or died; ``kind`` says which."""

    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind, self.detail = kind, detail


class ForkServer:
    """A running :mod:`logreg_grader.forkserver` (one per grading worker)."""

    def __init__(self, start_timeout: float = 180.0, started=None):
        """Start the server (or take over one ``forkserver.spawn()`` started); it imports in
        the background until the first :meth:`fork`."""
        if started is None:
            sandbox.preflight()
            started = forkserver.spawn()
        self.proc, self.ctl, self.log = started
        self.start_timeout, self.ready = start_timeout, False

    def wait_ready(self) -> None:
        if self.ready:
            return
        self.ctl.settimeout(self.start_timeout)
        try:
            ready = json.loads(self.ctl.recv(1 << 16) or b"{}")
        except (TimeoutError, ValueError, OSError):
            ready = {}
        if ready.get("op") != "ready":
            self.close()
            raise sandbox.SandboxUnavailable(f"the fork server did not start: {self._log()}")
        self.ctl.settimeout(60)
        self.ready = True

    def _log(self) -> str:
        self.log.seek(0)
        return self.log.read()[-3000:].decode("utf-8", "replace").strip() or "no output"

    def _ask(self, msg: dict, fds=()) -> dict:
        self.wait_ready()
        data = json.dumps(msg).encode()
        try:
            if fds:
                socket.send_fds(self.ctl, [data], list(fds))
            else:
                self.ctl.send(data)
            reply = self.ctl.recv(1 << 16)
        except OSError as err:
            raise sandbox.SandboxUnavailable(
                f"the fork server is gone ({err}): {self._log()}"
            ) from None
        if not reply:
            raise sandbox.SandboxUnavailable(f"the fork server is gone: {self._log()}")
        return json.loads(reply)

    def fork(self, uid: int, limits: sandbox.Limits) -> tuple[socket.socket, int]:
        """A new sandboxed child as ``uid``: (its socket, its pid), once it is ready."""
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            reply = self._ask(
                {"op": "fork", "uid": uid, "limits": asdict(limits)}, [theirs.fileno()]
            )
        finally:
            theirs.close()
        pid = int(reply["pid"])
        try:
            hello = codec.recv(mine, time.monotonic() + 60)
        except (EOFError, TimeoutError, OSError, codec.ProtocolError):
            hello = {"op": "failed", "error": "no answer"}
        if hello.get("op") != "ready":
            self.reap(pid, kill=True)
            mine.close()
            raise sandbox.SandboxUnavailable(f"cannot sandbox student code: {hello.get('error')}")
        return mine, pid

    def preload(self, modules: list[str]) -> list[str]:
        """Have the server import these optional modules (forkserver.OPTIONAL) now."""
        return self._ask({"op": "preload", "modules": list(modules)}).get("preloaded", [])

    def reap(self, pid: int, kill: bool = True) -> int | None:
        """Kill (optionally) and reap a child; its exit code (negative: the signal)."""
        if kill:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return self._ask({"op": "wait", "pid": pid}).get("exit")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.ctl.close()
        with contextlib.suppress(Exception):
            self.proc.kill()
            self.proc.wait(timeout=10)


class Session:
    """One submission's student process, restarted and replayed after a fault."""

    def __init__(
        self,
        server: ForkServer,
        uid: int,
        limits: sandbox.Limits,
        call_timeout: float = 30.0,
        max_restarts: int = 4,
    ):
        self.server, self.uid, self.limits = server, uid, limits
        self.call_timeout, self.max_restarts = call_timeout, max_restarts
        self.sock, self.pid = None, None
        self.history: list[tuple[str, str]] = []  # cells that ran without killing the process
        self.restarts, self.generation = 0, 0
        self.deadline: float | None = None  # the current test's own budget (monotonic)
        self.callbacks: dict[int, object] = {}
        self.handles: dict[int, Remote] = {}
        self.last_fault: SandboxLost | None = None
        self.hung: set[str] = set()  # functions that already ran past their time limit

    # --- process life -------------------------------------------------------------------

    def _ensure(self) -> None:
        if self.sock is not None:
            return
        if self.generation and self.restarts >= self.max_restarts:
            raise SandboxLost(
                self.last_fault.kind if self.last_fault else "kernel_died",
                f"not run: the student's process was restarted {self.restarts} times",
            )
        self.restarts += 1 if self.generation else 0
        self.generation += 1
        self.handles.clear()
        self.sock, self.pid = self.server.fork(self.uid, self.limits)
        for label, source in self.history:  # replay what had run before the fault
            reply = self._request(
                {"op": "exec", "label": label, "source": source}, self.call_timeout * 2
            )
            if reply.get("error"):
                raise SandboxLost("kernel_died", "could not replay the notebook after a restart")

    def _lost(self, kind: str, detail: str) -> SandboxLost:
        code = self.server.reap(self.pid, kill=True) if self.pid else None
        with contextlib.suppress(OSError):
            self.sock.close()
        sandbox.kill_uid(self.uid)
        self.sock, self.pid = None, None
        if kind == "died":
            kind, detail = _death(code, self.limits)
        fault = SandboxLost(kind, detail)
        self.last_fault = fault
        return fault

    def close(self) -> None:
        if self.pid:
            self.server.reap(self.pid, kill=True)
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
        sandbox.kill_uid(self.uid)
        self.sock, self.pid = None, None

    # --- requests -----------------------------------------------------------------------

    def _request(self, msg: dict, seconds: float) -> dict:
        deadline = time.monotonic() + seconds
        if self.deadline is not None:
            deadline = min(deadline, self.deadline)
        try:
            codec.send(self.sock, msg)
            while True:
                reply = codec.recv(self.sock, deadline)
                if reply.get("op") == "callback":
                    self._answer_callback(reply)
                    continue
                if reply.get("op") != "result":
                    raise codec.ProtocolError("unexpected message")
                return reply
        except TimeoutError:
            raise self._lost(
                "timeout", f"ran past its time limit of {seconds:g} s and was stopped"
            ) from None
        except (EOFError, OSError):
            raise self._lost("died", "") from None
        except codec.ProtocolError as err:
            raise self._lost(
                "kernel_died", f"the student's process broke the protocol: {err}"
            ) from None

    def _answer_callback(self, reply: dict) -> None:
        fn = self.callbacks.get(int(reply.get("id", -1)))
        try:
            args = codec.decode(reply.get("args"), self._table_in)
            kwargs = codec.decode(reply.get("kwargs"), self._table_in)
            value = {"value": codec.encode(fn(*args, **kwargs), self._table_out)}
        except (Exception, codec.ProtocolError) as err:  # noqa: BLE001 - back to the student
            value = {"error": codec.exc_info(err)}
        codec.send(self.sock, {"op": "cbresult", **value})

    def _table_out(self, obj):
        if isinstance(obj, Remote):
            if obj._generation != self.generation:
                raise SandboxLost("kernel_died", "a student object from before a restart")
            return dict(obj._ref)
        if callable(obj):
            self.callbacks[id(obj)] = obj
            return {"__cb__": id(obj)}
        raise TypeError(f"cannot send a {type(obj).__name__} to the student's code")

    def _table_in(self, d):
        if "__h__" in d:
            h = int(d["__h__"])
            if h not in self.handles:
                label = str(d.get("type", "object"))[:64]
                self.handles[h] = Remote(self, {"handle": h}, label, bool(d.get("callable")))
            return self.handles[h]
        if "__dc__" in d:
            import types

            return types.SimpleNamespace(**d["fields"])
        raise codec.ProtocolError("unexpected value from the student's code")

    def execute(self, label: str, source: str, seconds: float) -> dict:
        """Run one student cell; a cell that kills or hangs the process is not replayed."""
        self._ensure()
        try:
            reply = self._request({"op": "exec", "label": label, "source": source}, seconds)
        except SandboxLost as lost:
            return {
                "ok": False,
                "ename": _ENAMES.get(lost.kind, "RuntimeError"),
                "evalue": f"the cell {lost.detail}",
                "traceback": "",
                "fault": lost.kind,
            }
        if "error" in reply:  # the server itself failed (e.g. a MemoryError while replying)
            kind = "memory" if reply["error"].get("type") == "MemoryError" else "kernel_died"
            self._lost(kind, "")
            return {
                "ok": False,
                "ename": reply["error"].get("type", "Error"),
                "evalue": reply["error"].get("message", ""),
                "traceback": "",
                "fault": kind,
            }
        self.history.append((label, source))
        return reply

    def lookup(self, names) -> dict:
        """Values of the namespace names: data, Remote proxies, or ("module", name)."""
        self._ensure()
        reply = self._request({"op": "lookup", "names": sorted(names)}, self.call_timeout)
        out = {}
        for name, entry in (reply.get("values") or {}).items():
            if "module" in entry:
                out[name] = ("module", str(entry["module"]))
                continue
            try:
                out[name] = codec.decode(entry.get("value"), self._table_in)
            except codec.ProtocolError:
                continue
            if isinstance(out[name], Remote):
                out[name]._label = name
        return out

    def call(self, remote: Remote, args, kwargs):
        import torch

        if remote._label in self.hung:  # a hang is rarely input-dependent: fail fast
            raise SandboxLost("timeout", f"({remote._label}) ran past its time limit earlier")
        self._ensure()
        if remote._generation != self.generation:
            raise SandboxLost("kernel_died", "the student's process was restarted")
        msg = {
            "op": "call",
            "target": dict(remote._ref),
            "args": codec.encode(list(args), self._table_out),
            "kwargs": codec.encode(dict(kwargs), self._table_out),
        }
        try:
            reply = self._request(msg, self.call_timeout)
        except SandboxLost as lost:
            if lost.kind == "timeout":
                self.hung.add(remote._label)
            lost.detail = f"({remote._label}) {lost.detail}"
            raise
        obs = Observation.from_dict(reply.get("observed"))
        if "rng" in reply:  # the call drew from (or reseeded) the global generator: so here
            with contextlib.suppress(codec.ProtocolError, TypeError, RuntimeError):
                torch.set_rng_state(codec.decode(reply["rng"], self._table_in).to(torch.uint8))
        collector = COLLECTOR.get()
        if collector is not None:
            collector.merge(obs)
        else:  # called directly by a test cell: judged with the bans its name carries
            bans.judge(obs, remote._bans, remote._label)
        if "error" in reply:
            if reply["error"].get("type") == "MemoryError":
                raise self._lost("memory", f"{remote._label} ran out of memory")
            raise codec.rebuild_exception(reply["error"])
        try:
            value = codec.decode(reply.get("value"), self._table_in)
            after = codec.decode(reply.get("after"), self._table_in) or []
        except codec.ProtocolError as err:
            raise AssertionError(
                f"the value {remote._label} returned cannot be read: {err}"
            ) from None
        for orig, new in zip(list(args) + list(kwargs.values()), after, strict=False):
            if isinstance(orig, torch.Tensor) and isinstance(new, torch.Tensor):
                if new.shape == orig.shape and new.dtype == orig.dtype:
                    with torch.no_grad():
                        orig.copy_(new)
            elif isinstance(orig, torch.Generator) and isinstance(new, torch.Generator):
                orig.set_state(new.get_state())
        if isinstance(value, Remote):
            value._bans = remote._bans
        return value

    def getattr(self, remote: Remote, name: str):
        self._ensure()
        reply = self._request(
            {"op": "getattr", "target": dict(remote._ref), "name": name}, self.call_timeout
        )
        if "error" in reply:
            raise codec.rebuild_exception(reply["error"])
        value = codec.decode(reply.get("value"), self._table_in)
        if isinstance(value, Remote):
            value._label, value._bans = f"{remote._label}.{name}", remote._bans
        return value

    def bind(self, name: str, library: str | None) -> None:
        """Set the student's ``name`` to ``logreg_lessons.<library>`` (None: put it back)."""
        self._ensure()
        self._request({"op": "bind", "name": name, "library": library}, self.call_timeout)


_ENAMES = {"timeout": "TimeoutError", "memory": "MemoryError", "kernel_died": "RuntimeError"}


def _death(code, limits) -> tuple[str, str]:
    """(kind, detail) of a student process that stopped answering."""
    if code is None:
        return "kernel_died", "stopped the student's process"
    if code < 0:
        sig = -code
        if sig == signal.SIGXCPU:
            return "timeout", f"used up the CPU-time limit of {limits.cpu_s} s"
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else sig
        return "kernel_died", f"crashed the student's process (signal {name})"
    return "kernel_died", f"ended the student's process (exit status {code})"


class Remote:
    """A student object living in the sandbox; calls and attributes are forwarded."""

    def __init__(self, session: Session, ref: dict, label: str, is_callable: bool = True):
        d = self.__dict__
        d["_session"], d["_ref"], d["_label"] = session, ref, label
        d["_callable"], d["_generation"], d["_bans"] = is_callable, session.generation, ()
        d["__name__"] = d["__qualname__"] = label  # for messages

    def __call__(self, *args, **kwargs):
        return self._session.call(self, args, kwargs)

    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return self._session.getattr(self, name)

    def __setattr__(self, name, value):
        if name in ("_label", "_bans"):
            self.__dict__[name] = value
            if name == "_label":
                self.__dict__["__name__"] = self.__dict__["__qualname__"] = value
            return
        raise AttributeError("student objects are read-only from the grader")

    def __repr__(self):
        return f"<student object {self._label}>"
