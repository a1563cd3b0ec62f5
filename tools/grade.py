"""Autograde every submission, write grades.csv, feedback and a summary: the instructor's command.

Put each student's notebook at submitted/<student>/<id>/<id>.ipynb, then run `make grade`
(or `make grade ASSIGNMENT=02_numerical_stability JOBS=2`). This script:

1. rebuilds solutions/<id>/<id>.ipynb from the MyST sources (the autograder's master copy, with
   the hidden tests) and registers every assignment and its graded cells in the gradebook
   (nbgrader generate_assignment, released into a scratch folder: exercises/ is not touched);
2. autogrades every submission found under submitted/ (nbgrader autograde, one kernel per
   submission, N in parallel), then writes its feedback/<student>/<id>/<id>.html with the
   hidden tests removed (their source and any traceback line quoting them; checked here);
3. writes grades.csv (student, assignment, score, max_score, status) from the gradebook, a
   grade-distribution plot per assignment into _build/grades/<id>.png, and prints a summary:
   students, mean score per assignment, and the submissions that failed to run and why.

A submission that cannot be graded (invalid notebook, dead kernel, ...) is reported and
skipped; the batch always completes. Exit status: 0, or 1 if a feedback file leaks a hidden
test. Written answers need manual grading (nbgrader formgrader); until then they count 0.

Usage: python tools/grade.py [--assignment ID] [--jobs N] [--root DIR]
"""

from __future__ import annotations

import argparse
import csv
import html
import re
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import release  # noqa: E402  (tools/release.py)

ROOT = release.ROOT
CSV_FIELDS = ("student", "assignment", "score", "max_score", "status")
_API = None  # one NbGraderAPI per worker process


def _api(root: Path):
    global _API
    if _API is None:
        _quiet()
        _API = release.nbgrader_api(root, root)
    return _API


def _quiet() -> None:
    """Hide SQLAlchemy's session warnings that nbgrader 0.9 triggers on every autograde."""
    warnings.filterwarnings("ignore", module="nbgrader")
    warnings.filterwarnings("ignore", module="sqlalchemy")


def register(root: Path, assignments: list[str], students: list[str]) -> None:
    """Write the master notebooks; make the gradebook know every assignment, cell and student."""
    nbs = {a: release.source_notebook(root / "solutions" / a / f"{a}.md") for a in assignments}
    with tempfile.TemporaryDirectory(prefix="grade-release-") as scratch:
        api = release.nbgrader_api(root, root)
        api.coursedir.release_directory = scratch  # absolute: exercises/ stays untouched
        for aid, nb in nbs.items():
            master = root / "solutions" / aid / f"{aid}.ipynb"
            release.write_if_changed(master, release.notebook_text(nb))
            result = api.generate_assignment(aid, force=True, create=True)
            if not result["success"]:
                raise SystemExit(f"grade: cannot register {aid}:\n{result['log']}")
    from nbgrader.api import Gradebook

    with Gradebook(api.coursedir.db_url, api.coursedir.course_id) as gb:
        for student in students:
            gb.update_or_create_student(student)


def grade_one(root: str, aid: str, student: str) -> dict:
    """Autograde one submission and write its feedback (runs in a worker process)."""
    start = time.perf_counter()
    api = _api(Path(root))
    result = api.autograde(aid, student, force=True, create=True)
    out = {"assignment": aid, "student": student, "ok": bool(result["success"])}
    if result["success"]:
        feedback = api.generate_feedback(aid, student, force=True)
        if not feedback["success"]:
            out.update(ok=False, why="feedback: " + _reason(feedback))
    else:
        out["why"] = _reason(result)
    out["seconds"] = time.perf_counter() - start
    return out


def _reason(result: dict) -> str:
    """The most telling line of nbgrader's log: the last exception or error message."""
    text = (result.get("error") or "") + "\n" + (result.get("log") or "")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for line in reversed(lines):
        if re.match(r"^[A-Za-z_.]*(Error|Exception|Timeout)\b.*:", line) or "timed out" in line:
            return line[:300]
    errors = [ln for ln in lines if ln.startswith("[ERROR]")]
    return (errors[0] if errors else (lines[-1] if lines else "unknown error"))[:300]


def submissions(root: Path, assignments: list[str]) -> tuple[list[tuple[str, str]], list[dict]]:
    """(assignment, student) pairs to grade, and submissions that cannot be graded."""
    todo, bad = [], []
    folder = root / "submitted"
    for student_dir in sorted(p for p in folder.glob("*") if p.is_dir()):
        for sub in sorted(p for p in student_dir.glob("*") if p.is_dir()):
            if sub.name in assignments:
                todo.append((sub.name, student_dir.name))
            elif not (root / "solutions" / sub.name / f"{sub.name}.md").exists():
                why = "unknown assignment (no solutions/<id>/<id>.md)"
                bad.append({"assignment": sub.name, "student": student_dir.name, "why": why})
    return todo, bad


def hidden_lines(root: Path, aid: str) -> set[str]:
    """Lines of the hidden tests that appear nowhere in the students' notebook."""
    nb = release.source_notebook(root / "solutions" / aid / f"{aid}.md")
    hidden, visible = set(), set()
    for cell in nb.cells:
        inside = False
        for line in cell.source.split("\n"):
            if "BEGIN HIDDEN TESTS" in line or "END HIDDEN TESTS" in line:
                inside = "BEGIN" in line
            elif not any(m in line for m in ("BEGIN SOLUTION", "END SOLUTION")):
                (hidden if inside else visible).add(line.strip())
    return {h for h in hidden - visible if len(h) >= 12}


def html_text(path: Path) -> str:
    """Visible text of an HTML file: tags and ANSI colours removed, entities decoded."""
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"<(script|style)\b.*?</\1>", "", text, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", "", text))


def check_feedback(root: Path, graded: list[dict]) -> list[str]:
    """Feedback files that quote a hidden test line (should be none)."""
    leaks, cache = [], {}
    for item in graded:
        aid, student = item["assignment"], item["student"]
        path = root / "feedback" / student / aid / f"{aid}.html"
        if not item["ok"] or not path.exists():
            continue
        secret = cache.setdefault(aid, hidden_lines(root, aid))
        # a traceback quotes a source line as "---> 12 code" or "     13 code"
        lines = {re.sub(r"^\s*-*>?\s*\d+\s", "", ln).strip() for ln in html_text(path).splitlines()}
        found = sorted(secret & lines)
        if found:
            leaks.append(f"{path.relative_to(root)}: {found[0]!r}")
    return leaks


def export(root: Path, failures: dict[tuple[str, str], str]) -> list[dict]:
    """Write root/grades.csv from the gradebook; return its rows."""
    from nbgrader.api import Gradebook, MissingEntry

    cfg = release.load_config(root, root)
    rows = []
    with Gradebook(cfg.CourseDirectory.db_url, cfg.CourseDirectory.course_id) as gb:
        for assignment in sorted(gb.assignments, key=lambda a: a.name):
            for student in sorted(gb.students, key=lambda s: s.id):
                key = (assignment.name, student.id)
                try:
                    sub = gb.find_submission(assignment.name, student.id)
                except MissingEntry:
                    if key not in failures:
                        continue
                    sub = None
                if key in failures:
                    status = "failed: " + failures[key]
                elif sub.needs_manual_grade:
                    status = "needs manual grading"
                else:
                    status = "graded"
                rows.append(
                    {
                        "student": student.id,
                        "assignment": assignment.name,
                        "score": f"{sub.score if sub else 0.0:g}",
                        "max_score": f"{assignment.max_score:g}",
                        "status": status,
                    }
                )
    with open(root / "grades.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return rows


def plot_distributions(root: Path, rows: list[dict]) -> Path:
    """One histogram of scores per assignment into root/_build/grades/<id>.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    out = root / "_build" / "grades"
    out.mkdir(parents=True, exist_ok=True)
    for aid in sorted({r["assignment"] for r in rows}):
        scores = [float(r["score"]) for r in rows if r["assignment"] == aid]
        top = max(float(r["max_score"]) for r in rows if r["assignment"] == aid)
        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.hist(scores, bins=min(20, max(5, int(top) + 1)), range=(0, top), color="#0072B2")
        ax.set(xlabel=f"score (out of {top:g})", ylabel="students", title=f"{aid}: scores")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        fig.tight_layout()
        fig.savefig(out / f"{aid}.png", dpi=100)
        plt.close(fig)
    return out


def summary(rows, failed, seconds, plots_dir, root) -> str:
    head = ("assignment", "students", "mean", "max", "failed", "s/sub")
    lines = ["{:<24} {:>8} {:>7} {:>5} {:>6} {:>6}".format(*head)]
    for aid in sorted({r["assignment"] for r in rows}):
        mine = [r for r in rows if r["assignment"] == aid]
        mean = sum(float(r["score"]) for r in mine) / len(mine)
        nfail = sum(r["status"].startswith("failed") for r in mine)
        secs = seconds.get(aid, [])
        per = f"{sum(secs) / len(secs):.1f}" if secs else "-"
        lines.append(
            f"{aid:<24} {len(mine):>8} {mean:>7.2f} {mine[0]['max_score']:>5} {nfail:>6} {per:>6}"
        )
    if failed:
        lines.append("submissions that could not be graded:")
        lines += [f"  {f['student']}/{f['assignment']}: {f['why']}" for f in failed]
    lines.append(f"grades: {root / 'grades.csv'}")
    lines.append(f"feedback: {root / 'feedback'}/<student>/<id>/<id>.html")
    lines.append(f"grade distributions: {plots_dir}/<id>.png")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--assignment", help="grade one assignment id (default: all)")
    parser.add_argument("--jobs", type=int, default=1, help="submissions graded in parallel")
    parser.add_argument("--root", type=Path, default=ROOT, help="course root (default: repo)")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    release.prepare_environment()
    _quiet()
    try:
        available = [p.stem for p in release.sources(root, args.assignment)]
    except release.SourceError as err:
        print(f"grade: {err}", file=sys.stderr)
        return 2
    (root / "submitted").mkdir(exist_ok=True)
    todo, failed = submissions(root, available)
    register(root, available, sorted({student for _, student in todo}))
    if not todo:
        where = root / "submitted"
        print(f"grade: nothing to grade under {where}/<student>/<id>/", file=sys.stderr)

    from tqdm import tqdm

    results = []
    bar = tqdm(total=len(todo), desc="autograding", unit="submission", file=sys.stderr)
    if args.jobs <= 1:
        for aid, student in todo:
            results.append(grade_one(str(root), aid, student))
            bar.update()
    else:
        ctx = get_context("spawn")
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=ctx) as pool:
            futures = [pool.submit(grade_one, str(root), aid, s) for aid, s in todo]
            for future in futures:
                results.append(future.result())
                bar.update()
    bar.close()

    failed += [r for r in results if not r["ok"]]
    failures = {(f["assignment"], f["student"]): f["why"] for f in failed}
    seconds: dict[str, list[float]] = {}
    for r in results:
        seconds.setdefault(r["assignment"], []).append(r["seconds"])
    rows = export(root, failures)
    plots_dir = plot_distributions(root, rows) if rows else root / "_build" / "grades"
    print(summary(rows, failed, seconds, plots_dir, root))
    leaks = check_feedback(root, results)
    if leaks:
        print("hidden tests leaked into feedback:", *leaks, sep="\n  ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
