"""The term without grading anything (seconds): course.toml, rosters as LMSs export them,
lateness, reading Canvas and Moodle downloads, collection into submitted/, misplaced
notebooks, the reason column and the plots' numbers."""

import datetime as dt
import io
import json
import os
import sys
import zipfile
from pathlib import Path

import pytest

from logreg_grader import cli, collect, report, term
from logreg_grader.course import Course
from logreg_grader.status import Graded, TestResult

ZURICH = "Europe/Zurich"

CANVAS_ROSTER = """\
Student,ID,SIS User ID,SIS Login ID,Section,Exercise 2 (111)
    Points Possible,,,,,14
"Lee, Ann",1001,S1001,ann,Group A,
"Brown, Bob",1002,S1002,bob@uni.example,Group B,
"Student, Test",9999,,,Group A,
"Nobody, Nemo",1004,,,Group A,
"""

MOODLE_ROSTER = (
    "\ufeffFirst name;Surname;ID number;Email address;Username\n"
    "Ann;Lee;77;ann.lee@uni.example;alee\n"
    "Bob;Brown;;bob@uni.example;\n"
)


def _course(tmp_path, toml: str, roster: str | None = CANVAS_ROSTER) -> Course:
    (tmp_path / "course.toml").write_text(toml, encoding="utf-8")
    if roster is not None:
        (tmp_path / "roster.csv").write_text(roster, encoding="utf-8")
    (tmp_path / "solutions" / "04_gradients").mkdir(parents=True)
    (tmp_path / "solutions" / "04_gradients" / "04_gradients.md").write_text("x")
    return Course(tmp_path)


TOML = f"""
[course]
timezone = "{ZURICH}"
[roster]
csv = "roster.csv"
[late]
penalty_per_day = 10
max_penalty = 25
grace_minutes = 5
[assignments.04_gradients]
due = 2025-03-14T23:59:00
[extensions.ann]
04_gradients = "2d12h"
[extensions."bob@uni.example"]
04_gradients = 2025-03-20T12:00:00+01:00
"""


# --- roster -----------------------------------------------------------------------------------


def test_canvas_roster_skips_points_possible_and_the_test_student():
    students, skipped = term.parse_roster(CANVAS_ROSTER)
    # Nemo has no SIS login or SIS id: the Canvas user id is the last resort.
    assert [s.id for s in students] == ["ann", "bob@uni.example", "1004"]
    ann, bob, _ = students
    assert (ann.name, ann.first_name, ann.last_name) == ("Ann Lee", "Ann", "Lee")
    assert (ann.lms_id, ann.sis_user_id, ann.section) == ("1001", "S1001", "Group A")
    assert bob.email == "bob@uni.example"  # Canvas has no e-mail column: the login is one
    assert skipped == ["row 5: Canvas's test student"]
    _, skipped = term.parse_roster("id,name,email\n,Zoe Zed,z@uni.example\n")
    assert skipped == ["row 2 (Zoe Zed): no student id in ['id']"]


def test_canvas_roster_can_take_the_id_from_another_column():
    students, _ = term.parse_roster(CANVAS_ROSTER, id_column="ID")
    assert [s.id for s in students] == ["1001", "1002", "1004"]


def test_moodle_roster_with_semicolons_and_bom(tmp_path):
    path = tmp_path / "participants.csv"
    path.write_text(MOODLE_ROSTER, encoding="utf-8")
    students, _ = term.read_roster(path)
    assert [(s.id, s.name, s.email) for s in students] == [
        ("alee", "Ann Lee", "ann.lee@uni.example"),
        ("bob@uni.example", "Bob Brown", "bob@uni.example"),  # no username: the e-mail
    ]
    assert students[0].lms_id == "77" and students[0].source == "moodle"
    # A Moodle roster has no Canvas IDs: no grades-canvas.csv from it.
    done = report.Export(rows=[], cells={"04_gradients": []})
    assert report.canvas_rows(done, term.Term(tmp_path, roster={s.id: s for s in students})) is None


@pytest.mark.parametrize(
    "text, match",
    [
        ("Name,Mail\nAnn,a@b\n", "neither Canvas"),
        ("id,name,email\nann lee,Ann Lee,a@b\n", "letters, digits"),
        ("id,name,email\nann,Ann,a@b\nann,Ann Two,c@d\n", "already on row 2"),
    ],
)
def test_bad_rosters_say_which_row_and_what_is_expected(text, match):
    with pytest.raises(term.TermError, match=match):
        term.parse_roster(text)


# --- course.toml and lateness -----------------------------------------------------------------


def test_due_dates_extensions_and_the_capped_penalty(tmp_path):
    t = term.load(_course(tmp_path, TOML).root)
    zone = dt.timezone(dt.timedelta(hours=1))  # Zurich in March
    due = dt.datetime(2025, 3, 14, 23, 59, tzinfo=zone)
    assert t.due["04_gradients"] == due
    assert t.due_for("ann", "04_gradients") == due + dt.timedelta(days=2, hours=12)
    assert t.due_for("bob@uni.example", "04_gradients") == dt.datetime(
        2025, 3, 20, 12, 0, tzinfo=zone
    )

    def late(minutes, who="nobody", mark=""):
        return t.lateness(who, "04_gradients", due + dt.timedelta(minutes=minutes), mark)

    assert late(5) == term.Lateness()  # within the grace period
    one = late(6)
    assert (one.days, one.fraction) == (1, 0.10) and "6 min late" in one.note
    assert (late(24 * 60 + 6).days, late(24 * 60 + 6).fraction) == (2, 0.20)
    assert late(5 * 24 * 60).fraction == 0.25  # capped
    assert late(3 * 24 * 60, who="ann").days == 1  # her extension: 2.5 days
    # Canvas's LATE_ without a time: one day; with a time, course.toml decides and says so.
    unknown = t.lateness("nobody", "04_gradients", None, "Canvas")
    assert unknown.days == 1 and "time is unknown" in unknown.note
    assert t.lateness("nobody", "04_gradients", None, "") == term.Lateness()
    disagree = late(-60, mark="Canvas")
    assert disagree.days == 0 and "on time by course.toml" in disagree.note


@pytest.mark.parametrize(
    "toml, match",
    [
        ('[course]\ntimezone = "Mars/Olympus"\n', "not a time zone name"),
        ('[extensions.ann]\n04_gradients = "soon"\n', "expected a duration"),
        ('[assignments.04_gradients]\ndue = "next friday"\n', "is not a time"),
        ("[late]\npenalty_per_day = 200\n", "percents"),
        ("[grading]\nx = 1\n", "unknown section"),
        ('[roster]\ncsv = "roster.csv"\n[extensions.zoe]\n04_gradients = "1d"\n', "not on the"),
    ],
)
def test_bad_course_toml_names_the_key(tmp_path, toml, match):
    course = _course(tmp_path, toml)
    with pytest.raises(term.TermError, match=match):
        term.load(course.root)


def test_times_as_moodle_and_nbgrader_write_them():
    tz = dt.timezone(dt.timedelta(hours=1))
    want = dt.datetime(2025, 3, 14, 23, 58, tzinfo=tz)
    assert term.parse_time("Friday, 14 March 2025, 11:58 PM", tz, "x") == want
    assert term.parse_time("2025-03-14T23:58:00+01:00", dt.UTC, "x") == want
    utc = term.parse_time("2025-03-14 22:58:00.000000 UTC", tz, "x")
    assert utc == want and utc.utcoffset() == dt.timedelta(0)


# --- reading LMS downloads --------------------------------------------------------------------


def _zip(files: dict[str, bytes], when=(2025, 3, 20, 9, 0, 0)) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=when if isinstance(when, tuple) else when[name])
            z.writestr(info, data)
    return buf.getvalue()


NB = json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}).encode()


def test_canvas_download_keeps_the_latest_copy_and_the_late_mark(tmp_path):
    path = tmp_path / "submissions.zip"
    path.write_bytes(
        _zip(
            {
                "leeann_1001_501_04_gradients.ipynb": NB,
                "brownbob_LATE_1002_502_04_gradients.ipynb": NB + b" ",
                "brownbob_LATE_1002_503_04_gradients-1.ipynb": NB + b"  ",
                "brownbob_LATE_1002_504_notes.pdf": b"%PDF",
                "LATE_anon_x7k2p_505_04_gradients.ipynb": NB,
                "readme.txt": b"?",
            }
        )
    )
    notes = []
    entries = collect.read_download(path, dt.UTC, notes)
    by = {(e.key, e.file): e for e in entries}
    assert by[("1002", "04_gradients-1.ipynb")].late and not by[("1001", "04_gradients.ipynb")].late
    assert by[("anon_x7k2p", "04_gradients.ipynb")].late
    assert all(e.when is None for e in entries)  # Canvas's zip times are the download's
    assert any("readme.txt" in n for n in notes)
    bob = [e for e in entries if e.key == "1002"]
    latest, strays = collect.choose("04_gradients", bob, notes, "bob")
    assert latest.file == "04_gradients-1.ipynb" and latest.data == NB + b"  " and not strays
    assert any("older copies skipped" in n and "04_gradients.ipynb" in n for n in notes)
    assert any("notes.pdf: not a notebook" in n for n in notes)


def test_moodle_download_in_folders_with_file_times(tmp_path):
    path = tmp_path / "moodle.zip"
    files = {
        "Ann Lee_3301_assignsubmission_file_/04_gradients.ipynb": NB,
        "Bob Brown_3302_assignsubmission_file_/work/04_gradients (1).ipynb": NB,
        "Bob Brown_3302_assignsubmission_onlinetext_/onlinetext.html": b"<p>hi</p>",
    }
    times = dict(
        zip(
            files,
            [(2025, 3, 14, 20, 0, 0), (2025, 3, 16, 8, 30, 0), (2025, 3, 1, 0, 0, 0)],
            strict=True,
        )
    )
    path.write_bytes(_zip(files, times))
    notes = []
    entries = collect.read_download(path, dt.UTC, notes)
    assert sorted((e.name, e.key, e.file) for e in entries) == [
        ("Ann Lee", "3301", "04_gradients.ipynb"),
        ("Bob Brown", "3302", "work/04_gradients (1).ipynb"),
    ]
    ann = next(e for e in entries if e.key == "3301")
    assert ann.when == dt.datetime(2025, 3, 14, 20, 0, tzinfo=dt.UTC)
    assert any("onlinetext" in n for n in notes)
    # Every file at the same minute: that is the zip's time, not the submissions'.
    path.write_bytes(_zip(dict(list(files.items())[:2])))
    same = collect.read_download(path, dt.UTC, notes)
    assert all(e.when is None for e in same) and any("same time" in n for n in notes)


def test_not_a_known_download_is_refused(tmp_path):
    path = tmp_path / "x.zip"
    path.write_bytes(_zip({"homework/04_gradients.ipynb": NB}))
    with pytest.raises(collect.CollectError, match="neither a Canvas nor a Moodle"):
        collect.read_download(path, dt.UTC, [])


def test_collect_writes_submitted_with_time_and_lateness_and_reports_the_rest(tmp_path):
    course = _course(tmp_path, TOML)
    download = tmp_path / "submissions.zip"
    download.write_bytes(
        _zip(
            {
                "leeann_1001_501_04_gradients.ipynb": NB,
                "brownbob_LATE_1002_502_04_gradients_final.ipynb": NB,
                "smithsam_1003_503_04_gradients.ipynb": NB,
            }
        )
    )
    times = tmp_path / "times.csv"
    times.write_text("student,submitted\nann,2025-03-14T21:00:00\n", encoding="utf-8")
    rep = collect.collect(course, "04_gradients", download, times)
    ann = course.submitted("ann", "04_gradients")
    assert (ann / "04_gradients.ipynb").read_bytes() == NB
    assert (ann / "timestamp.txt").read_text() == "2025-03-14 20:00:00.000000 UTC"
    assert json.loads((ann / "collected.json").read_text())["time"] == "times"
    bob = course.submitted("bob@uni.example", "04_gradients")
    assert sorted(p.name for p in bob.iterdir()) == ["04_gradients_final.ipynb", "collected.json"]
    meta = json.loads((bob / "collected.json").read_text())
    assert meta["late_mark"] == "Canvas" and meta["time"] == "unknown"
    assert course.timestamp("bob@uni.example", "04_gradients", 0.0) == ""  # not the copy's time
    text = rep.text("04_gradients")
    assert "smithsam (canvas id 1003): not on the roster" in text
    assert "no 04_gradients.ipynb, found 04_gradients_final.ipynb" in text
    assert "Canvas marks it late; its time is unknown" in text
    assert not course.submitted("smithsam", "04_gradients").exists()
    again = collect.collect(course, "04_gradients", download, times)
    assert again.collected == [] and sorted(again.unchanged) == ["ann", "bob@uni.example"]
    # What the grader reads back: the late mark travels with the submission.
    _, graded = cli.read_submission(course, "ann", "04_gradients")
    assert graded.timestamp == "2025-03-14 20:00:00.000000 UTC" and graded.late_mark == ""
    _, graded = cli.read_submission(course, "bob@uni.example", "04_gradients")
    assert graded.late_mark == "Canvas" and graded.status.value == "failed: missing_notebook"
    assert "found 04_gradients_final.ipynb" in graded.reason


def test_grade_reports_notebooks_it_does_not_read(tmp_path):
    course = _course(tmp_path, "", roster=None)
    (tmp_path / "submitted" / "ann" / "04_gradients" / "sub").mkdir(parents=True)
    (tmp_path / "submitted" / "ann" / "04_gradients.ipynb").write_bytes(NB)
    (tmp_path / "submitted" / "ann" / "04_gradients" / "04_gradients.ipynb").write_bytes(NB)
    (tmp_path / "submitted" / "ann" / "04_gradients" / "04_gradients-1.ipynb").write_bytes(NB)
    (tmp_path / "submitted" / "ann" / "04_gradients" / "sub" / "x.ipynb").write_bytes(NB)
    todo, problems = cli.discover(course, ["04_gradients"], None)
    assert todo == [("04_gradients", "ann")]
    text = "\n".join(problems)
    assert "submitted/ann/04_gradients.ipynb: a notebook outside an assignment folder" in text
    assert "submitted/ann/04_gradients/04_gradients-1.ipynb: not graded" in text
    assert "submitted/ann/04_gradients/sub/x.ipynb: not graded" in text


# --- what the instructor reads ----------------------------------------------------------------


def test_a_reason_names_each_text_once():
    g = Graded("a", "s", tests=[TestResult(t, 1, 0) for t in ("t1", "t2", "t3")])
    g.reasons = ["t1: the process died", "t2: the process died", "cell 3: boom", "t3: other"]
    g.reasons.append("cell 3: boom")
    assert g.reason == "t1, t2: the process died; cell 3: boom; t3: other"


def _rows(scores, statuses=None):
    statuses = statuses or ["ok"] * len(scores)
    return [
        {"assignment": "a", "score": str(s), "max_score": "4", "status": st, "a:t1": str(s)}
        for s, st in zip(scores, statuses, strict=True)
    ]


def test_histogram_bins_are_whole_points_and_failed_or_missing_stand_apart():
    rows = _rows([0, 1, 1, 2.5, 4, 0, 0], ["ok", "ok", "ok", "ok", "ok", "failed: x", "missing"])
    h = report.histogram(rows)
    assert h["centres"] == [0, 1, 2, 3, 4] and h["edges"][:2] == [-0.5, 0.5]
    assert h["counts"] == [1, 2, 0, 1, 1]  # the two zeros that failed or are missing are not here
    assert (h["failed"], h["missing"], h["n"]) == (1, 1, 5)
    assert h["mean"] == pytest.approx(8.5 / 5)


def test_pass_rates_count_attempted_submissions_only():
    rows = _rows([1, 0, 1, 0], ["ok", "ok", "not_attempted", "missing"])
    cells = [report.Cell("t1", "code", 1.0), report.Cell("q1", "markdown", 1.0)]
    assert report.pass_rates(rows, cells, "a") == [("t1", 1, 2)]


def test_canvas_export_blanks_missing_and_ungraded_rows(tmp_path):
    t = term.load(_course(tmp_path, TOML).root)
    done = report.Export(
        rows=[
            {
                "student": "ann",
                "assignment": "04_gradients",
                "status": "ok",
                "score": "7",
                "reason": "",
            },
            {
                "student": "bob@uni.example",
                "assignment": "04_gradients",
                "status": "missing",
                "score": "0",
                "reason": "no submission",
            },
        ],  # fmt: skip
        cells={"04_gradients": [report.Cell("t1", "code", 7.0), report.Cell("q", "markdown", 1)]},
    )
    head, body = report.canvas_rows(done, t)
    assert head == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "04_gradients"]
    assert body[0] == ["    Points Possible", "", "", "", "", "8"]
    assert body[1] == ["Lee, Ann", "1001", "S1001", "ann", "Group A", "7"]
    assert body[2][-1] == ""  # missing: Canvas keeps what it has


def test_moodle_collect_takes_the_times_of_its_grading_worksheet(tmp_path):
    course = _course(tmp_path, TOML.replace('[extensions.ann]\n04_gradients = "2d12h"\n', ""))
    (tmp_path / "roster.csv").write_text(MOODLE_ROSTER, encoding="utf-8")
    download = tmp_path / "moodle.zip"
    download.write_bytes(
        _zip(
            {
                "Ann Lee_3301_assignsubmission_file_/04_gradients.ipynb": NB,
                "Zoe Zed_3309_assignsubmission_file_/04_gradients.ipynb": NB,
            }
        )
    )
    sheet = tmp_path / "worksheet.csv"
    sheet.write_text(
        "Identifier,Full name,Email address,Status,Last modified (submission)\n"
        'Participant 3301,Ann Lee,ann.lee@uni.example,Done,"Saturday, 15 March 2025, 1:30 AM"\n'
        "Participant 3302,Bob Brown,bob@uni.example,No submission,-\n",
        encoding="utf-8",
    )
    rep = collect.collect(course, "04_gradients", download, sheet)
    folder = course.submitted("alee", "04_gradients")
    assert (folder / "timestamp.txt").read_text() == "2025-03-15 00:30:00.000000 UTC"
    assert json.loads((folder / "collected.json").read_text())["time"] == "times"
    text = rep.text("04_gradients")
    assert "Zoe Zed (moodle id 3309): not on the roster" in text
    assert "nothing in the download from 1 roster students" in text and "bob@uni.example" in text
    t = term.load(course.root)
    late = t.lateness("alee", "04_gradients", t.parse_time("2025-03-15T01:30:00", "x"))
    assert late.days == 1 and late.note == "1 h 31 min late"


def test_stub_cells_with_passing_tests_were_attempted_in_cells_of_their_own():
    from logreg_grader.status import NOT_ATTEMPTED_REASON, Status

    def settled(scores):
        g = Graded("a", "s", status=Status.NOT_ATTEMPTED, reasons=[NOT_ATTEMPTED_REASON])
        g.tests = [TestResult(f"t{i}", 1, x) for i, x in enumerate(scores)]
        g.settle()
        return g.status, g.reason

    assert settled([0, 0]) == (Status.NOT_ATTEMPTED, NOT_ATTEMPTED_REASON)
    assert settled([0, 1]) == (Status.OK, "")


def test_roster_names_reach_the_gradebook_once(tmp_path, monkeypatch):
    """formgrader shows "last, first" from the gradebook: the roster's people are written
    there with their names and e-mail, split from one name column when that is all there is,
    and a second sync changes nothing."""
    from nbgrader.api import Gradebook, Student

    from logreg_grader import gradebook

    roster = {
        "ann": term.Student("ann", name="Ann Smith", email="ann@example.org", lms_id="101"),
        "bob": term.Student("bob", name="Jones, Bob"),
        "cy": term.Student("cy", first_name="Cy", last_name="de Vries"),
        "dee": term.Student("dee"),
    }
    bin_dir = Path(sys.executable).parent  # nbgrader runs alembic to create a gradebook
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    with Gradebook(f"sqlite:///{tmp_path / 'gradebook.db'}") as gb:
        gb.db.add(Student(id="ann"))  # graded before the roster came
        gb.db.commit()
        assert gradebook.sync_roster(gb, roster) == 4
        got = {s.id: (s.first_name, s.last_name, s.email, s.lms_user_id) for s in gb.students}
        assert gradebook.sync_roster(gb, roster) == 0
    assert got == {
        "ann": ("Ann", "Smith", "ann@example.org", "101"),
        "bob": ("Bob", "Jones", None, None),
        "cy": ("Cy", "de Vries", None, None),
        "dee": (None, None, None, None),
    }


def test_csv_cells_that_start_like_a_formula_are_written_as_text(tmp_path):
    """A roster name or a reason that starts with = + - @ would run as a formula when the
    instructor opens grades.csv in a spreadsheet; such a cell gets a leading quote, numbers
    (a negative penalty) stay numbers, and the rows in memory are unchanged."""
    import csv as csvmod

    course = Course(tmp_path)
    row = {
        "student": "ann",
        "assignment": "04_gradients",
        "name": '=HYPERLINK("http://evil.example","x")',
        "email": "@SUM(1+1)",
        "status": "ok",
        "score": "-1.5",
        "reason": "+cmd|' /C calc'!A0",
    }
    done = report.Export(rows=[row], cells={"04_gradients": [report.Cell("t1", "code", 1.0)]})
    report.write_csv(course, done)
    (got,) = csvmod.DictReader(course.grades_csv.open(encoding="utf-8"))
    assert got["name"] == "'" + row["name"]
    assert got["email"] == "'@SUM(1+1)"
    assert got["reason"] == "'" + row["reason"]
    assert got["score"] == "-1.5" and got["student"] == "ann"
    assert row["name"].startswith("=")  # only what is written is changed
    assert [report.spreadsheet_safe(v) for v in ("-3", "\tx", "\rx", "a=b", 7)] == [
        "-3",
        "'\tx",
        "'\rx",
        "a=b",
        7,
    ]
