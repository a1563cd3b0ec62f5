"""The term: roster, due dates, extensions and the late policy, read from ``course.toml``.

``course.toml`` sits at the course root, next to ``nbgrader_config.py``; a course team edits it
(every key is optional; without the file there is no roster, no due date and no penalty)::

    [course]
    timezone = "Europe/Zurich"      # for due dates and LMS times written without an offset

    [roster]
    csv = "roster.csv"              # the LMS's export, relative to the course root
    id = "SIS Login ID"             # optional: the column that gives the student id

    [late]
    penalty_per_day = 10            # percent of the assignment's points per started day late
    max_penalty = 30                # percent: the cap
    grace_minutes = 5               # a submission this late counts as on time

    [assignments.04_gradients]
    due = 2025-03-14T23:59:00       # a TOML date-time; without an offset, in [course] timezone
    canvas_column = "Gradients (4321)"   # optional: the Canvas gradebook column to import into

    [extensions.ann]                # quote ids with other characters: [extensions."a.b@uni.ch"]
    04_gradients = "3d"             # "3d", "36h", "2d12h", or a new due date 2025-03-18T12:00:00

The roster CSV is read as the LMS exports it: Canvas's gradebook export (``Student``, ``ID``,
``SIS User ID``, ``SIS Login ID``, ``Section``; its ``Points Possible`` row and the test student
are skipped), Moodle's participants or grades export (``First name``, ``Last name`` or
``Surname``, ``Email address``, ``ID number``, ``Username``), or a plain ``id,name,email``.
The student id (the folder in ``submitted/``) comes from the column named by ``id`` in
``[roster]``, else from the first filled of: Canvas ``SIS Login ID``, ``SIS User ID``, ``ID``;
Moodle ``Username``, ``Email address``, ``ID number``; plain ``id``.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

CONFIG = "course.toml"
UTC = dt.UTC
DAY = dt.timedelta(days=1)
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$")
# Where the student id comes from, by format, first filled column first (Canvas's "ID" is its
# user id, the number in the names of its submission files: the last resort).
ID_COLUMNS = {
    "canvas": ("sis login id", "sis user id", "id"),
    "moodle": ("username", "email address", "id number"),
    "plain": ("id",),
}


class TermError(ValueError):
    """An invalid course.toml or roster CSV (the message names the file, key or row)."""


@dataclass(frozen=True)
class Student:
    id: str
    name: str = ""
    email: str = ""
    first_name: str = ""
    last_name: str = ""
    lms_id: str = ""  # Canvas: the user id ("ID"); Moodle: "ID number"
    sis_user_id: str = ""
    sis_login_id: str = ""
    section: str = ""
    source: str = ""  # the roster's format: "canvas", "moodle" or "plain"


@dataclass(frozen=True)
class LatePolicy:
    penalty_per_day: float = 0.0  # percent of the assignment's maximum
    max_penalty: float = 100.0  # percent
    grace: dt.timedelta = dt.timedelta(0)

    def fraction(self, days: int) -> float:
        """The share of the maximum score taken off for ``days`` started days late."""
        return min(self.max_penalty, self.penalty_per_day * days) / 100.0


@dataclass(frozen=True)
class Lateness:
    """How late one submission is, and what it costs (a fraction of the maximum score)."""

    days: int = 0  # started days late (0: on time)
    fraction: float = 0.0
    note: str = ""  # for the reason column ("" when on time and nothing to say)


@dataclass
class Term:
    root: Path
    timezone: dt.tzinfo = UTC
    roster: dict[str, Student] = field(default_factory=dict)  # id -> Student, in file order
    roster_file: Path | None = None
    due: dict[str, dt.datetime] = field(default_factory=dict)  # aid -> aware datetime
    canvas_columns: dict[str, str] = field(default_factory=dict)
    extensions: dict[tuple[str, str], dt.timedelta | dt.datetime] = field(default_factory=dict)
    late: LatePolicy = field(default_factory=LatePolicy)
    skipped_rows: list[str] = field(default_factory=list)  # roster rows left out, and why

    def due_for(self, student: str, aid: str) -> dt.datetime | None:
        """The due date of ``aid`` for ``student``, extension included (None: no due date)."""
        ext = self.extensions.get((student, aid))
        if isinstance(ext, dt.datetime):
            return ext
        due = self.due.get(aid)
        if due is None:
            return None
        return due + ext if ext is not None else due

    def lateness(
        self, student: str, aid: str, submitted: dt.datetime | None, lms_late: str = ""
    ) -> Lateness:
        """How late a submission handed in at ``submitted`` (aware; None when unknown) is.

        ``lms_late`` names an LMS that marked the submission late (Canvas's ``LATE_``): when
        its time is unknown, that costs one day's penalty; when the time is known, the course's
        due date decides and a disagreement is noted.
        """
        due = self.due_for(student, aid)
        if submitted is None or due is None:
            if not lms_late:
                return Lateness()
            why = "its time is unknown" if submitted is None else "no due date in course.toml"
            return Lateness(
                1,
                self.late.fraction(1),
                f"marked late by {lms_late} and {why}: one day's penalty",
            )
        over = submitted - due - self.late.grace
        if over <= dt.timedelta(0):
            note = f"marked late by {lms_late}, on time by course.toml" if lms_late else ""
            return Lateness(0, 0.0, note)
        days = math.ceil(over / DAY)
        return Lateness(days, self.late.fraction(days), f"{_late_text(submitted - due)} late")

    def local(self, when: dt.datetime) -> str:
        """``when`` in the course's time zone, to the minute, with its offset."""
        return when.astimezone(self.timezone).strftime("%Y-%m-%d %H:%M %z")

    def parse_time(self, value, where: str) -> dt.datetime:
        """An aware datetime from a TOML value or a text (ISO 8601 or Moodle's format)."""
        return parse_time(value, self.timezone, where)

    def find(self, key: str) -> Student | None:
        """The roster student whose id, LMS id, e-mail or name is ``key`` (None if not one)."""
        if key in self.roster:
            return self.roster[key]
        folded = _fold(key)
        for attr in ("lms_id", "sis_login_id", "sis_user_id", "email"):
            hits = [s for s in self.roster.values() if getattr(s, attr) and getattr(s, attr) == key]
            if len(hits) == 1:
                return hits[0]
        hits = [s for s in self.roster.values() if s.name and _fold(s.name) == folded]
        return hits[0] if len(hits) == 1 else None


def _fold(text: str) -> str:
    return " ".join(str(text).split()).casefold()


def _late_text(over: dt.timedelta) -> str:
    minutes = int(over.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    parts = [f"{days} d"] if days else []
    if hours:
        parts.append(f"{hours} h")
    if not days and (mins or not hours):
        parts.append(f"{max(mins, 1)} min")
    return " ".join(parts)


# --- reading course.toml ---------------------------------------------------------------------


def load(root: Path) -> Term:
    """The term of the course in ``root`` (an empty one when there is no course.toml)."""
    root = Path(root)
    term = Term(root)
    path = root / CONFIG
    if not path.is_file():
        return term
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise TermError(f"{path}: not valid TOML: {err}") from err
    known = {"course", "roster", "late", "assignments", "extensions"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise TermError(f"{path}: unknown section(s) {unknown}; expected {sorted(known)}")
    course = _table(data, "course", path)
    if "timezone" in course:
        try:
            term.timezone = ZoneInfo(str(course["timezone"]))
        except (ZoneInfoNotFoundError, ValueError) as err:
            raise TermError(
                f"{path}: [course] timezone = {course['timezone']!r} is not a time zone name "
                "(expected e.g. 'Europe/Zurich' or 'UTC')"
            ) from err
    late = _table(data, "late", path)
    try:
        term.late = LatePolicy(
            float(late.get("penalty_per_day", 0)),
            float(late.get("max_penalty", 100)),
            dt.timedelta(minutes=float(late.get("grace_minutes", 0))),
        )
    except (TypeError, ValueError) as err:
        raise TermError(f"{path}: [late] expects numbers: {err}") from err
    if not (0 <= term.late.penalty_per_day <= 100 and 0 <= term.late.max_penalty <= 100):
        raise TermError(f"{path}: [late] penalty_per_day and max_penalty are percents (0-100)")
    for aid, spec in _table(data, "assignments", path).items():
        if not isinstance(spec, dict):
            raise TermError(f"{path}: [assignments.{aid}] must be a table (due = ...)")
        if "due" in spec:
            term.due[aid] = term.parse_time(spec["due"], f"{path}: [assignments.{aid}] due")
        if "canvas_column" in spec:
            term.canvas_columns[aid] = str(spec["canvas_column"])
    for student, table in _table(data, "extensions", path).items():
        if not isinstance(table, dict):
            raise TermError(f'{path}: [extensions.{student}] must be a table (04_x = "2d")')
        for aid, value in table.items():
            where = f"{path}: [extensions.{student}] {aid}"
            term.extensions[(student, aid)] = _extension(value, term, where)
    roster = _table(data, "roster", path)
    if "csv" in roster:
        term.roster_file = (root / str(roster["csv"])).resolve()
        students, term.skipped_rows = read_roster(term.roster_file, roster.get("id"))
        term.roster = {s.id: s for s in students}
    unknown_ext = sorted({s for s, _ in term.extensions} - set(term.roster)) if term.roster else []
    if unknown_ext:
        raise TermError(f"{path}: [extensions] for students not on the roster: {unknown_ext}")
    return term


def _table(data: dict, name: str, path: Path) -> dict:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise TermError(f"{path}: {name} must be a table ([{name}])")
    return value


_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*d)?\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*$")


def _extension(value, term: Term, where: str) -> dt.timedelta | dt.datetime:
    if isinstance(value, str) and not re.match(r"^\s*\d{4}-", value):
        m = _DURATION.match(value)
        if not m or not (m.group(1) or m.group(2)):
            raise TermError(
                f"{where} = {value!r}: expected a duration such as '3d', '36h' or '2d12h', "
                "or a new due date such as 2025-03-18T12:00:00"
            )
        return dt.timedelta(days=float(m.group(1) or 0), hours=float(m.group(2) or 0))
    return term.parse_time(value, where)


# Moodle writes times as its users read them; these are its English formats.
_TEXT_FORMATS = (
    "%A, %d %B %Y, %I:%M %p",  # Friday, 14 March 2025, 11:58 PM (grading worksheet)
    "%A, %d %B %Y, %H:%M",
    "%d %B %Y, %I:%M %p",
    "%d %B %Y, %H:%M",
    "%Y-%m-%d %H:%M:%S.%f",
)


def parse_time(value, tz: dt.tzinfo, where: str) -> dt.datetime:
    """An aware datetime from ``value``: a datetime/date (TOML), ISO 8601 text, nbgrader's
    ``2025-03-14 22:58:00.000000 UTC``, or Moodle's ``Friday, 14 March 2025, 11:58 PM``.
    A time without an offset is in ``tz``; a bare date means the end of that day."""
    if isinstance(value, dt.datetime):
        when = value
    elif isinstance(value, dt.date):
        when = dt.datetime.combine(value, dt.time(23, 59, 59))
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        if text.endswith(" UTC"):
            text, tz = text[:-4], UTC
        when = None
        try:
            when = dt.datetime.fromisoformat(text)
            if re.fullmatch(r"\d{4}-\d\d-\d\d", text):
                when = when.replace(hour=23, minute=59, second=59)
        except ValueError:
            for fmt in _TEXT_FORMATS:
                try:
                    when = dt.datetime.strptime(text, fmt)
                    break
                except ValueError:
                    continue
        if when is None:
            raise TermError(
                f"{where}: {value!r} is not a time (expected e.g. 2025-03-14T23:59:00+01:00 or "
                "'Friday, 14 March 2025, 11:58 PM')"
            )
    else:
        raise TermError(f"{where}: {value!r} is not a date or time")
    if when.tzinfo is None:
        when = when.replace(tzinfo=tz)
    return when


# --- reading the roster CSV -------------------------------------------------------------------


def read_roster(path: Path, id_column: str | None = None) -> tuple[list[Student], list[str]]:
    """(students, rows skipped with why) from an LMS's roster or gradebook export."""
    if not path.is_file():
        raise TermError(f"roster: {path} does not exist (set [roster] csv in {CONFIG})")
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    return parse_roster(text, str(path), id_column)


def parse_roster(
    text: str, where: str = "roster", id_column: str | None = None
) -> tuple[list[Student], list[str]]:
    first = text.split("\n", 1)[0]
    delimiter = max(",;\t", key=first.count)
    rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    if not rows:
        raise TermError(f"{where}: empty file; expected a header row")
    header = [h.strip() for h in rows[0]]
    col = {h.casefold(): i for i, h in reversed(list(enumerate(header)))}

    def get(row: list[str], *names: str) -> str:
        for name in names:
            i = col.get(name)
            if i is not None and i < len(row) and row[i].strip():
                return row[i].strip()
        return ""

    canvas = "student" in col and "sis login id" in col
    moodle = "first name" in col and ("last name" in col or "surname" in col)
    plain = "id" in col and "name" in col
    if not (canvas or moodle or plain):
        raise TermError(
            f"{where}: columns {header[:8]} are neither Canvas's (Student, ID, SIS User ID, "
            "SIS Login ID), Moodle's (First name, Last name, Email address) nor id,name,email"
        )
    if id_column and id_column.casefold() not in col:
        raise TermError(f"{where}: no column {id_column!r} for the student id; it has {header}")
    kind = "canvas" if canvas else "moodle" if moodle else "plain"
    order = (id_column.casefold(),) if id_column else ID_COLUMNS[kind]
    students, skipped, seen = [], [], {}
    for n, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        label = get(row, "student", "name")
        if canvas and label.startswith("Points Possible"):
            continue  # Canvas's second row holds each column's maximum
        if canvas and label == "Student, Test":
            skipped.append(f"row {n}: Canvas's test student")
            continue
        if canvas:
            last, _, first = label.partition(",")
            first, last = first.strip(), last.strip()
            name = f"{first} {last}".strip() if first else label
        elif moodle:
            first = get(row, "first name")
            last = get(row, "last name", "surname")
            name = f"{first} {last}".strip()
        else:
            name = label
            first, _, last = name.rpartition(" ")
        sid = get(row, *order)
        if not sid:
            skipped.append(f"row {n} ({name or 'no name'}): no student id in {list(order)}")
            continue
        if not ID_PATTERN.match(sid):
            raise TermError(
                f"{where}: row {n} ({name}): student id {sid!r} must be letters, digits and "
                "._@+- (it names a folder in submitted/)"
            )
        if sid in seen:
            raise TermError(f"{where}: row {n}: student id {sid!r} already on row {seen[sid]}")
        seen[sid] = n
        email = get(row, "email address", "email", "e-mail")
        login = get(row, "sis login id")
        if not email and "@" in login:
            email = login
        students.append(
            Student(
                id=sid,
                name=name,
                email=email,
                first_name=first,
                last_name=last,
                lms_id=get(row, "id") if canvas else get(row, "id number"),
                sis_user_id=get(row, "sis user id"),
                sis_login_id=login,
                section=get(row, "section"),
                source=kind,
            )
        )
    return students, skipped
