"""logreg-similarity on a small class of 04_gradients built from the release (nothing graded).

Submissions are the released notebook with its two solution cells filled with code strings:

- ``perfect``: the instructor's solution; ``honest-flat`` and ``honest-steps``: two other
  correct solutions written independently (a flat view and a loop over two steps; checked
  against logreg_lessons below). No pair of these three may be listed.
- ``renamed``: the solution with every local variable renamed, and ``half``: honest-steps'
  numerical_gradient with the solution's logistic_gradients renamed. Both must be listed.
- ``untouched-1..3``: the release as it is (equal to the starter code): never listed.
- ``broken`` (not JSON), ``not-a-notebook`` (JSON without cells), ``empty`` (no notebook),
  ``linked`` (a symbolic link to perfect's notebook): left out with a reason.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest
from nbgrader_harness import REPO

from logreg_grader import notebook, similarity
from logreg_grader.course import Course

AID = "04_gradients"
IDS = ("numerical_gradient", "logistic_gradients")

HONEST = {
    "honest-flat": {
        "numerical_gradient": """
            flat = x.view(-1)
            out = torch.empty_like(flat)
            for i in range(flat.numel()):
                saved = flat[i].clone()
                flat[i] = saved + h
                up = f(x)
                flat[i] = saved - h
                down = f(x)
                flat[i] = saved
                out[i] = (up - down) / (2.0 * h)
            return out.view_as(x)
        """,
        "logistic_gradients": """
            logits = torch.matmul(X, w) + b
            residual = torch.sigmoid(logits) - y.type_as(logits)
            grad_w = torch.mean(residual.unsqueeze(1) * X, dim=0)
            grad_b = torch.mean(residual)
            return grad_w, grad_b
        """,
    },
    "honest-steps": {
        "numerical_gradient": """
            g = torch.empty_like(x)
            for i in np.ndindex(tuple(x.shape)):
                v = x[i].item()
                values = []
                for step in (h, -h):
                    x[i] = v + step
                    values.append(float(f(x)))
                x[i] = v
                g[i] = (values[0] - values[1]) / (2 * h)
            return g
        """,
        "logistic_gradients": """
            m = len(y)
            err = sigmoid(X @ w + b) - y.to(X.dtype)
            return X.T @ err / m, err.mean()
        """,
    },
}
RENAMES = {
    "grad": "result",
    "idx": "position",
    "old": "kept",
    "f_plus": "upper",
    "f_minus": "lower",
    "n": "count",
    "p": "probabilities",
    "dz": "delta",
    "dw": "grad_w",
    "db": "grad_b",
}
EVIL = "mal<img src=x onerror=alert(1)>"  # a student folder name that is HTML


def reference() -> dict[str, str]:
    """The body of each solution region of the instructor's source."""
    from logreg_grader import release

    nb = release.source_notebook(REPO / "solutions" / AID / f"{AID}.md")
    out = {}
    for cell in nb.cells:
        if notebook.kind_of(cell) == "solution":
            region = notebook.SOLUTION.search(cell.source).group(0)
            out[cell.metadata.nbgrader.grade_id] = "\n".join(region.split("\n")[1:-1])
    return out


def renamed(body: str) -> str:
    for old, new in RENAMES.items():
        body = re.sub(rf"(?<![\w.]){old}\b", new, body)
    return body


def fill(bodies: dict[str, str]):
    """The release with each solution cell's stub replaced by the body given for it."""
    nb = nbformat.read(REPO / "exercises" / AID / f"{AID}.ipynb", 4)
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in bodies and notebook.kind_of(cell) == "solution":
            stub = textwrap.indent(notebook.STUB, "    ")
            assert stub in cell.source, f"the release of {gid} has no stub"
            code = textwrap.indent(textwrap.dedent(bodies[gid]).strip("\n"), "    ")
            cell.source = cell.source.replace(stub, code)
    return nb


def submit(root: Path, student: str, nb=None, text: str | None = None) -> None:
    folder = Course(root).submitted(student, AID)
    folder.mkdir(parents=True)
    if nb is not None:
        nbformat.write(nb, folder / f"{AID}.ipynb")
    elif text is not None:
        (folder / f"{AID}.ipynb").write_text(text, encoding="utf-8")


def empty_course(root: Path) -> Course:
    for part in ("solutions", "exercises"):
        (root / part / AID).mkdir(parents=True)
    shutil.copy(REPO / "solutions" / AID / f"{AID}.md", root / "solutions" / AID)
    shutil.copy(REPO / "exercises" / AID / f"{AID}.ipynb", root / "exercises" / AID)
    return Course(root)


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Course:
    root = empty_course(tmp_path_factory.mktemp("similar")).root
    ref = reference()
    assert set(ref) == set(IDS)
    copy = {gid: renamed(body) for gid, body in ref.items()}
    changed = {old for old in RENAMES if re.search(rf"(?<![\w.]){old}\b", "".join(ref.values()))}
    assert len(changed) >= 8, "the renamed copy must rename most of the solution's variables"
    copy["logistic_gradients"] += "\n# </code></pre><script>alert(1)</script>"
    submit(root, "perfect", fill(ref))
    submit(root, "renamed", fill(copy))
    submit(root, EVIL, fill(copy))
    for student, bodies in HONEST.items():
        submit(root, student, fill(bodies))
    half = {
        "numerical_gradient": HONEST["honest-steps"]["numerical_gradient"],
        "logistic_gradients": copy["logistic_gradients"],
    }
    submit(root, "half", fill(half))
    for i in (1, 2, 3):
        submit(root, f"untouched-{i}", fill({}))
    submit(root, "broken", text="not json {")
    submit(root, "not-a-notebook", text=json.dumps({"cells": "none"}))
    submit(root, "empty")
    submit(root, "linked")
    (root / "submitted" / "linked" / AID / f"{AID}.ipynb").symlink_to(
        root / "submitted" / "perfect" / AID / f"{AID}.ipynb"
    )
    return Course(root)


@pytest.fixture(scope="module")
def report(course) -> similarity.Report:
    # every pair with any overlap, for the measured values
    return similarity.analyse(course, AID, threshold=0.01, min_tokens=0)


def scores(report) -> dict[frozenset, float]:
    return {frozenset((p.student_a, p.student_b)): p.score for p in report.pairs}


@pytest.mark.parametrize("student", sorted(HONEST))
def test_fixture_solutions_are_correct(student):
    """The honest fixtures are correct solutions (else the test below proves nothing)."""
    import numpy as np
    import torch

    import logreg_lessons as ref
    from logreg_lessons import sigmoid

    space = {"np": np, "torch": torch, "sigmoid": sigmoid}
    sig = {"numerical_gradient": "f, x, h=1e-6", "logistic_gradients": "X, y, w, b"}
    for gid, body in HONEST[student].items():
        code = textwrap.indent(textwrap.dedent(body).strip("\n"), "    ")
        exec(f"def {gid}({sig[gid]}):\n{code}\n", space)
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(7, 3, generator=gen, dtype=torch.float64)
    y = (torch.rand(7, generator=gen) > 0.5).double()
    w, b = torch.randn(3, generator=gen, dtype=torch.float64), torch.tensor(0.3).double()
    dw, db = space["logistic_gradients"](X, y, w, b)
    want_dw, want_db = ref.logistic_gradients(X, y, w, b)
    assert torch.allclose(dw, want_dw) and torch.allclose(db, want_db)
    x = torch.randn(2, 3, generator=gen, dtype=torch.float64)
    before = x.clone()
    g = space["numerical_gradient"](lambda t: (torch.sin(t) * t).sum(), x)
    assert torch.equal(x, before)
    assert torch.allclose(g, torch.sin(x) + x * torch.cos(x), atol=1e-7)


def test_renamed_copies_are_listed(report):
    """A copy with its variables renamed matches fully; a copy of one function is above
    the threshold too (the solution's and the honest fixture it took it from)."""
    got = scores(report)
    assert got[frozenset(("perfect", "renamed"))] > 0.99
    assert got[frozenset(("perfect", EVIL))] > 0.99
    assert got[frozenset(("half", "perfect"))] > similarity.THRESHOLD
    assert got[frozenset(("half", "honest-steps"))] > similarity.THRESHOLD
    assert report.pairs[0].score >= report.pairs[-1].score


def test_independent_solutions_are_not_listed(report):
    """No pair of three independently written correct solutions reaches the threshold."""
    got = scores(report)
    honest = ["perfect", *HONEST]
    pairs = [frozenset((a, b)) for i, a in enumerate(honest) for b in honest[i + 1 :]]
    measured = {tuple(sorted(p)): round(got.get(p, 0.0), 2) for p in pairs}
    assert max(measured.values()) < similarity.THRESHOLD, measured


def test_untouched_releases_match_nobody(report):
    """Notebooks equal to the starter code have no code of their own: no pair, listed apart."""
    untouched = {f"untouched-{i}" for i in (1, 2, 3)}
    assert untouched <= set(report.compared)
    assert set(report.starter_only) == untouched
    assert not [p for p in report.pairs if {p.student_a, p.student_b} & untouched]


def test_unreadable_notebooks_are_left_out_with_a_reason(report):
    assert set(report.skipped) == {"broken", "not-a-notebook", "empty", "linked"}
    assert "symbolic link" in report.skipped["linked"]
    assert "not valid JSON" in report.skipped["broken"]
    assert "cells" in report.skipped["not-a-notebook"]
    assert f"no {AID}.ipynb" in report.skipped["empty"]


def code_of(bodies: dict[str, str]) -> str:
    return similarity.solution_code(json.loads(nbformat.writes(fill(bodies))), list(IDS))


def test_tiny_identical_attempts_are_not_listed():
    """Two notebooks whose only own code is one identical line match fully, but share fewer
    than MIN_TOKENS tokens: not listed by default (listed with min_tokens=0)."""
    line = {"numerical_gradient": "return torch.zeros_like(x)"}
    codes = {"a": code_of(line), "b": code_of(line)}
    pairs, _ = similarity.compare(codes, code_of({}), min_tokens=0)
    assert len(pairs) == 1 and pairs[0].score > 0.99
    assert pairs[0].token_overlap < similarity.MIN_TOKENS
    assert similarity.compare(codes, code_of({}))[0] == []


def test_code_that_utf8_cannot_encode_is_still_compared():
    """A lone surrogate (valid in JSON) in a solution cell neither crashes the run nor
    hides the copy."""
    code = code_of(reference())
    pairs, starter_only = similarity.compare({"a": code + "# \ud800\n", "b": code}, code_of({}))
    assert [(p.student_a, p.student_b) for p in pairs] == [("a", "b")] and not starter_only


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_command_writes_private_reports_and_touches_no_grade(course):
    """logreg-similarity writes reports/<id>/ (0700, files 0600) and nothing else: grades.csv,
    the gradebook and submitted/ are byte-identical before and after."""
    root = course.root
    (root / "gradebook").mkdir(exist_ok=True)
    (root / "gradebook" / "gradebook.db").write_bytes(b"SQLite format 3\x00 fixture bytes")
    (root / "grades.csv").write_text("student,assignment,score\nperfect,04_gradients,13\n")
    before = {k: v for k, v in tree(root).items() if not k.startswith("reports")}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "logreg-similarity"), "--assignment", AID]
        + ["--root", str(root)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    after = {k: v for k, v in tree(root).items() if not k.startswith("reports")}
    assert after == before
    folder = course.reports(AID)
    for path in (folder.parent, folder):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700
    for name in ("similarity.csv", "similarity.html"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
    assert "left out broken: the notebook is not valid JSON" in result.stderr
    with open(folder / "similarity.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == similarity.CSV_COLUMNS
    listed = {frozenset((r["student_a"], r["student_b"])) for r in rows}
    assert listed == {
        frozenset(p)
        for p in [
            ("perfect", "renamed"),
            ("perfect", EVIL),
            ("renamed", EVIL),
            ("half", "perfect"),
            ("half", "renamed"),
            ("half", EVIL),
            ("half", "honest-steps"),
        ]
    }
    values = [max(float(r["similarity_a"]), float(r["similarity_b"])) for r in rows]
    assert values == sorted(values, reverse=True)
    assert all(int(r["token_overlap"]) > 0 for r in rows)
    page = (folder / "similarity.html").read_text(encoding="utf-8")
    assert "<img" not in page and "<script" not in page
    assert "mal&lt;img src=x onerror=alert(1)&gt;" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # the code, escaped
    assert "highlight-red" in page and "highlight-green" in page  # copydetect's side by side
    assert "http" not in page.replace("https://github.com/blingenf/copydetect", "")
    assert "untouched-1" in page and "not valid JSON" in page


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--assignment", "04_gradient"], "the assignments are: 04_gradients"),
        (["--assignment", AID, "--threshold", "0"], "--threshold must be in (0, 1]"),
        (["--assignment", AID, "--threshold", "1.5"], "--threshold must be in (0, 1]"),
        (["--assignment", AID, "--min-tokens", "-1"], "--min-tokens must be 0 or more"),
    ],
)
def test_bad_arguments_are_named(course, capsys, args, message):
    assert similarity.similarity_main(args + ["--root", str(course.root)]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("students", [0, 1])
def test_fewer_than_two_submissions(tmp_path, students):
    """Nothing to compare: an empty report, nobody called starter-only."""
    course = empty_course(tmp_path)
    if students:
        submit(tmp_path, "perfect", fill(reference()))
    report = similarity.analyse(course, AID)
    assert (len(report.compared), report.pairs, report.starter_only) == (students, [], [])
    assert similarity.similarity_main(["--assignment", AID, "--root", str(tmp_path)]) == 0
    assert "No pair" in (course.reports(AID) / "similarity.html").read_text(encoding="utf-8")


def test_side_by_side_views_are_capped(report, monkeypatch):
    """A class that copied one text has thousands of pairs: the page shows the most alike
    side by side and lists every pair in its table (the CSV has them all)."""
    monkeypatch.setattr(similarity, "MAX_VIEWS", 2)
    page = similarity.html_text(report)
    assert page.count("<details") == 2
    assert page.count("<tr>") == len(report.pairs) + 1 > 3
    assert f"the 2 most alike pairs (all {len(report.pairs)} are in similarity.csv)" in page


def test_noise_threshold_finds_a_copied_short_function(monkeypatch):
    """copydetect's default k = 25 misses a copy of the five-line logistic_gradients next to
    an honest numerical_gradient; NOISE = 20 lists it (why similarity.py does not use 25)."""
    ref = reference()
    copied = {
        "numerical_gradient": HONEST["honest-flat"]["numerical_gradient"],
        "logistic_gradients": renamed(ref["logistic_gradients"]),
    }
    codes = {"copied": code_of(copied), "perfect": code_of(ref)}
    at_20 = similarity.compare(codes, code_of({}), threshold=0.01, min_tokens=0)[0]
    monkeypatch.setattr(similarity, "NOISE", 25)
    monkeypatch.setattr(similarity, "GUARANTEE", 25)
    at_25 = similarity.compare(codes, code_of({}), threshold=0.01, min_tokens=0)[0]
    assert at_20[0].score > similarity.THRESHOLD > at_25[0].score
