"""What the instructor and the students read: grades.csv, grades-canvas.csv, two plots per
assignment, the feedback pages and a summary.

Everything is rebuilt from the gradebook (manual grades and comments included) and course.toml
(roster, due dates, late policy), never by running a notebook: ``make grade`` calls
:func:`export_all` at the end of a run, and ``make grades`` (``logreg-grades``,
:func:`grades_main`) calls it alone, in seconds. Each student and assignment is one
:class:`Row`: its :meth:`Row.csv` is the row of grades.csv and logreg_grader.feedback.page
renders the same record, so the page and grades.csv cannot disagree.

grades.csv has one row per student and assignment: every roster student for every assignment
(``missing`` when nothing came in), and every graded submission. A submission whose folder was
removed from ``submitted/`` is left out (``--prune`` also removes it from the gradebook).
Columns: ``FIXED``, then one per graded cell, ``<id>:<grade_id>`` (test cells and written
answers, in notebook order; empty on another assignment's row and on a missing row).
``score`` = ``autograded`` + ``written`` - ``late_penalty``; ``days_late`` counts started days.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import math
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from logreg_grader import term as termmod
from logreg_grader.course import Course
from logreg_grader.feedback import Findings, Written, read_findings

FIXED = (
    "student",
    "assignment",
    "name",
    "email",
    "status",
    "score",
    "max_score",
    "autograded",
    "written",
    "late_penalty",
    "days_late",
    "submitted",
    "due",
    "reason",
)
CSV_FIELDS = FIXED  # the fixed columns (per-cell columns follow them)
MISSING = "missing"
NEEDS_GRADING = "written answers need grading"


@dataclass
class Cell:
    grade_id: str
    kind: str  # "code" (an autograded test) or "markdown" (a written answer)
    points: float


@dataclass
class CellGrade:
    """One graded cell of one submission, as the gradebook holds it."""

    grade_id: str
    kind: str  # "code" (an autograded test) or "markdown" (a written answer)
    points: float
    score: float | None = None  # None: no grade recorded (nothing handed in)
    manual: bool = False  # the instructor's score (formgrader) counts, not the autograder's
    needs_grading: bool = False  # a written answer nobody has graded yet
    comment: str = ""  # the instructor's comment on this cell


@dataclass
class Row:
    """One student's result on one assignment: the one record behind their row of grades.csv
    (:meth:`csv`) and their feedback page (logreg_grader.feedback.page)."""

    student: str
    assignment: str
    name: str = ""
    email: str = ""
    status: str = ""
    score: float = 0.0  # autograded + written - late_penalty
    max_score: float = 0.0
    autograded: float = 0.0
    written: float = 0.0
    late_penalty: float = 0.0
    days_late: int | None = None  # started days; None for a missing submission
    submitted: str = ""  # the submission's time in the course's time zone
    due: str = ""  # the student's due date, likewise
    reason: str = ""
    late_note: str = ""  # what the lateness cost, as the reason says it
    cells: list[CellGrade] = field(default_factory=list)  # notebook order
    comments: list[tuple[str, str]] = field(default_factory=list)  # (cell, comment), any cell
    graded_here: bool = False  # graded from this course folder
    findings: Findings | None = None  # what grading found (messages, answers), when kept here

    def csv(self) -> dict[str, str]:
        """The row of grades.csv: FIXED, then ``<id>:<grade_id>`` of every graded cell."""
        out = {
            "student": self.student,
            "assignment": self.assignment,
            "name": self.name,
            "email": self.email,
            "status": self.status,
            "score": fmt(self.score),
            "max_score": fmt(self.max_score),
            "autograded": fmt(self.autograded),
            "written": fmt(self.written),
            "late_penalty": fmt(self.late_penalty),
            "days_late": "" if self.days_late is None else str(self.days_late),
            "submitted": self.submitted,
            "due": self.due,
            "reason": self.reason,
        }
        for c in self.cells:
            if c.score is not None:
                out[f"{self.assignment}:{c.grade_id}"] = fmt(c.score)
        return out


@dataclass
class Export:
    """What one export found: the rows, the cells per assignment and what to mention."""

    rows: list[dict] = field(default_factory=list)  # grades.csv's rows (Row.csv of records)
    cells: dict[str, list[Cell]] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)  # "student/aid" left out (folder gone)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    records: list[Row] = field(default_factory=list)
    feedback: Written | None = None  # the feedback pages written from the records


def fmt(x: float) -> str:
    """A number of points as grades.csv and the feedback page show it."""
    return f"{round(x, 2):g}"


def _aware(when) -> dt.datetime | None:
    if when is None:
        return None
    if isinstance(when, str):
        when = dt.datetime.fromisoformat(when)
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _master_cells(course: Course, aid: str) -> list[Cell] | None:
    """The graded cells of aid in notebook order, from its master notebook (None if none)."""
    from logreg_grader import notebook as nbm

    path = course.master(aid)
    if not path.is_file():
        return None
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None
    out = []
    for cell in nb.get("cells", []):
        meta, kind = nbm.nbgrader_meta(cell), nbm.kind_of(cell)
        if kind == "test" or (kind == "answer" and meta.get("grade")):
            out.append(
                Cell(str(meta.get("grade_id")), cell["cell_type"], float(meta.get("points") or 0))
            )
    return out


def gather(course: Course, term: termmod.Term | None = None, prune: bool = False) -> Export:
    """Read the gradebook once (five queries) and build every record (row of grades.csv)."""
    from nbgrader.api import (
        Assignment,
        BaseCell,
        Comment,
        Grade,
        Gradebook,
        GradeCell,
        Notebook,
        SubmittedAssignment,
        SubmittedNotebook,
    )

    from logreg_grader import gradebook

    start = time.perf_counter()
    term = term or termmod.load(course.root)
    out = Export()
    url = gradebook.url(course.root)
    with Gradebook(url, "logreg-lessons") as gb:
        gradebook.ensure_tables(gb)
        gradebook.sync_roster(gb, term.roster)  # formgrader shows the roster's names
        status = gradebook.statuses(gb)
        registered: dict[str, list[Cell]] = {}
        for aid, gid, kind, points in (
            gb.db.query(Assignment.name, GradeCell.name, GradeCell.cell_type, GradeCell.max_score)
            .select_from(GradeCell)
            .join(Notebook, GradeCell.notebook_id == Notebook.id)
            .join(Assignment, Notebook.assignment_id == Assignment.id)
        ):
            registered.setdefault(aid, []).append(Cell(gid, kind, float(points or 0)))
        subs = {
            (aid, student): _aware(ts)
            for aid, student, ts in gb.db.query(
                Assignment.name, SubmittedAssignment.student_id, SubmittedAssignment.timestamp
            ).join(Assignment, SubmittedAssignment.assignment_id == Assignment.id)
        }
        grades: dict[tuple[str, str], dict[str, tuple[float, bool, bool]]] = {}
        for aid, student, gid, auto, manual, extra, needs in (
            gb.db.query(
                Assignment.name,
                SubmittedAssignment.student_id,
                GradeCell.name,
                Grade.auto_score,
                Grade.manual_score,
                Grade.extra_credit,
                Grade.needs_manual_grade,
            )
            .select_from(Grade)
            .join(SubmittedNotebook, Grade.notebook_id == SubmittedNotebook.id)
            .join(SubmittedAssignment, SubmittedNotebook.assignment_id == SubmittedAssignment.id)
            .join(Assignment, SubmittedAssignment.assignment_id == Assignment.id)
            .join(GradeCell, Grade.cell_id == GradeCell.id)
        ):
            score = (manual if manual is not None else auto or 0.0) + (extra or 0.0)
            grades.setdefault((aid, student), {})[gid] = (
                float(score),
                bool(needs),
                manual is not None,
            )
        comments: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for aid, student, cell, text in (
            gb.db.query(
                Assignment.name,
                SubmittedAssignment.student_id,
                BaseCell.name,
                Comment.manual_comment,
            )
            .select_from(Comment)
            .join(SubmittedNotebook, Comment.notebook_id == SubmittedNotebook.id)
            .join(SubmittedAssignment, SubmittedNotebook.assignment_id == SubmittedAssignment.id)
            .join(Assignment, SubmittedAssignment.assignment_id == Assignment.id)
            .join(BaseCell, Comment.cell_id == BaseCell.id)
            .filter(Comment.manual_comment.isnot(None))
        ):
            if str(text).strip():
                comments.setdefault((aid, student), []).append((str(cell), str(text).strip()))
        # A submission graded here whose folder is gone was removed by the instructor.
        here = course.origin
        for key in sorted(subs):
            aid, student = key
            info = status.get(key, {})
            if info.get("origin") == here and not course.submitted(student, aid).is_dir():
                out.removed.append(f"{student}/{aid}")
                if prune:
                    gradebook.forget(gb, aid, student)
                    for path in (course.autograded(student, aid), course.feedback(student, aid)):
                        if path.parent.is_dir() and not path.parent.is_symlink():
                            shutil.rmtree(path.parent)  # the notebook, page, results, times
        if term.roster:
            _sync_roster(gb, term)
        _sync_due_dates(gb, term, set(registered))
    for key in out.removed:
        student, aid = key.split("/", 1)
        subs.pop((aid, student), None)

    out.notes += [
        f"roster {term.roster_file.name}: {r}: left out"
        for r in term.skipped_rows
        if "test student" not in r
    ]
    known = set(course.assignments())
    for aid in sorted(term.due):
        if aid not in known:
            out.notes.append(f"course.toml: a due date for {aid!r}, which has no source")
    aids = sorted(set(registered) | (set(term.due) & known))
    for aid in aids:
        cells = _master_cells(course, aid)
        if aid in registered:
            by_id = {c.grade_id: c for c in registered[aid]}
            ordered = [by_id[c.grade_id] for c in cells or [] if c.grade_id in by_id]
            cells = ordered + [c for c in registered[aid] if c not in ordered]
        out.cells[aid] = cells or []
    now = dt.datetime.now(dt.UTC)
    for aid in aids:
        students = [s for a, s in subs if a == aid]
        students = list(term.roster) + sorted(set(students) - set(term.roster))
        for student in students:
            record = _row(course, term, aid, student, out.cells[aid], subs, grades, status, now)
            record.comments = comments.get((aid, student), [])
            by_cell = dict(record.comments)
            for c in record.cells:
                c.comment = by_cell.get(c.grade_id, "")
            out.records.append(record)
            out.rows.append(record.csv())
    out.seconds = time.perf_counter() - start
    return out


def _row(course, term, aid, student, cells, subs, grades, status, now) -> Row:
    person = term.roster.get(student)
    top = sum(c.points for c in cells)
    due = term.due_for(student, aid)
    row = Row(
        student=student,
        assignment=aid,
        name=person.name if person else "",
        email=person.email if person else "",
        max_score=top,
        due=term.local(due) if due else "",
        cells=[CellGrade(c.grade_id, c.kind, c.points) for c in cells],
    )
    reasons: list[str] = []
    if term.roster and person is None:
        reasons.append("not on the roster")
    if (aid, student) not in subs:
        row.status = MISSING
        if due and due > now:
            reasons.append(f"not submitted yet (due {term.local(due)})")
        else:
            reasons.append("no submission")
        row.reason = "; ".join(reasons)
        return row
    info = status.get((aid, student), {})
    state = info.get("status") or "ok"
    failed = state.startswith("failed")
    mine = grades.get((aid, student), {})
    for c in row.cells:
        if c.grade_id in mine:
            c.score, needs, c.manual = mine[c.grade_id]
            c.needs_grading = needs and c.kind != "code"
    auto = sum(c.score or 0.0 for c in row.cells if c.kind == "code")
    written = sum(c.score or 0.0 for c in row.cells if c.kind != "code")
    raw = auto + written
    submitted = subs[(aid, student)]
    late = term.lateness(student, aid, submitted, info.get("late_mark") or "")
    penalty = min(raw, round(late.fraction * top, 2)) if late.fraction else 0.0
    if info.get("reason"):
        reasons.append(str(info["reason"]))
    if late.days:
        row.late_note = f"{late.note}: -{late.fraction * 100:g}% of {fmt(top)} points" + (
            f" = -{fmt(penalty)}" if penalty else " (nothing left to take off)"
        )
        reasons.append(row.late_note)
    elif late.note:
        row.late_note = late.note
        reasons.append(late.note)
    if any(c.needs_grading for c in row.cells) and not failed:
        reasons.append(NEEDS_GRADING)
    row.status = state
    row.score, row.autograded, row.written = raw - penalty, auto, written
    row.late_penalty, row.days_late = penalty, late.days or 0
    row.submitted = term.local(submitted) if submitted else ""
    row.reason = "; ".join(r for r in dict.fromkeys(reasons) if r and r != state)
    row.graded_here = info.get("origin") == course.origin
    found = read_findings(course, student, aid)
    if found is not None and (found.master_hash, found.submission_hash) == (
        info.get("master_hash") or "",
        info.get("submission_hash") or "",
    ):
        row.findings = found
    return row


def _sync_roster(gb, term: termmod.Term) -> None:
    """Names and e-mails of the roster into the gradebook's students (formgrader shows them)."""
    from nbgrader.api import Student

    have = {s.id: s for s in gb.db.query(Student)}
    changed = False
    for s in term.roster.values():
        want = {
            "first_name": s.first_name or None,
            "last_name": s.last_name or None,
            "email": s.email or None,
            "lms_user_id": s.lms_id or None,
        }
        row = have.get(s.id)
        if row is None:
            gb.db.add(Student(id=s.id, **want))
            changed = True
        elif any(getattr(row, k) != v for k, v in want.items()):
            for k, v in want.items():
                setattr(row, k, v)
            changed = True
    if changed:
        gb.db.commit()


def _sync_due_dates(gb, term: termmod.Term, registered: set[str]) -> None:
    """Due dates into the gradebook's assignments (nbgrader stores naive UTC), so that
    formgrader shows them and ``nbgrader collect --before-duedate`` uses them."""
    from nbgrader.api import Assignment

    changed = False
    for a in gb.db.query(Assignment).filter(Assignment.name.in_(sorted(registered))):
        due = term.due.get(a.name)
        want = due.astimezone(dt.UTC).replace(tzinfo=None) if due else None
        if a.duedate != want and due is not None:
            a.duedate = want
            changed = True
    if changed:
        gb.db.commit()


# --- writing ------------------------------------------------------------------------------


def columns(result: Export) -> list[str]:
    cols = list(FIXED)
    for aid in sorted(result.cells):
        cols += [f"{aid}:{c.grade_id}" for c in result.cells[aid]]
    return cols


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value):
    """``value`` as a spreadsheet shows it as text: one that starts like a formula (``=``,
    ``+``, ``-``, ``@``, tab, carriage return) gets a leading ``'``, so that a name, e-mail
    or reason someone else wrote (a roster, a student's exception message) is never run as
    a formula when the CSV is opened (OWASP's CSV injection advice). Numbers pass as they are.
    """
    if not isinstance(value, str) or not value.startswith(FORMULA_START):
        return value
    try:
        float(value)
    except ValueError:
        return "'" + value
    return value


def write_csv(course: Course, result: Export) -> None:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns(result), restval="")
    writer.writeheader()
    writer.writerows({k: spreadsheet_safe(v) for k, v in row.items()} for row in result.rows)
    course.write_private(course.grades_csv, out.getvalue())


CANVAS_HEAD = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")


def canvas_rows(result: Export, term: termmod.Term) -> tuple[list[str], list[list[str]]] | None:
    """Canvas's gradebook import: one row per roster student with a Canvas ID, one column
    per assignment (its score after the late penalty; blank: missing, or written answers not
    graded yet, which Canvas reads as "no change"). None without Canvas IDs in the roster."""
    people = [s for s in term.roster.values() if s.source == "canvas" and s.lms_id]
    if not people:
        return None
    aids = sorted(result.cells)
    head = list(CANVAS_HEAD) + [term.canvas_columns.get(a, a) for a in aids]
    points = ["    Points Possible", "", "", "", ""]
    points += [fmt(sum(c.points for c in result.cells[a])) for a in aids]
    by_key = {(r["student"], r["assignment"]): r for r in result.rows}
    body = [points]
    for s in people:
        sortable = f"{s.last_name}, {s.first_name}" if s.first_name else s.name
        line = [sortable, s.lms_id, s.sis_user_id, s.sis_login_id, s.section]
        for aid in aids:
            r = by_key.get((s.id, aid))
            blank = r is None or r["status"] == MISSING or NEEDS_GRADING in r["reason"]
            line.append("" if blank else r["score"])
        body.append(line)
    return head, body


def write_canvas(course: Course, result: Export, term: termmod.Term) -> bool:
    table = canvas_rows(result, term)
    if table is None:
        course.canvas_csv.unlink(missing_ok=True)  # never leave a stale one behind
        return False
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([spreadsheet_safe(v) for v in table[0]])
    writer.writerows([spreadsheet_safe(v) for v in line] for line in table[1])
    course.write_private(course.canvas_csv, out.getvalue())
    return True


def export(course: Course, prune: bool = False) -> list[dict]:
    """Write grades.csv, grades-canvas.csv, the plots and the feedback pages from the
    gradebook; the rows."""
    result = export_all(course, prune=prune)
    return result.rows


def export_all(course: Course, prune: bool = False) -> Export:
    """Every export from the gradebook: grades.csv, grades-canvas.csv, the plots, and the
    feedback pages (returned through nbgrader's exchange where they came in through it)."""
    from logreg_grader import feedback

    term = termmod.load(course.root)
    result = gather(course, term, prune=prune)
    write_csv(course, result)
    result.feedback = feedback.write_all(course, result)
    result.notes += result.feedback.notes
    if not write_canvas(course, result, term) and term.roster:
        result.notes.append(
            "grades-canvas.csv not written: the roster has no Canvas IDs (its ID column)"
        )
    if result.rows:
        plot(course, result.rows, result.cells)
    return result


# --- plots --------------------------------------------------------------------------------


def histogram(rows: list[dict]) -> dict:
    """The histogram of one assignment's rows: bins of one point centred on whole scores,
    the failed and missing submissions counted apart, n and the mean of the graded ones."""
    graded = [r for r in rows if r["status"] != MISSING and not r["status"].startswith("failed")]
    scores = [float(r["score"]) for r in graded]
    top = max((float(r["max_score"] or 0) for r in rows), default=0.0)
    last = int(math.floor(top + 0.5))
    whole = [min(last, int(math.floor(s + 0.5))) for s in scores]  # half a point rounds up
    counts = [whole.count(k) for k in range(last + 1)]
    return {
        "centres": list(range(len(counts))),
        "counts": counts,
        "edges": [k - 0.5 for k in range(len(counts) + 1)],
        "n": len(scores),
        "mean": sum(scores) / len(scores) if scores else None,
        "max": top,
        "failed": sum(r["status"].startswith("failed") for r in rows),
        "missing": sum(r["status"] == MISSING for r in rows),
    }


def pass_rates(rows: list[dict], cells: list[Cell], aid: str) -> list[tuple[str, int, int]]:
    """(test, passed, out of) for each autograded test of aid, over its graded submissions
    that were attempted (missing, failed and untouched notebooks say nothing about a test)."""
    counted = [
        r
        for r in rows
        if r["assignment"] == aid
        and r["status"] not in (MISSING, "not_attempted")
        and not r["status"].startswith("failed")
    ]
    out = []
    for c in cells:
        if c.kind == "code":
            key = f"{aid}:{c.grade_id}"
            passed = sum(float(r.get(key) or 0) >= c.points for r in counted)
            out.append((c.grade_id, passed, len(counted)))
    return out


def plot(course: Course, rows: list[dict], cells: dict[str, list[Cell]] | None = None) -> None:
    """Per assignment: the score histogram _build/grades/<id>.png and the share of students
    passing each test _build/grades/<id>-tests.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    course.plots.mkdir(parents=True, exist_ok=True)
    for aid in sorted({r["assignment"] for r in rows}):
        mine = [r for r in rows if r["assignment"] == aid]
        h = histogram(mine)
        fig, ax = plt.subplots(figsize=(6.4, 3.6))
        ax.bar(h["centres"], h["counts"], width=0.9, color="#0072B2", label="graded")
        extra = [("failed", h["failed"], "#D55E00"), ("missing", h["missing"], "#999999")]
        extra = [e for e in extra if e[1]]
        ticks = MaxNLocator(integer=True, nbins=12).tick_values(0, max(h["max"], 1))
        ticks = [t for t in ticks if 0 <= t <= h["max"]]
        labels = [f"{t:g}" for t in ticks]
        for i, (label, count, colour) in enumerate(extra):  # failed next to 0, then missing
            x = -2.0 - 1.2 * i
            ax.bar([x], [count], width=0.9, color=colour, hatch="//", label=label)
            ticks, labels = [x, *ticks], [label, *labels]
        if extra:
            ax.axvline(-1.0, color="#444444", linewidth=0.8, linestyle=":")
        ax.set_xticks(ticks, labels)
        mean = f"mean {h['mean']:.1f}" if h["mean"] is not None else "no graded submission"
        apart = ", ".join(f"{count} {label}" for label, count, _ in extra)
        ax.set(
            xlabel=f"score (out of {h['max']:g}; bars centred on whole points)",
            ylabel="students",
            title=f"{aid}: n = {h['n']} graded, {mean}" + (f" ({apart})" if apart else ""),
        )
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        fig.tight_layout()
        fig.savefig(course.plots / f"{aid}.png", dpi=110)
        plt.close(fig)
        rates = pass_rates(mine, (cells or {}).get(aid, []), aid)
        if not rates:
            continue
        fig, ax = plt.subplots(figsize=(6.4, 0.9 + 0.32 * len(rates)))
        names = [g for g, _, _ in rates]
        shares = [100 * p / n if n else 0.0 for _, p, n in rates]
        ax.barh(range(len(rates)), shares, color="#009E73")
        ax.set_yticks(range(len(rates)), names, fontsize=8)
        ax.invert_yaxis()  # notebook order, top to bottom
        for y, (share, (_, p, n)) in enumerate(zip(shares, rates, strict=True)):
            ax.text(min(share, 100) + 1, y, f"{p}/{n}", va="center", fontsize=8)
        ax.set_xlim(0, 112)
        n = rates[0][2]
        ax.set(xlabel="% of students passing", title=f"{aid}: each test (n = {n} attempted)")
        fig.tight_layout()
        fig.savefig(course.plots / f"{aid}-tests.png", dpi=110)
        plt.close(fig)


# --- the summary --------------------------------------------------------------------------


def summary(course: Course, done: Export, results, problems, skipped: int) -> str:
    """What a run did and what to look at: per assignment, then every problem found."""
    rows, notes, removed = done.rows, done.notes, done.removed
    # The table's columns stay as they are: benchmarks/grading.py reads them.
    head = ("assignment", "students", "mean", "max", "failed", "s/sub")
    lines = ["{:<24} {:>8} {:>7} {:>5} {:>6} {:>6}".format(*head)]
    apart = []
    for aid in sorted({r["assignment"] for r in rows}):
        mine = [r for r in rows if r["assignment"] == aid]
        handed = [r for r in mine if r["status"] != MISSING]
        mean = sum(float(r["score"]) for r in handed) / len(handed) if handed else 0.0
        nfail = sum(r["status"].startswith("failed") for r in mine)
        secs = [g.seconds for g in results if g.assignment == aid and g.seconds]
        per = f"{sum(secs) / len(secs):.2f}" if secs else "-"
        lines.append(
            f"{aid:<24} {len(mine):>8} {mean:>7.2f} {mine[0]['max_score']:>5} {nfail:>6} {per:>6}"
        )
        nmiss = len(mine) - len(handed)
        nlate = sum(int(r["days_late"] or 0) > 0 for r in mine)
        if nmiss or nlate:
            apart.append(f"  {aid}: {nmiss} missing (not in the mean), {nlate} late")
    if apart:
        lines.append("missing and late:")
        lines += apart
    failed = [g for g in results if g.status.failed]
    if failed:
        lines.append("submissions that could not be graded:")
        lines += [f"  {g.student}/{g.assignment}: {g.status.value}: {g.reason}" for g in failed]
    flagged = [
        g for g in results if not g.status.failed and g.status.value not in ("ok", "not_attempted")
    ]
    if flagged:
        lines.append("flagged submissions (scored; for a person to look at):")
        lines += [
            f"  {g.student}/{g.assignment}: {g.status.value}: {g.reason[:200]}" for g in flagged
        ]
    late = [r for r in rows if int(r["days_late"] or 0) > 0]
    if late:
        lines.append("late submissions:")
        lines += [
            f"  {r['student']}/{r['assignment']}: {r['days_late']} d, -{r['late_penalty']}"
            for r in late
        ]
    if problems:
        lines.append("found but not graded:")
        lines += [f"  {p}" for p in problems]
    if removed:
        lines.append(
            "in the gradebook, but their folder in submitted/ is gone (left out of grades.csv; "
            "`logreg-grades --prune` removes them from the gradebook):"
        )
        lines += [f"  {r}" for r in removed]
    lines += list(notes)
    if skipped:
        lines.append(f"{skipped} unchanged submissions kept as graded (--force regrades them)")
    lines.append(f"grades: {course.grades_csv}")
    if course.canvas_csv.exists():
        lines.append(f"grades for Canvas's gradebook import: {course.canvas_csv}")
    written = done.feedback
    if written is not None and written.leaked:
        lines.append("feedback pages NOT written: they would show a hidden test (a grader bug):")
        lines += [f"  {x}" for x in written.leaked]
    pages = f"{written.pages} pages" if written is not None else "pages"
    lines.append(f"feedback ({pages}): {course.root / 'feedback'}/<student>/<id>/<id>.html")
    if written is not None and written.released:
        lines.append(
            f"feedback returned through nbgrader's exchange: {len(written.released)} "
            "(students run `nbgrader fetch_feedback <id>`)"
        )
    lines.append(f"grade distributions: {course.plots}/<id>.png; each test: <id>-tests.png")
    return "\n".join(lines)


# --- logreg-grades ------------------------------------------------------------------------


def grades_main(argv=None) -> int:
    """``logreg-grades`` (``make grades``): grades.csv, plots, feedback pages and summary from
    the gradebook. Exit status 1 if a feedback page would show a hidden test (not written)."""
    from logreg_grader import cli, gradebook, release

    parser = argparse.ArgumentParser(
        prog="logreg-grades",
        description="Rebuild grades.csv, grades-canvas.csv, the plots, every feedback page and "
        "the summary from the gradebook (manual grades and comments included) and course.toml, "
        "without grading anything.",
    )
    parser.add_argument("--root", type=Path, default=release.ROOT, help="course root")
    parser.add_argument(
        "--prune",
        action="store_true",
        help="remove from the gradebook the submissions whose folder in submitted/ is gone",
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    cli._quiet()
    course = Course(args.root.resolve())
    folder = course.foreign_folder(("gradebook", "submitted", "feedback"))
    if folder is not None:
        print(
            f"grades: {folder} belongs to another user (`sudo make grade` makes it root's, "
            "0700): run this as that user too (`sudo make grades`)",
            file=sys.stderr,
        )
        return 2
    try:
        termmod.load(course.root)
        available = course.assignments()
    except (termmod.TermError, release.SourceError) as err:
        print(f"grades: {err}", file=sys.stderr)
        return 2
    release.prepare_environment()  # nbgrader runs alembic when it creates a gradebook
    gradebook.prepare(gradebook.url(course.root))
    _, problems = cli.discover(course, available, None)
    with course.lock():
        result = export_all(course, prune=args.prune)
    text = summary(course, result, [], problems, 0)
    print(text)
    print(f"exported {len(result.rows)} rows in {time.perf_counter() - start:.1f} s")
    return 1 if result.feedback and result.feedback.leaked else 0
