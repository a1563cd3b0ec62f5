"""The autograder end to end: logreg-grade on a fixture class, with nbgrader's gradebook.

One session-scoped course is graded once (logreg-grade --jobs 2, as `make grade` does); every
test below reads its results: the gradebook's per-cell scores, grades.csv and the feedback HTML.
Set GRADING_TEST_ASSIGNMENTS=02_numerical_stability,... to grade only some assignments.
"""

import csv
import html
import re

import pytest
from nbgrader_harness import (
    NOISY_ASSIGNMENT,
    Course,
    assignments,
    autograded_cells,
    load_bugs,
)

pytestmark = pytest.mark.slow

AIDS = assignments()
BUGS = load_bugs(AIDS)


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    root = tmp_path_factory.mktemp("course")
    graded = Course(root, AIDS, BUGS).build().grade(jobs=2)
    assert graded.result.returncode == 0, graded.result.stdout + graded.result.stderr
    return graded


def _text(path):
    """Visible text of a feedback file (tags removed, entities decoded)."""
    raw = path.read_text(encoding="utf-8")
    raw = re.sub(r"<(script|style)\b.*?</\1>", "", raw, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", "", raw))


def _failed(scores):
    return sorted(gid for gid, (score, top) in scores.items() if score < top)


@pytest.mark.parametrize("aid", AIDS)
def test_solution_gets_full_marks(course, aid):
    scores = course.scores("perfect", aid)
    assert _failed(scores) == [], f"the solution of {aid} loses points in {_failed(scores)}"


@pytest.mark.parametrize("aid", AIDS)
def test_untouched_release_gets_zero(course, aid):
    scores = course.scores("untouched", aid)
    passed = sorted(gid for gid, (score, _) in scores.items() if score > 0)
    assert passed == [], f"an empty {aid} notebook scores in {passed}"


@pytest.mark.skipif(NOISY_ASSIGNMENT not in AIDS, reason="assignment not selected")
def test_warning_and_stderr_from_correct_solution_still_full_marks(course):
    scores = course.scores("noisy", NOISY_ASSIGNMENT)
    assert _failed(scores) == []


@pytest.mark.parametrize("bug", BUGS, ids=[b["name"] for b in BUGS])
def test_bug_fails_exactly_the_expected_cells(course, bug):
    aid, student = bug["assignment"], f"bug-{bug['name']}"
    scores = course.scores(student, aid)
    unknown = set(bug["expect_failed"]) - set(scores)
    assert not unknown, f"{bug['source']}: no test cells {sorted(unknown)} in {aid}"
    assert _failed(scores) == sorted(bug["expect_failed"])
    text = _text(course.feedback(student, aid))
    for phrase in bug.get("expect_in_feedback", []):
        assert phrase in text, f"feedback of {student} does not mention {phrase!r}"


def test_grades_csv_has_one_row_per_submission_with_scores(course):
    with open(course.root / "grades.csv", newline="", encoding="utf-8") as f:
        rows = {(r["student"], r["assignment"]): r for r in csv.DictReader(f)}
    expected = {(s, a) for s, aids in course.students.items() for a in aids}
    assert set(rows) == expected
    for aid in AIDS:
        auto = sum(points for _, points in autograded_cells(course.sources[aid]))
        perfect, untouched = rows[("perfect", aid)], rows[("untouched", aid)]
        assert float(perfect["score"]) == auto
        assert float(untouched["score"]) == 0
        assert float(perfect["max_score"]) >= auto
        assert not perfect["status"].startswith("failed")


def test_unrunnable_submissions_are_reported_and_do_not_stop_the_batch(course):
    with open(course.root / "grades.csv", newline="", encoding="utf-8") as f:
        rows = {(r["student"], r["assignment"]): r for r in csv.DictReader(f)}
    first = AIDS[0]
    assert rows[("broken", first)]["status"] == "failed: unreadable"
    assert "not valid JSON" in rows[("broken", first)]["reason"]
    assert float(rows[("broken", first)]["score"]) == 0
    # A cell that ends its process costs the tests that need what it defines, nothing more.
    crash = rows[("crash", first)]
    assert crash["status"] == "kernel_died", crash
    assert "ended the student's process (exit status 1)" in crash["reason"]
    assert float(crash["score"]) < float(rows[("perfect", first)]["score"])
    assert "broken/" + first in course.result.stdout
    assert "crash/" + first in course.result.stdout


def test_feedback_exists_and_never_shows_hidden_tests(course):
    from logreg_grader.notebook import Master

    for student, aids in course.students.items():
        for aid in aids:
            if student in ("broken", "crash"):  # could not run: no feedback
                continue
            path = course.feedback(student, aid)
            assert path.exists(), f"no feedback for {student}/{aid}"
            text = _text(path)
            assert "HIDDEN TESTS" not in text
            lines = {re.sub(r"^\s*-*>?\s*\d+\s", "", ln).strip() for ln in text.splitlines()}
            master = Master.from_text(aid, (course.root / "solutions" / aid / f"{aid}.ipynb")
                                      .read_text(encoding="utf-8"))  # fmt: skip
            leaked = sorted(master.hidden & lines)
            assert leaked == [], f"{path.name} of {student} shows hidden test lines {leaked[:3]}"


def test_summary_and_plots(course):
    out = course.result.stdout
    for aid in AIDS:
        assert aid in out
        assert (course.root / "_build" / "grades" / f"{aid}.png").exists()
    assert "grade distributions" in out
    assert course.seconds < 600, f"grading the fixture class took {course.seconds:.0f} s"
