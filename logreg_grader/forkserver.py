"""The warm fork server: imports the heavy stack once, forks one sandboxed child per request.

A grading worker starts it **by exec** (``python -m logreg_grader.forkserver FD``, a fresh
interpreter: nothing of the worker's memory, environment or open files is inherited but the
control socket ``FD``). It imports torch, NumPy, Matplotlib and the course library, then
waits. It never runs a torch operator (forking after that is unsafe), never sees a master
notebook or a hidden test, and holds no secret: a child forked from it has nothing to find.

Control requests (JSON, one per SOCK_SEQPACKET message) from the worker:

- ``{"op": "fork", "uid": U, "limits": {...}}`` with one socket passed alongside (SCM_RIGHTS):
  fork a child that enters the sandbox as uid U and serves the student's cells on that
  socket (:func:`logreg_grader.child.main`); reply ``{"pid": P}``;
- ``{"op": "wait", "pid": P}``: reap the child; reply its exit status or signal;
- ``{"op": "preload", "modules": [...]}``: import those of :data:`OPTIONAL` (heavy modules
  only some assignments need), before the next fork;
- end of file (the worker is gone): exit. The parent-death signal also ends it.
"""

from __future__ import annotations

import ctypes
import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile


def environment() -> dict:
    """The server's environment: this venv's bin on PATH, one thread per library, no secret
    of the caller's environment (only the run's marker ``LOGREG_GRADER_RUN``)."""
    bindir = os.path.dirname(sys.executable)
    env = {
        "PATH": f"{bindir}:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": os.environ.get("HOME", "/root"),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    # LOGREG_GRADER_RUN: the pid of the grading run, so its processes can be told apart.
    for key in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "LOGREG_GRADER_RUN"):
        if key in os.environ:
            env[key] = os.environ[key]
    return env


def spawn():
    """Start a server by exec: (the process, our end of its control socket, its stderr log).

    Importing nothing heavy, so that a caller can start it before importing torch itself
    and the two imports overlap (:class:`logreg_grader.remote.ForkServer` takes it over).
    """
    ctl, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [sys.executable, "-m", "logreg_grader.forkserver", str(theirs.fileno())],
        pass_fds=[theirs.fileno()],
        env=environment(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=log,
        cwd="/",
    )
    theirs.close()
    return proc, ctl, log


def _preload():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401 - its font cache is built once, here
    import numpy  # noqa: F401
    import torch

    # cpuinfo reads /proc and /sys, which the sandbox does not have: initialise it here, once
    # (it is plain detection, no operator and no thread pool).
    torch.backends.cpu.get_cpu_capability()
    for name in LAZY:
        importlib.import_module(name)
    import PIL.Image

    PIL.Image.preinit()  # imports the BMP, GIF, JPEG, PNG and PPM plugins, which savefig loads
    import logreg_grader.check  # noqa: F401
    import logreg_grader.child  # noqa: F401
    import logreg_lessons  # noqa: F401


# Modules torch, Matplotlib and the library import on first use, not at import: each child
# would import them again (sympy alone, 480 modules that torch.broadcast_shapes loads through
# torch.fx.experimental.symbolic_shapes, took 0.8 s of a 0.87 s submission of 04_gradients).
# Imports only: no operator runs and no thread starts (tests/grader/test_grader_units.py).
LAZY = (
    "torch.fx.experimental.symbolic_shapes",
    "matplotlib.backends.backend_agg",
    "contourpy",
    "PIL.features",
    "logreg_lessons.plots",
)


# Imported on request only (the "preload" op), for the assignments whose code needs them,
# keyed by what a master's text says when it needs them: torch.optim's constructor imports
# torch._dynamo (800 modules, about 1 s here and 2-3 s inside a recorded call in the sandbox);
# scikit-learn (1,400 modules with SciPy) is the capstone's. No thread, no operator.
OPTIONAL = {"torch.optim": "torch._dynamo", "sklearn": "sklearn"}


def serve(ctl: socket.socket) -> None:
    from logreg_grader import sandbox
    from logreg_grader.check import watched_dirs
    from logreg_grader.child import main as child_main

    exposure = sandbox.Exposure.for_this_interpreter("logreg_lessons", "logreg_grader")
    watched = watched_dirs()
    ctl.send(json.dumps({"op": "ready", "pid": os.getpid()}).encode())
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(ctl, 1 << 16, 1)
        except (ConnectionError, OSError):
            return
        if not data:
            return
        req = json.loads(data)
        if req.get("op") == "fork" and fds:
            pid = os.fork()
            if pid == 0:
                ctl.close()
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                child = socket.socket(fileno=fds[0])
                limits = sandbox.Limits(**req.get("limits", {}))
                child_main(child, int(req["uid"]), limits, exposure, watched)
                os._exit(0)
            for fd in fds:
                os.close(fd)
            ctl.send(json.dumps({"pid": pid}).encode())
        elif req.get("op") == "preload":
            wanted = [m for m in req.get("modules", []) if m in OPTIONAL.values()]
            for name in wanted:
                importlib.import_module(name)
            ctl.send(json.dumps({"preloaded": wanted}).encode())
        elif req.get("op") == "wait":
            try:
                _, status = os.waitpid(int(req["pid"]), 0)
                reply = {"exit": os.waitstatus_to_exitcode(status)}
            except ChildProcessError:
                reply = {"exit": None}
            ctl.send(json.dumps(reply).encode())
        else:
            for fd in fds:
                os.close(fd)
            ctl.send(json.dumps({"error": f"unknown request {req.get('op')!r}"}).encode())


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ctl = socket.socket(fileno=int(argv[0]))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG: die with the worker
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the worker decides when this ends
    _preload()
    serve(ctl)
    return 0


if __name__ == "__main__":
    sys.exit(main())
