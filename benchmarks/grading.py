"""The autograder's costs (section "grading"), on temporary course folders.

Each course folder holds a copy of nbgrader_config.py and of solutions/<id>/<id>.md, and the
submissions under submitted/; tools/grade.py of the repository grades it through ``--root``,
so neither the real gradebook nor submitted/ is touched. Figures:

- grading one submission of each assignment (``grade.py --assignment ID --jobs 1``, the
  solution notebook as the submission: registration, autograde, feedback, grades.csv) against
  the floor of executing that notebook once with nbclient in a fresh process;
- a synthetic class, N students x every assignment (student00 hands in the solutions, each
  other student the solutions with one bug of tests/fixtures/bugs_*.py applied where the
  assignment has any), graded with ``--jobs 1`` and ``--jobs 2``, alternately;
- peak memory: ``ru_maxrss`` of the largest single process (getrusage RUSAGE_CHILDREN, in a
  wrapper around each command; kernels and workers included, not summed).
"""

from __future__ import annotations

import csv
import importlib.util
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._timing import CHILD, Budget, Figure, Section, run_measured, tool_env

ROOT = Path(__file__).resolve().parents[1]
GRADE = ROOT / "tools" / "grade.py"
TIMEOUT = 900


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))  # tools/grade.py imports its sibling release.py
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module


def load_bugs(root: Path = ROOT) -> dict[str, list[dict]]:
    """Every fixture bug of tests/fixtures/bugs_*.py, by assignment id."""
    bugs: dict[str, list[dict]] = {}
    for path in sorted((root / "tests" / "fixtures").glob("bugs_*.py")):
        for bug in getattr(_load(path, f"_bench_{path.stem}"), "BUGS", []):
            bugs.setdefault(bug["assignment"], []).append(bug)
    return bugs


def apply_bug(notebook_text: str, bug: dict) -> str:
    """The notebook with the solution cells named in ``bug["replace"]`` replaced."""
    import nbformat

    nb = nbformat.reads(notebook_text, as_version=4)
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in bug["replace"]:
            cell.source = bug["replace"][gid]
    return nbformat.writes(nb) + "\n"


def make_course(folder: Path, assignments: list[str]) -> None:
    """A course root: nbgrader_config.py, the MyST sources, an empty submitted/."""
    folder.mkdir(parents=True)
    shutil.copy2(ROOT / "nbgrader_config.py", folder / "nbgrader_config.py")
    for aid in assignments:
        shutil.copytree(
            ROOT / "solutions" / aid,
            folder / "solutions" / aid,
            ignore=shutil.ignore_patterns("*.ipynb", ".ipynb_checkpoints", "__pycache__"),
        )
    (folder / "submitted").mkdir()


def submit(course: Path, student: str, aid: str, text: str) -> Path:
    path = course / "submitted" / student / aid / f"{aid}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def clear_results(course: Path) -> None:
    """Forget the previous grading run's outputs, so that every run grades from scratch."""
    for name in ("autograded", "feedback"):
        shutil.rmtree(course / name, ignore_errors=True)
    (course / "grades.csv").unlink(missing_ok=True)


def graded_rows(course: Path) -> list[dict]:
    try:
        with open(course / "grades.csv", newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    except OSError:
        return []


def _summary_rows(log: Path) -> dict[str, tuple[int, float]]:
    """{assignment: (students, s/sub)} from the last summary table grade.py printed in log."""
    text = log.read_text(encoding="utf-8", errors="replace")
    last = text.rsplit("s/sub", 1)[-1] if "s/sub" in text else ""
    rows = re.findall(r"^(\S+)\s+(\d+)\s+\S+\s+\S+\s+\d+\s+([\d.]+)\s*$", last, re.M)
    return {aid: (int(students), float(per)) for aid, students, per in rows}


def _seconds_per_submission(log: Path, aid: str) -> list[float]:
    """The `s/sub` column of grade.py's summary (autograde + feedback of one submission)."""
    row = _summary_rows(log).get(aid)
    return [row[1]] if row else []


def _inside_grade_one(log: Path) -> float | None:
    """Seconds spent grading submissions (students x s/sub, summed) in the last run of log."""
    rows = _summary_rows(log)
    return sum(students * per for students, per in rows.values()) if rows else None


def _inner_note(inner: list[float], runs: list[float]) -> str:
    if not inner:
        return ""
    share = statistics.median(inner) / statistics.median(runs)
    return (
        f"autograde + feedback (grade.py's `s/sub`) take {statistics.median(inner):.1f} s, "
        f"{100 * share:.0f}% of the run; the rest is start-up, registering the assignment "
        "(generate_assignment), grades.csv and the score plot"
    )


def _parallel_note(t1: list[float], inner1: list, inner2: list) -> str:
    """Where the 2-worker speed-up went: the serial part, and the slow-down of each submission."""
    pairs = [(t, g) for t, g in zip(t1, inner1, strict=False) if g]
    inner2 = [g for g in inner2 if g]
    if not (pairs and inner2):
        return ""
    total = statistics.median(t for t, _ in pairs)
    graded1 = statistics.median(g for _, g in pairs)
    serial = statistics.median(max(0.0, t - g) for t, g in pairs)
    best = (serial + graded1) / (serial + graded1 / 2)
    return (
        f"with 1 worker, grading the submissions themselves (grade.py's s/sub x students) "
        f"takes about {graded1:.0f} s of {total:.0f} s; the rest (about {serial:.0f} s: start-up, "
        f"registering every assignment, grades.csv, plots) is serial, so 2 workers can reach "
        f"about {best:.2f}x at best; each submission took "
        f"{statistics.median(inner2) / graded1:.2f}x as long with 2 workers as with 1 (above 1: "
        "the two workers did not get a free core each)"
    )


def run(cfg, bar, budget: Budget) -> Section:
    """Measure the grading figures within ``budget``; ``cfg`` holds repeats, students, threads."""
    section = Section(
        "grading",
        "Grading",
        settings={
            "repeats": cfg.repeats,
            "students": cfg.students,
            "threads per process (OMP_NUM_THREADS)": cfg.threads,
        },
    )
    if not GRADE.exists():
        section.status = "skipped"
        section.reason = "tools/grade.py does not exist yet"
        return section
    env = tool_env(OMP_NUM_THREADS=str(cfg.threads))
    usage = subprocess.run(
        [sys.executable, GRADE, "--help"], capture_output=True, text=True, env=env, cwd=ROOT
    )
    if usage.returncode != 0 or "--root" not in usage.stdout:
        section.status = "skipped"
        section.reason = (
            "tools/grade.py has no --root option, so it cannot grade a temporary course "
            "without touching the real gradebook"
            if usage.returncode == 0
            else f"`tools/grade.py --help` failed: {usage.stderr.strip()[-300:]}"
        )
        return section
    has_jobs = "--jobs" in usage.stdout

    release = _load(ROOT / "tools" / "release.py", "_bench_release")
    listed = release.course_assignments(ROOT)
    solutions, problems = {}, []
    for aid in listed:
        md = ROOT / "solutions" / aid / f"{aid}.md"
        if not md.exists():
            problems.append(f"{aid} (no solutions/{aid}/{aid}.md yet)")
            continue
        try:
            solutions[aid] = release.notebook_text(release.source_notebook(md))
        except release.SourceError as err:
            problems.append(f"{aid} (invalid source: {err})")
    if problems:
        section.notes.append("assignments left out: " + "; ".join(problems))
    if not solutions:
        section.status = "skipped"
        section.reason = "no assignment can be graded yet: " + "; ".join(problems)
        return section
    assignments = list(solutions)
    bugs = load_bugs()
    section.settings["assignments"] = len(assignments)
    R, N = cfg.repeats, cfg.students
    bar.reset(total=R * len(assignments) + 2 * R)

    logs = cfg.logs / "grading"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    shown = logs.relative_to(ROOT).as_posix() if logs.is_relative_to(ROOT) else str(logs)
    section.notes.append(f"logs of every command: {shown}")

    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp_name:
        tmp = Path(tmp_name)
        one = tmp / "one"
        make_course(one, assignments)
        nbs = {aid: submit(one, "student00", aid, text) for aid, text in solutions.items()}

        def grade_seconds(course: Path, log: Path, jobs: int, aid: str | None = None):
            clear_results(course)
            command = [sys.executable, GRADE, "--root", course, "--jobs", str(jobs)]
            if aid:
                command += ["--assignment", aid]
            result = run_measured(command, cwd=ROOT, env=env, log=log, timeout=TIMEOUT)
            rows = graded_rows(course)
            bad = [f"{r['student']}/{r['assignment']}: {r['status']}" for r in rows]
            bad = [b for b in bad if ": failed" in b]
            return result, rows, bad

        per: dict[str, dict] = {
            aid: {"runs": [], "floor": [], "mem": [], "inner": [], "bad": ""} for aid in assignments
        }
        for rep in range(R):
            start = time.monotonic()
            for aid in assignments:
                entry = per[aid]
                log = logs / f"grade-{aid}.log"
                result, rows, _ = grade_seconds(one, log, 1, aid)
                mine = [r for r in rows if (r["student"], r["assignment"]) == ("student00", aid)]
                if not result.ok or len(mine) != 1 or mine[0]["status"].startswith("failed"):
                    entry["bad"] = entry["bad"] or (
                        f"grade.py exited {result.returncode}, grades.csv says "
                        f"{[r['status'] for r in mine]} (see the logs)"
                    )
                entry["runs"].append(result.seconds)
                entry["inner"] += _seconds_per_submission(log, aid)
                floor = run_measured(
                    [sys.executable, CHILD, "execute", nbs[aid]],
                    cwd=nbs[aid].parent,
                    env=env,
                    log=logs / f"nbclient-{aid}.log",
                    timeout=TIMEOUT,
                )
                if not floor.ok:
                    entry["bad"] = entry["bad"] or "nbclient could not execute the solution"
                entry["floor"].append(floor.seconds)
                entry["mem"].append(floor.maxrss_mib)
                bar.update()
            rep_cost = time.monotonic() - start
            class_cost = 2.7 * N * sum(statistics.median(e["runs"]) for e in per.values())
            if rep + 1 < R and not budget.allows(rep_cost + class_cost):
                break
        for aid, entry in per.items():
            section.figures.append(
                Figure(
                    f"grade_{aid}",
                    f"grade one submission: {aid}",
                    "nbclient executes it once",
                    entry["runs"],
                    entry["floor"],
                    target=("<=", 1.5),
                    planned=R,
                    invalid=entry["bad"],
                    note=_inner_note(entry["inner"], entry["runs"]),
                )
            )

        # The synthetic class.
        klass = tmp / "class"
        make_course(klass, assignments)
        used_bugs = 0
        for k in range(N):
            for aid, text in solutions.items():
                options = bugs.get(aid, [])
                if k > 0 and options:
                    text = apply_bug(text, options[(k - 1) % len(options)])
                    used_bugs += 1
                submit(klass, f"student{k:02d}", aid, text)
        size = N * len(assignments)
        t1, t2, m1, m2, bad1, bad2 = [], [], [], [], "", ""
        inner1, inner2 = [], []
        for rep in range(R):
            start = time.monotonic()
            result, rows, bad = grade_seconds(klass, logs / "class-jobs1.log", 1)
            inner1.append(_inside_grade_one(logs / "class-jobs1.log"))
            t1.append(result.seconds)
            m1.append(result.maxrss_mib)
            if not result.ok or len(rows) != size or bad:
                bad1 = bad1 or f"{len(rows)} of {size} graded, exit {result.returncode}: {bad[:3]}"
            bar.update()
            if has_jobs:
                result, rows, bad = grade_seconds(klass, logs / "class-jobs2.log", 2)
                inner2.append(_inside_grade_one(logs / "class-jobs2.log"))
                t2.append(result.seconds)
                m2.append(result.maxrss_mib)
                if not result.ok or len(rows) != size or bad:
                    bad2 = bad2 or f"{len(rows)} of {size} graded, exit {result.returncode}: {bad}"
            bar.update()
            if rep + 1 < R and not budget.allows(time.monotonic() - start):
                break

    label = f"{N} student{'s' * (N != 1)} x {len(assignments)} assignments"
    floor_sum = N * sum(statistics.median(e["floor"]) for e in per.values())
    section.figures.append(
        Figure(
            "class_jobs1",
            f"grade a class ({label}), 1 worker",
            "nbclient runs each notebook once (sum of the medians above)",
            t1,
            [floor_sum],
            planned=R,
            invalid=bad1,
            note=f"{used_bugs} of the {size} submissions carry a bug from tests/fixtures",
        )
    )
    unavailable = "" if has_jobs else "tools/grade.py has no --jobs option yet"
    section.figures.append(
        Figure(
            "class_jobs2",
            "grade the same class, 2 workers (`--jobs 2`)",
            "the same class, 1 worker",
            t2,
            t1 if has_jobs else [],
            target=("<=", round(1 / 1.7, 3)),
            target_label="at least 1.7x faster",
            planned=R,
            invalid=bad2,
            unavailable=unavailable,
            note=_parallel_note(t1, inner1, inner2),
        )
    )
    largest = max(per, key=lambda a: statistics.median(per[a]["mem"]))
    mem_floor = f"nbclient executing {largest} (the largest)"
    section.figures.append(
        Figure(
            "memory_jobs1",
            "peak memory of one process, class with 1 worker",
            mem_floor,
            m1,
            per[largest]["mem"],
            unit="MiB",
            planned=R,
        )
    )
    section.figures.append(
        Figure(
            "memory_jobs2",
            "peak memory of one process, class with 2 workers",
            mem_floor,
            m2,
            per[largest]["mem"] if has_jobs else [],
            unit="MiB",
            planned=R,
            unavailable=unavailable,
        )
    )
    section.notes.append(
        "peak memory is ru_maxrss of the largest single process (grader, worker or kernel); "
        "with 2 workers two kernels are alive at once, so the machine holds about twice that"
    )
    return section
