"""logreg-release: exercises/ is generated from solutions/, byte for byte, and leaks nothing."""

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[2]
from logreg_grader import release  # noqa: E402

AIDS = [p.stem for p in release.sources(REPO)]
MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")


@pytest.mark.slow
def test_committed_exercises_equal_a_fresh_release():
    result = subprocess.run(
        [str(Path(sys.executable).parent / "logreg-release"), "--check"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_releasing_twice_is_byte_identical():
    nbs = {aid: release.source_notebook(REPO / "solutions" / aid / f"{aid}.md") for aid in AIDS}
    first = release.generate(nbs)
    nbs = {aid: release.source_notebook(REPO / "solutions" / aid / f"{aid}.md") for aid in AIDS}
    assert release.generate(nbs) == first


def test_exercises_hold_only_the_released_notebooks():
    files = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "exercises").rglob("*"))
    files = [f for f in files if (REPO / f).is_file()]
    assert files == [f"exercises/{aid}/{aid}.ipynb" for aid in AIDS]


@pytest.mark.parametrize("aid", AIDS)
def test_release_leaks_no_solution_hidden_test_or_jupytext_metadata(aid):
    text = (REPO / "exercises" / aid / f"{aid}.ipynb").read_text(encoding="utf-8")
    for marker in MARKERS:
        assert marker not in text
    assert '"formats"' not in text and '"jupytext"' not in text
    source = release.source_notebook(REPO / "solutions" / aid / f"{aid}.md")
    release.check_release(text, source, aid)  # no solution or hidden line, no model answer
    nb = nbformat.reads(text, 4)
    nbformat.validate(nb)
    ids = [cell.id for cell in nb.cells]
    assert len(set(ids)) == len(ids)
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader")
        if meta is None:
            assert cell.id.startswith(f"{aid}-")
            continue
        assert meta["schema_version"] == 3 and cell.id == meta["grade_id"]
        if meta["solution"] and cell.cell_type == "code":
            assert "raise NotImplementedError()" in cell.source
        if meta["solution"] and cell.cell_type == "markdown":
            assert cell.source == "YOUR ANSWER HERE"
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")


def test_config_keeps_text_sources_out_of_the_release():
    text = (REPO / "nbgrader_config.py").read_text(encoding="utf-8")
    for pattern in ('"*.md"', '"*.py"', '"README*"'):
        assert pattern in text
    assert release.course_assignments(REPO)[:3] == [
        "01_synthetic_data",
        "02_numerical_stability",
        "03_forward_pass",
    ]


GOOD_CELLS = """
```{code-cell} ipython3
---
nbgrader: {grade_id: f, solution: true}
---
def f(x):
    ### BEGIN SOLUTION
    return x
    ### END SOLUTION
```

```{code-cell} ipython3
---
nbgrader: {grade_id: f_works, grade: true, locked: true, points: 1}
---
\"\"\"f: returns its input.\"\"\"
assert f(1) == 1
```
"""
FRONT = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---
"""


def _source(tmp_path, body, front=FRONT):
    path = tmp_path / "99_demo.md"
    path.write_text(front + "\n# Demo\n" + body, encoding="utf-8")
    return path


def test_source_metadata_is_completed_deterministically(tmp_path):
    nb = release.source_notebook(_source(tmp_path, GOOD_CELLS))
    assert [c.id for c in nb.cells] == ["99_demo-0", "f", "f_works"]
    assert nb.cells[1].metadata["nbgrader"] == {
        "grade_id": "f",
        "solution": True,
        "grade": False,
        "locked": False,
        "task": False,
        "schema_version": 3,
    }
    assert "jupytext" not in nb.metadata
    assert release.notebook_text(nb) == release.notebook_text(
        release.source_notebook(_source(tmp_path, GOOD_CELLS))
    )


@pytest.mark.parametrize(
    "edit, problem",
    [
        (lambda s: s.replace("grade_id: f_works", "grade_id: f"), "already used"),
        (lambda s: s.replace(", points: 1", ""), "points"),
        (lambda s: s.replace("    ### END SOLUTION\n", ""), "BEGIN/END SOLUTION"),
        (lambda s: s.replace(", locked: true", ""), "locked"),
        (lambda s: s.replace('"""f: returns its input."""\n', ""), "docstring"),
        (lambda s: s.replace("grade_id: f_works, ", ""), "grade_id"),
    ],
)
def test_invalid_sources_are_refused(tmp_path, edit, problem):
    body = edit(GOOD_CELLS)
    assert body != GOOD_CELLS
    with pytest.raises(release.SourceError, match=problem):
        release.source_notebook(_source(tmp_path, body))


def test_jupytext_pairing_is_refused(tmp_path):
    front = FRONT.replace("jupytext:\n", "jupytext:\n  formats: ipynb,md:myst\n")
    with pytest.raises(release.SourceError, match="formats"):
        release.source_notebook(_source(tmp_path, GOOD_CELLS, front))


def test_check_release_finds_a_leaked_solution_line(tmp_path):
    body = GOOD_CELLS.replace("    return x\n", "    return x * 1000 + x // 7 + 12345\n")
    source = release.source_notebook(_source(tmp_path, body))
    leaked = json.loads(release.notebook_text(source))
    for cell in leaked["cells"]:
        cell["source"] = "".join(cell["source"]).replace("### BEGIN SOLUTION", "")
        cell["source"] = cell["source"].replace("### END SOLUTION", "")
    with pytest.raises(release.SourceError, match="return x \\* 1000"):
        release.check_release(json.dumps(leaked), source, "demo")
