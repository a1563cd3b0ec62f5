"""The autograder's costs (section "grading"): `logreg-grade` on temporary course folders.

Every course is a temporary folder laid out as logreg_grader.course describes (a copy of
nbgrader_config.py, solutions/<id>/<id>.md, submitted/<student>/<id>/<id>.ipynb), graded by
the installed ``logreg-grade --root COURSE``: neither the real gradebook nor submitted/ is
touched, and ``LOGREG_GRADEBOOK_URL`` is removed from the environment so that a shared
PostgreSQL gradebook is never written. The first course of each assignment is registered
by a first ``logreg-grade`` with no submission in it (the registration cost has its own
figure); the other courses of that assignment start from a copy of its registered gradebook
and master notebook. A copy of that gradebook is put back before every timed run, so each
run grades every submission from scratch (new rows, new autograded notebooks and feedback)
in a course that knows the assignment, as `make grade` does after its first run.

Figures, for each assignment of ``--class-assignments`` (all in one run, interleaved):

- a **class** of ``--class-size`` submissions of that assignment (half of them the solution,
  the others a planted bug of tests/grader/fixtures/bugs_*.py each, in turn, and every tenth the
  untouched release, so that scores vary), graded by one ``logreg-grade --jobs 1``: its wall
  clock divided by the class size, against

  * nbclient executing the solution notebook once in a fresh process (target <= 0.15x), and
  * plain nbgrader grading the same submissions in one batch, per submission (target
    <= 0.25x): a normal nbgrader course (the repository's nbgrader_config.py, the master
    solutions/<id>/<id>.ipynb written by ``logreg_grader.release``, ``nbgrader
    generate_assignment``), then one ``nbgrader autograde <id>`` over every student;
- **one submission** (the solution) in its own ``logreg-grade`` command, the whole command's
  wall clock (interpreter start, sandbox check, fork server, grading, grades.csv and plot),
  against nbclient executing it once (target <= 1.0x);
- the first ``logreg-grade`` of a new course, which registers the assignment (no target);
- the same class with **2 workers** (``--jobs 2``: the command's process and one helper
  process, logreg_grader/pool.py) against 1 (what ``--jobs 1`` runs; target: at least 1.8x
  faster), and the throughput between the first and the last result;
- the same class on a **Dask scheduler on loopback** with 2 ``dask worker`` processes started
  before the timed runs (``--scheduler``), against ``--jobs 2`` (target: at most 1.1x);

and once, for ``--scale-assignment``: **10x the submissions** (``--scale`` and 10 times as
many, copies of four notebooks under distinct student names, ``--jobs 2``) cost at most
11x (no super-linear bookkeeping), and the large class with 1 worker against 2 (when the
time budget allows: the same 1.8x target, on a class where a command's start-up is small).
Peak memory (``ru_maxrss`` of the largest single process, kernels and workers included, not
summed) is reported for the first class.

A run whose exit status is not 0, whose grades.csv lacks a submission or reports one as
``failed``, or in which copies of the solution do not all get the same score with status
``ok``, makes its figures invalid (neither met nor missed) with the reason; so does a
2-worker run that gives any submission another score or status than the 1-worker run.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import importlib.util
import json
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks._timing import CHILD, Budget, Figure, Measured, Section, run_measured, tool_env
from benchmarks.report import fmt_value

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
GRADE = BIN / "logreg-grade"
NBGRADER = BIN / "nbgrader"
CLASS_ASSIGNMENTS = ("04_gradients",)  # more with --class-assignments (about 4 min each)
SCALE_ASSIGNMENT = "02_numerical_stability"
SCALE_FACTOR = 10
TARGET_VS_NBCLIENT = 0.15
TARGET_VS_NBGRADER = 0.25
TARGET_SINGLE = 1.0
TARGET_SPEEDUP = 1.8
TARGET_SCALE = 11.0
TARGET_SCHEDULER = 1.1  # a scheduler on loopback against the local --jobs 2
TIMEOUT = 1800  # seconds for one command; a command that hangs is stopped and reported


# --- the submissions ------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One submission of a synthetic class: who hands it in, what it is, its notebook text."""

    student: str
    kind: str  # "solution", "release" or "bug:<name>"
    text: str


def load_bugs(root: Path = ROOT) -> dict[str, list[dict]]:
    """Every fixture bug of tests/grader/fixtures/bugs_*.py, by assignment id."""
    bugs: dict[str, list[dict]] = {}
    for path in sorted((root / "tests" / "grader" / "fixtures").glob("bugs_*.py")):
        spec = importlib.util.spec_from_file_location(f"_bench_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for bug in getattr(module, "BUGS", []):
            bugs.setdefault(bug["assignment"], []).append(bug)
    return bugs


def apply_bug(notebook_text: str, bug: dict) -> str:
    """The notebook with the solution cells named in ``bug["replace"]`` replaced."""
    nb = json.loads(notebook_text)
    found = set()
    for cell in nb["cells"]:
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if gid in bug["replace"]:
            cell["source"] = bug["replace"][gid]
            found.add(gid)
    missing = set(bug["replace"]) - found
    if missing:
        raise KeyError(f"bug {bug.get('name')!r}: no cell with grade_id {sorted(missing)}")
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def class_plan(size: int, solution: str, bugs: list[dict], release: str | None) -> list[Entry]:
    """``size`` submissions: every even one the solution, every tenth the untouched release
    (when given), the others the planted bugs in turn (the solution if there is none)."""
    entries, next_bug = [], 0
    for k in range(size):
        if k % 2 == 0:
            kind, text = "solution", solution
        elif release is not None and k % 10 == 9:
            kind, text = "release", release
        elif bugs:
            bug = bugs[next_bug % len(bugs)]
            next_bug += 1
            kind, text = f"bug:{bug['name']}", apply_bug(solution, bug)
        else:
            kind, text = "solution", solution
        entries.append(Entry(f"student{k:04d}", kind, text))
    return entries


def scale_plan(size: int, solution: str, bugs: list[dict], release: str | None) -> list[Entry]:
    """``size`` copies of a few notebooks (the solution, two bugs, the release) in turn."""
    kinds = [("solution", solution)]
    kinds += [(f"bug:{b['name']}", apply_bug(solution, b)) for b in bugs[:2]]
    if release is not None:
        kinds.append(("release", release))
    return [Entry(f"student{k:04d}", *kinds[k % len(kinds)]) for k in range(size)]


# --- course folders -------------------------------------------------------------------------


def make_course(folder: Path, aid: str) -> Path:
    """A course root for one assignment: nbgrader_config.py, its MyST source, submitted/."""
    (folder / "solutions" / aid).mkdir(parents=True)
    shutil.copy2(ROOT / "nbgrader_config.py", folder / "nbgrader_config.py")
    shutil.copy2(ROOT / "solutions" / aid / f"{aid}.md", folder / "solutions" / aid)
    (folder / "submitted").mkdir()
    return folder


def submit(course: Path, aid: str, entries: list[Entry]) -> None:
    for entry in entries:
        path = course / "submitted" / entry.student / aid / f"{aid}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(entry.text, encoding="utf-8")


def snapshot_gradebook(course: Path, template: Path) -> None:
    """A consistent copy of the course's SQLite gradebook (WAL included) into ``template``."""
    with contextlib.closing(sqlite3.connect(course / "gradebook" / "gradebook.db")) as src:
        with contextlib.closing(sqlite3.connect(template)) as dst:
            src.backup(dst)


def reset_course(course: Path, template: Path) -> None:
    """Forget every graded submission: outputs removed, the registered gradebook put back."""
    for name in ("autograded", "feedback", "_build"):
        shutil.rmtree(course / name, ignore_errors=True)
    (course / "grades.csv").unlink(missing_ok=True)
    for path in (course / "gradebook").glob("gradebook.db*"):
        path.unlink()
    shutil.copy2(template, course / "gradebook" / "gradebook.db")


def read_grades(course: Path) -> list[dict]:
    try:
        with open(course / "grades.csv", newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    except OSError:
        return []


def check_grades(rows: list[dict], entries: list[Entry], aid: str) -> str:
    """What is wrong with a run's grades.csv for these submissions ("" if nothing)."""
    mine = {r["student"]: r for r in rows if r.get("assignment") == aid}
    missing = [e.student for e in entries if e.student not in mine]
    if missing:
        return f"{len(missing)} of {len(entries)} submissions not in grades.csv ({missing[:3]})"
    failed = [f"{s}: {r['status']}" for s, r in mine.items() if r["status"].startswith("failed")]
    if failed:
        return f"{len(failed)} submissions failed: {failed[:3]}"
    solutions = [mine[e.student] for e in entries if e.kind == "solution"]
    wrong = [r for r in solutions if r["status"] != "ok"]
    if wrong:
        return f"the solution got status {wrong[0]['status']!r} ({wrong[0]['reason'][:120]})"
    scores = {r["score"] for r in solutions}
    if len(scores) > 1:
        return f"copies of the solution got different scores: {sorted(scores)}"
    return ""


def same_grades(first: list[dict], second: list[dict]) -> str:
    """ "" if two runs' grades.csv give every submission the same score and status."""

    def key(rows):
        return {(r["student"], r["assignment"]): (r["score"], r["status"]) for r in rows}

    a, b = key(first), key(second)
    differ = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    if not differ:
        return ""
    shown = ", ".join(f"{s}/{aid}: {a.get((s, aid))} vs {b.get((s, aid))}" for s, aid in differ[:3])
    return f"{len(differ)} submissions graded differently than with 1 worker ({shown})"


def score_summary(rows: list[dict], entries: list[Entry], aid: str) -> str:
    """ "score x count" of the class, highest first, and the statuses other than ok."""
    mine = {r["student"]: r for r in rows if r.get("assignment") == aid}
    got = [mine[e.student] for e in entries if e.student in mine]
    if not got:
        return ""
    scores = collections.Counter(f"{r['score']}/{r['max_score']}" for r in got)
    shown = sorted(scores.items(), key=lambda kv: -float(kv[0].split("/")[0]))
    text = "scores " + ", ".join(f"{s} x {n}" for s, n in shown)
    statuses = collections.Counter(r["status"] for r in got if r["status"] != "ok")
    if statuses:
        text += "; statuses other than ok: " + ", ".join(f"{s} x {n}" for s, n in statuses.items())
    return text


def parse_summary(log_text: str) -> dict[str, tuple[int, float]]:
    """{assignment: (students, s/sub)} from the last summary table logreg-grade printed.

    ``s/sub`` is the grader's own mean seconds per submission (the worker's grading of it,
    without start-up, registration, storing and export). A stop-gap until the grader writes
    a machine-readable timing record (/work/notes/bench-requests.md).
    """
    if "s/sub" not in log_text:
        return {}
    last = log_text.rsplit("s/sub", 1)[1]
    rows = re.findall(r"^(\S+)\s+(\d+)\s+\S+\s+\S+\s+\d+\s+([\d.]+)\s*$", last, re.M)
    return {aid: (int(students), float(per)) for aid, students, per in rows}


# --- what was measured ----------------------------------------------------------------------


@dataclass
class Runs:
    """Repeated runs of one command: seconds, peak MiB, where the time went, what went wrong."""

    seconds: list[float] = field(default_factory=list)
    mib: list[float] = field(default_factory=list)
    per_sub: list[float] = field(default_factory=list)  # the grader's mean s/sub, if known
    timings: list[dict | None] = field(default_factory=list)  # `--timings` of each run
    problems: list[str] = field(default_factory=list)

    def add(
        self,
        measured: Measured,
        problem: str = "",
        per_sub: float | None = None,
        timings: dict | None = None,
    ) -> None:
        self.seconds.append(measured.seconds)
        self.mib.append(measured.maxrss_mib)
        self.timings.append(timings)
        if timings and timings.get("per_submission"):  # exact, where the summary rounds
            values = list(timings["per_submission"].values())
            per_sub = sum(values) / len(values)
        if per_sub is not None:
            self.per_sub.append(per_sub)
        if not problem and not measured.ok:
            problem = (
                f"timed out after {measured.seconds:.0f} s"
                if measured.timed_out
                else f"exit status {measured.returncode}"
            )
        if problem:
            self.problems.append(problem)

    @property
    def problem(self) -> str:
        if not self.problems:
            return ""
        more = len(self.problems) - 1
        return self.problems[0] + (f" (and {more} more run(s) went wrong)" if more else "")

    @property
    def steady(self) -> list[float]:
        """Seconds per submission between the first and the last result of each run (the
        throughput of warm workers: start-up and the last stragglers' wait excluded)."""
        out = []
        for t in self.timings:
            arrivals = (t or {}).get("arrivals") or []
            if len(arrivals) >= 3:
                out.append((arrivals[-1] - arrivals[0]) / (len(arrivals) - 1))
        return out

    def median_timings(self) -> tuple[float, dict] | None:
        """(wall seconds, --timings) of the median run that has timings (the lower middle)."""
        pairs = sorted(
            ((s, t) for s, t in zip(self.seconds, self.timings, strict=True) if t),
            key=lambda p: p[0],
        )
        return pairs[(len(pairs) - 1) // 2] if pairs else None


@dataclass
class ClassData:
    """Everything measured for one assignment's class."""

    aid: str
    size: int
    kinds: dict[str, int] = field(default_factory=dict)
    nbclient: Runs = field(default_factory=Runs)
    single: Runs = field(default_factory=Runs)
    register: Runs = field(default_factory=Runs)
    jobs1: Runs = field(default_factory=Runs)
    jobs2: Runs = field(default_factory=Runs)
    scheduler: Runs = field(default_factory=Runs)
    nbgrader: Runs = field(default_factory=Runs)
    scores: str = ""
    agreement: str = ""
    nbgrader_skipped: str = ""  # why plain nbgrader did not run (the time budget)
    scheduler_skipped: str = ""  # why the loopback scheduler did not run


@dataclass
class ScaleData:
    aid: str
    small: int
    large: int
    jobs: int = 2
    small_runs: Runs = field(default_factory=Runs)
    large_runs: Runs = field(default_factory=Runs)
    large_jobs1: Runs = field(default_factory=Runs)  # the large class with 1 worker
    jobs1_skipped: str = ""  # why it did not run (the time budget)
    notebooks: int = 0  # distinct notebooks among the copies
    scores: str = ""


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _kinds_text(kinds: dict[str, int]) -> str:
    bugs = sum(n for k, n in kinds.items() if k.startswith("bug:"))
    distinct = sum(1 for k in kinds if k.startswith("bug:"))
    return (
        f"{kinds.get('solution', 0)} solutions, {bugs} with a planted bug ({distinct} different), "
        f"{kinds.get('release', 0)} untouched releases"
    )


def _secs(value) -> str:
    return f"{value:.1f} s" if isinstance(value, int | float) else "?"


def serial_note(jobs1: Runs, size: int) -> str:
    """Where the time of the median 1-worker class run went."""
    picked = jobs1.median_timings()
    if picked:
        wall, t = picked
        outside = wall - t["total"] if isinstance(t.get("total"), int | float) else None
        return (
            f"where the {wall:.1f} s of the median run went (`logreg-grade --timings`): "
            f"ready to grade after {_secs(t.get('sandbox_ready'))} (start-up "
            f"{_secs(t.get('startup'))}, registration check {_secs(t.get('register'))}, "
            f"sandbox self-test), grading {_secs(t.get('grading'))} (storing "
            f"{_secs(t.get('store'))} of it), grades.csv, plot and summary "
            f"{_secs(t.get('export'))}, interpreter start and exit outside these "
            f"{_secs(outside)}"
        )
    wall, per = _median(jobs1.seconds), _median(jobs1.per_sub)
    if wall is None or per is None:
        return "the grader reported no timings, so the run cannot be split into its parts"
    graded = per * size
    serial = max(0.0, wall - graded)
    return (
        f"the grader's own s/sub is {per:.3g} s: grading the submissions takes about "
        f"{graded:.1f} s of the {wall:.1f} s command, the rest (about {serial:.1f} s: start-up, "
        "sandbox check, fork server, storing, grades.csv and plot) is per command"
    )


def speedup_note(jobs1: Runs, jobs2: Runs, size: int) -> str:
    """The speed-up, and what caps it: the serial part of a command (Amdahl)."""
    t1, t2 = _median(jobs1.seconds), _median(jobs2.seconds)
    if not t1 or not t2:
        return ""
    text = f"speed-up {t1 / t2:.2f}x"
    one, two = jobs1.median_timings(), jobs2.median_timings()
    if one and two and all(isinstance(x[1].get("grading"), int | float) for x in (one, two)):
        wall1, g1, g2 = one[0], one[1]["grading"], two[1]["grading"]
        serial = max(0.0, wall1 - g1)
        best = wall1 / (serial + g1 / 2)
        return text + (
            f"; the grading loop took {g1:.1f} s with 1 worker and {g2:.1f} s with 2 "
            f"({g1 / g2:.2f}x, the helper's start included); the other {serial:.1f} s of a "
            f"command are serial, so 2 workers can reach about {best:.2f}x at best"
        )
    per1, per2 = _median(jobs1.per_sub), _median(jobs2.per_sub)
    if per1 is not None and per2 is not None:
        graded = per1 * size
        serial = max(0.0, t1 - graded)
        best = (serial + graded) / (serial + graded / 2)
        text += (
            f"; with about {serial:.1f} s of each command serial, 2 workers can reach about "
            f"{best:.2f}x at best; the grader's s/sub was {per2 / per1:.2f}x as long with 2 "
            "workers as with 1 (above 1: the workers competed for the cores, or waited for "
            "their fork servers)"
        )
    return text


def class_figures(d: ClassData, repeats: int, memory: bool = False) -> list[Figure]:
    """The figures of one assignment's class, from what was measured (no I/O)."""
    n, aid = d.size, d.aid
    per = [s / n for s in d.jobs1.seconds]
    nbgrader_per = [s / n for s in d.nbgrader.seconds]
    class_bad = d.jobs1.problem or d.nbclient.problem
    class_note = "; ".join(
        x for x in (_kinds_text(d.kinds), d.scores, serial_note(d.jobs1, n)) if x
    )
    figures = [
        Figure(
            f"class_{aid}_vs_nbclient",
            f"grade a class of {n} submissions of {aid} (1 worker), per submission",
            "nbclient executes the solution once",
            per,
            d.nbclient.seconds,
            target=("<=", TARGET_VS_NBCLIENT),
            planned=repeats,
            invalid=class_bad,
            note=class_note,
        ),
        Figure(
            f"class_{aid}_vs_nbgrader",
            f"the same class of {aid}, per submission",
            f"`nbgrader autograde` of the same {n} in one batch, per submission",
            per,
            nbgrader_per,
            target=("<=", TARGET_VS_NBGRADER),
            planned=repeats,
            invalid=d.jobs1.problem or d.nbgrader.problem,
            unavailable=d.nbgrader_skipped,
            note=d.agreement,
        ),
        Figure(
            f"single_{aid}",
            f"one submission of {aid} in its own `logreg-grade` command",
            "nbclient executes it once",
            d.single.seconds,
            d.nbclient.seconds,
            target=("<=", TARGET_SINGLE),
            planned=repeats,
            invalid=d.single.problem or d.nbclient.problem,
            note="the whole command, wall clock, in a course that already registered the "
            "assignment (the next figure is that registration)",
        ),
        Figure(
            f"register_{aid}",
            f"the first `logreg-grade` of a new course of {aid} (registers it; no submission)",
            "nbclient executes the solution once",
            d.register.seconds,
            d.nbclient.seconds,
            planned=1,
            invalid=d.register.problem,
            note="paid once per course and whenever the master changes",
        ),
        Figure(
            f"class_{aid}_jobs2",
            f"the same class of {aid} with 2 workers (`--jobs 2`)",
            "the same class, 1 worker",
            d.jobs2.seconds,
            d.jobs1.seconds,
            target=("<=", 1 / TARGET_SPEEDUP),
            target_label=f"at least {TARGET_SPEEDUP:g}x faster",
            planned=repeats,
            invalid=d.jobs2.problem or d.jobs1.problem,
            note=speedup_note(d.jobs1, d.jobs2, n),
        ),
        Figure(
            f"class_{aid}_throughput",
            f"throughput of the class of {aid} with 2 workers: seconds per submission between "
            "the first and the last result",
            "the same, 1 worker",
            d.jobs2.steady,
            d.jobs1.steady,
            target=("<=", 1 / TARGET_SPEEDUP),
            target_label=f"at least {TARGET_SPEEDUP:g}x the throughput",
            planned=repeats,
            invalid=d.jobs2.problem or d.jobs1.problem,
            note="what a large class sees; the start-up of a command is in the figure above "
            "(the helper, started with the command, joins a few results after the first)",
        ),
        Figure(
            f"class_{aid}_scheduler",
            f"the same class of {aid} on a Dask scheduler on loopback (2 `dask worker`s, "
            "`--scheduler`)",
            "the same class, `--jobs 2` (this process and one helper)",
            d.scheduler.seconds,
            d.jobs2.seconds,
            target=("<=", TARGET_SCHEDULER),
            planned=repeats,
            invalid=d.scheduler.problem or d.jobs2.problem,
            unavailable=d.scheduler_skipped,
            note="the scheduler and its workers were started before the timed runs (as a "
            "department's are); each run registers the grader on them again, which restarts "
            "their fork servers",
        ),
    ]
    if memory:
        for jobs, runs in ((1, d.jobs1), (2, d.jobs2)):
            figures.append(
                Figure(
                    f"memory_{aid}_jobs{jobs}",
                    f"peak memory of one process, the class of {aid} with {jobs} "
                    f"worker{'s' * (jobs > 1)}",
                    "nbclient executing the solution",
                    runs.mib,
                    d.nbclient.mib,
                    unit="MiB",
                    planned=repeats,
                )
            )
    return figures


def scale_figure(s: ScaleData) -> Figure:
    small, large = _median(s.small_runs.seconds), _median(s.large_runs.seconds)
    note = f"copies of {s.notebooks} notebooks under distinct student names"
    note += f"; {s.scores}" if s.scores else ""
    if small and large:
        note += (
            f"; per submission {fmt_value(small / s.small, 's')} ({s.small:,}) and "
            f"{fmt_value(large / s.large, 's')} ({s.large:,})"
        )
    factor = s.large / s.small
    return Figure(
        "scale",
        f"grade {s.large:,} submissions of {s.aid} (`--jobs {s.jobs}`)",
        f"{s.small:,} submissions, the same command",
        s.large_runs.seconds,
        s.small_runs.seconds,
        target=("<=", TARGET_SCALE * factor / SCALE_FACTOR),
        target_label=f"{factor:g}x the submissions",
        planned=1,
        invalid=s.large_runs.problem or s.small_runs.problem,
        note=note,
    )


def scale_speedup_figure(s: ScaleData) -> Figure:
    two, one = s.large_runs, s.large_jobs1
    note = ""
    t1, t2 = _median(one.seconds), _median(two.seconds)
    if t1 and t2:
        note = (
            f"speed-up {t1 / t2:.2f}x; per submission {fmt_value(t1 / s.large, 's')} with 1 "
            f"worker and {fmt_value(t2 / s.large, 's')} with 2; the grades of both runs are "
            "compared submission by submission"
        )
    return Figure(
        "scale_jobs2",
        f"the {s.large:,} submissions of {s.aid} with 2 workers (`--jobs 2`)",
        f"the same {s.large:,}, 1 worker",
        two.seconds,
        one.seconds,
        target=("<=", 1 / TARGET_SPEEDUP),
        target_label=f"at least {TARGET_SPEEDUP:g}x faster",
        planned=1,
        invalid=two.problem or one.problem,
        unavailable=s.jobs1_skipped,
        note=note,
    )


# --- measuring ------------------------------------------------------------------------------


def nbgrader_scores(course: Path, aid: str) -> dict[str, float]:
    """{student: total score} from a plain nbgrader course's gradebook."""
    import warnings

    from nbgrader.api import Gradebook

    url = "sqlite:///" + str(course / "gradebook" / "gradebook.db")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Gradebook(url, "logreg-lessons") as gb:
            return {d["student"]: float(d["score"]) for d in gb.submission_dicts(aid)}


def agreement_note(ours: list[dict], theirs: dict[str, float], aid: str) -> str:
    mine = {r["student"]: float(r["score"]) for r in ours if r.get("assignment") == aid}
    if not mine or not theirs:
        return ""
    same = [s for s in mine if s in theirs and abs(mine[s] - theirs[s]) < 1e-9]
    text = f"plain nbgrader gives the same total as logreg-grade to {len(same)} of {len(mine)}"
    other = [s for s in mine if s not in same]
    if other:
        shown = ", ".join(f"{s}: {theirs.get(s, float('nan')):g} vs {mine[s]:g}" for s in other[:3])
        text += f" (nbgrader vs logreg-grade: {shown})"
    return text


class Bench:
    """The temporary courses and the commands run on them."""

    def __init__(self, cfg, tmp: Path, logs: Path):
        self.cfg, self.tmp, self.logs = cfg, tmp, logs
        env = tool_env(OMP_NUM_THREADS=str(cfg.threads))
        env.pop("LOGREG_GRADEBOOK_URL", None)  # never a shared gradebook
        self.env = env
        self.templates: dict[Path, Path] = {}  # course -> its registered gradebook
        self.registered: dict[str, Path] = {}  # assignment -> a registered gradebook
        self.first_course: dict[str, Path] = {}  # assignment -> the course registered first
        self.plans: dict[Path, tuple[str, list[Entry]]] = {}
        usage = subprocess.run(
            [GRADE, "--help"], capture_output=True, text=True, env=env, timeout=300
        ).stdout
        self.has_timings = "--timings" in usage  # where the time went, as JSON

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def measure(self, command: list, cwd: Path, log: str) -> Measured:
        self.logs.mkdir(parents=True, exist_ok=True)  # a `make clean` meanwhile removes it
        return run_measured(command, cwd=cwd, env=self.env, log=self.log(log), timeout=TIMEOUT)

    def course(self, name: str, aid: str, entries: list[Entry]) -> tuple[Path, Measured | None]:
        """A registered course holding ``entries``.

        The first course of an assignment is registered by a first ``logreg-grade`` with no
        submission (its Measured is returned); later ones get a copy of that registered
        gradebook and master notebook (None), the state a second registration would leave.
        """
        course = make_course(self.tmp / name, aid)
        measured = None
        if aid in self.registered:
            (course / "gradebook").mkdir(mode=0o700)
            shutil.copy2(self.registered[aid], course / "gradebook" / "gradebook.db")
            master = self.first_course[aid] / "solutions" / aid / f"{aid}.ipynb"
            shutil.copy2(master, course / "solutions" / aid / master.name)
        else:
            command = [GRADE, "--root", course, "--jobs", "1"]
            measured = self.measure(command, ROOT, f"{name}-register")
            if not measured.ok:
                tail = self.log(f"{name}-register").read_text(errors="replace").strip()[-600:]
                raise GraderUnavailable(f"`logreg-grade` could not register {aid}:\n{tail}")
            template = self.tmp / f"{aid}.registered.db"
            snapshot_gradebook(course, template)
            self.registered[aid], self.first_course[aid] = template, course
        submit(course, aid, entries)
        self.templates[course], self.plans[course] = self.registered[aid], (aid, entries)
        return course, measured

    def grade(self, course: Path, jobs: int, log: str, scheduler: str | None = None) -> tuple:
        """One timed `logreg-grade` of the whole course: (measured, problem, the grader's
        mean s/sub or None, its --timings or None)."""
        aid, entries = self.plans[course]
        reset_course(course, self.templates[course])
        mark = self.log(log).stat().st_size if self.log(log).exists() else 0
        command = [GRADE, "--root", course, "--jobs", str(jobs)]
        if scheduler:
            command += ["--scheduler", scheduler]
        timings_path = self.tmp / "timings.json"
        timings_path.unlink(missing_ok=True)
        if self.has_timings:
            command += ["--timings", timings_path]
        measured = self.measure(command, ROOT, log)
        timings = None
        with contextlib.suppress(OSError, ValueError):
            timings = json.loads(timings_path.read_text(encoding="utf-8"))
        with open(self.log(log), encoding="utf-8", errors="replace") as f:
            f.seek(mark)
            output = f.read()
        rows = read_grades(course)
        problem = check_grades(rows, entries, aid) if measured.ok else failure(measured, output)
        per = parse_summary(output).get(aid)
        return measured, problem, per[1] if per else None, timings

    def nbclient(self, notebook: Path, log: str) -> tuple[Measured, str]:
        measured = self.measure([sys.executable, CHILD, "execute", notebook], notebook.parent, log)
        return measured, "" if measured.ok else "nbclient could not execute the solution"

    def nbgrader_course(self, name: str, aid: str, master: str, entries: list[Entry]) -> Path:
        """A plain nbgrader course with the assignment generated and ``entries`` submitted."""
        course = self.tmp / name
        (course / "solutions" / aid).mkdir(parents=True)
        shutil.copy2(ROOT / "nbgrader_config.py", course / "nbgrader_config.py")
        (course / "solutions" / aid / f"{aid}.ipynb").write_text(master, encoding="utf-8")
        command = [NBGRADER, "generate_assignment", aid, "--force"]
        measured = self.measure(command, course, f"{name}-generate")
        if not measured.ok:
            raise RuntimeError(f"nbgrader generate_assignment {aid} failed (see its log)")
        submit(course, aid, entries)
        return course


def failure(measured: Measured, output: str) -> str:
    """Why a command failed: its exit status and the last line it printed."""
    what = (
        f"timed out after {measured.seconds:.0f} s"
        if measured.timed_out
        else f"exit status {measured.returncode}"
    )
    lines = [line.strip() for line in output.replace("\r", "\n").splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith(("$ ", "grading:"))]
    return f"{what}: {lines[-1][:200]}" if lines else what


@contextlib.contextmanager
def loopback_cluster(env: dict, workers: int = 2):
    """A `dask scheduler` and ``workers`` `dask worker`s on 127.0.0.1: its address, or None."""
    import os
    import signal
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    dask = str(BIN / "dask")
    commands = [[dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"]]
    commands += [
        [dask, "worker", address, "--nworkers", "1", "--nthreads", "1", "--memory-limit", "0"]
    ] * workers
    procs = []
    try:
        for command in commands:
            procs.append(
                subprocess.Popen(
                    command,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        try:
            from distributed import Client

            with Client(address, timeout="60s") as client:
                client.wait_for_workers(workers, timeout=180)
        except Exception:  # noqa: BLE001 - reported as the figure's reason
            yield None
            return
        yield address
    finally:
        for proc in reversed(procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)


class GraderUnavailable(RuntimeError):
    """logreg-grade cannot grade on this machine (the message says why)."""


def _released(aid: str) -> str | None:
    path = ROOT / "exercises" / aid / f"{aid}.ipynb"
    return path.read_text(encoding="utf-8") if path.exists() else None


def run(cfg, bar, budget: Budget) -> Section:
    """Measure the grading figures within ``budget``; ``cfg`` carries the sizes and repeats."""
    from logreg_grader import release

    R = cfg.repeats
    section = Section(
        "grading",
        "Grading",
        settings={
            "repeats": R,
            "class size": cfg.class_size,
            "class assignments": ", ".join(cfg.class_assignments),
            "scale": f"{cfg.scale:,} and {cfg.scale * SCALE_FACTOR:,} of {cfg.scale_assignment}",
            "threads per process (OMP_NUM_THREADS)": cfg.threads,
        },
    )
    if not GRADE.exists() or not NBGRADER.exists():
        section.status = "skipped"
        section.reason = f"{GRADE.name if not GRADE.exists() else NBGRADER.name} is not installed"
        return section
    known = release.course_assignments(ROOT)
    wanted = list(dict.fromkeys([*cfg.class_assignments, cfg.scale_assignment]))
    unknown = [a for a in wanted if a not in known or not (ROOT / "solutions" / a).is_dir()]
    if unknown:
        section.status = "skipped"
        section.reason = f"no such assignment: {', '.join(unknown)} (known: {', '.join(known)})"
        return section
    masters = {
        aid: release.notebook_text(release.source_notebook(ROOT / "solutions" / aid / f"{aid}.md"))
        for aid in wanted
    }
    bugs = load_bugs()
    for aid in wanted:
        if not bugs.get(aid):
            section.notes.append(f"no planted bug for {aid} in tests/grader/fixtures/bugs_*.py")

    logs = cfg.logs / "grading"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    shown = logs.relative_to(ROOT).as_posix() if logs.is_relative_to(ROOT) else str(logs)
    section.notes.append(f"logs of every command: {shown}")
    bar.reset(total=len(cfg.class_assignments) * (3 + 5 * R) + 6)

    with (
        tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp_name,
        contextlib.ExitStack() as stack,
    ):
        bench = Bench(cfg, Path(tmp_name), logs)
        classes: list[tuple[ClassData, dict]] = []
        try:
            for aid in dict.fromkeys(cfg.class_assignments):
                solution = masters[aid]
                plan = class_plan(cfg.class_size, solution, bugs.get(aid, []), _released(aid))
                data = ClassData(
                    aid, cfg.class_size, dict(collections.Counter(e.kind for e in plan))
                )
                one = [Entry("student0000", "solution", solution)]
                single, measured = bench.course(f"single-{aid}", aid, one)
                data.register.add(measured)
                bar.update()
                klass, _ = bench.course(f"class-{aid}", aid, plan)
                nbg = bench.nbgrader_course(f"nbgrader-{aid}", aid, solution, plan)
                bar.update()
                notebook = single / "submitted" / "student0000" / aid / f"{aid}.ipynb"
                classes.append(
                    (data, {"single": single, "class": klass, "nbg": nbg, "nb": notebook})
                )
            scale = ScaleData(cfg.scale_assignment, cfg.scale, cfg.scale * SCALE_FACTOR)
            scale_courses = {}
            solution = masters[scale.aid]
            for size in (scale.small, scale.large):
                plan = scale_plan(size, solution, bugs.get(scale.aid, []), _released(scale.aid))
                scale_courses[size], _ = bench.course(f"scale-{size}", scale.aid, plan)
                scale.notebooks = len({e.kind for e in plan})
            bar.update()
        except GraderUnavailable as err:
            section.status = "skipped"
            section.reason = str(err)
            return section

        # Untimed warm-up: file caches, the kernel spec, byte-compiled modules.
        # (The registering runs already started the grader, its fork server and sandbox.)
        # A department's scheduler and workers run before grading starts: not timed.
        scheduler = stack.enter_context(loopback_cluster(bench.env))
        for _ in range(cfg.grading_warmup):
            bench.nbclient(classes[0][1]["nb"], "warmup")

        def one_round(rep: int) -> None:
            for data, paths in classes:
                aid = data.aid
                data.single.add(*bench.grade(paths["single"], 1, f"single-{aid}"))
                bar.update()
                data.nbclient.add(*bench.nbclient(paths["nb"], f"nbclient-{aid}"))
                bar.update()
                measured, problem, per, timings = bench.grade(
                    paths["class"], 1, f"class-{aid}-jobs1"
                )
                data.jobs1.add(measured, problem, per, timings)
                serial_ok = measured.ok and not problem
                serial = read_grades(paths["class"])
                if rep == 0:
                    data.scores = score_summary(serial, bench.plans[paths["class"]][1], aid)
                bar.update()
                measured, problem, per, timings = bench.grade(
                    paths["class"], 2, f"class-{aid}-jobs2"
                )
                if serial_ok and measured.ok and not problem:
                    problem = same_grades(serial, read_grades(paths["class"]))
                data.jobs2.add(measured, problem, per, timings)
                bar.update()
                if scheduler is None:
                    data.scheduler_skipped = "not run: the loopback scheduler did not start"
                    continue
                measured, problem, per, timings = bench.grade(
                    paths["class"], 2, f"class-{aid}-scheduler", scheduler=scheduler
                )
                if serial_ok and measured.ok and not problem:
                    problem = same_grades(serial, read_grades(paths["class"]))
                data.scheduler.add(measured, problem, per, timings)
                bar.update()

        start = time.monotonic()
        one_round(0)
        round_cost = time.monotonic() - start

        def nbgrader_batch(data: ClassData, paths: dict) -> None:
            aid = data.aid
            measured = bench.measure([NBGRADER, "autograde", aid], paths["nbg"], f"nbgrader-{aid}")
            graded = list((paths["nbg"] / "autograded").glob(f"*/{aid}/{aid}.ipynb"))
            problem = ""
            if measured.ok and len(graded) != data.size:
                problem = f"nbgrader autograded {len(graded)} of {data.size} submissions"
            data.nbgrader.add(measured, problem)
            if measured.ok:
                with contextlib.suppress(Exception):
                    ours = read_grades(paths["class"])
                    data.agreement = agreement_note(ours, nbgrader_scores(paths["nbg"], aid), aid)
            bar.update()

        # Plain nbgrader of the first class (about one notebook execution per student).
        nbgrader_batch(*classes[0])

        # 10x the submissions: small, then large (and small again at the end, if it fits).
        def scale_run(size: int) -> None:
            runs = scale.small_runs if size == scale.small else scale.large_runs
            runs.add(*bench.grade(scale_courses[size], scale.jobs, f"scale-{size}"))
            if size == scale.large:
                rows = read_grades(scale_courses[size])
                scale.scores = score_summary(rows, bench.plans[scale_courses[size]][1], scale.aid)
            bar.update()

        start = time.monotonic()
        scale_run(scale.small)
        small_cost = time.monotonic() - start
        scale_run(scale.large)

        # More rounds while they fit, then what else fits: the small scale run again (the
        # large one bracketed), plain nbgrader of the other classes.
        for rep in range(1, R):
            if not budget.allows(round_cost):
                break
            start = time.monotonic()
            one_round(rep)
            round_cost = time.monotonic() - start
        if budget.allows(small_cost):
            scale_run(scale.small)
        estimate = 2.2 * (_median(scale.large_runs.seconds) or 600.0)
        if scale.large_runs.problem:
            scale.jobs1_skipped = "not run: the 2-worker run of the large class went wrong"
        elif budget.allows(estimate):
            two = read_grades(scale_courses[scale.large])
            measured, problem, per, timings = bench.grade(
                scale_courses[scale.large], 1, f"scale-{scale.large}-jobs1"
            )
            if measured.ok and not problem:
                problem = same_grades(read_grades(scale_courses[scale.large]), two)
            scale.large_jobs1.add(measured, problem, per, timings)
        else:
            scale.jobs1_skipped = (
                f"not run: it would take about {estimate:.0f} s and "
                f"{max(0.0, budget.left()):.0f} s of the time budget were left (raise --budget)"
            )
        bar.update()
        for data, paths in classes[1:]:
            estimate = 1.2 * data.size * (_median(data.nbclient.seconds) or 10.0)
            if budget.allows(estimate):
                nbgrader_batch(data, paths)
            else:
                data.nbgrader_skipped = (
                    f"not run: plain nbgrader of this class would take about {estimate:.0f} s "
                    f"and {max(0.0, budget.left()):.0f} s of the time budget were left "
                    "(raise --budget)"
                )
                bar.update()

    for index, (data, _) in enumerate(classes):
        section.figures += class_figures(data, R, memory=index == 0)
    section.figures += [scale_figure(scale), scale_speedup_figure(scale)]
    section.notes.append(
        "per submission = the wall clock of one `logreg-grade --jobs 1` of the whole class "
        "divided by its size (start-up, fork server, storing, grades.csv and plot included); "
        "plain nbgrader runs once per class (it costs about one notebook execution per "
        "student): for the first class always, for the others when the time budget allows"
    )
    section.notes.append(
        "peak memory is ru_maxrss of the largest single process (grader, worker, fork server "
        "or kernel), not a sum: with 2 workers two fork servers are alive at once"
    )
    return section
