"""The grader never costs an honest student points: correct but unusual submissions
(tests/grader/attacks/honest.py) get every autograded point, status ok, and show in the
formgrader as written. They are graded end to end by logreg-grade --jobs 2, in the same run
as the attack battery of tests/grader/test_hardening.py (battery.trust_course: one run for
both files)."""

import csv
import sys
from pathlib import Path

import nbformat
import pytest
from nbgrader_harness import autograded_cells

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "grader" / "attacks"))
import battery  # noqa: E402
import honest  # noqa: E402
from honest import student  # noqa: E402

from logreg_grader import release  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def graded():
    run = battery.trust_course()
    with open(run["root"] / "grades.csv", newline="", encoding="utf-8") as f:
        rows = {(r["student"], r["assignment"]): r for r in csv.DictReader(f)}
    return run["root"], run["result"], rows, run["solutions"], run["seconds"]


def test_honest_batch_completes(graded):
    root, result, rows, _, seconds = graded
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert {(student(e), e["assignment"]) for e in honest.HONEST} <= set(rows)
    print(f"graded in {seconds:.0f} s (with the attack battery)\n{result.stdout}")


def test_battery_is_large_and_varied():
    """The issue asks for at least 15 honest submissions."""
    assert len(honest.HONEST) >= 15
    assert len({student(e) for e in honest.HONEST}) == len(honest.HONEST)


@pytest.mark.parametrize("entry", honest.HONEST, ids=student)
def test_honest_submission_gets_full_marks(graded, entry):
    from nbgrader.api import Gradebook

    root, _, rows, sources, _ = graded
    aid, name = entry["assignment"], student(entry)
    row = rows[(name, aid)]
    cells = autograded_cells(sources[aid])
    cfg = release.load_config(root, root)
    with Gradebook(cfg.CourseDirectory.db_url, cfg.CourseDirectory.course_id) as gb:
        lost = {}
        for gid, points in cells:
            score = gb.find_grade(gid, aid, aid, name).score
            if score != points:
                lost[gid] = f"{score} of {points}"
    assert not lost, f"{entry['covers']}: lost points in {lost}; reason: {row['reason']}"
    assert row["status"] == "ok", (row["status"], row["reason"])
    assert float(row["score"]) == sum(p for _, p in cells), row
    assert (root / "autograded" / name / aid / f"{aid}.ipynb").is_file()


def _markdown_exporter():
    """The formgrader's exporter (template, course config), for its markdown2html filter."""
    from nbconvert import HTMLExporter
    from nbgrader.server_extensions.formgrader import handlers
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=str(REPO)).load_config()
    config.HTMLExporter.template_name = "formgrade"
    config.HTMLExporter.extra_template_basedirs = [handlers.template_path]
    return HTMLExporter(config=config)


def test_formgrader_shows_every_honest_submission_as_written(graded):
    """Every markdown cell of each autograded notebook renders with the formgrader's markdown
    filter (a missing attachment would make the whole page fail), a written answer shows as
    the student wrote it (math with < and &, code, a pasted image), and the page of the
    notebook with that answer renders whole."""
    root = graded[0]
    exporter = _markdown_exporter()
    problems = {}
    for entry in honest.HONEST:
        aid, name = entry["assignment"], student(entry)
        path = root / "autograded" / name / aid / f"{aid}.ipynb"
        nb = nbformat.read(path, 4)
        for cell in nb.cells:
            if cell.cell_type != "markdown":
                continue
            gid = cell.metadata.get("nbgrader", {}).get("grade_id", "")
            try:
                html = exporter.markdown2html({"cell": cell}, cell.source)
            except Exception as err:  # noqa: BLE001 - formgrader would show an error page
                problems[name] = f"cell {gid!r} cannot be rendered: {type(err).__name__}: {err}"
                break
            missing = [f[:60] for f in entry.get("rendered", {}).get(gid, ()) if f not in html]
            if missing:
                problems[name] = f"cell {gid!r} is not shown as written; missing {missing}"
        if entry.get("rendered") and name not in problems:
            try:
                honest.formgrade_html(path, name, aid)
            except Exception as err:  # noqa: BLE001
                problems[name] = f"the formgrader page fails: {type(err).__name__}: {err}"
    assert not problems, problems
