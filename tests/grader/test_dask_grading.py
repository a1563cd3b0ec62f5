"""Grading on a real Dask cluster: a scheduler and two workers started here, on 127.0.0.1.

The README's "Grading on several machines" commands are run as written (`dask scheduler`,
`dask worker`, `logreg-grade --scheduler`), each worker in its own session so that killing
its process group is a machine going away. The reference is the small class of
tests/grader/class_builder.py graded serially (`--jobs 1`, no Dask):

- the cluster's grades, cells, grades.csv and feedback equal the serial run's;
- the client SIGKILLed mid-class and started again grades only what was not recorded;
- a worker SIGKILLed mid-class: the class completes on the other worker, nothing is lost and
  every submission is recorded once.
"""

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import class_builder as cb
import cloudpickle
import pytest

pytestmark = pytest.mark.slow
cloudpickle.register_pickle_by_value(sys.modules[__name__])  # its functions run on workers
BIN = Path(sys.executable).parent
README = Path(__file__).resolve().parents[2] / "README.md"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _readme_commands() -> dict[str, str]:
    """The scale-out section's `dask scheduler` and `dask worker` lines, as printed there."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Grading on several machines", 1)[1].split("\n## ", 1)[0]
    lines = [ln.strip() for ln in section.splitlines()]
    found = {}
    for ln in lines:
        for kind in ("scheduler", "worker"):
            if ln.startswith(f".venv/bin/dask {kind} ") and kind not in found:
                found[kind] = ln
    assert set(found) == {"scheduler", "worker"}, "the README shows how to start both"
    return found


class Cluster:
    """A `dask scheduler` and its `dask worker`s, started from the README's command lines."""

    def __init__(self, workers: int = 2):
        self.port = _free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.commands = _readme_commands()
        self.env = cb.grade_env()
        self.procs: dict[str, subprocess.Popen] = {}
        self.scheduler = self._start("scheduler", "scheduler")
        for i in range(workers):
            self.add_worker(f"w{i}")

    def _command(self, kind: str, name: str) -> list[str]:
        line = self.commands[kind].replace("SCHEDULER_HOST", "127.0.0.1")
        line = line.replace("8786", str(self.port)).replace("WORKER_NAME", name)
        words = line.split()
        return [str(BIN / "dask")] + words[1:]

    def _start(self, kind: str, name: str) -> subprocess.Popen:
        proc = subprocess.Popen(
            self._command(kind, name),
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.procs[name] = proc
        return proc

    def add_worker(self, name: str) -> None:
        self._start("worker", name)

    def wait(self, workers: int, timeout: float = 180) -> None:
        from distributed import Client

        with Client(self.address, timeout="60s") as client:
            client.wait_for_workers(workers, timeout=timeout)

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)

    def close(self) -> None:
        for name in list(self.procs):
            try:
                os.killpg(self.procs[name].pid, signal.SIGTERM)
                self.procs[name].wait(30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(self.procs[name].pid, signal.SIGKILL)
            self.procs.pop(name)


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(workers=2)
    try:
        c.wait(2)
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    return cb.serial_run(tmp_path_factory)


def _grade(course, scheduler: str, timings: Path, **kw):
    command = cb.grade_command(course.root, 1)[:3]  # logreg-grade --root ROOT
    command += ["--scheduler", scheduler, "--timings", str(timings)]
    return subprocess.Popen(
        command, env=cb.grade_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _recorded(course) -> set[tuple[str, str]]:
    db = course.root / "gradebook" / "gradebook.db"
    try:
        with sqlite3.connect(db, timeout=30) as con:
            rows = con.execute("SELECT assignment, student FROM logreg_grader_status").fetchall()
    except sqlite3.Error:
        return set()
    return set(rows)


def _wait_for(predicate, proc, timeout=600):
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def _submissions(course) -> set[tuple[str, str]]:
    return {
        (p.parent.name, p.parent.parent.name) for p in course.root.glob("submitted/*/*/*.ipynb")
    }


def _graded_keys(timings: Path) -> list[tuple[str, str]]:
    data = json.loads(timings.read_text(encoding="utf-8"))
    return [tuple(key.split("/")) for key in data["per_submission"]]


def test_a_scheduler_and_two_workers_grade_exactly_like_one_process(cluster, serial, tmp_path):
    s_course, s_out = serial
    course = cb.build(tmp_path / "course")
    proc = _grade(course, cluster.address, tmp_path / "t.json")
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, (out + err)[-3000:]
    assert cb.outcome(course) == s_out
    assert sorted(_graded_keys(tmp_path / "t.json")) == sorted(_submissions(course))


def test_a_killed_client_restarted_grades_only_what_was_not_recorded(cluster, serial, tmp_path):
    _, s_out = serial
    course = cb.build(tmp_path / "course")
    everything = _submissions(course)
    proc = _grade(course, cluster.address, tmp_path / "first.json")
    assert _wait_for(lambda: len(_recorded(course)) >= 1, proc), proc.communicate()[1][-3000:]
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.kill()
    proc.communicate(timeout=60)
    before = _recorded(course)
    assert 1 <= len(before) < len(everything)
    again = _grade(course, cluster.address, tmp_path / "second.json")
    out, err = again.communicate(timeout=900)
    assert again.returncode == 0, (out + err)[-3000:]
    assert set(_graded_keys(tmp_path / "second.json")) == everything - before
    assert f"{len(before)} unchanged submissions kept as graded" in out
    assert cb.outcome(course) == s_out


def test_a_worker_killed_mid_class_loses_nothing_and_grades_nothing_twice(
    cluster, serial, tmp_path
):
    _, s_out = serial
    course = cb.build(tmp_path / "course")
    everything = _submissions(course)
    proc = _grade(course, cluster.address, tmp_path / "t.json")
    assert _wait_for(lambda: len(_recorded(course)) >= 1, proc), proc.communicate()[1][-3000:]
    assert proc.poll() is None, "the class was graded before a worker could be killed"
    cluster.kill("w0")  # the worker and everything it started: a machine gone
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, (out + err)[-3000:]
    keys = _graded_keys(tmp_path / "t.json")
    assert sorted(keys) == sorted(everything), "each submission is recorded exactly once"
    assert cb.outcome(course) == s_out
    assert not re.search(r"worker_died", (course.root / "grades.csv").read_text())


def test_the_grader_sets_a_running_schedulers_retry_limit(cluster):
    """Connected, the grader makes the scheduler re-run a task after one worker death, not
    after three (Dask's default, which a scheduler started as the README says keeps)."""
    from distributed import Client

    from logreg_grader import cluster as grading_cluster

    with Client(cluster.address, timeout="60s") as client:
        client.run_on_scheduler(_set_allowed_failures, 3)
        with grading_cluster.connect(1, cluster.address, call_timeout=10):
            value = client.run_on_scheduler(_allowed_failures)
    assert value == grading_cluster.ALLOWED_FAILURES == 1


def _set_allowed_failures(value, dask_scheduler=None):
    dask_scheduler.allowed_failures = value


def _allowed_failures(dask_scheduler=None):
    return dask_scheduler.allowed_failures


def _die_every_time(marker: str) -> None:
    with open(marker, "a") as f:
        f.write("x")
    os._exit(1)  # the worker process dies, as if its machine went away


def test_a_task_whose_worker_dies_twice_is_given_up(tmp_path):
    """On the grader's local cluster a task is run again after one worker death, and the
    second death ends it with KilledWorker (which the grader records as worker_died)."""
    from distributed.scheduler import KilledWorker

    from logreg_grader import cluster as grading_cluster

    marker = tmp_path / "attempts"
    with grading_cluster.connect(2, None, call_timeout=10) as client:
        future = client.submit(_die_every_time, str(marker), pure=False)
        with pytest.raises(KilledWorker):
            future.result(timeout=300)
    assert marker.read_text() == "xx"
