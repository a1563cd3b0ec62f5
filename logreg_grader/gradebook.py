"""Where the gradebook lives, and how several grading processes share it safely.

nbgrader keeps every grade in one database, named by an SQLAlchemy URL:

- by default the SQLite file <course root>/gradebook/gradebook.db (one machine);
- set ``LOGREG_GRADEBOOK_URL`` (e.g. ``postgresql://grader:secret@db.example.org/logreg``) to
  share one PostgreSQL gradebook between grading workers on one or several machines
  (``postgresql://`` is read as ``postgresql+psycopg2://``: psycopg2 comes with the ``grader``
  extra, while SQLAlchemy 2.1 would otherwise look for psycopg 3).

With ``make grade JOBS=N`` the workers hand their results to the main process, which records
each submission (one short transaction); other processes may still use the gradebook at the
same time: formgrader, nbgrader's own commands, other grading machines. Every write is short
(a few rows, no notebook runs inside it), so the only risk is SQLite's default 5 s lock wait,
which a busy machine can exceed ("database is locked"). Hence, in every grading process:

- SQLite connections wait up to ``BUSY_TIMEOUT_S`` for a lock (``PRAGMA busy_timeout``, set
  on each new connection by an SQLAlchemy ``connect`` hook, so the URL stays a plain file URL
  that ``nbgrader db upgrade`` and formgrader understand);
- the SQLite file is switched to write-ahead logging once (``PRAGMA journal_mode=WAL``,
  persistent): readers never block the writer and the writer never blocks readers;
- registering the assignments (``generate_assignment``, which rewrites shared rows) runs under
  one lock per gradebook: a PostgreSQL advisory lock, or a file lock next to the SQLite file,
  so several machines can start ``make grade`` at the same moment.

PostgreSQL needs nothing else: each submission writes only its own rows.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

ENV = "LOGREG_GRADEBOOK_URL"
BUSY_TIMEOUT_S = 300
_LOCK_KEY = 0x6C6F67726567  # "logreg": the advisory lock that serialises registration
_HOOKED = False


def url(root: Path) -> str:
    """The gradebook of the course in ``root``: $LOGREG_GRADEBOOK_URL, else the SQLite file."""
    configured = os.environ.get(ENV, "").strip()
    if configured:
        return url_for(configured)
    folder = Path(root) / "gradebook"
    folder.mkdir(parents=True, exist_ok=True)  # SQLite does not create folders
    return f"sqlite:///{folder / 'gradebook.db'}"


def url_for(db_url: str) -> str:
    """db_url with ``postgresql://`` (or ``postgres://``) made explicit: the psycopg2 driver."""
    return re.sub(r"^postgres(ql)?://", "postgresql+psycopg2://", db_url)


def is_sqlite(db_url: str) -> bool:
    return db_url.startswith("sqlite")


def redacted(db_url: str) -> str:
    """The URL with its password hidden, for messages."""
    from sqlalchemy.engine import make_url

    return make_url(db_url).render_as_string(hide_password=True)


def install_hooks() -> None:
    """Make every SQLite connection of this process wait for locks, and commit without an
    fsync under WAL (synchronous=NORMAL: a killed process loses nothing; a power cut may lose
    the last results, which have no status row then and are graded again). Idempotent."""
    global _HOOKED
    if _HOOKED:
        return
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "connect")
    def _sqlite_settings(dbapi_connection, _record):
        if isinstance(dbapi_connection, sqlite3.Connection):
            dbapi_connection.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            dbapi_connection.execute("PRAGMA synchronous = NORMAL")

    _HOOKED = True


def prepare(db_url: str) -> None:
    """Check that the gradebook can be reached; put an SQLite file in WAL mode.

    Raises SystemExit with a readable message when the database cannot be opened.
    """
    install_hooks()
    if is_sqlite(db_url):
        path = _sqlite_path(db_url)
        if path is None:  # in-memory database: nothing to share
            return
        with contextlib.closing(sqlite3.connect(path, timeout=BUSY_TIMEOUT_S)) as con:
            con.execute("PRAGMA journal_mode=WAL")
        return
    from sqlalchemy import create_engine, text

    engine = create_engine(db_url)
    try:
        with engine.connect() as con:
            con.execute(text("SELECT 1"))
    except Exception as err:  # noqa: BLE001 - any driver error becomes one clear message
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SystemExit(f"grade: cannot open the gradebook {redacted(db_url)}: {first}") from err
    finally:
        engine.dispose()


@contextlib.contextmanager
def exclusive(db_url: str) -> Iterator[None]:
    """Hold the gradebook's registration lock (one holder across processes and machines)."""
    if is_sqlite(db_url):
        path = _sqlite_path(db_url)
        if path is None:
            yield
            return
        with open(path + ".register-lock", "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    if not db_url.startswith("postgresql"):
        yield
        return
    from sqlalchemy import create_engine, text

    engine = create_engine(db_url)
    try:
        with engine.connect() as con:
            con.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _LOCK_KEY})
            con.commit()
            try:
                yield
            finally:
                con.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _LOCK_KEY})
                con.commit()
    finally:
        engine.dispose()


def nbgrader_api(root: Path):
    """release.nbgrader_api for ``root``, pointed at this course's gradebook URL."""
    from logreg_grader import release

    install_hooks()
    api = release.nbgrader_api(root, root)
    api.coursedir.db_url = url(root)
    return api


def _sqlite_path(db_url: str) -> str | None:
    from sqlalchemy.engine import make_url

    database = make_url(db_url).database
    return None if database in (None, "", ":memory:") else database


# --- the grader's own tables (next to nbgrader's, in the same database) ---------------------

_DDL = (
    "CREATE TABLE IF NOT EXISTS logreg_grader_status ("
    " assignment VARCHAR(128) NOT NULL, student VARCHAR(128) NOT NULL,"
    " status VARCHAR(64) NOT NULL, reason TEXT, master_hash VARCHAR(64),"
    " submission_hash VARCHAR(64), graded_at VARCHAR(40), seconds FLOAT,"
    " origin VARCHAR(1024), late_mark VARCHAR(64),"
    " PRIMARY KEY (assignment, student))",
    "CREATE TABLE IF NOT EXISTS logreg_grader_master ("
    " assignment VARCHAR(128) PRIMARY KEY, hash VARCHAR(64) NOT NULL, source_hash VARCHAR(64))",
)


# Columns added after the first release of these tables: (table, column, SQL type).
_ADDED = (
    ("logreg_grader_master", "source_hash", "VARCHAR(64)"),
    ("logreg_grader_status", "origin", "VARCHAR(1024)"),  # host:course root that graded it
    ("logreg_grader_status", "late_mark", "VARCHAR(64)"),  # the LMS that marked it late
)


def ensure_tables(gb) -> None:
    """Create the status and registration tables if this gradebook has none yet."""
    from sqlalchemy import text

    for ddl in _DDL:
        gb.db.execute(text(ddl))
    gb.db.commit()
    for table, column, kind in _ADDED:  # a gradebook from before these columns were kept
        try:
            gb.db.execute(text(f"SELECT {column} FROM {table} WHERE 1 = 0"))
        except Exception:  # noqa: BLE001 - the column is missing: add it
            gb.db.rollback()
            gb.db.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {kind}"))
            gb.db.commit()


def registered(gb) -> dict[str, tuple[str, str]]:
    """assignment -> (master notebook hash, MyST source hash) as last registered."""
    from sqlalchemy import text

    rows = gb.db.execute(text("SELECT assignment, hash, source_hash FROM logreg_grader_master"))
    return {r[0]: (r[1], r[2]) for r in rows}


def set_registered(gb, assignment: str, digest: str, source_digest: str) -> None:
    from sqlalchemy import text

    gb.db.execute(
        text(
            "INSERT INTO logreg_grader_master (assignment, hash, source_hash) VALUES (:a, :h, :s)"
            " ON CONFLICT (assignment) DO UPDATE SET hash = excluded.hash,"
            " source_hash = excluded.source_hash"
        ),
        {"a": assignment, "h": digest, "s": source_digest},
    )
    gb.db.commit()


def forget(gb, aid: str, student: str) -> None:
    """Remove one submission from the gradebook: its grades, comments and status row."""
    from nbgrader.api import MissingEntry
    from sqlalchemy import text

    try:
        gb.remove_submission(aid, student)
    except MissingEntry:
        pass
    gb.db.execute(
        text("DELETE FROM logreg_grader_status WHERE assignment = :a AND student = :s"),
        {"a": aid, "s": student},
    )
    gb.db.commit()


def statuses(gb) -> dict[tuple[str, str], dict]:
    """(assignment, student) -> the grader's status row."""
    from sqlalchemy import text

    rows = gb.db.execute(
        text(
            "SELECT assignment, student, status, reason, master_hash,"
            " submission_hash, graded_at, seconds, origin, late_mark FROM logreg_grader_status"
        )
    )
    keys = (
        "status",
        "reason",
        "master_hash",
        "submission_hash",
        "graded_at",
        "seconds",
        "origin",
        "late_mark",
    )
    return {(r[0], r[1]): dict(zip(keys, r[2:], strict=True)) for r in rows}


def submission_times(gb) -> dict[tuple[str, str], object]:
    """(assignment, student) -> the submission's timestamp in the gradebook (naive UTC)."""
    from nbgrader.api import Assignment, SubmittedAssignment

    rows = gb.db.query(
        Assignment.name, SubmittedAssignment.student_id, SubmittedAssignment.timestamp
    ).join(Assignment, SubmittedAssignment.assignment_id == Assignment.id)
    return {(a, s): t for a, s, t in rows}


def moved(graded, prev: dict, stored) -> bool:
    """Whether an unchanged notebook now has another time or late mark than recorded."""
    from nbgrader.utils import parse_utc

    now = parse_utc(graded.timestamp) if graded.timestamp else None
    if isinstance(stored, str):
        stored = parse_utc(stored)
    return now != stored or (prev.get("late_mark") or "") != graded.late_mark


def retime(gb, graded_list) -> None:
    """Record the new time and late mark of unchanged submissions (nothing is regraded)."""
    from nbgrader.utils import parse_utc
    from sqlalchemy import text

    for graded in graded_list:
        sub = gb.find_submission(graded.assignment, graded.student)
        sub.timestamp = parse_utc(graded.timestamp) if graded.timestamp else None
        gb.db.execute(
            text(
                "UPDATE logreg_grader_status SET late_mark = :lm"
                " WHERE assignment = :a AND student = :s"
            ),
            {"lm": graded.late_mark, "a": graded.assignment, "s": graded.student},
        )
    gb.db.commit()


def names_of(student) -> tuple[str, str]:
    """(first, last) of a roster student, as formgrader shows them ("last, first"): the
    roster's own columns when it has them, else its one name split at a comma ("Smith, Ann")
    or at the last space ("Ann Smith"); ("", "") when the roster gives no name."""
    if student.first_name or student.last_name:
        return student.first_name, student.last_name
    name = student.name.strip()
    if "," in name:
        last, first = (part.strip() for part in name.split(",", 1))
        return first, last
    first, _, last = name.rpartition(" ")
    return (first, last) if first else (name, "")


def sync_roster(gb, roster) -> int:
    """Every roster student in the gradebook with their names and e-mail (one commit), so that
    formgrader lists people by name; the number of students added or changed."""
    from nbgrader.api import Student

    known = {s.id: s for s in gb.db.query(Student).all()}
    changed = 0
    for sid, person in roster.items():
        first, last = names_of(person)
        wanted = {
            "first_name": first or None,
            "last_name": last or None,
            "email": person.email or None,
            "lms_user_id": person.lms_id or None,
        }
        row = known.get(sid)
        if row is None:
            gb.db.add(Student(id=sid, **wanted))
            changed += 1
        elif any(getattr(row, k) != v for k, v in wanted.items()):
            for k, v in wanted.items():
                setattr(row, k, v)
            changed += 1
    if changed:
        gb.db.commit()
    return changed


def record(gb, graded) -> None:
    """Write one graded submission (scores, timestamp, status) in one transaction.

    A first submission's empty rows (nbgrader's ``add_submission``: one grade and comment per
    cell) are committed just before; killed in between, the submission has no status row and
    the next run grades it again.

    Manual grades of written answers are kept; a written answer without one still needs
    manual grading.
    """
    import datetime

    from nbgrader.api import Grade, MissingEntry, Student, SubmittedNotebook
    from nbgrader.utils import parse_utc
    from sqlalchemy import text

    aid, student = graded.assignment, graded.student
    if gb.db.query(Student).filter(Student.id == student).first() is None:
        gb.db.add(Student(id=student))
        gb.db.flush()
    try:
        sub = gb.find_submission(aid, student)
    except MissingEntry:
        sub = gb.add_submission(aid, student)
    sub.timestamp = parse_utc(graded.timestamp) if graded.timestamp else None
    scores = {t.grade_id: t.score for t in graded.tests}
    # Three queries, not two per grade (lazy loading of Grade.cell and Grade.name cost more
    # than half of a 17 ms store).
    grades = (
        gb.db.query(Grade)
        .join(SubmittedNotebook, Grade.notebook_id == SubmittedNotebook.id)
        .filter(SubmittedNotebook.assignment_id == sub.id)
        .all()
    )
    cells = _graded_cells(gb, [g.cell_id for g in grades])
    for g in grades:
        name, kind = cells.get(g.cell_id, (None, None))
        if kind == "code":
            g.auto_score = float(scores.get(name, 0.0))
            g.needs_manual_grade = False
        else:
            g.needs_manual_grade = g.manual_score is None
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    gb.db.execute(
        text(
            "INSERT INTO logreg_grader_status (assignment, student, status, reason, master_hash,"
            " submission_hash, graded_at, seconds, origin, late_mark)"
            " VALUES (:a, :s, :st, :r, :mh, :sh, :g, :sec, :o, :lm)"
            " ON CONFLICT (assignment, student) DO UPDATE SET status = excluded.status,"
            " reason = excluded.reason, master_hash = excluded.master_hash,"
            " submission_hash = excluded.submission_hash, graded_at = excluded.graded_at,"
            " seconds = excluded.seconds, origin = excluded.origin,"
            " late_mark = excluded.late_mark"
        ),
        {
            "a": aid,
            "s": student,
            "st": graded.status.value,
            "r": graded.reason,
            "mh": graded.master_hash,
            "sh": graded.submission_hash,
            "g": now,
            "sec": float(graded.seconds),
            "o": graded.origin,
            "lm": graded.late_mark,
        },
    )
    gb.db.commit()


def _graded_cells(gb, cell_ids: list[str]) -> dict[str, tuple[str, str]]:
    """``(name, cell_type)`` of each grade or task cell in ``cell_ids`` (cell_type "code"
    or "markdown")."""
    from nbgrader.api import GradeCell, TaskCell

    cells: dict[str, tuple[str, str]] = {}
    for model in (GradeCell, TaskCell):  # joined inheritance: name is base_cell's
        rows = (
            gb.db.query(model.id, model.name, model.cell_type).filter(model.id.in_(cell_ids)).all()
        )
        cells.update({cid: (name, kind) for cid, name, kind in rows})
    return cells


def ensure_versioned(db_url: str) -> str | None:
    """Stamp a gradebook that has nbgrader's tables but no ``alembic_version``.

    nbgrader creates its tables, then asks the ``alembic`` command for the head revision to
    record; where ``alembic`` is not on PATH that second step fails and the gradebook is left
    unversioned, which ``nbgrader db upgrade`` refuses. Its tables were created by the
    installed nbgrader, so its head revision is the right stamp. Returns the revision written,
    or None when nothing had to be done.
    """
    from nbgrader.api import get_alembic_version
    from sqlalchemy import create_engine, inspect, text

    engine = create_engine(db_url)
    try:
        tables = set(inspect(engine).get_table_names())
        if "alembic_version" in tables or "assignment" not in tables:
            return None
        head = get_alembic_version()
        with engine.begin() as con:
            con.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
            con.execute(text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": head})
        return head
    finally:
        engine.dispose()
