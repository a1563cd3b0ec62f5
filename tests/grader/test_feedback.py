"""Feedback a student can act on, and the small things of the term (issue 11, items 5 and 8).

Unit tests (seconds): the page renders one record (report.Row) safely; the leak check; a save
from JupyterLab (jupytext's own contents manager) leaves the release unchanged; `nbgrader
validate` does not cut a long diagnosis; `make grade` names a typo's valid ids and refuses
JOBS=0.

One fixture class (two notebooks graded once, as root): assignment 02, a roster, due
14 March 2025 in Zurich, 10% a day capped at 25%. ``ann`` hands in by hand on time, with HTML
and a script in her written answer; ``nobody`` (uid 65534: nbgrader's student id is the unix
user) fetches and submits through nbgrader's exchange, long after the due date. After grading,
the instructor grades the written answers and comments on them through nbgrader's Gradebook API
(what formgrader does), then `make grades` rewrites every page: each shows the total of its
grades.csv row, the points and comments, and the late one is fetched by the student with
`nbgrader fetch_feedback`.
"""

import csv
import html
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pytest
from nbgrader_harness import REPO

from logreg_grader import feedback, release, report
from logreg_grader.notebook import Master
from logreg_grader.status import CellError, TestResult

AID = "02_numerical_stability"
BIN = Path(sys.executable).parent
HIDDEN = "assert sigmoid(torch.tensor(1000.0)) == 1.0  # a hidden line"


def _text(raw: str) -> str:
    """Visible text of a page (tags removed, entities decoded)."""
    raw = re.sub(r"<(script|style)\b.*?</\1>", "", raw, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", "", raw))


def _span(raw: str, name: str) -> str:
    m = re.search(rf'id="{name}">(?:&minus;)?([^<]*)<', raw)
    assert m, f"no {name} on the page"
    return html.unescape(m.group(1))


# --- the page, from one record (no grading) -------------------------------------------------


def _master() -> Master:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "def sigmoid(z):\n    ### BEGIN SOLUTION\n    return z\n    ### END SOLUTION",
            metadata={"nbgrader": {"grade_id": "sigmoid", "solution": True, "grade": False}},
        ),
        nbformat.v4.new_code_cell(
            f'"""sigmoid is finite at the extremes."""\nassert True\n'
            f"### BEGIN HIDDEN TESTS\n{HIDDEN}\n### END HIDDEN TESTS",
            metadata={"nbgrader": {"grade_id": "t1", "grade": True, "locked": True, "points": 2}},
        ),
        nbformat.v4.new_markdown_cell(
            "model answer",
            metadata={"nbgrader": {"grade_id": "q1", "grade": True, "solution": True, "points": 1}},
        ),
    ]
    return Master.from_text("02", nbformat.writes(nb))


def _row(**kw) -> report.Row:
    master = _master()
    found = feedback.Findings(
        master.hash,
        "abc",
        [TestResult("t1", 2.0, 0.0, f"sigmoid(1000) is nan\n{HIDDEN}")],
        [CellError("sigmoid", "NameError", f"name 'x' is not defined <b>\n{HIDDEN}")],
        {"t1": "sigmoid is finite at the extremes."},
        {"q1": 'My <script>alert("x")</script> answer: $\\sigma(z) < 1$\n<img src=x onerror=y>'},
    )
    row = report.Row(
        student="ann",
        assignment="02",
        name="Ann <Lee>",
        status="ok",
        score=0.25,
        max_score=3.0,
        written=0.5,
        late_penalty=0.25,
        days_late=1,
        submitted="2025-03-15 10:00 +0100",
        due="2025-03-14 23:59 +0100",
        reason="1 d late: -10% of 3 points = -0.25",
        late_note="10 h 1 min late: -10% of 3 points = -0.25",
        cells=[
            report.CellGrade("t1", "code", 2.0, 0.0),
            report.CellGrade("q1", "markdown", 1.0, 0.5, manual=True, comment="Why <1?"),
        ],
        comments=[("q1", "Why <1?"), ("sigmoid", f"Nice & short.\n{HIDDEN}")],
        findings=found,
        **kw,
    )
    return row, master


def test_the_page_shows_the_numbers_of_its_grades_csv_row():
    row, master = _row()
    raw = feedback.page(row, master)
    shown = row.csv()
    for name in ("score", "max_score", "autograded", "written", "late_penalty"):
        assert _span(raw, name) == shown[name], name
    text = _text(raw)
    assert "Total: 0.25 / 3 points" in text
    assert "10 h 1 min late: -10% of 3 points = -0.25" in text
    assert "Feedback for Ann <Lee> (ann)" in text and "due 2025-03-14 23:59 +0100" in text
    assert "q1: 0.5 / 1 point" in text and "Why <1?" in text  # the instructor's comment
    assert "Comments on your code" in text and "Nice & short." in text
    assert "sigmoid(1000) is nan" in text and "sigmoid is finite at the extremes." in text


def test_student_text_is_escaped_and_the_page_runs_nothing():
    row, master = _row()
    raw = feedback.page(row, master)
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in raw
    assert "&lt;img src=x onerror=y&gt;" in raw
    tags = re.findall(r"<\s*([a-zA-Z]+)", raw)
    assert "script" not in tags and "img" not in tags
    assert not re.search(r"<[^>]*\son\w+=", raw)  # no event handler in any tag
    assert "Content-Security-Policy" in raw and "default-src 'none'" in raw
    text = _text(raw)
    assert 'My <script>alert("x")</script> answer: $\\sigma(z) < 1$' in text  # as written


def test_no_hidden_test_line_anywhere_and_the_leak_check_finds_one():
    row, master = _row()
    raw = feedback.page(row, master)
    assert HIDDEN not in _text(raw)
    assert feedback.leaks(raw, master) == []
    leaky = raw.replace("</body>", f"<p>{html.escape(HIDDEN)}</p></body>")
    assert feedback.leaks(leaky, master) == [HIDDEN]


def test_a_page_that_would_show_a_hidden_test_is_not_written(tmp_path, monkeypatch):
    from logreg_grader.course import Course

    row, master = _row()
    course = Course(tmp_path)
    course.write_private(course.master("02"), master.text)
    done = report.Export(records=[row])
    written = feedback.write_all(course, done)
    assert written.pages == 1 and written.leaked == []
    page = feedback.page
    monkeypatch.setattr(feedback, "page", lambda r, m: page(r, m) + html.escape(HIDDEN))
    course.feedback("ann", "02").unlink()
    written = feedback.write_all(course, done)
    assert written.pages == 0 and written.leaked and "ann/02" in written.leaked[0]
    assert not course.feedback("ann", "02").exists()
    summary = report.summary(course, report.Export(feedback=written), [], [], 0)
    assert "feedback pages NOT written: they would show a hidden test" in summary


def test_an_ungraded_answer_says_so_and_a_missing_one_too():
    row, master = _row()
    row.cells[1] = report.CellGrade("q1", "markdown", 1.0, 0.0, needs_grading=True)
    row.findings.answers = {}
    text = _text(feedback.page(row, master))
    assert "q1: not graded yet (1 point)" in text
    assert "1 of 1 not graded yet" in text and "(no answer found in your notebook)" in text


# --- item 8: small things -------------------------------------------------------------------


def test_a_save_from_jupyterlab_leaves_the_release_unchanged(tmp_path):
    """jupytext's own contents manager (JupyterLab's, with jupytext) saves a solution after
    the kernel ran: the running kernel's kernelspec and language_info, a collapsed heading."""
    from jupytext import TextFileContentsManager

    for name in ("solutions", "exercises"):
        shutil.copytree(REPO / name / AID, tmp_path / name / AID)
    shutil.copy(REPO / "nbgrader_config.py", tmp_path)
    source = tmp_path / "solutions" / AID / f"{AID}.md"
    before = source.read_text(encoding="utf-8")
    manager = TextFileContentsManager(root_dir=str(source.parent))
    model = manager.get(source.name)
    nb = model["content"]
    nb.metadata["kernelspec"] = {
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
        "name": "python3",
    }
    nb.metadata["language_info"] = {"name": "python", "version": "3.11.9"}
    nb.cells[0].metadata["jp-MarkdownHeadingCollapsed"] = True
    manager.save(model, source.name)
    after = source.read_text(encoding="utf-8")
    assert after != before and "Python 3 (ipykernel)" in after  # jupytext rewrote it
    master = release.notebook_text(release.source_notebook(source))
    committed = release.notebook_text(
        release.source_notebook(REPO / "solutions" / AID / source.name)
    )
    assert master == committed
    check = subprocess.run(
        [str(BIN / "logreg-release"), "--root", str(tmp_path), "--check", "--assignment", AID],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_nbgrader_validate_shows_a_long_diagnosis_whole(tmp_path):
    """A student's `nbgrader validate` uses the course's nbgrader_config.py (Validator.width)."""
    diagnosis = (
        "sigmoid(z) returned shape (4, 3) for z of shape (3, 4): return a tensor of the "
        "input's shape; did you transpose, or sum over a dimension? Compare "
        "torch.sigmoid's output on the same z and look at the first row that differs."
    )
    assert len(diagnosis) > 200
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = dict(release.KERNELSPEC)
    nb.cells = [
        nbformat.v4.new_code_cell(
            "def f():\n    return 1",
            metadata={
                "nbgrader": {
                    "grade_id": "f",
                    "solution": True,
                    "grade": False,
                    "locked": False,
                    "schema_version": 3,
                }
            },
        ),  # fmt: skip
        nbformat.v4.new_code_cell(
            f'"""f returns 2."""\nassert f() == 2, {diagnosis!r}',
            metadata={
                "nbgrader": {
                    "grade_id": "t",
                    "grade": True,
                    "solution": False,
                    "locked": True,
                    "points": 1,
                    "schema_version": 3,
                }
            },
        ),  # fmt: skip
    ]
    nbformat.write(nb, tmp_path / "student.ipynb")
    shutil.copy(REPO / "nbgrader_config.py", tmp_path)
    env = dict(os.environ, PATH=str(BIN) + os.pathsep + os.environ.get("PATH", ""))
    out = subprocess.run(
        [str(BIN / "nbgrader"), "validate", "student.ipynb"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    text = out.stdout + out.stderr
    assert "failed" in text.lower() or "error" in text.lower(), text
    assert diagnosis in text, text[-3000:]


def _make(*args) -> subprocess.CompletedProcess:
    # -o: never reinstall .venv from here (it is this very environment).
    return subprocess.run(
        ["make", "-s", "-C", str(REPO), "-o", ".venv/.installed", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_make_grade_names_the_valid_ids_of_a_typo_and_refuses_jobs_0():
    if os.geteuid() != 0:  # logreg-grade tests its sandbox before it reads the course
        pytest.skip("logreg-grade runs as root")
    typo = _make("grade", "ASSIGNMENT=02_numerical_stabilty")
    assert typo.returncode == 2, typo.stdout + typo.stderr
    assert "no assignment '02_numerical_stabilty'; the assignments are: " in typo.stderr
    assert AID in typo.stderr and "04_gradients" in typo.stderr
    zero = _make("grade", "JOBS=0")
    assert zero.returncode == 2 and "--jobs must be at least 1, got 0" in zero.stderr


def test_nbgrader_config_says_how_the_exchange_is_used():
    doc = (REPO / "nbgrader_config.py").read_text(encoding="utf-8").split('"""')[1]
    assert "is not used" not in doc
    assert "c.Exchange.root" in doc and "fetch_feedback" in doc


# --- the fixture class ------------------------------------------------------------------------

ROSTER = "id,name,email\nann,Ann Lee,ann@uni.example\nnobody,No Body,nobody@uni.example\n"
TOML = f"""
[course]
timezone = "Europe/Zurich"
[roster]
csv = "roster.csv"
[late]
penalty_per_day = 10
max_penalty = 25
[assignments.{AID}]
due = 2025-03-14T23:59:00
"""
ANN_ANSWER = 'The log of 0 is <b>-inf</b> <script>alert("ann")</script>: $\\sigma(-10^4) = 0$.'
ANN_COMMENT = "Right: the information is lost before the log.\nSee <section 3>."
NOBODY_COMMENT = "Half a point: say why the sum is at least 1."


def _env():
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONHASHSEED="0")
    env["PATH"] = str(BIN) + os.pathsep + env.get("PATH", "")
    env.pop("LOGREG_GRADEBOOK_URL", None)
    return env


def _run(tool, root, *args):
    cmd = [str(BIN / tool), "--root", str(root), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=_env())


def _modes(root: Path) -> dict[str, str]:
    """Every folder and file under autograded/ and feedback/ whose mode is not private."""
    bad = {}
    for top in ("autograded", "feedback"):
        for path in [root / top, *(root / top).rglob("*")]:
            mode = stat.S_IMODE(path.lstat().st_mode)
            if mode != (0o700 if path.is_dir() else 0o600):
                bad[str(path.relative_to(root))] = oct(mode)
    return bad


def _with_answer(nb, gid: str, text: str):
    nb = nbformat.from_dict(nbformat.from_dict(nb))
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == gid:
            cell.source = text
    return nb


@pytest.fixture(scope="module")
def term_class(tmp_path_factory):
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("grading needs root, and acting as a student setpriv (util-linux)")
    root = tmp_path_factory.mktemp("feedback")
    shared = Path(tempfile.mkdtemp(prefix="logreg-feedback-exchange-"))  # the student reaches it
    os.chmod(shared, 0o755)
    exchange, home = shared / "exchange", shared / "home"
    home.mkdir()
    os.chown(home, 65534, 65534)
    shutil.copy(REPO / "nbgrader_config.py", root)
    with open(root / "nbgrader_config.py", "a", encoding="utf-8") as f:
        f.write(f"\nc.Exchange.root = {str(exchange)!r}\n")
    (root / "solutions" / AID).mkdir(parents=True)
    shutil.copy(REPO / "solutions" / AID / f"{AID}.md", root / "solutions" / AID)
    (root / "exercises" / AID).mkdir(parents=True)
    shutil.copy(REPO / "exercises" / AID / f"{AID}.ipynb", root / "exercises" / AID)
    (root / "course.toml").write_text(TOML, encoding="utf-8")
    (root / "roster.csv").write_text(ROSTER, encoding="utf-8")
    solution = release.source_notebook(root / "solutions" / AID / f"{AID}.md")
    nbg = str(BIN / "nbgrader")
    flags = [f"--Exchange.root={exchange}", "--CourseDirectory.course_id=logreg-lessons"]

    def teacher(*args):
        r = subprocess.run([nbg, *args], cwd=root, capture_output=True, text=True, env=_env(),
                           timeout=300)  # fmt: skip
        assert r.returncode == 0, r.stdout + r.stderr

    def student(*args):
        env = dict(_env(), HOME=str(home))
        r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", nbg,
                            *args, *flags], cwd=home, capture_output=True, text=True, env=env,
                           timeout=300)  # fmt: skip
        assert r.returncode == 0, r.stdout + r.stderr
        return r

    # ann: by hand, on time (14 March, 20:00 in Zurich)
    ann = root / "submitted" / "ann" / AID
    ann.mkdir(parents=True)
    nbformat.write(_with_answer(solution, "q_log_of_sigmoid", ANN_ANSWER), ann / f"{AID}.ipynb")
    (ann / "timestamp.txt").write_text("2025-03-14 19:00:00.000000 UTC", encoding="utf-8")
    try:
        # nobody: through the exchange, the solution handed in long after the due date
        teacher("release_assignment", AID)
        student("fetch_assignment", AID)
        fetched = home / AID / f"{AID}.ipynb"
        nbformat.write(solution, fetched)
        os.chown(fetched, 65534, 65534)
        student("submit", AID)
        teacher("collect", AID)
        assert (root / "submitted" / "nobody" / AID / feedback.SECRET).is_file()
        graded = _run("logreg-grade", root, "--jobs", "1")
        assert graded.returncode == 0, graded.stdout + graded.stderr
        first = {
            s: (root / "feedback" / s / AID / f"{AID}.html").read_text(encoding="utf-8")
            for s in ("ann", "nobody")
        }
        modes = _modes(root)
        from nbgrader.api import Gradebook

        url = f"sqlite:///{root / 'gradebook' / 'gradebook.db'}"
        with Gradebook(url, "logreg-lessons") as gb:  # what formgrader does
            for student_id, gid, points, comment in (
                ("ann", "q_log_of_sigmoid", 1.0, ANN_COMMENT),
                ("ann", "q_max_shift", 1.0, ""),
                ("nobody", "q_max_shift", 0.5, NOBODY_COMMENT),
            ):
                grade = gb.find_grade(gid, AID, AID, student_id)
                grade.manual_score, grade.needs_manual_grade = points, False
                if comment:
                    gb.find_comment(gid, AID, AID, student_id).manual_comment = comment
            gb.db.commit()
        start = time.perf_counter()
        export = _run("logreg-grades", root)
        seconds = time.perf_counter() - start
        assert export.returncode == 0, export.stdout + export.stderr
        fetched_feedback = student("fetch_feedback", AID)
        copies = sorted((home / AID / "feedback").rglob(f"{AID}.html"))
        yield {
            "root": root,
            "graded": graded,
            "first": first,
            "modes": modes,
            "export": export,
            "seconds": seconds,
            "fetch": fetched_feedback,
            "fetched": [p.read_bytes() for p in copies],
        }
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def _rows(root):
    with open(root / "grades.csv", newline="", encoding="utf-8") as f:
        return {r["student"]: r for r in csv.DictReader(f)}


def _page(root, student) -> str:
    return (root / "feedback" / student / AID / f"{AID}.html").read_text(encoding="utf-8")


@pytest.mark.slow
def test_each_page_shows_the_numbers_of_its_grades_csv_row(term_class):
    root = term_class["root"]
    rows = _rows(root)
    assert float(rows["nobody"]["late_penalty"]) > 0 and rows["nobody"]["days_late"] != "0"
    assert rows["ann"]["written"] == "2" and rows["nobody"]["written"] == "0.5"
    for student, row in rows.items():
        raw = _page(root, student)
        for name in ("score", "max_score", "autograded", "written"):
            assert _span(raw, name) == row[name], (student, name)
        if student == "nobody":
            assert _span(raw, "late_penalty") == row["late_penalty"]
            assert "-25% of" in _text(raw)  # the late policy's cap, as the reason says
        text = _text(raw)
        assert f"Total: {row['score']} / {row['max_score']} points" in text
        assert row["name"] in text and AID in text


@pytest.mark.slow
def test_manual_points_and_comments_appear_without_regrading(term_class):
    root = term_class["root"]
    before = _text(term_class["first"]["ann"])
    assert "not graded yet" in before and "Right: the information" not in before
    ann, nobody = _text(_page(root, "ann")), _text(_page(root, "nobody"))
    assert "q_log_of_sigmoid: 1 / 1 point" in ann and ANN_COMMENT in ann
    assert "q_max_shift: 0.5 / 1 point" in nobody and NOBODY_COMMENT in nobody
    assert "q_log_of_sigmoid: not graded yet (1 point)" in nobody
    assert "2 pages" in term_class["export"].stdout
    assert term_class["seconds"] < 30, f"make grades took {term_class['seconds']:.1f} s"


@pytest.mark.slow
def test_written_answers_are_shown_escaped_and_nothing_hidden(term_class):
    root = term_class["root"]
    raw = _page(root, "ann")
    assert html.escape(ANN_ANSWER) in raw and ANN_ANSWER in _text(raw)
    assert "<script" not in raw and "<b>" not in raw
    assert html.escape(ANN_COMMENT) in raw
    master = Master.from_text(AID, (root / "solutions" / AID / f"{AID}.ipynb").read_text())
    assert master.hidden, "the assignment has hidden tests"
    for student in ("ann", "nobody"):
        page = _page(root, student)
        assert feedback.leaks(page, master) == []
        assert not any(h in _text(page) for h in master.hidden)


@pytest.mark.slow
def test_feedback_and_autograded_are_private_from_the_first_run(term_class):
    assert term_class["modes"] == {}
    assert _modes(term_class["root"]) == {}


@pytest.mark.slow
def test_the_exchange_student_fetches_the_page_with_nbgrader(term_class):
    root = term_class["root"]
    assert "returned through nbgrader's exchange: 1" in term_class["export"].stdout
    assert term_class["fetched"] == [_page(root, "nobody").encode()], term_class["fetch"].stdout
    assert not (root / "feedback" / "ann" / AID / feedback.SECRET).exists()  # by hand: no


def test_private_files_and_every_folder_above_them_from_the_start(tmp_path):
    from logreg_grader.course import Course

    course = Course(tmp_path)
    old = os.umask(0o022)
    try:
        course.write_private(course.feedback("ann", AID), "page")
        course.write_private(course.feedback("ann", AID), "page again")
    finally:
        os.umask(old)
    target = course.feedback("ann", AID)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600 and target.read_text() == "page again"
    for folder in (tmp_path / "feedback", target.parent.parent, target.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
