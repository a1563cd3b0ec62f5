"""Grader hardening: adversarial submissions (tests/grader/attacks/battery.py) graded end to end by
logreg-grade, plus crash-safety, manual-grade keeping and concurrent runs."""

import csv
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pytest
from nbgrader_harness import autograded_cells

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "grader" / "attacks"))
import battery  # noqa: E402
import honest  # noqa: E402

from logreg_grader import release  # noqa: E402
from logreg_grader.notebook import Master  # noqa: E402

pytestmark = pytest.mark.slow
AID = battery.AID


def _env():
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONHASHSEED="0")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.update(LOGREG_CALL_TIMEOUT="10")
    return env


def _course(root: Path, aids=(AID,)) -> nbformat.NotebookNode:
    """Copy the config and the sources of ``aids``; the solution notebook of the first."""
    shutil.copy(REPO / "nbgrader_config.py", root / "nbgrader_config.py")
    for aid in aids:
        (root / "solutions" / aid).mkdir(parents=True)
        md = REPO / "solutions" / aid / f"{aid}.md"
        shutil.copy(md, root / "solutions" / aid / md.name)
    return release.source_notebook(REPO / "solutions" / aids[0] / f"{aids[0]}.md")


def _grade(root, *extra, wait=True):
    cmd = [str(Path(sys.executable).parent / "logreg-grade"), "--root", str(root), *extra]
    if not wait:
        return subprocess.Popen(
            cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
        )
    return subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=900)


def _html_text(path):
    """Visible text of an HTML file: tags removed, entities decoded."""
    import html
    import re

    text = path.read_text(encoding="utf-8")
    text = re.sub(r"<(script|style)\b.*?</\1>", "", text, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", "", text))


def _rows(root):
    with open(root / "grades.csv", newline="", encoding="utf-8") as f:
        return {(r["student"], r["assignment"]): r for r in csv.DictReader(f)}


@pytest.fixture(scope="module")
def battery_run():
    """The battery, graded in one run with the honest submissions (battery.trust_course)."""
    run = battery.trust_course()
    return run["root"], run["result"], run["seconds"], run["left"]


def test_batch_completes(battery_run):
    root, result, seconds, _ = battery_run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = _rows(root)
    attacks = {(a["name"], a.get("assignment", AID)) for a in battery.ATTACKS}
    assert attacks <= set(rows) and len(rows) == len(attacks) + len(honest.HONEST)
    print(f"battery and honest submissions graded in {seconds:.0f} s")
    print(result.stdout)


@pytest.mark.parametrize("attack", battery.ATTACKS, ids=[a["name"] for a in battery.ATTACKS])
def test_attack_gets_exact_score_and_status(battery_run, attack):
    root, result, _, _ = battery_run
    row = _rows(root)[(attack["name"], attack.get("assignment", AID))]
    status = row["status"]
    expected = attack["status"]
    assert status == expected or status.startswith(expected + ":"), (status, row["reason"])
    assert float(row["score"]) == attack["score"], (row["score"], status, row["reason"])
    if "reason" in attack:
        wanted = attack["reason"] if isinstance(attack["reason"], tuple) else (attack["reason"],)
        for text in wanted:
            assert text in row["reason"], (text, row["reason"])
        assert "kernel" not in row["reason"], row["reason"]


def test_feedback_never_shows_hidden_tests(battery_run):
    root, _, _, _ = battery_run
    master = Master.from_text(AID, (root / "solutions" / AID / f"{AID}.ipynb").read_text())
    secret = master.hidden
    for path in (root / "feedback").rglob("*.html"):
        text = _html_text(path)
        assert "HIDDEN TESTS" not in text
        lines = {ln.strip() for ln in text.splitlines()}
        assert not (secret & lines), path


def _cell_scores(root, aid, student):
    """grade_id -> (score, points) of every autograded cell, from the gradebook."""
    from nbgrader.api import Gradebook

    cfg = release.load_config(root, root)
    solution = release.source_notebook(REPO / "solutions" / aid / f"{aid}.md")
    with Gradebook(cfg.CourseDirectory.db_url, cfg.CourseDirectory.course_id) as gb:
        return {
            gid: (gb.find_grade(gid, aid, aid, student).score, points)
            for gid, points in autograded_cells(solution)
        }


@pytest.mark.parametrize(
    "student, aid, losing",
    [
        ("loop_swallowing_interrupts", AID, set(battery.SIGMOID_TESTS)),
        ("library_sigmoid_from_another_cell", AID, set(battery.SIGMOID_TESTS)),
        (
            "minibatches_calls_library",
            battery.AID_05,
            {
                "minibatches_cover_every_index_once",
                "minibatches_are_shuffled_and_reproducible",
                "minibatches_follow_the_randperm_recipe",
            },
        ),
    ],
)
def test_a_fault_costs_only_the_tests_of_its_function(battery_run, student, aid, losing):
    """A hang (or a banned call) in one function: its tests get 0, every other test passes."""
    scores = _cell_scores(battery_run[0], aid, student)
    lost = {gid for gid, (score, points) in scores.items() if score < points}
    assert lost == losing, scores


def test_sandboxes_leave_no_file_in_the_host_tmp_or_shm(battery_run):
    """What a submission writes to /tmp and /dev/shm vanishes with its sandbox."""
    import re

    from logreg_grader.sandbox import BLOCK_SIZE

    root, _, _, left = battery_run
    writer = root / "autograded" / "0_writes_tmp_and_shm" / AID / f"{AID}.ipynb"
    printed = re.search(r"sandbox uid (\d+)", writer.read_text(encoding="utf-8"))
    assert printed, "the writer's cells did not run"
    block = int(printed.group(1)) - int(printed.group(1)) % BLOCK_SIZE
    ours = {p: uid for p, uid in left.items() if block <= uid < block + BLOCK_SIZE}
    assert not ours, f"files of this run's sandbox uids left in the host: {sorted(ours)[:20]}"
    for top in ("/tmp", "/dev/shm"):
        assert not os.path.lexists(f"{top}/{battery._LEAK_FILE}")


def test_student_html_never_reaches_the_autograded_notebook_live(battery_run):
    """Markdown with <script>/<img onerror>/javascript: links, raw HTML cells, attachments and
    saved HTML or JavaScript outputs: none of it is live in what formgrader shows."""
    import re

    root = battery_run[0]
    path = root / "autograded" / "html_injection" / AID / f"{AID}.ipynb"
    nb = nbformat.read(path, 4)
    sources = "".join(c.source for c in nb.cells if c.cell_type != "code")
    assert battery._MARKER in sources, "the student's markdown is missing (shown as text)"
    for cell in nb.cells:
        assert "attachments" not in cell, cell
        if cell.cell_type != "code":
            for tag in ("<script", "<img", "<svg"):
                assert tag not in cell.source.lower(), cell.source
        for out in cell.get("outputs", []):
            assert set(out.get("data", {})) <= {"text/plain"}, out
            assert battery._MARKER not in str(out), out
    html = honest.formgrade_html(path, "html_injection", AID)
    assert not re.search(rf"<script[^>]*>[^<]*{battery._MARKER}", html)
    assert not re.search(r"<[a-z]+\b[^>]*\bon[a-z]+\s*=[^>]*" + battery._MARKER, html, re.I)
    live = re.findall(r"<[a-z]+\b[^>]*(?:href|src)\s*=\s*[\"']?\s*javascript:[^>]*>", html, re.I)
    assert not live, live


@pytest.mark.parametrize("readable", [True, False], ids=["readable_course", "private_course"])
def test_grading_as_non_root_is_refused_before_anything_is_graded(tmp_path, readable):
    """Without root there is no sandbox: logreg-grade says so and grades nothing."""
    root = Path(tempfile.mkdtemp(prefix="logreg-nonroot-")) if readable else tmp_path
    try:
        solution = _course(root)
        folder = root / "submitted" / "ann" / AID
        folder.mkdir(parents=True)
        nbformat.write(solution, folder / f"{AID}.ipynb")
        if readable:
            for path in [root, *root.rglob("*")]:
                path.chmod(0o755 if path.is_dir() else 0o644)
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        cmd += [str(Path(sys.executable).parent / "logreg-grade"), "--root", str(root)]
        result = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
        assert result.returncode != 0, result.stdout[-2000:]
        assert "must run as root" in result.stderr, result.stderr[-2000:]
        assert "Traceback" not in result.stderr, result.stderr[-3000:]
        for name in ("grades.csv", "gradebook", "autograded", "feedback"):
            assert not (root / name).exists(), name
    finally:
        if readable:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture()
def small_course(tmp_path):
    solution = _course(tmp_path)
    for student in ("ann", "bob", "cid"):
        folder = tmp_path / "submitted" / student / AID
        folder.mkdir(parents=True)
        nbformat.write(solution, folder / f"{AID}.ipynb")
    return tmp_path


def _recorded(root) -> dict[str, str]:
    """student -> status of each submission the gradebook holds (read without locking it)."""
    import sqlite3

    db = root / "gradebook" / "gradebook.db"
    if not db.exists():
        return {}
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            rows = con.execute("SELECT student, status FROM logreg_grader_status").fetchall()
    except sqlite3.Error:  # not created yet, or busy
        return {}
    return {student: status for student, status in rows}


def test_kill_mid_batch_keeps_grades_written(tmp_path):
    """SIGKILL of the whole run after its first recorded submission: what was recorded stays,
    complete and correct, and no process of the run survives. (grades.csv is written at the
    end only, so the gradebook is what a killed run leaves.)"""
    from nbgrader.api import Gradebook

    solution = _course(tmp_path)
    students = [f"s{k}" for k in range(6)]
    for student in students:
        folder = tmp_path / "submitted" / student / AID
        folder.mkdir(parents=True)
        nbformat.write(solution, folder / f"{AID}.ipynb")
    proc = _grade(tmp_path, wait=False)
    deadline = time.time() + 300
    while time.time() < deadline and not _recorded(tmp_path) and proc.poll() is None:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    recorded = _recorded(tmp_path)
    assert recorded, "nothing was kept"
    assert len(recorded) < len(students), "the run ended before it could be killed"
    assert set(recorded.values()) == {"ok"}, recorded
    cfg = release.load_config(tmp_path, tmp_path)
    with Gradebook(cfg.CourseDirectory.db_url, cfg.CourseDirectory.course_id) as gb:
        for student in recorded:
            assert gb.find_submission(AID, student).score == battery.FULL, student
    deadline = time.time() + 30  # a killed process with gigabytes mapped takes a moment
    while _alive_in_group(proc.pid) and time.time() < deadline:
        time.sleep(0.5)
    left = _alive_in_group(proc.pid)
    assert not left, f"processes of the killed run still running: {left}"


def _alive_in_group(pgid: int) -> list[str]:
    """The processes of a process group that are not dead (zombies awaiting reaping are)."""
    alive = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...: comm may hold spaces, so split after the last ")"
        state, _, group = stat.rsplit(")", 1)[1].split()[:3]
        if int(group) == pgid and state != "Z":
            alive.append(f"{entry.name} {stat.split(')')[0].split('(', 1)[1]} {state}")
    return alive


def test_force_regrade_keeps_manual_grade_and_concurrent_runs_do_not_corrupt(small_course):
    from nbgrader.api import Gradebook

    first = _grade(small_course)
    assert first.returncode == 0, first.stderr[-2000:]
    cfg = release.load_config(small_course, small_course)
    with Gradebook(cfg.CourseDirectory.db_url, cfg.CourseDirectory.course_id) as gb:
        sub = gb.find_submission(AID, "ann")
        manual = [g for nb in sub.notebooks for g in nb.grades if g.cell.cell_type == "markdown"]
        assert manual, "the assignment has no written answer"
        manual[0].manual_score = 1.0
        gb.db.commit()
    procs = [_grade(small_course, "--force", wait=False) for _ in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err.decode()[-2000:]
    rows = _rows(small_course)
    assert set(rows) == {(s, AID) for s in ("ann", "bob", "cid")}
    assert float(rows[("ann", AID)]["score"]) == battery.FULL + 1
    assert float(rows[("bob", AID)]["score"]) == battery.FULL
    with Gradebook(cfg.CourseDirectory.db_url, cfg.CourseDirectory.course_id) as gb:
        assert gb.find_submission(AID, "ann").score == battery.FULL + 1
        assert len(gb.submissions()) if hasattr(gb, "submissions") else True
