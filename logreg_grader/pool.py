"""Local parallel grading (``--jobs N``): this process grades, and N - 1 helpers beside it.

A helper is a process of its own, started **by exec** (``python -m logreg_grader.pool FD``)
at the command's first line, before this process imports torch, so that every import of the
run overlaps. It holds a :class:`~logreg_grader.worker.Worker` (its own fork server and sandbox
uid block) and grades what it is sent over its socket: the masters once (never through a
file), then one submission at a time, each answered with its Graded record. This process
stays the only writer: it stores every result as it arrives, its own and the helpers'.

Why not threads in this process: the master's test cells run in the trusted process and share
its global random generators (a student function's draws are replayed there, see
:meth:`~logreg_grader.remote.Session.call`), so two submissions' tests in one process would
draw from one generator. Why not Dask's local cluster (what ``--jobs`` used before): its
scheduler, nanny and worker processes cost about 5 s of every command on two cores, more than
a class of 50 takes to grade (benchmarks/results.md). ``--scheduler`` still grades on Dask.

Faults. A helper that dies (killed, out of memory) has its submission graded again here or by
another helper; one that was being graded when two helpers died ends as ``failed:
worker_died``. A helper that cannot get ready (it cannot sandbox, it died) is named in one line
and the others grade without it: this process has tested its own sandbox before grading.
Ctrl-C or SIGTERM here stops every helper (each closes its fork server and kills its uids).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import traceback
from collections.abc import Iterator
from multiprocessing.connection import Connection

WORKER_DIED = "worker_died"
STARTING_NICE = 10  # a starting helper's niceness (0 once it is ready)


class Helper:
    """One started helper process and our end of its socket."""

    def __init__(self, call_timeout: float):
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "logreg_grader.pool", str(theirs.fileno()), str(call_timeout)],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
            cwd="/",
        )
        theirs.close()
        self.conn = Connection(mine.detach())
        self.alive = True

    def ask(self, *message):
        """Send one request, wait for its reply; EOFError/OSError when the helper is gone."""
        self.conn.send(message)
        return _unwrap(self.conn.recv())

    def stop(self) -> None:
        """SIGKILL a helper that was given no work: its fork server and that server's
        children go with it (their parent-death signals); :meth:`close` reaps it."""
        self.alive = False
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()

    def close(self) -> None:
        self.alive = False
        with contextlib.suppress(OSError):
            self.conn.close()
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()  # it closes its fork server and kills its uids
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def _unwrap(reply):
    kind, value = reply
    if kind == "ok":
        return value
    from logreg_grader import sandbox

    if kind == "unavailable":
        raise sandbox.SandboxUnavailable(value)
    raise RuntimeError(f"a grading helper failed:\n{value}")


def spawn(jobs: int, call_timeout: float) -> list[Helper]:
    """The ``jobs - 1`` helpers of a local run, started now (they import in the background)."""
    return [Helper(call_timeout) for _ in range(jobs - 1)]


def prepare(helpers: list[Helper], masters: dict[str, str], root) -> None:
    """Send every helper the masters and the course root; each loads them and tests its
    sandbox while this process grades (:func:`grade` reads the answer)."""
    for helper in helpers:
        try:
            helper.conn.send(("load", masters, str(root)))
        except OSError:
            helper.alive = False


def grade(worker, helpers: list[Helper], tasks: list) -> Iterator[tuple[tuple, dict | str]]:
    """Yield ``(task, result)`` as each is done: a Graded dict, or ``"worker_died"``.

    ``tasks`` are (assignment, student, bytes, Graded) tuples. This thread grades with
    ``worker`` whenever no result is waiting; one feeder thread per helper waits until the
    helper is ready, then sends it the next task and waits for its answer (socket I/O: the
    interpreter lock is free meanwhile). Results are yielded here, in this thread, so the
    caller stores them where it always does. A helper that cannot get ready (it cannot
    sandbox, it died) is named on stderr and the others grade without it.
    """
    todo: queue.SimpleQueue = queue.SimpleQueue()
    for task in tasks:
        todo.put((task, 0))
    done: queue.SimpleQueue = queue.SimpleQueue()  # (kind, task, payload)
    stop = threading.Event()

    def feed(number: int, helper: Helper) -> None:
        try:
            _unwrap(helper.conn.recv())  # the answer to "load": ready, sandbox tested
        except Exception as err:  # noqa: BLE001 - EOF, OSError, SandboxUnavailable, ...
            helper.alive = False
            if not stop.is_set():
                why = str(err).strip().splitlines()[-1] if str(err).strip() else "it exited"
                done.put(("note", None, f"grade: helper {number} cannot grade ({why})"))
            return
        while not stop.is_set():
            try:  # until the run ends: a task whose helper died comes back here
                task, deaths = todo.get(timeout=0.2)
            except queue.Empty:
                continue
            aid, student, data, graded = task
            try:
                result = helper.ask("grade", aid, student, data, graded.to_dict())
            except (EOFError, OSError):
                helper.alive = False
                if stop.is_set():
                    return
                if deaths >= 1:
                    done.put(("result", task, WORKER_DIED))
                else:
                    todo.put((task, deaths + 1))  # graded again, here or by another helper
                    done.put(("wake", None, None))  # the grading thread may take it
                return
            except BaseException as err:  # noqa: BLE001 - raised in the grading thread
                done.put(("error", task, err))
                return
            done.put(("result", task, result))

    feeders = [
        threading.Thread(target=feed, args=(k + 1, h), name=f"grade-helper-{k + 1}", daemon=True)
        for k, h in enumerate(helpers)
        if h.alive
    ]
    for thread in feeders:
        thread.start()
    remaining = len(tasks)
    try:
        while remaining:
            got = _next(done, block=False)
            if got is None:
                try:
                    task, _ = todo.get_nowait()
                except queue.Empty:
                    got = _next(done, block=True)
                else:
                    aid, student, data, graded = task
                    yield task, worker.grade(aid, student, data, graded.to_dict())
                    remaining -= 1
                    continue
            kind, task, payload = got
            if kind == "error":
                raise payload
            if kind == "note":
                print(payload, file=sys.stderr)
            elif kind == "result":
                yield task, payload
                remaining -= 1
    finally:
        stop.set()
        if remaining:  # interrupted or failed: the helpers stop what they are grading
            close(helpers)
        for thread in feeders:
            thread.join(timeout=30)


def _next(done: queue.SimpleQueue, block: bool):
    """The next finished result, or None when ``block`` is false and none is waiting; a
    blocking wait wakes twice a second, so that Ctrl-C and SIGTERM are seen at once."""
    while True:
        try:
            return done.get(timeout=0.5) if block else done.get_nowait()
        except queue.Empty:
            if not block:
                return None


def close(helpers: list[Helper]) -> None:
    for helper in helpers:
        helper.close()


# --- the helper process ---------------------------------------------------------------------


def _on_term(signum, frame):
    raise SystemExit(0)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    fd, call_timeout = int(argv[0]), float(argv[1])
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG: end with the grading command
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the command stops us
    signal.signal(signal.SIGTERM, _on_term)
    conn = Connection(fd)
    if os.getppid() == 1:
        return 0  # the command is already gone
    # Until it is ready, a helper (and its fork server) yields the CPU to the command's own
    # start, which every submission waits for; it takes its full share once it grades.
    os.setpriority(os.PRIO_PROCESS, 0, STARTING_NICE)
    import logreg_grader.cli  # noqa: F401 - nbgrader without its server extensions
    from logreg_grader import sandbox
    from logreg_grader.worker import Worker

    worker = None
    try:
        try:
            worker = Worker(None, sandbox.lease_uid_block(), call_timeout)
        except sandbox.SandboxUnavailable as err:
            conn.send(("unavailable", str(err)))
            return 0
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                return 0
            op = message[0]
            try:
                if op == "load":
                    _, masters, root = message
                    from pathlib import Path

                    worker.load(masters)
                    import logreg_lessons  # noqa: F401 - what the test cells use, before the probe

                    worker.probe(Path(root))
                    for pid in (0, worker.server.proc.pid):
                        os.setpriority(os.PRIO_PROCESS, pid, 0)
                    reply = ("ok", None)
                elif op == "grade":
                    reply = ("ok", worker.grade(*message[1:]))
                else:
                    reply = ("error", f"unknown request {op!r}")
            except sandbox.SandboxUnavailable as err:
                reply = ("unavailable", str(err))
            except Exception:  # noqa: BLE001 - the command reports it and stops
                reply = ("error", traceback.format_exc()[-4000:])
            conn.send(reply)
    finally:
        if worker is not None:
            worker.close()  # its fork server, and every process of its uid


if __name__ == "__main__":
    try:
        code = main()
    except SystemExit as stopped:  # SIGTERM: main's finally has closed the worker
        code = stopped.code if isinstance(stopped.code, int) else 0
    os._exit(code)  # skip tearing down torch's modules (a second): the command waits for it
