"""The local pool (logreg_grader/pool.py): who grades what, and what a fault costs.

Fast: the grading worker and the helpers are stand-ins (no notebook, no sandbox), so these
pin the scheduling itself. The end-to-end runs of ``--jobs 2`` (a helper killed mid-run,
SIGTERM, the same grades as ``--jobs 1``) are in test_grader_cli.py and test_parallel_grading.py.
"""

from __future__ import annotations

import threading
import time

import pytest

from logreg_grader import pool, sandbox


class Graded:
    def __init__(self, student):
        self.student = student

    def to_dict(self):
        return {"student": self.student}


def tasks(n):
    return [("a1", f"s{k}", b"{}", Graded(f"s{k}")) for k in range(n)]


class FakeWorker:
    """This process's worker: grades in ``seconds``, says who graded."""

    def __init__(self, seconds=0.05):
        self.seconds, self.graded = seconds, []

    def grade(self, aid, student, data, graded):
        time.sleep(self.seconds)
        self.graded.append(student)
        return {"student": student, "by": "here"}


class FakeConn:
    def __init__(self, ready, delay=0.0):
        self.ready, self.delay = ready, delay

    def recv(self):
        time.sleep(self.delay)
        if isinstance(self.ready, BaseException):
            raise self.ready
        return self.ready


class FakeHelper:
    """A helper: answers "load" with ``ready``; ``die_on`` lists the calls (0, 1, ...) on
    which it dies (EOFError, as a killed process's socket does) instead of answering."""

    def __init__(self, name, ready=("ok", None), seconds=0.05, die_on=(), error=None, delay=0):
        self.name, self.seconds, self.die_on, self.error = name, seconds, set(die_on), error
        self.conn, self.alive, self.closed, self.calls = FakeConn(ready, delay), True, False, 0
        self.graded = []

    def ask(self, op, aid, student, data, graded):
        call, self.calls = self.calls, self.calls + 1
        time.sleep(self.seconds)
        if call in self.die_on:
            raise EOFError
        if self.error:
            raise RuntimeError(self.error)
        self.graded.append(student)
        return {"student": student, "by": self.name}

    def close(self):
        self.closed, self.alive = True, False


def run(worker, helpers, n):
    return [(task[1], result) for task, result in pool.grade(worker, helpers, tasks(n))]


def test_every_submission_is_graded_once_by_this_process_and_the_helpers():
    worker, helper = FakeWorker(), FakeHelper("h1")
    results = run(worker, [helper], 20)
    assert sorted(s for s, _ in results) == sorted(f"s{k}" for k in range(20))
    assert all(r["student"] == s for s, r in results)
    assert worker.graded and helper.graded, "both should have graded"
    assert len(worker.graded) + len(helper.graded) == 20
    assert not helper.closed, "a run that ends normally leaves the helpers to the caller"


def test_a_helper_that_dies_has_its_submission_graded_again_and_nothing_twice():
    worker = FakeWorker(seconds=0.2)
    helper = FakeHelper("h1", seconds=0.01, die_on={0}, delay=0.1)
    results = run(worker, [helper], 4)
    assert sorted(s for s, _ in results) == ["s0", "s1", "s2", "s3"]
    assert helper.graded == [] and sorted(worker.graded) == ["s0", "s1", "s2", "s3"]
    assert helper.calls == 1 and not helper.alive


def test_a_submission_on_two_dying_helpers_ends_as_worker_died():
    worker = FakeWorker(seconds=1.0)  # takes s0 first (the helpers get ready later), then busy
    dying = [FakeHelper(f"h{k}", seconds=0.05, die_on={0}, delay=0.2) for k in (1, 2)]
    results = dict(run(worker, dying, 2))
    assert results["s0"]["by"] == "here"
    assert results["s1"] == pool.WORKER_DIED
    assert [h.calls for h in dying] == [1, 1], "each helper died once, on s1"


def test_a_helper_that_cannot_get_ready_is_named_and_the_others_grade(capsys):
    worker = FakeWorker()
    broken = FakeHelper("h1", ready=("unavailable", "cannot sandbox: no uid block is free"))
    gone = FakeHelper("h2", ready=EOFError())
    good = FakeHelper("h3")
    results = run(worker, [broken, gone, good], 12)
    assert len(results) == 12 and not broken.graded and not gone.graded
    err = capsys.readouterr().err
    assert "grade: helper 1 cannot grade (cannot sandbox: no uid block is free)" in err
    assert "grade: helper 2 cannot grade (" in err


def test_an_error_in_a_helper_stops_the_run_with_its_message_and_closes_the_helpers():
    worker = FakeWorker(seconds=0.3)
    helper = FakeHelper("h1", seconds=0.01, error="boom in the helper")
    with pytest.raises(RuntimeError, match="boom in the helper"):
        run(worker, [helper], 5)
    assert helper.closed


def test_a_helper_reporting_an_unsafe_sandbox_mid_run_stops_the_run():
    class Unsafe(FakeHelper):
        def ask(self, *args):
            raise sandbox.SandboxUnavailable("the fork server is gone")

    worker, helper = FakeWorker(seconds=0.3), Unsafe("h1")
    with pytest.raises(sandbox.SandboxUnavailable, match="fork server is gone"):
        run(worker, [helper], 3)
    assert helper.closed


def test_stopping_the_consumer_closes_the_helpers_and_ends_their_threads():
    worker, helper = FakeWorker(), FakeHelper("h1", seconds=0.2)
    gen = pool.grade(worker, [helper], tasks(10))
    next(gen)
    gen.close()  # what Ctrl-C in the storing loop does to the generator
    assert helper.closed
    time.sleep(0.5)
    assert not [t for t in threading.enumerate() if t.name.startswith("grade-helper")]


def test_the_helper_reply_codec_names_what_failed():
    assert pool._unwrap(("ok", 3)) == 3
    with pytest.raises(sandbox.SandboxUnavailable, match="no root"):
        pool._unwrap(("unavailable", "no root"))
    with pytest.raises(RuntimeError, match="a grading helper failed:\nTraceback"):
        pool._unwrap(("error", "Traceback ..."))
