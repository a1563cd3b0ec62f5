"""logreg-grade as an instructor runs it: arguments, interruption, incremental regrading."""

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from logreg_grader import release

REPO = Path(__file__).resolve().parents[2]
AID = "02_numerical_stability"
GRADE = str(Path(sys.executable).parent / "logreg-grade")
pytestmark = pytest.mark.slow


def _course(root: Path, students: int) -> Path:
    shutil.copy(REPO / "nbgrader_config.py", root / "nbgrader_config.py")
    (root / "solutions" / AID).mkdir(parents=True)
    md = REPO / "solutions" / AID / f"{AID}.md"
    shutil.copy(md, root / "solutions" / AID / md.name)
    nb = release.source_notebook(md)
    for i in range(students):
        folder = root / "submitted" / f"s{i:02d}" / AID
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / f"{AID}.ipynb")
    return root


def _run(root, *args, **kw):
    return subprocess.run([GRADE, "--root", str(root), *args], capture_output=True, text=True,
                          timeout=900, **kw)  # fmt: skip


def _graded(root) -> int:
    db = root / "gradebook" / "gradebook.db"
    try:
        with sqlite3.connect(db, timeout=30) as con:
            return con.execute("SELECT COUNT(*) FROM logreg_grader_status").fetchone()[0]
    except sqlite3.Error:
        return 0


def _start_and_wait_for(root: Path, graded: int) -> subprocess.Popen:
    """A ``--jobs 2`` run of ``root``, once it has recorded ``graded`` submissions (or ended)."""
    proc = subprocess.Popen([GRADE, "--root", str(root), "--jobs", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.time() + 600
    while _graded(root) < graded and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    return proc


def _processes_of_run(pid: int) -> list[str]:
    """Fork servers and student processes started by the grading run ``pid``."""
    marker = f"LOGREG_GRADER_RUN={pid}".encode()
    out = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and int(entry.name) != pid:
            try:
                environ = Path(entry.path, "environ").read_bytes().split(b"\0")
                if marker in environ:
                    out.append(f"{entry.name} uid={entry.stat().st_uid}")
            except OSError:
                continue
    return out


def test_bad_arguments_say_what_is_expected(tmp_path):
    root = _course(tmp_path, 0)
    result = _run(root, "--jobs", "0")
    assert result.returncode == 2 and "--jobs must be at least 1, got 0" in result.stderr
    result = _run(root, "--assignment", "02_numerical_stabilty")
    assert result.returncode == 2
    assert "no assignment '02_numerical_stabilty'" in result.stderr and AID in result.stderr


def test_sigterm_stops_everything_keeps_what_was_graded_and_a_rerun_grades_the_rest(tmp_path):
    root = _course(tmp_path, 6)
    proc = _start_and_wait_for(root, graded=2)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if "interrupted" in ln]
    assert len(lines) == 1 and "run it again to grade the rest" in lines[0]
    kept = _graded(root)
    assert 2 <= kept < 6
    time.sleep(1)
    assert _processes_of_run(proc.pid) == [], "fork servers or student processes outlived it"
    again = _run(root, "--jobs", "2")
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"{kept} unchanged submissions kept as graded" in again.stdout
    assert _graded(root) == 6
    rows = (root / "grades.csv").read_text().splitlines()
    assert len(rows) == 7 and all(",ok," in r for r in rows[1:]), rows


def _helpers_of_run(pid: int) -> list[int]:
    """The pids of the pool helpers (logreg_grader.pool) of the grading run ``pid``."""
    out = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                cmd = Path(entry.path, "cmdline").read_bytes().split(b"\0")
                stat_fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if b"logreg_grader.pool" in cmd and int(stat_fields[1]) == pid:
                out.append(int(entry.name))
    return out


def test_a_helper_killed_mid_run_costs_nothing_but_time(tmp_path):
    """--jobs 2: the helper process is SIGKILLed (the OOM killer, an admin) after the first
    results: every submission is still graded, ok, exactly once, and nothing is left behind."""
    root = _course(tmp_path, 8)
    proc = _start_and_wait_for(root, graded=2)
    helpers = _helpers_of_run(proc.pid)
    assert proc.poll() is None and len(helpers) == 1, "no helper to kill while grading"
    os.kill(helpers[0], signal.SIGKILL)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    assert "Traceback" not in err
    rows = (root / "grades.csv").read_text().splitlines()
    assert len(rows) == 9 and all(",ok," in r for r in rows[1:]), rows
    assert _graded(root) == 8
    time.sleep(1)
    assert _processes_of_run(proc.pid) == [], "a fork server or student process outlived it"


def test_storing_a_result_takes_a_few_queries_however_many_cells_are_graded(tmp_path):
    """gradebook.record reads a submission's grades and their cells in bulk. Loaded one by
    one (Grade.cell, then Grade.name) it cost two queries per graded cell: 9 of the 17 ms of a
    store, paid in the grading process for every submission. The scores it writes are the
    ones given."""
    root = _course(tmp_path, 1)
    result = _run(root)
    assert result.returncode == 0, result.stderr[-2000:]
    from nbgrader.api import Gradebook, GradeCell
    from sqlalchemy import event

    from logreg_grader import gradebook
    from logreg_grader.status import Graded, TestResult

    with Gradebook(gradebook.url(root), "logreg-lessons") as gb:
        cells = gb.db.query(GradeCell).filter(GradeCell.cell_type == "code").all()
        assert len(cells) >= 8, "too few graded cells to tell bulk from one by one"
        tests = [TestResult(c.name, c.max_score, c.max_score / 2) for c in cells]
    with Gradebook(gradebook.url(root), "logreg-lessons") as gb:  # nothing loaded yet
        graded = Graded(AID, "s00", tests=tests, timestamp="2026-12-01 10:00:00 UTC")
        statements = []
        engine = gb.db.get_bind()

        def count(*args):
            statements.append(args[2])

        event.listen(engine, "before_cursor_execute", count)
        try:
            gradebook.record(gb, graded)
        finally:
            event.remove(engine, "before_cursor_execute", count)
        assert len(statements) <= 12, "\n".join(statements)
        scores = {g.name: g.auto_score for g in gb.find_submission(AID, "s00").notebooks[0].grades}
    for t in tests:
        assert scores[t.grade_id] == t.score


def test_formgrader_sees_every_submission_autograded_with_its_timestamp(tmp_path):
    """nbgrader's own API (what formgrader's pages call) reads what logreg-grade wrote."""
    root = _course(tmp_path, 2)
    result = _run(root)
    assert result.returncode == 0, result.stderr[-2000:]
    from logreg_grader import gradebook

    api = gradebook.nbgrader_api(root)
    subs = {s["student"]: s for s in api.get_submissions(AID)}
    assert set(subs) == {"s00", "s01"}
    for sub in subs.values():
        assert sub["autograded"] is True and sub["submitted"] is True, sub
        assert sub["timestamp"] is not None
        assert sub["needs_manual_grade"] is True  # the written answers wait for a person
        assert sub["code_score"] == sub["max_code_score"] > 0
    notebooks = api.get_notebook_submission_indices(AID, AID)
    assert len(notebooks) == 2  # formgrader can open each notebook for manual grading
