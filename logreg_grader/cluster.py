"""Grading on Dask ``distributed``: the workers of a running scheduler (``--scheduler``).

``logreg-grade --jobs N`` on one machine does not use Dask (logreg_grader/pool.py: a local
cluster's scheduler and worker processes cost about 5 s of every command). :func:`connect`
still starts a local cluster when given no scheduler, for tests and for callers of this module.

Each submission is one task. A task carries the submission's bytes, its :class:`Graded`
record and the content hash of its master; the master itself (solutions and hidden tests) is
scattered once by the client and reaches each worker once, as a Dask dependency held in that
worker's memory. Nothing of it is written to disk, and no sandboxed process can read the
worker's memory (another uid, another mount namespace, no ``/proc`` of the host).

A Dask worker is a warm grading worker: the :class:`GraderPlugin` gives each worker process
its own fork server (started by exec, torch imported once), its own block of sandbox uids and
a cache of parsed masters, so a task costs one fork and the notebook's own work.

The client is the only writer: results are yielded as they arrive and the caller records
each in the gradebook at once, so an interrupted run keeps what finished and a new run skips
it (same submission, same master hash).

Faults. A worker that dies mid-task (SIGKILL, out of memory, machine gone) has its task run
again on another worker by the scheduler; a submission whose task was running on a worker
that died twice (``allowed-failures`` = 1) ends as ``failed: worker_died``, never retried
forever. A worker that cannot sandbox (not root, no namespaces) fails its task with
:class:`~logreg_grader.sandbox.SandboxUnavailable`, which stops the run with that message.

Connecting to a running scheduler (``--scheduler tcp://host:8786``) sends the same tasks to
its workers, which must run ``dask worker`` as root with this project installed (see the
README's "Grading on several machines").
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

from distributed import WorkerPlugin

PLUGIN = "logreg-grader"
ALLOWED_FAILURES = 1  # a task may be on one dying worker and run again; the second death ends it


class GraderPlugin(WorkerPlugin):
    """Gives a Dask worker its fork server and sandbox uid (setup) and stops them (teardown)."""

    name = PLUGIN

    def __init__(self, call_timeout: float):
        self.call_timeout = call_timeout
        self.worker = None
        self.error: str | None = None

    def setup(self, worker) -> None:
        # The fork server lives as long as the thread that starts it (PR_SET_PDEATHSIG): this
        # runs in the worker's event-loop thread, which lasts as long as the worker.
        from logreg_grader import sandbox
        from logreg_grader.worker import Worker

        try:
            uid = sandbox.lease_uid_block()
            self.worker = Worker(None, uid, self.call_timeout)
        except sandbox.SandboxUnavailable as err:
            self.error = str(err)

    def teardown(self, worker) -> None:
        if self.worker is not None:
            with contextlib.suppress(Exception):
                self.worker.close()
            self.worker = None


def grade_task(aid: str, student: str, data: bytes, graded: dict, digest: str, master: str):
    """Run on a Dask worker: grade one submission with that worker's warm :class:`Worker`."""
    from distributed import get_worker

    from logreg_grader import sandbox

    plugin = get_worker().plugins.get(PLUGIN)
    if plugin is None or plugin.worker is None:
        why = plugin.error if plugin is not None else "the grader plugin is not installed"
        raise sandbox.SandboxUnavailable(f"Dask worker {get_worker().address}: {why}")
    return plugin.worker.grade_master(digest, aid, master, student, data, graded)


@contextlib.contextmanager
def connect(jobs: int, scheduler: str | None, call_timeout: float):
    """A Client on ``scheduler``, or on a new local cluster of ``jobs`` worker processes."""
    import shutil
    import tempfile

    import dask
    from distributed import Client, LocalCluster

    scratch = tempfile.mkdtemp(prefix="logreg-dask-")  # the workers' scratch space; removed
    settings = {
        "temporary-directory": scratch,
        "distributed.scheduler.allowed-failures": ALLOWED_FAILURES,
        "distributed.worker.daemon": False,  # our workers start a fork server each
        "distributed.admin.system-monitor.gil.enabled": False,
        "distributed.logging.distributed": "error",
    }
    with dask.config.set(settings):
        if scheduler:
            cluster = None
            client = Client(scheduler, timeout="30s")
            # A scheduler started elsewhere has its own setting; the grader's rule applies.
            with contextlib.suppress(Exception):
                client.run_on_scheduler(_set_allowed_failures, ALLOWED_FAILURES)
        else:
            cluster = LocalCluster(
                n_workers=jobs,
                threads_per_worker=1,
                processes=True,
                memory_limit=0,  # the sandbox limits each student process itself
                dashboard_address=":0",  # a free port: never two clusters on 8787
                silence_logs=50,
                host="127.0.0.1",
            )
            client = Client(cluster)
        try:
            client.register_plugin(GraderPlugin(call_timeout), name=PLUGIN)
            yield client
        finally:
            with contextlib.suppress(Exception):
                client.unregister_worker_plugin(PLUGIN)
            client.close()
            if cluster is not None:
                cluster.close()
            shutil.rmtree(scratch, ignore_errors=True)


def _set_allowed_failures(value: int, dask_scheduler=None) -> None:
    dask_scheduler.allowed_failures = value


def _probe(root: str, dask_worker=None) -> str:
    plugin = dask_worker.plugins.get(PLUGIN)
    if plugin is None or plugin.worker is None:
        return plugin.error if plugin is not None else "the grader plugin is not installed"
    from logreg_grader import sandbox

    try:
        plugin.worker.probe(root)
    except sandbox.SandboxUnavailable as err:
        return str(err)
    return ""


def probe(client, root) -> None:
    """Every worker runs the sandbox self-test once; SandboxUnavailable names who failed."""
    from logreg_grader import sandbox

    client.wait_for_workers(1, timeout=120)
    failures = {addr: why for addr, why in client.run(_probe, str(root)).items() if why}
    if failures:
        addr, why = sorted(failures.items())[0]
        raise sandbox.SandboxUnavailable(
            f"{len(failures)} Dask worker(s) cannot sandbox student code ({addr}: {why})"
        )


def dashboard(client, local: bool) -> str | None:
    """The dashboard's address when the scheduler serves one (a local one needs bokeh)."""
    import importlib.util

    if local and importlib.util.find_spec("bokeh") is None:
        return None
    with contextlib.suppress(Exception):
        if "dashboard" in client.scheduler_info().get("services", {}):
            return client.dashboard_link
    return None


def grade(client, masters: dict[str, str], tasks: list) -> Iterator[tuple[tuple, dict | str]]:
    """Yield ``(task, result)`` as each task ends: a Graded dict, or ``"worker_died"``.

    ``tasks`` are (assignment, student, bytes, Graded) tuples. A SandboxUnavailable raised on a
    worker is raised here (grading cannot go on safely anywhere).
    """
    from distributed import as_completed
    from distributed.client import FutureCancelledError
    from distributed.scheduler import KilledWorker

    from logreg_grader.notebook import Master

    digests = {aid: Master.from_text(aid, text).hash for aid, text in masters.items()}
    run = uuid.uuid4().hex[:8]
    # Each master is the result of a tiny task whose definition holds its text: a worker
    # fetches it once, from whichever worker has it, and when every holder is gone the
    # scheduler computes it again (scattered data would be lost with its worker).
    shared = {
        aid: client.submit(_master, masters[aid], key=f"master-{aid}-{run}", pure=False)
        for aid in sorted({t[0] for t in tasks})
    }

    def submit(task, attempt: int):
        aid, student, data, graded = task
        return client.submit(
            grade_task,
            aid,
            student,
            data,
            graded.to_dict(),
            digests[aid],
            shared[aid],
            key=f"grade-{aid}-{student}-{run}-{attempt}",
            pure=False,
            retries=0,
        )

    futures = {submit(task, 0): (task, 0) for task in tasks}
    done = as_completed(list(futures))
    try:
        for future in done:
            task, attempt = futures.pop(future)
            try:
                result = future.result()
            except KilledWorker:
                result = "worker_died"
            except FutureCancelledError:  # lost with the cluster's state: once more
                if attempt >= 1:
                    raise
                again = submit(task, attempt + 1)
                futures[again] = (task, attempt + 1)
                done.add(again)
                continue
            yield task, result
    finally:
        for future in list(futures) + list(shared.values()):
            future.release()


def _master(text: str) -> str:
    return text
