"""Console entry points: ``logreg-grade`` (``make grade``) and ``logreg-release``.

``logreg-grade`` grades submitted/<student>/<id>/<id>.ipynb:

1. refuses to start, saying why, if student code cannot be sandboxed here (not root, no
   namespaces, a path the sandbox cannot expose);
2. registers each assignment in the gradebook only when its master notebook changed (the
   master's SHA-256 is kept in the gradebook);
3. grades every new or changed submission (``--force``: all) with warm workers, each with its
   own fork server: this process and ``--jobs`` - 1 helper processes beside it
   (logreg_grader.pool), or the Dask workers of ``--scheduler`` (logreg_grader.cluster). This
   process is the one writer: it records each result as it arrives (its autograded notebook
   and what its feedback needs, then its gradebook row in one transaction);
4. writes grades.csv, the score plots, every feedback page (from the gradebook, as
   ``logreg-grades`` does) and the summary once, at the end.

Ctrl-C or SIGTERM stops every worker and student process, keeps what was recorded, and
prints one line. Exit status: 0; 1 if a feedback page would show a hidden test; 2 for bad
arguments or when grading cannot start; 130 when interrupted.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import stat
import sys
import time
from pathlib import Path

# jsonschema (imported by nbformat, which nbgrader imports) loads rfc3987-syntax when it is
# installed, which builds 38 lark grammars at import: seconds in every grading process, for a
# URI format check that no notebook schema uses. Without it jsonschema skips that one format.
sys.modules.setdefault("rfc3987_syntax", None)
os.environ.setdefault("NBFORMAT_VALIDATOR", "fastjsonschema")


def _bare_nbgrader() -> None:
    """Make ``nbgrader`` importable without its ``__init__``.

    nbgrader's package ``__init__`` imports its Jupyter server extensions (jupyter_server,
    tornado, the exchange: about a second in every grading command), which a command-line
    grader never loads. The grader uses nbgrader.api, .apps, .preprocessors and .coursedir
    only; they import the package for ``__version__`` at most, which is provided.
    """
    if "nbgrader" in sys.modules:
        return
    import importlib.util
    import types

    spec = importlib.util.find_spec("nbgrader")
    if spec is None or not spec.submodule_search_locations:
        return  # not installed: the import below fails with its own message
    package = types.ModuleType("nbgrader", "nbgrader (package __init__ skipped by logreg-grade)")
    package.__spec__, package.__file__ = spec, spec.origin
    package.__path__ = list(spec.submodule_search_locations)
    package.__package__ = "nbgrader"
    sys.modules["nbgrader"] = package
    from nbgrader._version import __version__

    package.__version__ = __version__


_bare_nbgrader()

from logreg_grader import pool, release, sandbox, term  # noqa: E402
from logreg_grader.course import Course  # noqa: E402
from logreg_grader.status import Graded, Status  # noqa: E402
from logreg_grader.worker import Worker, parse_notebook  # noqa: E402, F401 - here for callers

MAX_NOTEBOOK = 50 * 1024**2


# --- reading a submission (main process; never follows a link) -----------------------------


def read_submission(course: Course, student: str, aid: str) -> tuple[bytes | None, Graded]:
    """(notebook bytes or None, a Graded carrying the failure status if it cannot be read)."""
    graded = Graded(aid, student, origin=course.origin)
    graded.late_mark = str(course.collected(student, aid).get("late_mark") or "")[:64]
    folder = course.submitted(student, aid)
    for path in (course.root / "submitted", folder.parent, folder):
        if path.is_symlink():
            graded.status = Status.SYMLINK
            graded.reasons.append(f"{path.relative_to(course.root)} is a symbolic link: refused")
            return None, graded
    path = course.submission(student, aid)
    if not os.path.lexists(path):
        others = sorted(p.name for p in folder.glob("*.ipynb"))
        graded.status = Status.MISSING_NOTEBOOK
        found = f" (found {', '.join(others)}: rename it to {aid}.ipynb)" if others else ""
        graded.reasons.append(f"no {aid}.ipynb in the submission{found}")
        return None, graded
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        graded.status = Status.SYMLINK
        graded.reasons.append(f"{aid}.ipynb is a symbolic link: refused, never followed")
        return None, graded
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
            graded.status = Status.SYMLINK
            graded.reasons.append(f"{aid}.ipynb is not a plain file (a hard link?): refused")
            return None, graded
        if info.st_size > MAX_NOTEBOOK:
            graded.status = Status.UNREADABLE
            graded.reasons.append("the notebook is larger than 50 MB")
            return None, graded
        data = f.read()
    graded.timestamp = course.timestamp(student, aid, info.st_mtime)
    graded.submission_hash = hashlib.sha256(data).hexdigest()
    return data, graded


# --- the run --------------------------------------------------------------------------------


class Interrupted(Exception):
    pass


def _on_term(signum, frame):
    raise KeyboardInterrupt


def discover(course: Course, assignments: list[str], student: str | None):
    """(assignment, student) pairs to grade, and problems to report."""
    todo, problems = [], []
    base = course.root / "submitted"
    if not base.is_dir():
        return todo, problems
    for sdir in sorted(base.iterdir()):
        if student and sdir.name != student:
            continue
        if not sdir.is_dir() or sdir.is_symlink():
            if sdir.suffix == ".ipynb" or sdir.is_symlink():
                problems.append(f"submitted/{sdir.name}: not a student folder (ignored)")
            continue
        for sub in sorted(sdir.iterdir()):
            if sub.is_dir() and sub.name in assignments:
                todo.append((sub.name, sdir.name))
                problems += _stray_notebooks(sub, sdir.name)
            elif sub.suffix == ".ipynb":
                problems.append(
                    f"submitted/{sdir.name}/{sub.name}: a notebook outside an "
                    "assignment folder (ignored; put it in <id>/<id>.ipynb)"
                )
            elif sub.is_dir() and not course.source(sub.name).exists():
                problems.append(f"submitted/{sdir.name}/{sub.name}: unknown assignment")
    return todo, problems


def _stray_notebooks(folder: Path, student: str) -> list[str]:
    """Notebooks in an assignment folder that are not the one graded (<id>.ipynb, when it is
    there: read_submission names the others when it is missing), and notebooks deeper down."""
    aid, out = folder.name, []
    graded = folder / f"{aid}.ipynb"
    for path in sorted(folder.rglob("*.ipynb")):
        rel = path.relative_to(folder)
        if path == graded or ".ipynb_checkpoints" in rel.parts:
            continue
        if len(rel.parts) == 1 and not os.path.lexists(graded):
            continue  # reported as failed: missing_notebook, with its name
        out.append(
            f"submitted/{student}/{aid}/{rel.as_posix()}: not graded (only {aid}/{aid}.ipynb is)"
        )
    return out


def register(course: Course, assignments: list[str]) -> dict[str, str]:
    """The master notebook of each assignment, registered in the gradebook when it changed.

    A master is rebuilt from its MyST source (jupytext) only when the source changed, and
    registered (nbgrader generate_assignment, seconds) only when the master changed: both
    hashes are kept in the gradebook, so a run over unchanged assignments costs a query.
    """
    import tempfile

    from nbgrader.api import Gradebook

    from logreg_grader import gradebook

    url = gradebook.url(course.root)
    gradebook.prepare(url)
    with gradebook.exclusive(url):
        with Gradebook(url, "logreg-lessons") as gb:
            gradebook.ensure_tables(gb)
            known = gradebook.registered(gb)
            names = {a.name for a in gb.assignments}
        masters, stale = {}, []
        for aid in assignments:
            source_digest = _sha(course.source(aid).read_bytes())
            digest, old_source = known.get(aid, (None, None))
            path = course.master(aid)
            text = path.read_text(encoding="utf-8") if path.is_file() else ""
            if not (old_source == source_digest and text and _sha(text.encode()) == digest):
                text = release.notebook_text(release.source_notebook(course.source(aid)))
                release.write_if_changed(path, text)
            masters[aid] = text
            if aid not in names or known.get(aid) != (_sha(text.encode()), source_digest):
                stale.append((aid, _sha(text.encode()), source_digest))
        if stale:
            api = gradebook.nbgrader_api(course.root)
            with tempfile.TemporaryDirectory(prefix="logreg-register-") as scratch:
                api.coursedir.release_directory = scratch  # exercises/ stays untouched
                for aid, *_ in stale:
                    result = api.generate_assignment(aid, force=True, create=True)
                    if not result["success"]:
                        raise SystemExit(f"grade: cannot register {aid}:\n{result['log']}")
            with Gradebook(url, "logreg-lessons") as gb:
                for aid, digest, source_digest in stale:
                    gradebook.set_registered(gb, aid, digest, source_digest)
    return masters


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _quiet() -> None:
    """Hide the SQLAlchemy session warnings nbgrader 0.9 triggers on every write."""
    import warnings

    warnings.filterwarnings("ignore", module="nbgrader")
    warnings.filterwarnings("ignore", module="sqlalchemy")


_T0 = time.perf_counter()  # when this module was imported: the process's start, nearly


def run(args) -> int:
    t = {"startup": time.perf_counter() - _T0}
    os.environ["LOGREG_GRADER_RUN"] = str(os.getpid())  # marks every process of this run
    # This process grades with its own warm worker, started first so that its imports (torch,
    # the library) overlap with this process's own and with the checks below; with more jobs,
    # helper processes (logreg_grader.pool) start now too and grade beside it. None of them
    # holds anything of the course until the masters are loaded. A scheduler's Dask workers
    # test their own sandbox before their first task.
    args.worker, args.helpers = None, []
    if args.scheduler is None and os.geteuid() == 0:
        try:
            args.worker = Worker(None, sandbox.lease_uid_block(), args.call_timeout)
        except sandbox.SandboxUnavailable as err:
            print(f"grade: cannot grade safely here: {err}", file=sys.stderr)
            return 2
        args.helpers = pool.spawn(args.jobs, args.call_timeout)
    try:
        return _run(args, t)
    finally:  # every way out of _run stops the workers (closing twice is harmless)
        pool.close(args.helpers)
        if args.worker is not None:
            args.worker.close()


def _run(args, t: dict) -> int:
    from nbgrader.api import Gradebook

    _quiet()
    from logreg_grader import gradebook, report

    course = Course(args.root.resolve())
    local = args.scheduler is None  # else the scheduler's workers sandbox (each checks itself)
    try:  # before anything touches the course
        if local:
            sandbox.preflight()
            sandbox.Exposure.for_this_interpreter("logreg_lessons", "logreg_grader")
    except sandbox.SandboxUnavailable as err:
        print(f"grade: cannot grade safely here: {err}", file=sys.stderr)
        return 2
    try:
        available = course.assignments(args.assignment)
        term.load(course.root)  # course.toml and the roster: an error stops before grading
    except (release.SourceError, term.TermError) as err:
        print(f"grade: {err}", file=sys.stderr)
        return 2
    release.prepare_environment()
    course.make_private()
    todo, problems = discover(course, available, args.student)
    if args.student and not todo:
        print(
            f"grade: no submission of student {args.student!r} in submitted/"
            + (f" for {args.assignment}" if args.assignment else ""),
            file=sys.stderr,
        )
        return 2
    if args.worker is not None and todo:
        # The master's test cells run here, and the plots at the end: import what they need
        # while the fork server imports its own.
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot  # noqa: F401

        import logreg_lessons  # noqa: F401
    with course.lock():
        start = time.perf_counter()
        masters = register(course, sorted({a for a, _ in todo}) or available)
        t["register"] = time.perf_counter() - start
        if args.worker is not None:
            pool.prepare(args.helpers, masters, course.root)  # they test their own sandbox
            args.worker.load(masters)
            try:  # the sandbox is tested before anything is graded
                args.worker.probe(course.root)
            except sandbox.SandboxUnavailable as err:
                print(f"grade: cannot grade safely here: {err}", file=sys.stderr)
                return 2
        t["sandbox_ready"] = time.perf_counter() - _T0
        url = gradebook.url(course.root)
        with Gradebook(url, "logreg-lessons") as gb:
            done_before = gradebook.statuses(gb)
            times_before = gradebook.submission_times(gb)
        tasks, results, retimed = [], [], []
        for aid, student in todo:
            data, graded = read_submission(course, student, aid)
            prev = done_before.get((aid, student))
            digest = hashlib.sha256(masters[aid].encode()).hexdigest()
            if (
                not args.force
                and data is not None
                and prev
                and prev["submission_hash"] == graded.submission_hash
                and prev["master_hash"] == digest
            ):
                if gradebook.moved(graded, prev, times_before.get((aid, student))):
                    retimed.append(graded)  # collected again: a new time or late mark only
                continue
            tasks.append((aid, student, data, graded))
        runnable = sum(1 for task in tasks if task[2] is not None)
        for helper in args.helpers[max(0, runnable - 1) :]:
            helper.stop()  # a helper without work stops now (reaped at the end)
        if retimed:
            with Gradebook(url, "logreg-lessons") as gb:
                gradebook.retime(gb, retimed)
        interrupted = False
        old = signal.signal(signal.SIGTERM, _on_term)
        start, t["store"] = time.perf_counter(), 0.0
        arrivals = t["arrivals"] = []  # when each result came in, seconds into grading
        try:
            with Gradebook(url, "logreg-lessons") as gb:
                for graded in _grade_all(args, masters, tasks):
                    stored = time.perf_counter()
                    _store(course, gb, graded)
                    t["store"] += time.perf_counter() - stored
                    results.append(graded)
                    arrivals.append(stored - start)
            t["grading"] = time.perf_counter() - start
        except KeyboardInterrupt:
            interrupted = True
        except sandbox.SandboxUnavailable as err:
            print(f"grade: cannot grade safely: {err}", file=sys.stderr)
            return 2
        finally:
            signal.signal(signal.SIGTERM, old)
            pool.close(args.helpers)
            if args.worker is not None:
                args.worker.close()
        if interrupted:
            print(
                f"grade: interrupted: {len(results)} of {len(tasks)} submissions graded and "
                "kept; run it again to grade the rest",
                file=sys.stderr,
            )
            return 130
        start = time.perf_counter()
        done = report.export_all(course)
        skipped = len(todo) - len(tasks)
        print(report.summary(course, done, results, problems, skipped))
        t["export"] = time.perf_counter() - start
    if args.timings:
        t["total"] = time.perf_counter() - _T0
        t["per_submission"] = {f"{g.assignment}/{g.student}": g.seconds for g in results}
        args.timings.write_text(json.dumps(t, indent=1, sort_keys=True), encoding="utf-8")
    return 1 if done.feedback and done.feedback.leaked else 0


def _grade_all(args, masters, tasks):
    """Yield each Graded as soon as it is done (in-process for one job, else a pool)."""
    from tqdm import tqdm

    bar = tqdm(
        total=len(tasks), desc="grading", unit="submission", file=sys.stderr, disable=not tasks
    )
    try:
        failed_early = [t for t in tasks if t[2] is None]
        for *_, graded in failed_early:
            yield _finish_failed(masters, graded)
            bar.update()
        runnable = [t for t in tasks if t[2] is not None]
        if not runnable:
            return
        if args.worker is not None:
            try:
                working = [h for h in args.helpers if h.alive]
                for task, result in pool.grade(args.worker, working, runnable):
                    yield _received(masters, task, result)
                    bar.update()
            finally:
                pool.close(args.helpers)
                args.worker.close()
            return
        yield from _on_cluster(args, masters, runnable, bar)
    finally:
        bar.close()


def _on_cluster(args, masters, runnable, bar):
    """Grade on the Dask workers of ``--scheduler``."""
    from logreg_grader import cluster

    with cluster.connect(args.jobs, args.scheduler, args.call_timeout) as client:
        link = cluster.dashboard(client, local=args.scheduler is None)
        if link:
            print(f"grade: Dask dashboard at {link}", file=sys.stderr)
        cluster.probe(client, args.root)
        for task, result in cluster.grade(client, masters, runnable):
            yield _received(masters, task, result)
            bar.update()


def _received(masters, task, result) -> Graded:
    """A worker's result as a Graded (``"worker_died"``: failed, every test not run)."""
    if result == "worker_died":
        graded = task[3]
        graded.status = Status.WORKER_DIED
        graded.reasons.append("its grading worker died twice while grading it")
        return _finish_failed(masters, graded)
    return Graded.from_dict(result)


def _finish_failed(masters, graded: Graded) -> Graded:
    from logreg_grader import feedback
    from logreg_grader.notebook import Master
    from logreg_grader.status import TestResult

    master = Master.from_text(graded.assignment, masters[graded.assignment])
    graded.master_hash = master.hash
    graded.tests = [
        TestResult(t.grade_id, t.points, 0.0, "not run: " + graded.reason)
        for t in master.tests.values()
    ]
    graded.feedback = feedback.findings(graded, master).to_json()
    return graded


def _store(course: Course, gb, graded: Graded) -> None:
    """Record one result: autograded notebook, what its feedback page needs (the findings,
    logreg_grader.feedback), then its gradebook row (one transaction). Killed in between, the
    next run finds no row and grades it again. The pages are written by the export, from the
    gradebook (report.export_all), at the end of the run and by ``make grades``."""
    from logreg_grader import gradebook

    if graded.autograded:
        course.write_private(
            course.autograded(graded.student, graded.assignment), graded.autograded
        )
        if graded.timestamp:
            stamp = course.autograded_timestamp(graded.student, graded.assignment)
            course.write_private(stamp, graded.timestamp)
    if graded.feedback:
        path = course.findings(graded.student, graded.assignment)
        course.write_private(path, graded.feedback)
    gradebook.record(gb, graded)


def grade_main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="logreg-grade", description=__doc__.split("\n\n")[0])
    parser.add_argument("--assignment", help="grade one assignment id (default: all)")
    parser.add_argument("--student", help="grade one student only (regraded even when unchanged)")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="submissions graded at once on this machine (this process and N - 1 helpers)",
    )
    parser.add_argument(
        "--scheduler",
        default=os.environ.get("LOGREG_SCHEDULER") or None,
        help="grade on the workers of this Dask scheduler (tcp://host:8786) instead",
    )
    parser.add_argument("--root", type=Path, default=release.ROOT, help="course root")
    parser.add_argument(
        "--force",
        action="store_true",
        help="regrade unchanged submissions too (manual grades are kept)",
    )
    parser.add_argument(
        "--call-timeout",
        type=float,
        default=float(os.environ.get("LOGREG_CALL_TIMEOUT", 60)),
        help="seconds one call of a student's function may take",
    )
    parser.add_argument("--timings", type=Path, help="write where the time went (JSON) here")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    if args.student:
        args.force = True  # asking for one student means: grade it again
    return run(args)


def grade_console() -> None:
    """The ``logreg-grade`` command: :func:`grade_main`, then a quick exit.

    Everything is written, flushed and closed when grade_main returns; what is left is the
    interpreter tearing down torch, nbgrader and Jupyter's modules (about a second, every
    run), which os._exit skips.
    """
    import logging

    code = grade_main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def release_main(argv=None) -> int:
    return release.main(argv)


if __name__ == "__main__":
    sys.exit(grade_main())
