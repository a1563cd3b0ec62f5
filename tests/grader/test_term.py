"""A term on a fixture class: roster and deadlines, collection from a Canvas download, one
grading run, a manual grade, exports without regrading, a one-student regrade, a removed
submission, and nbgrader's exchange.

The class (assignment 02, roster exported from Canvas, due 14 March 23:59 in Zurich, 10% a
day capped at 25%): ``ann`` on time (her written answers graded by hand afterwards), ``bob``
late (Canvas's ``LATE_``, 2 days 2 hours by the times CSV), ``cat`` handed in twice (the
Canvas copy ``-1`` is the solution, the first the untouched release) within her extension,
``eve`` the untouched release, ``dan`` nothing, and ``fay`` a notebook in the wrong folder.
Four notebooks are graded once; the one-student regrade grades one more.
"""

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import nbformat
import pytest
from nbgrader_harness import REPO, autograded_cells

from logreg_grader import release

pytestmark = pytest.mark.slow
AID = "02_numerical_stability"
BIN = Path(sys.executable).parent

ROSTER = """\
Student,ID,SIS User ID,SIS Login ID,Section
    Points Possible,,,,
"Lee, Ann",1001,S1,ann,A
"Brown, Bob",1002,S2,bob,A
"Chen, Cat",1003,S3,cat,B
"Diaz, Dan",1004,S4,dan,B
"Evans, Eve",1005,S5,eve,B
"Fox, Fay",1006,S6,fay,B
"""
TOML = f"""
[course]
timezone = "Europe/Zurich"
[roster]
csv = "roster.csv"
[late]
penalty_per_day = 10
max_penalty = 25
grace_minutes = 5
[assignments.{AID}]
due = 2025-03-14T23:59:00
canvas_column = "Exercise 2 (111)"
[extensions.cat]
{AID} = "2d"
"""
TIMES = (
    "student,submitted\nann,2025-03-14T20:00:00\nbob,2025-03-17T02:00:00\ncat,2025-03-16T12:00:00\n"
)


def _env():
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONHASHSEED="0")
    env["PATH"] = str(BIN) + os.pathsep + env.get("PATH", "")
    env.pop("LOGREG_GRADEBOOK_URL", None)
    return env


def _run(tool, root, *args, timeout=600):
    cmd = [str(BIN / tool), "--root", str(root), *args]
    start = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env())
    result.seconds = time.perf_counter() - start
    return result


def _rows(root, name="grades.csv"):
    with open(root / name, newline="", encoding="utf-8") as f:
        return {(r["student"], r["assignment"]): r for r in csv.DictReader(f)}


def _canvas_zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


@pytest.fixture(scope="module")
def term_class(tmp_path_factory):
    root = tmp_path_factory.mktemp("term")
    shutil.copy(REPO / "nbgrader_config.py", root / "nbgrader_config.py")
    (root / "solutions" / AID).mkdir(parents=True)
    shutil.copy(REPO / "solutions" / AID / f"{AID}.md", root / "solutions" / AID)
    (root / "course.toml").write_text(TOML, encoding="utf-8")
    (root / "roster.csv").write_text(ROSTER, encoding="utf-8")
    solution = nbformat.writes(release.source_notebook(root / "solutions" / AID / f"{AID}.md"))
    untouched = (REPO / "exercises" / AID / f"{AID}.ipynb").read_text(encoding="utf-8")
    download = root / "downloaded" / "submissions.zip"
    download.parent.mkdir()
    download.write_bytes(
        _canvas_zip(
            {
                f"leeann_1001_9001_{AID}.ipynb": solution.encode(),
                f"brownbob_LATE_1002_9002_{AID}.ipynb": solution.encode(),
                f"chencat_1003_9003_{AID}.ipynb": untouched.encode(),
                f"chencat_1003_9013_{AID}-1.ipynb": solution.encode(),
                f"evanseve_1005_9005_{AID}.ipynb": untouched.encode(),
                "chencat_1003_9023_notes.txt": b"my notes",
            }
        )
    )
    (root / "downloaded" / "times.csv").write_text(TIMES, encoding="utf-8")
    collected = _run(
        "logreg-collect",
        root,
        "--assignment",
        AID,
        "--times",
        str(root / "downloaded" / "times.csv"),
        str(download),
    )
    misplaced = root / "submitted" / "fay" / f"{AID}.ipynb"
    misplaced.parent.mkdir(parents=True, exist_ok=True)
    misplaced.write_text(solution, encoding="utf-8")
    graded = _run("logreg-grade", root, "--jobs", "1")
    assert graded.returncode == 0, graded.stdout + graded.stderr
    return {"root": root, "collected": collected, "graded": graded, "solution": solution}


def _auto_points():
    md = REPO / "solutions" / AID / f"{AID}.md"
    return sum(p for _, p in autograded_cells(release.source_notebook(md)))


def test_collect_reports_what_it_did_not_take(term_class):
    out = term_class["collected"]
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert f"cat: kept {AID}-1.ipynb (the latest), older copies skipped: ['{AID}.ipynb']" in text
    assert "cat: notes.txt: not a notebook, not collected" in text
    assert "nothing in the download from 2 roster students" in text and "dan, fay" in text
    root = term_class["root"]
    meta = json.loads((root / "submitted" / "bob" / AID / "collected.json").read_text())
    assert meta["late_mark"] == "Canvas" and meta["time"] == "times"
    stamp = (root / "submitted" / "bob" / AID / "timestamp.txt").read_text()
    assert stamp == "2025-03-17 01:00:00.000000 UTC"
    cat = (root / "submitted" / "cat" / AID / f"{AID}.ipynb").read_text(encoding="utf-8")
    assert cat == term_class["solution"]  # the resubmission, not the first copy


def test_every_roster_student_has_a_row_with_status_lateness_and_cells(term_class):
    root, auto = term_class["root"], _auto_points()
    rows = _rows(root)
    assert sorted(s for s, _ in rows) == ["ann", "bob", "cat", "dan", "eve", "fay"]
    ann, bob, cat, dan, eve, fay = (
        rows[(s, AID)] for s in ("ann", "bob", "cat", "dan", "eve", "fay")
    )
    top = float(ann["max_score"])
    assert top == auto + 2  # two written answers of one point
    assert (ann["status"], float(ann["autograded"]), ann["days_late"]) == ("ok", auto, "0")
    assert ann["name"] == "Ann Lee" and ann["submitted"] == "2025-03-14 20:00 +0100"
    assert ann["reason"] == "written answers need grading"
    # bob: 2 d 2 h 1 min after the due date: 3 started days, 30%, capped at 25%.
    assert bob["days_late"] == "3" and float(bob["late_penalty"]) == pytest.approx(0.25 * top)
    assert float(bob["score"]) == pytest.approx(auto - 0.25 * top)
    assert "2 d 2 h late: -25% of" in bob["reason"]
    assert (cat["status"], float(cat["autograded"]), cat["days_late"]) == ("ok", auto, "0")
    assert eve["status"] == "not_attempted" and float(eve["score"]) == 0
    assert eve["reason"] == "every solution cell is still the release's stub; " + (
        "written answers need grading"
    )
    for missing in (dan, fay):
        assert missing["status"] == "missing" and missing["score"] == "0"
        assert missing["reason"] == "no submission"
    cells = [c for c in ann if c.startswith(f"{AID}:")]
    assert len(cells) == len(autograded_cells(release.source_notebook(
        REPO / "solutions" / AID / f"{AID}.md"))) + 2  # fmt: skip
    assert {f"{AID}:q_log_of_sigmoid", f"{AID}:q_max_shift"} <= set(cells)
    assert all(dan[c] == "" for c in cells)
    assert sum(float(ann[c]) for c in cells) == auto


def test_grade_reports_the_misplaced_notebook_and_the_late_one(term_class):
    out = term_class["graded"].stdout
    assert f"submitted/fay/{AID}.ipynb: a notebook outside an assignment folder" in out
    assert "late submissions:" in out and f"bob/{AID}: 3 d" in out
    assert f"{AID}: 2 missing (not in the mean), 1 late" in out


def test_manual_grades_reach_the_exports_in_seconds_and_plots_follow(term_class):
    from nbgrader.api import Gradebook

    root, auto = term_class["root"], _auto_points()
    url = f"sqlite:///{root / 'gradebook' / 'gradebook.db'}"
    with Gradebook(url, "logreg-lessons") as gb:  # what formgrader does when you type a score
        for gid in ("q_log_of_sigmoid", "q_max_shift"):
            grade = gb.find_grade(gid, AID, AID, "ann")
            grade.manual_score = 1.0 if gid == "q_max_shift" else 0.5
            grade.needs_manual_grade = False
        gb.db.commit()
    out = _run("logreg-grades", root)
    assert out.returncode == 0, out.stderr
    assert out.seconds < 20, f"export-only took {out.seconds:.1f} s"
    ann = _rows(root)[("ann", AID)]
    assert float(ann["written"]) == 1.5 and float(ann["score"]) == auto + 1.5
    assert ann["reason"] == "" and ann[f"{AID}:q_log_of_sigmoid"] == "0.5"
    canvas = list(csv.reader((root / "grades-canvas.csv").open(encoding="utf-8")))
    assert canvas[0] == [
        "Student",
        "ID",
        "SIS User ID",
        "SIS Login ID",
        "Section",
        "Exercise 2 (111)",
    ]
    by = {r[1]: r for r in canvas[2:]}
    assert canvas[1][-1] == f"{auto + 2:g}"
    assert by["1001"] == ["Lee, Ann", "1001", "S1", "ann", "A", f"{auto + 1.5:g}"]
    assert by["1004"][-1] == ""  # dan: missing
    assert by["1002"][-1] == ""  # bob: written answers not graded yet
    for name in (f"{AID}.png", f"{AID}-tests.png"):
        data = (root / "_build" / "grades" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", name


def test_one_student_is_regraded_alone_and_keeps_the_manual_grade(term_class):
    root, auto = term_class["root"], _auto_points()
    timings = root / "timings.json"
    out = _run("logreg-grade", root, "--student", "ann", "--timings", str(timings))
    assert out.returncode == 0, out.stdout + out.stderr
    assert list(json.loads(timings.read_text())["per_submission"]) == [f"{AID}/ann"]
    assert float(_rows(root)[("ann", AID)]["score"]) == auto + 1.5
    wrong = _run("logreg-grade", root, "--student", "zed")
    assert wrong.returncode == 2 and "no submission of student 'zed'" in wrong.stderr


def test_a_new_time_for_an_unchanged_notebook_is_recorded_without_regrading(term_class):
    root = term_class["root"]
    stamp = root / "submitted" / "cat" / AID / "timestamp.txt"
    stamp.write_text("2025-03-17 11:00:00.000000 UTC", encoding="utf-8")  # after her extension
    timings = root / "timings-retime.json"
    out = _run("logreg-grade", root, "--timings", str(timings))
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(timings.read_text())["per_submission"] == {}  # nothing was regraded
    cat = _rows(root)[("cat", AID)]
    assert cat["submitted"] == "2025-03-17 12:00 +0100" and cat["days_late"] == "1"
    assert cat["due"] == "2025-03-16 23:59 +0100"  # her two days' extension


def test_a_removed_submission_leaves_grades_csv_and_prune_forgets_it(term_class):
    from nbgrader.api import Gradebook

    root = term_class["root"]
    shutil.rmtree(root / "submitted" / "eve" / AID)
    out = _run("logreg-grades", root)
    assert out.returncode == 0, out.stderr
    assert f"eve/{AID}" in out.stdout and "folder in submitted/ is gone" in out.stdout
    assert _rows(root)[("eve", AID)]["status"] == "missing"  # on the roster: still a row
    pruned = _run("logreg-grades", root, "--prune")
    assert pruned.returncode == 0, pruned.stderr
    url = f"sqlite:///{root / 'gradebook' / 'gradebook.db'}"
    with Gradebook(url, "logreg-lessons") as gb:
        assert "eve" not in {s["student"] for s in gb.submission_dicts(AID)}
    assert not (root / "feedback" / "eve" / AID / f"{AID}.html").exists()
    again = _run("logreg-grades", root)
    assert "folder in submitted/ is gone" not in again.stdout


# --- nbgrader's exchange ----------------------------------------------------------------------


def test_nbgrader_exchange_submissions_land_where_the_grader_reads_them(tmp_path):
    """Release, fetch and submit (as another unix user, as on JupyterHub), then the instructor's
    `nbgrader collect`: the notebook and nbgrader's timestamp.txt are in submitted/<user>/<id>/,
    where logreg-grade finds and times them."""
    from logreg_grader import cli
    from logreg_grader.course import Course

    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to act as a student")
    root = tmp_path / "course"
    root.mkdir()
    shutil.copy(REPO / "nbgrader_config.py", root)
    (root / "solutions" / AID).mkdir(parents=True)
    shutil.copy(REPO / "solutions" / AID / f"{AID}.md", root / "solutions" / AID)
    (root / "exercises" / AID).mkdir(parents=True)
    shutil.copy(REPO / "exercises" / AID / f"{AID}.ipynb", root / "exercises" / AID)
    shared = Path(tempfile.mkdtemp(prefix="logreg-exchange-"))  # reachable by the student
    try:
        os.chmod(shared, 0o755)
        exchange, home = shared / "exchange", shared / "home"
        home.mkdir()
        os.chown(home, 65534, 65534)
        flags = [f"--Exchange.root={exchange}", "--CourseDirectory.course_id=logreg-lessons"]
        nbg = str(BIN / "nbgrader")

        def teacher(*args):
            r = subprocess.run([nbg, *args, *flags], cwd=root, capture_output=True, text=True,
                               env=_env(), timeout=300)  # fmt: skip
            assert r.returncode == 0, r.stdout + r.stderr
            return r

        def student(*args):
            env = dict(_env(), HOME=str(home))
            r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                nbg, *args, *flags], cwd=home, capture_output=True, text=True,
                               env=env, timeout=300)  # fmt: skip
            assert r.returncode == 0, r.stdout + r.stderr
            return r

        teacher("release_assignment", AID)
        student("fetch_assignment", AID)
        assert (home / AID / f"{AID}.ipynb").is_file()
        student("submit", AID)
        teacher("collect", AID)
        user = "nobody"  # uid 65534's name: nbgrader's student id is the unix user
        folder = root / "submitted" / user / AID
        assert (folder / f"{AID}.ipynb").is_file() and (folder / "timestamp.txt").is_file()
        course = Course(root)
        todo, problems = cli.discover(course, [AID], None)
        assert todo == [(AID, user)] and problems == []
        data, graded = cli.read_submission(course, user, AID)
        assert data is not None and graded.timestamp == (folder / "timestamp.txt").read_text()
    finally:
        shutil.rmtree(shared, ignore_errors=True)
