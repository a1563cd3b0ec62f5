"""Grader hardening: adversarial submissions (tests/attacks/battery.py) graded end to end by
logreg-grade, plus crash-safety, manual-grade keeping and concurrent runs."""

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "attacks"))
import battery  # noqa: E402

from logreg_grader import release  # noqa: E402
from logreg_grader.notebook import Master  # noqa: E402

pytestmark = pytest.mark.slow
AID = battery.AID


def _env():
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONHASHSEED="0")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.update(LOGREG_CALL_TIMEOUT="10")
    return env


def _course(root: Path) -> nbformat.NotebookNode:
    shutil.copy(REPO / "nbgrader_config.py", root / "nbgrader_config.py")
    (root / "solutions" / AID).mkdir(parents=True)
    md = REPO / "solutions" / AID / f"{AID}.md"
    shutil.copy(md, root / "solutions" / AID / md.name)
    return release.source_notebook(md)


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
def battery_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("attacks")
    solution = _course(root)
    for attack in battery.ATTACKS:
        battery.build(attack, solution, root / "submitted" / attack["name"] / AID)
    start = time.perf_counter()
    result = _grade(root, "--jobs", "2")
    return root, result, time.perf_counter() - start


def test_batch_completes(battery_run):
    root, result, seconds = battery_run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = _rows(root)
    assert {s for s, _ in rows} == {a["name"] for a in battery.ATTACKS}
    print(f"battery graded in {seconds:.0f} s")


@pytest.mark.parametrize("attack", battery.ATTACKS, ids=[a["name"] for a in battery.ATTACKS])
def test_attack_gets_exact_score_and_status(battery_run, attack):
    root, result, _ = battery_run
    row = _rows(root)[(attack["name"], AID)]
    status = row["status"]
    expected = attack["status"]
    assert status == expected or status.startswith(expected + ":"), (status, row["reason"])
    assert float(row["score"]) == attack["score"], (row["score"], status, row["reason"])


def test_feedback_never_shows_hidden_tests(battery_run):
    root, _, _ = battery_run
    master = Master.from_text(AID, (root / "solutions" / AID / f"{AID}.ipynb").read_text())
    secret = master.hidden
    for path in (root / "feedback").rglob("*.html"):
        text = _html_text(path)
        assert "HIDDEN TESTS" not in text
        lines = {ln.strip() for ln in text.splitlines()}
        assert not (secret & lines), path


@pytest.fixture()
def small_course(tmp_path):
    solution = _course(tmp_path)
    for student in ("ann", "bob", "cid"):
        folder = tmp_path / "submitted" / student / AID
        folder.mkdir(parents=True)
        nbformat.write(solution, folder / f"{AID}.ipynb")
    return tmp_path


def test_kill_mid_batch_keeps_grades_written(small_course):
    proc = _grade(small_course, wait=False)
    deadline = time.time() + 300
    while time.time() < deadline:
        csv_path = small_course / "grades.csv"
        if csv_path.exists() and len(_rows(small_course)) >= 1:
            break
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    rows = _rows(small_course)
    assert rows, "nothing was kept"
    for row in rows.values():
        assert float(row["score"]) == battery.FULL and row["status"] == "ok"
    from nbgrader.api import Gradebook

    cfg = release.load_config(small_course, small_course)
    with Gradebook(cfg.CourseDirectory.db_url, cfg.CourseDirectory.course_id) as gb:
        for student, _ in rows:
            assert gb.find_submission(AID, student).score == battery.FULL


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
