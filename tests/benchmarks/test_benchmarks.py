"""benchmarks/run.py writes a consistent report: `--only library --quick` end to end (< 30 s),
and the grading section's logic (synthetic classes, checks of a run, its figures) on data.

The figures' values are not checked (they depend on the machine); their presence, their
ratios (median / floor), the verdicts against the targets and the Markdown table are. The
grading section itself runs for real only in the slow smoke test at the end.
"""

import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks._timing import Budget, Figure, interleaved  # noqa: E402
from benchmarks.report import TABLE_HEADER, fmt_ratio  # noqa: E402

LIBRARY_FIGURES = {
    "gd_step": ("<=", 1.5),
    "sgd_epoch": None,
    "sigmoid": ("<=", 2.0),
    "log_sigmoid": ("<=", 2.0),
    "logsumexp": ("<=", 2.0),
    "log_softmax": ("<=", 2.0),
    "mlp_backward": None,
    "gd_step_unchecked": None,
}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--only", "library", "--quick"]
        + ["--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-3000:]}"
    return out, proc


def test_writes_both_files_with_every_library_figure(quick_run):
    out, _ = quick_run
    data = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert data["quick"] is True
    library = data["sections"]["library"]
    assert library["status"] == "ran"
    assert library["settings"]["torch_threads"] == 1
    figures = {f["key"]: f for f in library["figures"]}
    assert set(figures) == set(LIBRARY_FIGURES)
    for key, target in LIBRARY_FIGURES.items():
        fig = figures[key]
        assert fig["target"] == (None if target is None else {"op": target[0], "value": target[1]})
        assert len(fig["runs"]) == len(fig["floor_runs"]) >= 1, key
        assert all(t > 0 for t in fig["runs"] + fig["floor_runs"]), key
        assert fig["median"] > 0 and fig["floor"] > 0 and fig["ratio"] > 0, key
        assert math.isclose(fig["ratio"], fig["median"] / fig["floor"], rel_tol=1e-12), key
        if target is None:
            assert fig["met"] is None and fig["verdict"] == "-", key
        else:
            met = fig["ratio"] <= target[1]
            assert fig["met"] is met and fig["verdict"] == ("met" if met else "missed"), key
    # The other sections are reported as not run, with the reason, never left out.
    for key in ("book", "grading"):
        assert data["sections"][key]["status"] == "not run"
        assert "--only library" in data["sections"][key]["reason"]
    machine = data["machine"]
    assert machine["torch_threads"] == 1 and machine["cores"] >= 1
    assert machine["versions"]["torch"].startswith("2.")


def test_markdown_table_matches_the_json(quick_run):
    out, _ = quick_run
    data = json.loads((out / "results.json").read_text(encoding="utf-8"))
    md = (out / "results.md").read_text(encoding="utf-8")
    library = md.split("## The library", 1)[1].split("\n## ", 1)[0]
    lines = library.splitlines()
    start = lines.index(TABLE_HEADER)
    assert re.fullmatch(r"\|( -+:? \|)+", lines[start + 1])
    rows = lines[start + 2 : start + 2 + len(LIBRARY_FIGURES)]
    for fig, row in zip(data["sections"]["library"]["figures"], rows, strict=True):
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]]
        assert len(cells) == 7, row
        name, median, floor, ratio, target, verdict, runs = cells
        assert name == fig["name"]
        assert re.fullmatch(r"[\d.,]+ (us|ms|s)", median), median
        assert floor.endswith(f"({fig['floor_name']})"), floor
        assert ratio == fmt_ratio(fig["ratio"])
        assert target == ("-" if fig["target"] is None else f"<= {fig['target']['value']:.3g}x")
        assert verdict == fig["verdict"]
        assert runs == str(len(fig["runs"]))
    assert "**Not run**: not selected (--only library)" in md
    assert "## Machine" in md and "torch threads | 1" in md


def test_missed_library_targets_come_with_a_profile(quick_run):
    out, _ = quick_run
    data = json.loads((out / "results.json").read_text(encoding="utf-8"))
    library = data["sections"]["library"]
    for fig in library["figures"]:
        if fig["met"] is False:
            assert fig["name"] in library["details"]
            assert "| operator | calls | self CPU | share |" in library["details"]


def test_interleaved_alternates_and_stops_at_the_budget():
    order = []
    runs, floors = interleaved(
        lambda: order.append("A") or 2.0, lambda: order.append("B") or 1.0, repeats=3, warmup=1
    )
    assert order == ["A", "B"] * 4
    assert runs == [2.0] * 3 and floors == [1.0] * 3
    # With no time left, one timed pair still runs (a figure always has a value), then it stops.
    runs, floors = interleaved(lambda: 2.0, lambda: 1.0, repeats=5, warmup=0, budget=Budget(0))
    assert runs == [2.0] and floors == [1.0]


def test_figure_ratio_and_verdicts():
    fig = Figure("k", "name", "floor", [3.0, 1.0, 2.0], [1.0, 1.0, 1.0], target=("<=", 1.5))
    assert (fig.median, fig.floor, fig.ratio, fig.met, fig.verdict) == (
        2.0,
        1.0,
        2.0,
        False,
        "missed",
    )
    fig.target = (">=", 1.7)
    assert fig.met is True and fig.verdict == "met"
    fig.invalid = "build failed"
    assert fig.met is None and fig.verdict == "invalid"
    missing = Figure("k", "name", "floor", unavailable="grade.py has no --jobs")
    assert missing.ratio is None and missing.verdict == "not available"


# --- the grading section, on data -----------------------------------------------------------

from benchmarks import grading  # noqa: E402
from benchmarks._timing import Measured  # noqa: E402
from benchmarks.report import figure_row  # noqa: E402
from benchmarks.run import parse_args  # noqa: E402


def _notebook(*cells) -> str:
    """A minimal notebook whose code cells carry the given nbgrader grade_ids."""
    nb = {
        "cells": [
            {
                "cell_type": "code",
                "metadata": {"nbgrader": {"grade_id": gid, "solution": True}},
                "source": f"# {gid}\n",
                "outputs": [],
                "execution_count": None,
            }
            for gid in cells
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    return json.dumps(nb)


BUGS = [
    {"name": "first", "assignment": "a", "replace": {"f": "def f(): return 1\n"}},
    {"name": "second", "assignment": "a", "replace": {"g": "def g(): return 2\n"}},
]


def test_apply_bug_replaces_the_named_cells_only():
    text = grading.apply_bug(_notebook("f", "g"), BUGS[0])
    cells = json.loads(text)["cells"]
    assert [c["source"] for c in cells] == ["def f(): return 1\n", "# g\n"]
    with pytest.raises(KeyError, match="no cell with grade_id"):
        grading.apply_bug(_notebook("g"), BUGS[0])


def test_class_plan_mixes_solutions_bugs_and_releases():
    solution = _notebook("f", "g")
    plan = grading.class_plan(50, solution, BUGS, release="RELEASE")
    assert len(plan) == 50 and len({e.student for e in plan}) == 50
    kinds = [e.kind for e in plan]
    assert kinds.count("solution") == 25
    assert kinds.count("release") == 5 and all(kinds[k] == "release" for k in range(9, 50, 10))
    assert kinds.count("bug:first") == 10 and kinds.count("bug:second") == 10
    for entry in plan:
        if entry.kind == "solution":
            assert entry.text == solution
        elif entry.kind == "release":
            assert entry.text == "RELEASE"
        else:
            assert entry.text == grading.apply_bug(solution, BUGS[entry.kind == "bug:second"])
    # Without bugs or a release, everyone hands in the solution.
    assert {e.kind for e in grading.class_plan(7, solution, [], None)} == {"solution"}


def test_scale_plan_cycles_a_few_notebooks_under_distinct_names():
    plan = grading.scale_plan(1000, _notebook("f", "g"), BUGS, release="RELEASE")
    assert len({e.student for e in plan}) == 1000
    assert [e.kind for e in plan[:5]] == [
        "solution",
        "bug:first",
        "bug:second",
        "release",
        "solution",
    ]


def _row(student, score="10", status="ok", aid="a"):
    return {
        "student": student,
        "assignment": aid,
        "score": score,
        "max_score": "12",
        "status": status,
        "reason": "",
    }


def test_check_grades_finds_what_makes_a_run_invalid():
    entries = [
        grading.Entry("s0", "solution", ""),
        grading.Entry("s1", "bug:first", ""),
        grading.Entry("s2", "solution", ""),
    ]
    good = [_row("s0"), _row("s1", "4"), _row("s2")]
    assert grading.check_grades(good, entries, "a") == ""
    assert "1 of 3 submissions not in grades.csv" in grading.check_grades(good[:2], entries, "a")
    other = [_row("s0"), _row("s1", aid="b"), _row("s2")]  # a row of another assignment
    assert "not in grades.csv" in grading.check_grades(other, entries, "a")
    failed = [_row("s0"), _row("s1", "0", "failed: worker_died"), _row("s2")]
    assert "1 submissions failed" in grading.check_grades(failed, entries, "a")
    flagged = [_row("s0", status="tampering"), _row("s1", "4"), _row("s2")]
    assert "the solution got status 'tampering'" in grading.check_grades(flagged, entries, "a")
    differ = [_row("s0"), _row("s1", "4"), _row("s2", "9")]
    assert "different scores" in grading.check_grades(differ, entries, "a")
    summary = grading.score_summary(failed, entries, "a")
    assert summary == "scores 10/12 x 2, 0/12 x 1; statuses other than ok: failed: worker_died x 1"


SUMMARY = """\
assignment               students    mean   max failed  s/sub
02_numerical_stability          4   12.00    14      0   1.16
04_gradients                   50    9.50    20      1   0.31
grades: /tmp/c/grades.csv
"""


def test_parse_summary_reads_the_last_table():
    older = SUMMARY.replace("0.31", "9.99")
    parsed = grading.parse_summary("noise\n" + older + "more noise\n" + SUMMARY)
    assert parsed == {"02_numerical_stability": (4, 1.16), "04_gradients": (50, 0.31)}
    assert grading.parse_summary("no table here") == {}


def test_reset_course_puts_the_registered_gradebook_back(tmp_path):
    import sqlite3

    course = tmp_path / "course"
    (course / "gradebook").mkdir(parents=True)
    db = course / "gradebook" / "gradebook.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE assignment (name TEXT)")
        con.execute("INSERT INTO assignment VALUES ('a')")
    con.close()
    template = tmp_path / "registered.db"
    grading.snapshot_gradebook(course, template)
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE submission (student TEXT)")
        con.execute("INSERT INTO submission VALUES ('s0')")
    con.close()
    for name in ("autograded/s0/a", "feedback/s0/a", "_build/grades"):
        (course / name).mkdir(parents=True)
    (course / "grades.csv").write_text("student\ns0\n")
    (course / "gradebook" / "gradebook.db-wal").write_text("stale")
    grading.reset_course(course, template)
    assert not any((course / n).exists() for n in ("autograded", "feedback", "_build"))
    assert not (course / "grades.csv").exists()
    assert not (course / "gradebook" / "gradebook.db-wal").exists()
    with sqlite3.connect(db) as con:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
        assert tables == {"assignment"}
        assert con.execute("SELECT name FROM assignment").fetchall() == [("a",)]
    con.close()


def _runs(*seconds, per_sub=(), problem="", mib=100.0):
    runs = grading.Runs()
    for s in seconds:
        runs.add(Measured(s, 0, mib))  # no --timings: the notes fall back to s/sub
    runs.per_sub += list(per_sub)
    if problem:
        runs.problems.append(problem)
    return runs


def _class_data(**overrides):
    data = grading.ClassData(
        "04_gradients",
        50,
        {"solution": 25, "bug:x": 20, "release": 5},
        nbclient=_runs(4.0, 5.0, 6.0, mib=400.0),
        single=_runs(3.0, 4.0, 5.0),
        register=_runs(8.0),
        jobs1=_runs(25.0, 30.0, 35.0, per_sub=(0.4, 0.4, 0.4), mib=300.0),
        jobs2=_runs(16.0, 17.0, 18.0, per_sub=(0.45,), mib=250.0),
        nbgrader=_runs(250.0),
        scheduler=_runs(17.5, 18.0, 18.5),
    )
    for key, value in overrides.items():
        setattr(data, key, value)
    return data


def test_class_figures_ratios_targets_and_verdicts():
    figures = {f.key: f for f in grading.class_figures(_class_data(), 3, memory=True)}
    assert set(figures) == {
        "class_04_gradients_vs_nbclient",
        "class_04_gradients_vs_nbgrader",
        "single_04_gradients",
        "register_04_gradients",
        "class_04_gradients_jobs2",
        "class_04_gradients_scheduler",
        "class_04_gradients_throughput",
        "memory_04_gradients_jobs1",
        "memory_04_gradients_jobs2",
    }
    vs_nbclient = figures["class_04_gradients_vs_nbclient"]
    assert vs_nbclient.runs == [0.5, 0.6, 0.7]  # the class's wall clock / 50
    assert math.isclose(vs_nbclient.ratio, 0.6 / 5.0) and vs_nbclient.target == ("<=", 0.15)
    assert vs_nbclient.verdict == "met"
    assert "25 solutions, 20 with a planted bug (1 different), 5 untouched releases" in (
        vs_nbclient.note
    )
    assert "about 20.0 s of the 30.0 s command" in vs_nbclient.note
    vs_nbgrader = figures["class_04_gradients_vs_nbgrader"]
    assert vs_nbgrader.floor_runs == [5.0] and math.isclose(vs_nbgrader.ratio, 0.12)
    assert vs_nbgrader.target == ("<=", 0.25) and vs_nbgrader.verdict == "met"
    single = figures["single_04_gradients"]
    assert math.isclose(single.ratio, 0.8) and single.verdict == "met"
    assert figures["register_04_gradients"].verdict == "-"  # no target
    jobs2 = figures["class_04_gradients_jobs2"]
    assert math.isclose(jobs2.ratio, 17.0 / 30.0)  # 1.76x faster: missed
    assert jobs2.verdict == "missed" and "speed-up 1.76x" in jobs2.note
    assert "(at least 1.8x faster)" in figure_row(jobs2)
    assert figures["memory_04_gradients_jobs1"].unit == "MiB"
    scheduler = figures["class_04_gradients_scheduler"]
    assert math.isclose(scheduler.ratio, 18.0 / 17.0) and scheduler.target == ("<=", 1.1)
    assert scheduler.verdict == "met"
    faster = grading.class_figures(_class_data(jobs2=_runs(16.0, 16.5, 16.6)), 3)
    assert {f.key: f for f in faster}["class_04_gradients_jobs2"].verdict == "met"  # 1.82x


def test_a_run_that_went_wrong_makes_its_figures_invalid():
    bad = _class_data(jobs1=_runs(25.0, problem="2 submissions failed"))
    figures = {f.key: f for f in grading.class_figures(bad, 3)}
    for key in ("vs_nbclient", "vs_nbgrader", "jobs2"):
        fig = figures[f"class_04_gradients_{key}"]
        assert fig.verdict == "invalid" and "2 submissions failed" in fig.invalid
    assert figures["single_04_gradients"].verdict == "met"
    assert "1 of 3" in figure_row(figures["class_04_gradients_vs_nbclient"])
    nbgrader_bad = _class_data(nbgrader=_runs(250.0, problem="exit status 1"))
    fig = {f.key: f for f in grading.class_figures(nbgrader_bad, 3)}[
        "class_04_gradients_vs_nbgrader"
    ]
    assert fig.verdict == "invalid" and fig.invalid == "exit status 1"
    skipped = _class_data(nbgrader=grading.Runs(), nbgrader_skipped="not run: budget")
    fig = {f.key: f for f in grading.class_figures(skipped, 3)}["class_04_gradients_vs_nbgrader"]
    assert fig.verdict == "not available" and fig.ratio is None
    runs = grading.Runs()
    runs.add(Measured(3.0, 0, 1.0, timed_out=True))
    runs.add(Measured(3.0, 2, 1.0))
    assert runs.problem == "timed out after 3 s (and 1 more run(s) went wrong)"


def test_scale_figure_target_is_eleven_times_for_ten_times_the_submissions():
    scale = grading.ScaleData("02_numerical_stability", 100, 1000, notebooks=4)
    scale.small_runs, scale.large_runs = _runs(20.0, 22.0), _runs(200.0)
    fig = grading.scale_figure(scale)
    assert fig.target == ("<=", 11.0) and math.isclose(fig.ratio, 200.0 / 21.0)
    assert fig.verdict == "met" and "copies of 4 notebooks" in fig.note
    assert "per submission 210.00 ms (100) and 200.00 ms (1,000)" in fig.note
    scale.large_runs = _runs(240.0)
    assert grading.scale_figure(scale).verdict == "missed"


def test_scale_speedup_compares_the_large_class_with_one_and_two_workers():
    scale = grading.ScaleData("02_numerical_stability", 100, 1000)
    scale.large_runs, scale.large_jobs1 = _runs(100.0), _runs(190.0)
    fig = grading.scale_speedup_figure(scale)
    assert math.isclose(fig.ratio, 100.0 / 190.0) and fig.verdict == "met"  # 1.9x
    assert "speed-up 1.90x" in fig.note and "(at least 1.8x faster)" in figure_row(fig)
    scale.large_jobs1 = _runs(150.0)
    assert grading.scale_speedup_figure(scale).verdict == "missed"  # 1.5x
    scale.large_jobs1 = _runs(150.0, problem="different scores: s3")
    assert grading.scale_speedup_figure(scale).verdict == "invalid"
    skipped = grading.ScaleData("02_numerical_stability", 100, 1000, large_runs=_runs(100.0))
    skipped.jobs1_skipped = "not run: budget"
    fig = grading.scale_speedup_figure(skipped)
    assert fig.verdict == "not available" and fig.ratio is None


def test_agreement_note_compares_totals_with_plain_nbgrader():
    ours = [_row("s0", "10"), _row("s1", "4"), _row("s2", "10", aid="b")]
    assert grading.agreement_note(ours, {"s0": 10.0, "s1": 4.0}, "a") == (
        "plain nbgrader gives the same total as logreg-grade to 2 of 2"
    )
    note = grading.agreement_note(ours, {"s0": 10.0, "s1": 0.0}, "a")
    assert note.endswith("to 1 of 2 (nbgrader vs logreg-grade: s1: 0 vs 4)")


def test_grading_options_and_their_defaults():
    args = parse_args([])
    assert args.class_size == 50 and args.class_assignments == grading.CLASS_ASSIGNMENTS
    assert args.scale == 100 and args.budget == 1200.0 and args.grading_warmup == 1
    quick = parse_args(["--quick"])
    assert quick.class_size == 3 and quick.scale == 2 and quick.grading_warmup == 0
    assert quick.class_assignments == (grading.SCALE_ASSIGNMENT,)
    chosen = parse_args(["--class-assignments", "01_synthetic_data,03_forward_pass"])
    assert chosen.class_assignments == ("01_synthetic_data", "03_forward_pass")
    with pytest.raises(SystemExit):
        parse_args(["--class-size", "0"])


def test_failure_names_the_exit_status_and_the_last_line():
    output = "$ logreg-grade --root x\ngrading:  50%|#####\rTraceback ...\nValueError: boom\n"
    assert grading.failure(Measured(1.0, 1, 1.0), output) == "exit status 1: ValueError: boom"
    assert grading.failure(Measured(9.0, -9, 1.0, timed_out=True), "") == "timed out after 9 s"


@pytest.mark.slow
def test_a_registered_course_is_graded_from_scratch_after_each_reset(tmp_path):
    """The real grader, two commands: registering a course, then grading two submissions in
    another course of the same assignment."""
    from types import SimpleNamespace

    from nbgrader.api import Gradebook

    from logreg_grader import release

    aid = grading.SCALE_ASSIGNMENT
    master = release.notebook_text(release.source_notebook(ROOT / "solutions" / aid / f"{aid}.md"))
    bug = grading.load_bugs()[aid][0]
    entries = [
        grading.Entry("student0000", "solution", master),
        grading.Entry("student0001", f"bug:{bug['name']}", grading.apply_bug(master, bug)),
    ]
    (tmp_path / "logs").mkdir()
    bench = grading.Bench(SimpleNamespace(threads=1), tmp_path, tmp_path / "logs")
    first, registered = bench.course("first", aid, [])
    assert registered.ok and registered.seconds > 0
    # A second course of the assignment starts from a copy of the registered one.
    course, again = bench.course("course", aid, entries)
    assert again is None and bench.templates[course] == bench.templates[first]
    measured, problem, per_sub, timings = bench.grade(course, 1, "grade")
    log = (tmp_path / "logs" / "grade.log").read_text(errors="replace")
    assert measured.ok and problem == "", log[-2000:]
    assert per_sub is not None and per_sub > 0  # the summary table is still readable
    if bench.has_timings:  # and the grader's own record of where the time went
        assert set(timings["per_submission"]) == {f"{aid}/{e.student}" for e in entries}
        assert 0 < timings["grading"] < timings["total"] <= measured.seconds
        assert timings["register"] < 0.5 * registered.seconds  # found registered: no rerun
    rows = {r["student"]: r for r in grading.read_grades(course)}
    assert float(rows["student0001"]["score"]) < float(rows["student0000"]["score"])
    assert (course / "feedback" / "student0001" / aid / f"{aid}.html").exists()
    grading.reset_course(course, bench.templates[course])
    url = "sqlite:///" + str(course / "gradebook" / "gradebook.db")
    with Gradebook(url, "logreg-lessons") as gb:
        assert gb.find_assignment(aid).name == aid  # still registered
        assert gb.submission_dicts(aid) == []  # nothing graded
    assert not (course / "feedback").exists() and not (course / "grades.csv").exists()


def test_same_grades_compares_two_runs():
    first = [_row("s0"), _row("s1", "4")]
    assert grading.same_grades(first, list(reversed(first))) == ""
    problem = grading.same_grades(first, [_row("s0"), _row("s1", "4", "timeout")])
    assert problem == (
        "1 submissions graded differently than with 1 worker "
        "(s1/a: ('4', 'ok') vs ('4', 'timeout'))"
    )
    assert "s1/a: ('4', 'ok') vs None" in grading.same_grades(first, first[:1])


def _timed(wall, grading, total=None):
    return {
        "startup": 0.5,
        "register": 0.25,
        "sandbox_ready": 2.0,
        "grading": grading,
        "store": 1.0,
        "export": 1.5,
        "total": wall - 0.5 if total is None else total,
        "per_submission": {"a/s0": 0.2, "a/s1": 0.4},
    }


def test_the_graders_timings_explain_a_run_and_cap_the_speed_up():
    jobs1, jobs2 = grading.Runs(), grading.Runs()
    for wall, loop in ((30.0, 24.0), (20.0, 15.0), (40.0, 33.0)):
        jobs1.add(Measured(wall, 0, 1.0), timings=_timed(wall, loop))
    jobs1.add(Measured(99.0, 1, 1.0))  # a run without timings is not picked
    assert jobs1.median_timings()[0] == 30.0
    assert jobs1.per_sub == [pytest.approx(0.3)] * 3  # the mean of per_submission
    note = grading.serial_note(jobs1, 2)
    assert note.startswith("where the 30.0 s of the median run went")
    assert "ready to grade after 2.0 s" in note and "grading 24.0 s (storing 1.0 s" in note
    assert "interpreter start and exit outside these 0.5 s" in note
    for wall, loop in ((18.0, 12.0), (17.0, 11.0), (19.0, 13.0)):
        jobs2.add(Measured(wall, 0, 1.0), timings=_timed(wall, loop))
    note = grading.speedup_note(jobs1, jobs2, 2)
    # medians 30 (and 99: four runs) -> (30 + 40) / 2 = 35 with 1 worker, 18 with 2
    assert note.startswith("speed-up 1.94x; the grading loop took 24.0 s with 1 worker and 12.0")
    assert "the other 6.0 s of a command are serial" in note
    assert "reach about 1.67x at best" in note  # 30 / (6 + 24 / 2)
    assert grading.serial_note(grading.Runs(), 2).startswith("the grader reported no timings")


def test_a_section_not_selected_keeps_the_earlier_runs_figures():
    from benchmarks import run as bench_run
    from benchmarks._timing import Section

    section = Section("grading", "Grading", notes=["n"], settings={"repeats": 3}, seconds=9.0)
    section.figures = grading.class_figures(_class_data(), 3)
    again = Section.from_dict(json.loads(json.dumps(section.as_dict())))
    assert again.as_dict() == section.as_dict()
    earlier = {"command": "python benchmarks/run.py", "machine": {"date": "D"},
               "sections": {"grading": section.as_dict()}}  # fmt: skip
    kept = bench_run.placeholder("grading", ["library"], earlier)
    assert kept.status == "ran" and kept.notes[0].startswith("kept from the run of D")
    assert [f.as_dict() for f in kept.figures] == [f.as_dict() for f in section.figures]
    assert bench_run.placeholder("grading", ["library"], None).status == "not run"
    quick = dict(earlier, quick=True)  # a --quick run's figures are never carried over
    assert bench_run.placeholder("grading", ["library"], quick).status == "not run"


def test_throughput_is_measured_between_the_first_and_the_last_result():
    one, two = grading.Runs(), grading.Runs()
    for _ in range(3):
        one.add(Measured(30.0, 0, 100.0), timings={"arrivals": [4.0, 4.5, 5.0, 6.0]})
        two.add(Measured(20.0, 0, 100.0), timings={"arrivals": [6.0, 6.2, 6.4, 6.6]})
    assert one.steady == [2.0 / 3] * 3 and all(math.isclose(x, 0.2) for x in two.steady)
    figures = {f.key: f for f in grading.class_figures(_class_data(jobs1=one, jobs2=two), 3)}
    throughput = figures["class_04_gradients_throughput"]
    assert math.isclose(throughput.ratio, 0.3) and throughput.verdict == "met"  # 3.3x
    two.timings = [{"arrivals": [0.0, 1.0]}]  # too few results to time: no figure value
    assert two.steady == []


def test_a_stopped_bench_stops_the_command_it_was_measuring(tmp_path):
    """SIGTERM to the bench reaches the measured command's own session through the wrapper:
    nothing it started keeps running (a grader left behind would load the next figures)."""
    pidfile = tmp_path / "pid"
    sleeper = f"import os,time; open({str(pidfile)!r},'w').write(str(os.getpid())); time.sleep(60)"
    script = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from pathlib import Path\n"
        "import signal\n"
        "from benchmarks._timing import run_measured, tool_env\n"
        "from benchmarks.run import _stop\n"
        "signal.signal(signal.SIGTERM, _stop)  # as the bench's main does\n"
        "run_measured([sys.executable, '-c', sys.argv[2]], cwd=Path(sys.argv[3]),"
        " env=tool_env(), log=Path(sys.argv[3]) / 'log')\n"
    )
    bench = subprocess.Popen([sys.executable, "-c", script, str(ROOT), sleeper, str(tmp_path)])
    for _ in range(200):
        if pidfile.exists() and pidfile.read_text():
            break
        time.sleep(0.05)
    pid = int(pidfile.read_text())
    bench.terminate()
    bench.wait(timeout=20)
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, 9)
        pytest.fail("the measured command outlived the stopped bench")
