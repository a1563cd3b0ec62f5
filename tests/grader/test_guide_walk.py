"""A whole term on a fixture class with exactly the commands the instructor guide prints.

book/10_instructor_guide.md prints its commands in ```bash blocks; ``STEPS`` is that list, in
the guide's order (the set-up block, `make test`, `make book` and `make help`, is the
project's, not the term's, and left out). ``test_the_walk_is_the_guide`` fails as soon as the
guide prints a command the walk does not run, or in another order. ``test_a_term_as_the_guide
prints_it`` then runs each one in a fresh course folder (only 04_gradients' source, the
nbgrader configuration with an exchange, the guide's own ``course.toml`` example and a Canvas
roster) and checks what it did:

- a ``make ...`` line is expanded by the project's Makefile (``make -n``, with the guide's
  arguments) and the commands it prints run in the course folder, with ``--root`` added (the
  Makefile always works on the repository itself);
- a ``.venv/bin/...`` line runs as printed, in the course folder (``--root`` added to
  ``logreg-*``); a ``nbgrader ...`` line marked "each student" runs as another unix user
  (uid 65534, ``nobody``) in their own home, whose ``~/.jupyter/nbgrader_config.py`` names the
  exchange, as on JupyterHub;
- ``sudo make lab`` starts a server: only its expansion is checked here; the server, the
  formgrader pages and their buttons are tests/grader/test_lab.py's. The manual grade is typed
  in through nbgrader's Gradebook API, as formgrader does, between ``make grade`` and the
  ``make grades`` that follows ``sudo make lab``.

The class (Canvas roster, due 14 March 2025 23:59 in Zurich, 10% a started day capped at 30%):
``ann`` hands in the solution on time and gets her written answers graded by hand, ``bob`` the
solution, marked ``LATE_`` by Canvas and 2 days 2 hours late by the times CSV, ``cat`` the
untouched release first and then a buggy solution (Canvas's ``-1`` resubmission), ``dan``
nothing, and ``nobody`` the solution through nbgrader's exchange (late: it is submitted now),
who fetches the feedback page back. Four notebooks are graded, then one again.
"""

from __future__ import annotations

import csv
import datetime
import html
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import nbformat
import pytest
from nbgrader_harness import REPO, autograded_cells, load_bugs, replace_cells

from logreg_grader import release

pytestmark = pytest.mark.slow
GUIDE = REPO / "book" / "10_instructor_guide.md"
AID = "04_gradients"
BIN = Path(sys.executable).parent
STUDENT_UID = 65534  # nobody: nbgrader's student id is the unix user's name
PROJECT = [["make", "test"], ["make", "book"], ["make", "help"]]  # set-up, not the term

# The term, in the guide's order: each line is one command exactly as the guide prints it.
STEPS = [
    "make release",
    ".venv/bin/logreg-release --assignment 04_gradients",
    ".venv/bin/logreg-release --check",
    "make collect ZIP=downloaded/submissions.zip ASSIGNMENT=04_gradients",
    "make collect ZIP=downloaded/submissions.zip ASSIGNMENT=04_gradients "
    "TIMES=downloaded/times.csv",
    ".venv/bin/nbgrader release_assignment 04_gradients",
    "nbgrader fetch_assignment 04_gradients --course logreg-lessons",
    "nbgrader submit 04_gradients --course logreg-lessons",
    ".venv/bin/nbgrader collect 04_gradients",
    "sudo make grade",
    "sudo make grade ASSIGNMENT=04_gradients",
    "sudo make grade ASSIGNMENT=04_gradients JOBS=2",
    "sudo make grade STUDENT=ann",
    "sudo make grades",
    "sudo make lab",
    "sudo make grades",
    "sudo make similarity ASSIGNMENT=04_gradients",
    "nbgrader fetch_feedback 04_gradients --course logreg-lessons",
]
STUDENT_COMMANDS = ("fetch_assignment", "submit", "fetch_feedback")  # "# each student"

ROSTER = """\
Student,ID,SIS User ID,SIS Login ID,Section
    Points Possible,,,,
"Lee, Ann",1001,S1,ann,A
"Brown, Bob",1002,S2,bob,A
"Chen, Cat",1003,S3,cat,B
"Diaz, Dan",1004,S4,dan,B
"Body, No",1005,S5,nobody,B
"""
TIMES = (
    "student,submitted\nann,2025-03-14T20:00:00\nbob,2025-03-17T02:00:00\ncat,2025-03-14T22:00:00\n"
)
ANN_COMMENT = "Right, and say how many evaluations that is for n = 1000."


def guide_blocks(language: str) -> list[str]:
    """The bodies of the guide's fenced blocks of one language, in order."""
    text = GUIDE.read_text(encoding="utf-8")
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.S | re.M)


def guide_commands() -> list[list[str]]:
    """Every command of the guide's bash blocks, as words, comments dropped (a line ending
    in a backslash continues on the next)."""
    blocks = [re.sub(r"\\\n", " ", block) for block in guide_blocks("bash")]
    lines = [ln for block in blocks for ln in block.splitlines()]
    return [words for words in (shlex.split(ln, comments=True) for ln in lines) if words]


def _env(**extra) -> dict[str, str]:
    """The environment the Makefile exports to its commands."""
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONHASHSEED="0", **extra)
    env["PATH"] = str(BIN) + os.pathsep + env.get("PATH", "")
    env.pop("LOGREG_GRADEBOOK_URL", None)
    return env


def _out(result) -> str:
    return (result.stdout or "") + (result.stderr or "")


class Walk:
    """Runs STEPS one by one in the course folder ``root``; ``nobody`` lives in ``home``."""

    def __init__(self, root: Path, home: Path):
        self.root, self.home = root, home
        self.todo = [shlex.split(s) for s in STEPS]

    def step(self, command: str, run: bool = True) -> subprocess.CompletedProcess | list[str]:
        """The next step, which must be ``command``; its result (or, with run=False, the
        commands `make -n` expands it to)."""
        assert self.todo, f"the walk has no step left for {command!r}"
        words = self.todo.pop(0)
        assert words == shlex.split(command), (words, command)
        if words[0] == "sudo":  # we are root already
            words = words[1:]
        if words[0] == "make":
            lines = self.expand(words[1:])
            return self.make(lines) if run else lines
        if words[0].startswith(".venv/bin/"):
            return self.call([str(BIN / words[0].removeprefix(".venv/bin/")), *words[1:]])
        assert words[0] == "nbgrader" and words[1] in STUDENT_COMMANDS, words
        return self.student(words[1:])

    @staticmethod
    def expand(args: list[str]) -> list[str]:
        """What the project's Makefile runs for `make <args>` (-o: never reinstall .venv)."""
        cmd = ["make", "-n", "-s", "-C", str(REPO), "-o", ".venv/.installed", *args]
        dry = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert dry.returncode == 0, _out(dry)
        return [ln.strip() for ln in dry.stdout.splitlines() if ln.strip()]

    def make(self, lines: list[str]) -> subprocess.CompletedProcess:
        """Run the expanded lines in the course folder: the tools with --root."""
        result = None
        for line in lines:
            if line.startswith(".venv/bin/"):
                words = shlex.split(line)
                result = self.call([str(REPO / words[0]), *words[1:]])
            else:  # the Makefile's own argument checks
                result = subprocess.run(["bash", "-c", line], cwd=self.root, env=_env(),
                                        capture_output=True, text=True, timeout=60)  # fmt: skip
                assert result.returncode == 0, (line, _out(result))
        assert result is not None, lines
        return result

    def call(self, argv: list[str]) -> subprocess.CompletedProcess:
        if Path(argv[0]).name.startswith("logreg-"):
            argv = [*argv, "--root", str(self.root)]
        return subprocess.run(argv, cwd=self.root, env=_env(), capture_output=True, text=True,
                              timeout=600)  # fmt: skip

    def student(self, args: list[str]) -> subprocess.CompletedProcess:
        uid = str(STUDENT_UID)
        argv = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                str(BIN / "nbgrader"), *args]  # fmt: skip
        return subprocess.run(argv, cwd=self.home, env=_env(HOME=str(self.home)),
                              capture_output=True, text=True, timeout=300)  # fmt: skip


def test_the_walk_is_the_guide():
    """STEPS are the guide's commands, in its order, none left out (the set-up block aside)."""
    printed = [c for c in guide_commands() if c not in PROJECT]
    assert printed == [shlex.split(s) for s in STEPS]
    assert [c for c in guide_commands() if c in PROJECT] == PROJECT  # set-up is still there
    (toml,) = guide_blocks("toml")  # the example course.toml the walk uses
    assert f"[assignments.{AID}]" in toml and "[roster]" in toml


# --- the fixture class ------------------------------------------------------------------------


def _rows(root: Path, name: str = "grades.csv") -> dict[str, dict]:
    with open(root / name, newline="", encoding="utf-8") as f:
        return {r["student"]: r for r in csv.DictReader(f) if r.get("assignment", AID) == AID}


def _text(page: Path) -> str:
    raw = re.sub(r"<(script|style)\b.*?</\1>", "", page.read_text(encoding="utf-8"), flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", raw)).split())


def _canvas_zip(path: Path, files: dict[str, str]) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())


def _written_answers(nb) -> list[str]:
    return [
        c.metadata["nbgrader"]["grade_id"]
        for c in nb.cells
        if c.cell_type == "markdown" and c.metadata.get("nbgrader", {}).get("grade")
    ]


@pytest.fixture
def course(tmp_path):
    """The course folder and nobody's home; the exchange is reachable by uid 65534."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("grading needs root, and acting as a student setpriv (util-linux)")
    shared = Path(tempfile.mkdtemp(prefix="logreg-walk-"))
    try:
        os.chmod(shared, 0o755)
        exchange, home, root = shared / "exchange", shared / "home", tmp_path / "course"
        exchange.mkdir()
        os.chmod(exchange, 0o777)  # "must exist and be writable by everyone"
        (home / ".jupyter").mkdir(parents=True)
        setting = f"c.Exchange.root = {str(exchange)!r}\n"
        (home / ".jupyter" / "nbgrader_config.py").write_text(setting, encoding="utf-8")
        for path in (home, home / ".jupyter", home / ".jupyter" / "nbgrader_config.py"):
            os.chown(path, STUDENT_UID, STUDENT_UID)
        (root / "solutions" / AID).mkdir(parents=True)
        shutil.copy(REPO / "solutions" / AID / f"{AID}.md", root / "solutions" / AID)
        config = (REPO / "nbgrader_config.py").read_text(encoding="utf-8")
        (root / "nbgrader_config.py").write_text(config + "\n" + setting, encoding="utf-8")
        (root / "course.toml").write_text(guide_blocks("toml")[0], encoding="utf-8")
        (root / "roster.csv").write_text(ROSTER, encoding="utf-8")
        yield root, home
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_a_term_as_the_guide_prints_it(course):
    from nbgrader.api import Gradebook

    root, home = course
    walk = Walk(root, home)
    source = release.source_notebook(root / "solutions" / AID / f"{AID}.md")
    solution = nbformat.writes(source)
    (bug,) = [b for b in load_bugs([AID]) if b["name"] == "sign_flipped_logistic_gradient"]
    buggy = nbformat.writes(replace_cells(source, bug["replace"]))
    auto = sum(p for _, p in autograded_cells(source))
    written = _written_answers(source)
    top = auto + len(written)  # one point per written answer

    # Release: the students' notebook is written, the same as the committed one.
    out = walk.step("make release")
    assert out.returncode == 0, _out(out)
    released = root / "exercises" / AID / f"{AID}.ipynb"
    assert released.read_text() == (REPO / "exercises" / AID / f"{AID}.ipynb").read_text()
    for command in STEPS[1:3]:
        out = walk.step(command)
        assert out.returncode == 0, _out(out)

    # Collect a Canvas download, then again with the times.
    untouched = released.read_text(encoding="utf-8")
    _canvas_zip(
        root / "downloaded" / "submissions.zip",
        {
            f"leeann_1001_9001_{AID}.ipynb": solution,
            f"brownbob_LATE_1002_9002_{AID}.ipynb": solution,
            f"chencat_1003_9003_{AID}.ipynb": untouched,
            f"chencat_1003_9013_{AID}-1.ipynb": buggy,
        },
    )
    (root / "downloaded" / "times.csv").write_text(TIMES, encoding="utf-8")
    out = walk.step(STEPS[3])
    assert out.returncode == 0, _out(out)
    assert f"cat: kept {AID}-1.ipynb (the latest), older copies skipped" in out.stdout
    assert "nothing in the download from 2 roster students" in out.stdout
    sub = root / "submitted"
    assert (sub / "cat" / AID / f"{AID}.ipynb").read_text(encoding="utf-8") == buggy
    assert json.loads((sub / "bob" / AID / "collected.json").read_text())["late_mark"] == "Canvas"
    assert not (sub / "ann" / AID / "timestamp.txt").exists()  # a Canvas zip holds no times
    out = walk.step(STEPS[4])
    assert out.returncode == 0, _out(out)
    stamp = (sub / "bob" / AID / "timestamp.txt").read_text()
    assert stamp == "2025-03-17 01:00:00.000000 UTC"  # 02:00 in Zurich
    assert (sub / "ann" / AID / "timestamp.txt").is_file()

    # nobody, through the exchange: fetch, fill in, submit; the instructor collects.
    for command in STEPS[5:7]:
        out = walk.step(command)
        assert out.returncode == 0, (command, _out(out))
    fetched = home / AID / f"{AID}.ipynb"
    assert fetched.read_text(encoding="utf-8") == untouched
    fetched.write_text(solution, encoding="utf-8")  # the student's work
    os.chown(fetched, STUDENT_UID, STUDENT_UID)
    for command in STEPS[7:9]:
        out = walk.step(command)
        assert out.returncode == 0, (command, _out(out))
    assert (sub / "nobody" / AID / f"{AID}.ipynb").read_text(encoding="utf-8") == solution
    assert (sub / "nobody" / AID / "timestamp.txt").is_file()

    # Autograde: everything once, then nothing new twice, then one student again.
    out = walk.step("sudo make grade")
    assert out.returncode == 0, _out(out)
    rows = _rows(root)
    assert sorted(rows) == ["ann", "bob", "cat", "dan", "nobody"]
    ann, bob, cat, dan, nobody = (rows[s] for s in ("ann", "bob", "cat", "dan", "nobody"))
    assert float(ann["max_score"]) == top
    assert (ann["status"], float(ann["autograded"]), ann["days_late"]) == ("ok", auto, "0")
    assert ann["reason"] == "written answers need grading" and ann["name"] == "Ann Lee"
    assert bob["days_late"] == "3" and float(bob["late_penalty"]) == pytest.approx(0.3 * top)
    assert float(bob["score"]) == pytest.approx(auto - 0.3 * top)  # 3 days: 30%, the cap
    assert cat["status"] == "ok" and cat["days_late"] == "0"
    assert 0 < float(cat["autograded"]) < auto  # the buggy -1 copy, not the untouched one
    failed = [c for c in bug["expect_failed"] if float(cat[f"{AID}:{c}"]) == 0]
    assert failed == list(bug["expect_failed"])  # the tests that catch it, in grades.csv
    assert "sign" in _text(root / "feedback" / "cat" / AID / f"{AID}.html")  # and on her page
    assert (dan["status"], dan["score"], dan["reason"]) == ("missing", "0", "no submission")
    assert nobody["status"] == "ok" and float(nobody["autograded"]) == auto
    assert float(nobody["late_penalty"]) == pytest.approx(0.3 * top)  # submitted today
    graded = {s: root / "autograded" / s / AID / f"{AID}.ipynb" for s in ("ann", "bob", "cat")}
    first = {s: p.stat().st_mtime_ns for s, p in graded.items()}
    for s in ("ann", "bob", "cat", "nobody"):
        assert (root / "feedback" / s / AID / f"{AID}.html").is_file(), s
    assert (root / "_build" / "grades" / f"{AID}.png").is_file()
    for command in STEPS[10:12]:
        out = walk.step(command)
        assert out.returncode == 0, (command, _out(out))
        assert {s: p.stat().st_mtime_ns for s, p in graded.items()} == first, command
    out = walk.step("sudo make grade STUDENT=ann")
    assert out.returncode == 0, _out(out)
    again = {s: p.stat().st_mtime_ns for s, p in graded.items()}
    assert again["ann"] != first["ann"] and (again["bob"], again["cat"]) == (
        first["bob"],
        first["cat"],
    )
    out = walk.step("sudo make grades")
    assert out.returncode == 0, _out(out)
    assert _rows(root) == rows  # the same exports, from the gradebook

    # Grade by hand: formgrader (sudo make lab, tests/grader/test_lab.py) writes the gradebook.
    lab = walk.step("sudo make lab", run=False)
    assert lab == [".venv/bin/logreg-lab"]
    url = f"sqlite:///{root / 'gradebook' / 'gradebook.db'}"
    with Gradebook(url, "logreg-lessons") as gb:  # what formgrader does when you type a score
        for gid, points in zip(written, (1.0, 0.5), strict=True):
            grade = gb.find_grade(gid, AID, AID, "ann")
            grade.manual_score, grade.needs_manual_grade = points, False
        gb.find_comment(written[0], AID, AID, "ann").manual_comment = ANN_COMMENT
        gb.db.commit()
        # course.toml's due date (23:59 in Zurich), for formgrader and --before-duedate
        assert gb.find_assignment(AID).duedate == datetime.datetime(2025, 3, 14, 22, 59)
    out = walk.step("sudo make grades")
    assert out.returncode == 0, _out(out)
    ann = _rows(root)["ann"]
    assert float(ann["written"]) == 1.5 and float(ann["score"]) == auto + 1.5
    assert ann["reason"] == "" and ann[f"{AID}:{written[1]}"] == "0.5"
    page = _text(root / "feedback" / "ann" / AID / f"{AID}.html")
    assert f"Total: {ann['score']} / {ann['max_score']} points" in page
    assert ANN_COMMENT in page and "0.5 / 1 point" in page
    canvas = {r["SIS Login ID"]: r for r in csv.DictReader(open(root / "grades-canvas.csv"))}
    assert canvas["ann"]["Gradients (4321)"] == f"{auto + 1.5:g}"  # the guide's canvas_column
    assert canvas["bob"]["Gradients (4321)"] == ""  # written answers not graded yet

    # Look for copied code: ann, bob and nobody handed in the same solution.
    out = walk.step("sudo make similarity ASSIGNMENT=04_gradients")
    assert out.returncode == 0, _out(out)
    report = root / "reports" / AID
    with open(report / "similarity.csv", newline="", encoding="utf-8") as f:
        pairs = {frozenset((r["student_a"], r["student_b"])): r for r in csv.DictReader(f)}
    for pair in (("ann", "bob"), ("ann", "nobody"), ("bob", "nobody")):
        assert float(pairs[frozenset(pair)]["similarity_a"]) == pytest.approx(1.0), pair
    assert "bob" in (report / "similarity.html").read_text(encoding="utf-8")

    # Return the feedback: nobody fetches the page make grades released to the exchange.
    out = walk.step("nbgrader fetch_feedback 04_gradients --course logreg-lessons")
    assert out.returncode == 0, _out(out)
    (copy,) = (home / AID / "feedback").rglob(f"{AID}.html")
    assert copy.read_bytes() == (root / "feedback" / "nobody" / AID / f"{AID}.html").read_bytes()
    assert walk.todo == []


def test_exports_after_sudo_make_grade_say_to_run_them_as_that_user_too(tmp_path):
    """After `sudo make grade`, gradebook/ and submitted/ are root's, 0700: `make grades` and
    `make similarity` by the instructor's own account name the folder and the command to use
    (they failed with sqlite3's "unable to open database file" traceback)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("acting as another user needs root and setpriv (util-linux)")
    shared = Path(tempfile.mkdtemp(prefix="logreg-walk-owner-"))
    try:
        os.chmod(shared, 0o755)
        root = shared / "course"
        (root / "solutions" / AID).mkdir(parents=True)
        shutil.copy(REPO / "nbgrader_config.py", root)
        shutil.copy(REPO / "solutions" / AID / f"{AID}.md", root / "solutions" / AID)
        for name in ("gradebook", "submitted"):
            (root / name).mkdir(mode=0o700)  # root's, as logreg-grade leaves them
        (root / "gradebook" / "gradebook.db").touch()
        os.chown(root, STUDENT_UID, STUDENT_UID)  # the clone is the instructor's
        as_user = ["setpriv", f"--reuid={STUDENT_UID}", f"--regid={STUDENT_UID}", "--clear-groups"]
        for tool, target, folder in (
            (["logreg-grades"], "grades", "gradebook"),
            (["logreg-similarity", "--assignment", AID], "similarity", "submitted"),
        ):
            argv = [*as_user, str(BIN / tool[0]), *tool[1:], "--root", str(root)]
            out = subprocess.run(argv, cwd=shared, env=_env(HOME=str(shared)),
                                 capture_output=True, text=True, timeout=120)  # fmt: skip
            assert out.returncode == 2, _out(out)
            assert f"{root / folder} belongs to another user" in out.stderr, _out(out)
            assert f"(`sudo make {target}`)" in out.stderr and "Traceback" not in out.stderr
    finally:
        shutil.rmtree(shared, ignore_errors=True)
