"""A small fixture class for the grading-at-scale tests, and what a graded run produced.

Built with tests/grader/nbgrader_harness.py's helpers. Three students, two assignments (``AIDS``),
four submissions: ``perfect`` hands in the solution of each assignment, ``untouched`` the
released notebook of the last one, and ``bug-<name>`` the first bug fixture of the first
assignment (tests/grader/fixtures/bugs_*.py), which fails some tests and passes others.
``run_grade`` runs logreg-grade as `make grade` does; ``outcome`` collects everything a run
must reproduce: grades.csv rows, the per-cell scores and totals in the gradebook, and the
visible text of every feedback file.
"""

from __future__ import annotations

import csv
import html
import os
import re
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

from nbgrader_harness import REPO, Course, autograded_cells, load_bugs, release, replace_cells

# Four submissions: about a minute per serial run on 2 busy cores.
AIDS = ["02_numerical_stability", "03_forward_pass"]
LOCK_MESSAGES = ("database is locked", "database table is locked", "OperationalError")


def bugs(aids: list[str] = AIDS) -> list[dict]:
    """The first bug fixture of the first assignment in aids that has one."""
    found = load_bugs(aids)
    for aid in aids:
        mine = [b for b in found if b["assignment"] == aid]
        if mine:
            return mine[:1]
    return []


def build(root: Path, aids: list[str] = AIDS, students: list[str] | None = None) -> Course:
    """Write the course (config, sources, submissions) into root; returns its Course."""
    course = Course(root, aids, bugs(aids))
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "nbgrader_config.py", root / "nbgrader_config.py")
    for aid in aids:
        md = REPO / "solutions" / aid / f"{aid}.md"
        (root / "solutions" / aid).mkdir(parents=True)
        shutil.copy(md, root / "solutions" / aid / md.name)
        course.sources[aid] = release.source_notebook(md)
        course.released[aid] = release_notebook(aid, course.sources[aid])
    submissions = []
    for aid in aids:
        submissions.append(("perfect", aid, course.sources[aid]))
    submissions.append(("untouched", aids[-1], course.released[aids[-1]]))
    for bug in course.bugs:
        nb = replace_cells(course.sources[bug["assignment"]], bug["replace"])
        submissions.append((f"bug-{bug['name']}", bug["assignment"], nb))
    for student, aid, nb in submissions:
        if students is None or student in students:
            course.submit(student, aid, nb)
    return course


def release_notebook(aid: str, source_nb):
    """The committed release of aid (generated when it has not been released yet)."""
    import nbformat

    committed = REPO / "exercises" / aid / f"{aid}.ipynb"
    if committed.exists():
        return nbformat.read(committed, 4)
    return nbformat.reads(release.generate({aid: source_nb}, REPO)[aid], 4)


def grade_command(root: Path, jobs: int) -> list[str]:
    return [str(Path(sys.executable).parent / "logreg-grade"), "--root", str(root)] + [
        "--jobs",
        str(jobs),
    ]


def grade_env(db_url: str | None = None) -> dict[str, str]:
    """The environment of `make grade`; db_url sets LOGREG_GRADEBOOK_URL (else SQLite)."""
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONHASHSEED="0")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.pop("LOGREG_GRADEBOOK_URL", None)
    if db_url:
        env["LOGREG_GRADEBOOK_URL"] = db_url
    return env


def run_grade(course: Course, jobs: int, db_url: str | None = None, timeout: float = 600):
    """logreg-grade --jobs N on the course; sets course.result and course.seconds."""
    start = time.perf_counter()
    course.result = subprocess.run(
        grade_command(course.root, jobs),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=grade_env(db_url),
    )
    course.seconds = time.perf_counter() - start
    return course.result


def output(result) -> str:
    return (result.stdout or "") + (result.stderr or "")


def lock_errors(text: str) -> list[str]:
    """Lines of a grade run's output that report a database lock or driver error."""
    return [ln for ln in text.splitlines() if any(m in ln for m in LOCK_MESSAGES)]


def csv_rows(root: Path) -> list[dict]:
    """grades.csv's rows without ``submitted``: each course's files were written at their own
    time, which is the submission time of a notebook copied in by hand."""
    with open(root / "grades.csv", newline="", encoding="utf-8") as f:
        rows = [{k: v for k, v in r.items() if k != "submitted"} for r in csv.DictReader(f)]
    return sorted(rows, key=lambda r: (r["student"], r["assignment"]))


def cell_scores(course: Course, db_url: str) -> dict[tuple[str, str, str], tuple]:
    """(student, assignment, grade_id) -> (auto_score, max_score, needs_manual_grade)."""
    from nbgrader.api import Gradebook

    out = {}
    with Gradebook(db_url, "logreg-lessons") as gb:
        for student, aids in course.students.items():
            for aid in aids:
                for gid, _ in autograded_cells(course.sources[aid]):
                    g = gb.find_grade(gid, aid, aid, student)
                    out[(student, aid, gid)] = (g.auto_score, g.max_score, g.needs_manual_grade)
    return out


def submission_totals(course: Course, db_url: str) -> dict[tuple[str, str], tuple]:
    """(student, assignment) -> (score, max_score, needs_manual_grade) from the gradebook."""
    from nbgrader.api import Gradebook

    out = {}
    with Gradebook(db_url, "logreg-lessons") as gb:
        for student, aids in course.students.items():
            for aid in aids:
                sub = gb.find_submission(aid, student)
                out[(student, aid)] = (sub.score, sub.max_score, sub.needs_manual_grade)
    return out


def feedback_texts(course: Course) -> dict[tuple[str, str], str]:
    """(student, assignment) -> visible text of the feedback, the course root and the times
    (when it was submitted and graded) masked."""
    out = {}
    for student, aids in course.students.items():
        for aid in aids:
            raw = course.feedback(student, aid).read_text(encoding="utf-8")
            raw = re.sub(r"<(script|style)\b.*?</\1>", "", raw, flags=re.S)
            text = html.unescape(re.sub(r"<[^>]+>", "", raw))
            text = text.replace(str(course.root), "<root>")
            text = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d(:\d\d(\.\d+)?)?( UTC)?", "<time>", text)
            out[(student, aid)] = "\n".join(ln.rstrip() for ln in text.splitlines() if ln.strip())
    return out


def sqlite_url(course: Course) -> str:
    return f"sqlite:///{course.root / 'gradebook' / 'gradebook.db'}"


def outcome(course: Course, db_url: str | None = None) -> dict:
    """Everything a graded run must reproduce, independent of where it ran."""
    db_url = db_url or sqlite_url(course)
    return {
        "csv": csv_rows(course.root),
        "cells": cell_scores(course, db_url),
        "totals": submission_totals(course, db_url),
        "feedback": feedback_texts(course),
    }


_SERIAL: dict = {}


def serial_run(tmp_path_factory) -> tuple[Course, dict]:
    """The reference: the small class graded with --jobs 1 on SQLite (once per test session)."""
    if "course" not in _SERIAL:
        course = build(tmp_path_factory.mktemp("serial"))
        result = run_grade(course, jobs=1)
        assert result.returncode == 0, output(result)
        _SERIAL["course"], _SERIAL["outcome"] = course, outcome(course)
    return _SERIAL["course"], _SERIAL["outcome"]


def write_load(db_url: str, worker: int, count: int, aid: str) -> int:
    """Record ``count`` fabricated submissions of aid, as a grading process does (run this in
    several processes at once against one gradebook). Returns the number written."""
    from nbgrader.api import Gradebook

    from logreg_grader import gradebook as gradebook_db

    gradebook_db.install_hooks()  # what every process of logreg-grade does
    warnings.filterwarnings("ignore", module="nbgrader")  # SQLAlchemy session warnings
    warnings.filterwarnings("ignore", module="sqlalchemy")
    for i in range(count):
        student = f"load-{worker}-{i}"
        with Gradebook(db_url, "logreg-lessons") as gb:
            gb.update_or_create_student(student)
            sub = gb.add_submission(aid, student)
            for nb in sub.notebooks:
                for grade in nb.grades:
                    grade.auto_score = float((worker + i) % 2) * (grade.max_score or 0)
            gb.db.commit()
    return count


def concurrent_load(db_url: str, aid: str, workers: int = 4, count: int = 5) -> tuple[dict, dict]:
    """write_load in ``workers`` processes at once; ({student: score} read back, expected)."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from nbgrader.api import Gradebook

    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        done = list(
            pool.map(
                write_load, [db_url] * workers, range(workers), [count] * workers, [aid] * workers
            )
        )
    assert done == [count] * workers
    with Gradebook(db_url, "logreg-lessons") as gb:
        assignment = gb.find_assignment(aid)
        got = {
            s.student.id: s.score
            for s in assignment.submissions
            if s.student.id.startswith("load-")
        }
        top = assignment.max_score
    want = {f"load-{w}-{i}": (w + i) % 2 * top for w in range(workers) for i in range(count)}
    return got, want
