"""`make grade JOBS=N`: grading in parallel gives exactly the grades of a serial run.

A small class (tests/grader/class_builder.py: 2 assignments, a perfect, an untouched and a buggy
submission each) is graded twice on separate course roots, with --jobs 1 and --jobs 2, both on
the default SQLite gradebook. Scores per cell, totals, statuses, grades.csv and feedback must be
identical, and no worker may hit "database is locked" (logreg_grader/gradebook.py).
"""

import sqlite3

import class_builder as cb
import pytest

from logreg_grader import gradebook as gradebook_db  # noqa: E402


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    return cb.serial_run(tmp_path_factory)


@pytest.fixture(scope="module")
def parallel(tmp_path_factory):
    course = cb.build(tmp_path_factory.mktemp("parallel"))
    result = cb.run_grade(course, jobs=2)
    assert result.returncode == 0, cb.output(result)
    return course, cb.outcome(course)


@pytest.mark.slow
def test_parallel_run_has_no_database_lock_errors(parallel):
    course, _ = parallel
    assert cb.lock_errors(cb.output(course.result)) == []


@pytest.mark.slow
@pytest.mark.parametrize("part", ["cells", "totals", "csv", "feedback"])
def test_two_jobs_grade_exactly_like_one(serial, parallel, part):
    (s_course, s_out), (p_course, p_out) = serial, parallel
    assert s_course.students == p_course.students
    assert p_out[part] == s_out[part], (
        f"{part} differ between --jobs 1 ({s_course.seconds:.0f} s) "
        f"and --jobs 2 ({p_course.seconds:.0f} s)"
    )


@pytest.mark.slow
def test_the_class_exercises_full_partial_and_zero_scores(serial):
    """The comparison means something: full, partial and zero cell scores all occur."""
    _, out = serial
    cells = out["cells"]
    by_student = {}
    for (student, _, _), (score, top, _) in cells.items():
        by_student.setdefault(student, []).append((score, top))
    assert all(score == top for score, top in by_student["perfect"])
    assert all(score == 0 for score, _ in by_student["untouched"])
    bug = [s for s in by_student if s.startswith("bug-")]
    assert len(bug) == 1
    assert {score == top for score, top in by_student[bug[0]]} == {True, False}


@pytest.mark.slow
def test_sqlite_gradebook_is_in_wal_mode(parallel):
    course, _ = parallel
    path = course.root / "gradebook" / "gradebook.db"
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_grading_processes_wait_for_sqlite_locks(tmp_path):
    from sqlalchemy import create_engine, text

    gradebook_db.install_hooks()
    engine = create_engine(f"sqlite:///{tmp_path / 'g.db'}")
    try:
        with engine.connect() as con:
            waited = con.execute(text("PRAGMA busy_timeout")).scalar()
    finally:
        engine.dispose()
    assert waited == gradebook_db.BUSY_TIMEOUT_S * 1000


def test_concurrent_registration_is_serialised(tmp_path):
    import threading
    import time

    url = f"sqlite:///{tmp_path / 'g.db'}"
    inside, overlaps = [], []

    def hold():
        with gradebook_db.exclusive(url):
            if inside:
                overlaps.append(1)
            inside.append(1)
            time.sleep(0.05)
            inside.pop()

    # flock locks belong to the open file: separate opens exclude each other, even in threads
    threads = [threading.Thread(target=hold) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == []


@pytest.mark.slow
def test_concurrent_writers_never_see_a_locked_sqlite_gradebook(serial, tmp_path):
    """Four processes record submissions into one SQLite gradebook at once (WAL, lock waits)."""
    course, _ = serial
    source = sqlite3.connect(course.root / "gradebook" / "gradebook.db")
    copy = sqlite3.connect(tmp_path / "gradebook.db")
    with copy:
        source.backup(copy)
    source.close()
    copy.close()
    url = f"sqlite:///{tmp_path / 'gradebook.db'}"
    gradebook_db.prepare(url)
    got, want = cb.concurrent_load(url, cb.AIDS[0])
    assert got == want
