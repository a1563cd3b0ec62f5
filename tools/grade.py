"""Autograde every submission, write grades.csv, feedback and a summary: the instructor's command.

Put each student's notebook at submitted/<student>/<id>/<id>.ipynb, then run `make grade`
(or `make grade ASSIGNMENT=02_numerical_stability JOBS=2`). This script:

1. rebuilds solutions/<id>/<id>.ipynb from the MyST sources (the autograder's master copy, with
   the hidden tests) and registers every assignment and its graded cells in the gradebook
   (nbgrader generate_assignment, released into a scratch folder: exercises/ is not touched);
2. grades every submission found under submitted/ (N in parallel, see below), then writes its
   feedback/<student>/<id>/<id>.html from the independent result with the hidden tests removed
   (their source and any traceback line quoting them; checked here);
3. writes grades.csv (student, assignment, score, max_score, status, reason), a
   grade-distribution plot per assignment into _build/grades/<id>.png, and prints a summary:
   students, mean score per assignment, and the submissions that failed to run and why.

A submission is untrusted code. The score comes from the independent grader
(tools/independent.py): only the student's solution cells run, in a sandbox (tools/sandbox.py:
own uid, no network, memory/CPU/wall-clock caps, no access to solutions/, gradebook/,
submitted/), and the master's test cells (hidden tests included) run in this trusted process,
calling the student's functions across the process boundary. nbgrader's own autograde also runs
inside the sandbox, in a throw-away course, as a cross-check (its notebook is kept in
autograded/ for formgrader); where it disagrees with the independent result the submission is
flagged and the independent result stands.

Every submission gets a status in grades.csv: ok, banned_reference, tampering_suspected,
cells_tampered, and for those that could not run "failed: <code>: <reason>" with code timeout,
memory, kernel_died, unreadable or missing_notebook. The gradebook and grades.csv are written
after every submission (a crash keeps what was graded), a lock (gradebook/.lock) serialises two
runs, manual grades survive a regrade, and the submission time recorded is the mtime of the
instructor's copy in submitted/. Exit status: 0, or 1 if a feedback file leaks a hidden test.
Written answers need manual grading (nbgrader formgrader); until then they count 0.

Usage: python tools/grade.py [--assignment ID] [--jobs N] [--root DIR] [--force]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import fcntl
import html
import io
import json
import os
import re
import shutil
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gradebook_db as gradebook  # noqa: E402  (tools/gradebook_db.py: URL, locks)
import independent  # noqa: E402  (tools/independent.py)
import release  # noqa: E402  (tools/release.py)
import sandbox  # noqa: E402  (tools/sandbox.py)

ROOT = release.ROOT
CSV_FIELDS = ("student", "assignment", "score", "max_score", "status", "reason")
FAILED = ("timeout", "memory", "kernel_died", "unreadable", "missing_notebook")
MAX_NOTEBOOK = 50 * 1024**2
# Per notebook; LOGREG_WALL_S shortens the wall clock (the tests use it).
LIMITS = sandbox.Limits(
    memory=3 * sandbox.GIB,
    cpu_s=150,
    wall_s=float(os.environ.get("LOGREG_WALL_S", 150)),
)
_API = None  # one NbGraderAPI per worker process


def _api(root: Path):
    global _API
    if _API is None:
        _quiet()
        _API = gradebook.nbgrader_api(root)
    return _API


def _quiet() -> None:
    """Hide SQLAlchemy's session warnings that nbgrader 0.9 triggers on every autograde."""
    warnings.filterwarnings("ignore", module="nbgrader")
    warnings.filterwarnings("ignore", module="sqlalchemy")


def register(root: Path, assignments: list[str], students: list[str]) -> None:
    """Write the master notebooks; make the gradebook know every assignment, cell and student."""
    nbs = {a: release.source_notebook(root / "solutions" / a / f"{a}.md") for a in assignments}
    with tempfile.TemporaryDirectory(prefix="grade-release-") as scratch:
        api = gradebook.nbgrader_api(root)
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


def _stub_master(nb):
    """The master with every solution and model answer replaced by the release's stub: what the
    sandboxed nbgrader may see (its test cells still hold the hidden tests it must run)."""
    import nbformat

    nb = nbformat.reads(json.dumps(nb), as_version=4)
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if not meta.get("solution"):
            continue
        if cell.cell_type == "markdown":
            cell.source = "YOUR ANSWER HERE"
        else:
            cell.source = re.sub(
                r"### BEGIN SOLUTION.*?### END SOLUTION",
                "# YOUR CODE HERE\nraise NotImplementedError()",
                cell.source,
                flags=re.S,
            )
    return nb


def build_template(root: Path, aid: str, base: Path) -> Path:
    """A throw-away course for the sandboxed nbgrader: config + stubbed master + its gradebook."""
    course = base / f"template-{aid}"
    shutil.rmtree(course, ignore_errors=True)
    (course / "solutions" / aid).mkdir(parents=True)
    text = (root / "nbgrader_config.py").read_text(encoding="utf-8")
    # Its own SQLite gradebook, whatever $LOGREG_GRADEBOOK_URL says: the real one is never
    # reachable from the sandbox (and the sandbox has no network anyway).
    text += (
        "\n# throw-away sandbox course (tools/grade.py)\nc.Execute.timeout = 20\n"
        'c.CourseDirectory.db_url = "sqlite:///" + os.path.join(\n'
        '    ROOT, "gradebook", "gradebook.db")\n'
    )
    (course / "nbgrader_config.py").write_text(text, encoding="utf-8")
    master = json.loads((root / "solutions" / aid / f"{aid}.ipynb").read_text(encoding="utf-8"))
    stub = _stub_master(master)
    release.write_if_changed(
        course / "solutions" / aid / f"{aid}.ipynb", release.notebook_text(stub)
    )
    with tempfile.TemporaryDirectory(prefix="grade-tpl-") as scratch:
        api = release.nbgrader_api(course, course)
        api.coursedir.db_url = "sqlite:///" + str(course / "gradebook" / "gradebook.db")
        api.coursedir.release_directory = scratch
        result = api.generate_assignment(aid, force=True, create=True)
        if not result["success"]:
            raise SystemExit(f"grade: cannot build the sandbox course of {aid}:\n{result['log']}")
    return course


def _nbgrader_in_sandbox(template: Path, aid: str, student: str, notebook: Path, slot: int):
    """nbgrader autograde + generate_feedback of one notebook, as the sandbox user, in a copy
    of the template. Returns (per-cell scores or None, feedback html or None, autograded nb
    text or None, problem)."""
    scratch = sandbox.make_scratch(slot)
    try:
        course = scratch / "course"
        shutil.copytree(template, course)
        dest = course / "submitted" / student / aid
        dest.mkdir(parents=True)
        shutil.copyfile(notebook, dest / f"{aid}.ipynb")  # the notebook only, no other file
        sandbox.give(course, slot)
        nbgrader = str(Path(sys.executable).parent / "nbgrader")
        # nbgrader's own feedback HTML is not used: code running in its kernel could rewrite it
        # or print the hidden tests it can read; feedback comes from the independent run.
        cmd = [nbgrader, "autograde", aid, "--student", student, "--force", "--create"]
        outcome = sandbox.run(cmd, course, slot, LIMITS)
        log = (outcome.stdout + outcome.stderr).decode("utf-8", "replace")
        problem = ""
        if outcome.status != "ok":
            problem = outcome.detail
            if "Kernel died" in log:
                problem = "Kernel died (nbgrader)"
        feedback = course / "feedback" / student / aid / f"{aid}.html"
        autograded = course / "autograded" / student / aid / f"{aid}.ipynb"
        scores = None
        db = course / "gradebook" / "gradebook.db"
        if outcome.status == "ok" and db.exists():
            from nbgrader.api import Gradebook

            with (
                contextlib.suppress(Exception),
                Gradebook("sqlite:///" + str(db), "logreg-lessons") as gb,
            ):
                sub = gb.find_submission(aid, student)
                scores = {}
                for nb in sub.notebooks:
                    for g in nb.grades:
                        scores[g.name] = g.auto_score
        html_text_ = (
            feedback.read_text(encoding="utf-8", errors="replace") if feedback.is_file() else None
        )
        ag = (
            autograded.read_text(encoding="utf-8", errors="replace")
            if autograded.is_file()
            else None
        )
        if "Kernel died" in log and not problem:
            problem = "Kernel died (nbgrader)"
        return scores, html_text_, ag, problem
    finally:
        sandbox.remove(scratch, slot)


def load_submission(root: Path, aid: str, student: str):
    """(parsed notebook or None, status, reason) of submitted/<student>/<id>/<id>.ipynb."""
    folder = root / "submitted" / student / aid
    path = folder / f"{aid}.ipynb"
    if not path.is_file():
        others = sorted(p.name for p in folder.glob("*.ipynb"))
        found = f" (found {', '.join(others)}: rename it to {aid}.ipynb)" if others else ""
        return None, "missing_notebook", f"no {aid}.ipynb in the submission{found}"
    if path.stat().st_size > MAX_NOTEBOOK:
        return None, "unreadable", "the notebook is larger than 50 MB"
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
            raise ValueError("no cells")
    except (ValueError, UnicodeDecodeError) as err:
        return None, "unreadable", f"the notebook is not valid JSON / nbformat: {str(err)[:120]}"
    return nb, "ok", ""


def grade_one(root: str, aid: str, student: str, template: str = "", slot: int = 0) -> dict:
    """Grade one submission (runs in a worker process): independent result + sandboxed nbgrader."""
    start = time.perf_counter()
    _quiet()
    root_p = Path(root)
    out = {"assignment": aid, "student": student, "ok": True, "cells": {}, "reasons": []}
    nb, status, reason = load_submission(root_p, aid, student)
    if nb is None:
        out.update(ok=False, code=status, why=reason, seconds=time.perf_counter() - start)
        return out
    master = json.loads((root_p / "solutions" / aid / f"{aid}.ipynb").read_text(encoding="utf-8"))
    secret = hidden_lines(root_p, aid)
    scratch = sandbox.make_scratch(slot)
    try:
        result = independent.grade(master, nb, scratch, slot, LIMITS, roots=[root_p], hidden=secret)
    except Exception as err:  # noqa: BLE001 - one submission never stops the batch
        result = {"status": "kernel_died", "reasons": [f"grader error: {err}"], "cells": {}}
    finally:
        sandbox.remove(scratch, slot)
    out["cells"] = result["cells"]
    out["reasons"] = list(result["reasons"])
    code = result["status"]
    nb_scores, fb, ag, problem = (None, None, None, "")
    if template:
        try:
            nb_scores, fb, ag, problem = _nbgrader_in_sandbox(
                Path(template),
                aid,
                student,
                root_p / "submitted" / student / aid / f"{aid}.ipynb",
                slot,
            )
        except Exception as err:  # noqa: BLE001
            problem = f"nbgrader could not run: {err}"
    if problem:
        out["reasons"].append(f"nbgrader: {problem}")
    if nb_scores is not None:
        higher = sorted(
            gid
            for gid, (score, _, _) in result["cells"].items()
            if (nb_scores.get(gid) or 0) > score + 1e-9
        )
        lower = sorted(
            gid
            for gid, (score, _, _) in result["cells"].items()
            if (nb_scores.get(gid) or 0) < score - 1e-9
        )
        if higher:
            out["reasons"].append(
                "nbgrader's in-kernel result gave points the independent check did not: "
                + ", ".join(higher)
                + " (the independent result stands)"
            )
            if code == "ok":
                code = "tampering_suspected"
        if lower:
            out["reasons"].append(
                "nbgrader's in-kernel run failed "
                + ", ".join(lower)
                + " (the independent result stands)"
            )
    out["code"] = code
    out["ok"] = code not in FAILED
    out["why"] = "; ".join(out["reasons"])[:600]
    if code in FAILED and "Kernel died" not in out["why"] and code == "kernel_died":
        out["why"] = "Kernel died: " + out["why"]
    out["feedback"] = _feedback_html(None, out, result, secret, master)
    out["autograded"] = ag
    out["seconds"] = time.perf_counter() - start
    return out


def _feedback_html(nbgrader_html, out, result, secret, master=None) -> str:
    """Feedback from the independent result (which decides the score): per test, its visible
    one-line description, the points and the failure message (hidden lines removed)."""
    docs = {}
    for kind, gid, src, *_ in independent.cells_of(master or {}):
        if kind == "test":
            first = src.strip().split("\n")[0].strip().strip('"').strip()
            docs[gid] = first if first not in secret else ""
    rows = []
    for gid, (score, top, msg) in result.get("cells", {}).items():
        lines = [ln for ln in str(msg).split("\n") if ln.strip() not in secret]
        rows.append(
            f"<tr><td>{html.escape(gid)}<br><small>{html.escape(docs.get(gid, ''))}</small></td>"
            f"<td>{score:g} / {top:g}</td>"
            f"<td><pre>{html.escape(chr(10).join(lines))}</pre></td></tr>"
        )
    total = sum(v[0] for v in result.get("cells", {}).values())
    top = sum(v[1] for v in result.get("cells", {}).values())
    block = (
        '<div id="independent-grade"><h2>Your grade (independent check)</h2>'
        f"<p>Autograded points: {total:g} / {top:g}. Status: {html.escape(out.get('code', ''))}."
        f"</p><p>{html.escape(out.get('why', ''))}</p>"
        "<table><tr><th>test</th><th>points</th><th>message</th></tr>"
        + "".join(rows)
        + "</table></div>"
    )
    if nbgrader_html and "<body" in nbgrader_html:
        return re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + block, nbgrader_html, count=1)
    return f"<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>{block}</body></html>"


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


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _statuses(root: Path) -> dict:
    path = root / "gradebook" / "status.json"
    with contextlib.suppress(OSError, ValueError):
        return json.loads(path.read_text(encoding="utf-8"))
    return {}


def record(root: Path, r: dict) -> None:
    """Write one graded submission into the gradebook (keeping manual grades), its feedback,
    its autograded notebook and its status: called as soon as it is graded."""
    from nbgrader.api import Gradebook, MissingEntry

    cfg = release.load_config(root, root)
    aid, student = r["assignment"], r["student"]
    folder = root / "submitted" / student / aid
    nb_path = folder / f"{aid}.ipynb"
    stamp = (nb_path if nb_path.exists() else folder).stat().st_mtime
    with Gradebook(gradebook.url(root), cfg.CourseDirectory.course_id) as gb:
        gb.update_or_create_student(student)
        try:
            sub = gb.find_submission(aid, student)
        except MissingEntry:
            sub = gb.add_submission(aid, student)
        sub.timestamp = datetime.datetime.fromtimestamp(stamp, datetime.UTC).replace(tzinfo=None)
        cells = r.get("cells", {})
        for nb in sub.notebooks:
            for g in nb.grades:
                if g.cell.cell_type == "code":
                    g.auto_score = float(cells.get(g.name, (0.0,))[0])
                    g.needs_manual_grade = False
                else:
                    g.needs_manual_grade = g.manual_score is None
        gb.db.commit()
    if r.get("feedback"):
        dest = root / "feedback" / student / aid / f"{aid}.html"
        dest.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(dest, r["feedback"])
    if r.get("autograded"):
        dest = root / "autograded" / student / aid / f"{aid}.ipynb"
        dest.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(dest, r["autograded"])
    statuses = _statuses(root)
    statuses[f"{aid}/{student}"] = {
        "code": r.get("code", "ok"),
        "why": r.get("why", ""),
        "graded": time.time(),
    }
    _atomic_write(
        root / "gradebook" / "status.json", json.dumps(statuses, indent=1, sort_keys=True)
    )


def export(root: Path, failures: dict[tuple[str, str], str] | None = None) -> list[dict]:
    """Write root/grades.csv (atomically) from the gradebook and the statuses; return its rows."""
    from nbgrader.api import Gradebook, MissingEntry

    failures = failures or {}
    statuses = _statuses(root)
    cfg = release.load_config(root, root)
    rows = []
    with Gradebook(gradebook.url(root), cfg.CourseDirectory.course_id) as gb:
        for assignment in sorted(gb.assignments, key=lambda a: a.name):
            for student in sorted(gb.students, key=lambda s: s.id):
                key = (assignment.name, student.id)
                info = statuses.get(f"{assignment.name}/{student.id}")
                try:
                    sub = gb.find_submission(assignment.name, student.id)
                except MissingEntry:
                    if key not in failures:
                        continue
                    sub = None
                code = info["code"] if info else "ok"
                why = info["why"] if info else ""
                if key in failures:
                    code, why = "unknown_assignment", failures[key]
                status = (
                    f"failed: {code}: {why}" if code in FAILED + ("unknown_assignment",) else code
                )
                if sub is not None and sub.needs_manual_grade and code not in FAILED:
                    why = (why + "; " if why else "") + "written answers need manual grading"
                rows.append(
                    {
                        "student": student.id,
                        "assignment": assignment.name,
                        "score": f"{sub.score if sub else 0.0:g}",
                        "max_score": f"{assignment.max_score:g}",
                        "status": status,
                        "reason": why,
                    }
                )
    lines = io.StringIO()
    writer = csv.DictWriter(lines, fieldnames=CSV_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    _atomic_write(root / "grades.csv", lines.getvalue())
    return rows


@contextlib.contextmanager
def course_lock(root: Path):
    """fcntl lock on gradebook/.lock: a second run waits for the first (and says so)."""
    (root / "gradebook").mkdir(exist_ok=True)
    with open(root / "gradebook" / ".lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(
                "grade: another grading run holds gradebook/.lock; waiting for it", file=sys.stderr
            )
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


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
    parser.add_argument(
        "--force", action="store_true", help="regrade everything (always done; manual grades kept)"
    )
    parser.add_argument("--no-nbgrader", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    root = args.root.resolve()
    release.prepare_environment()
    _quiet()
    try:
        available = [p.stem for p in release.sources(root, args.assignment)]
    except release.SourceError as err:
        print(f"grade: {err}", file=sys.stderr)
        return 2
    for line in sandbox.warnings():
        print(f"grade: WARNING: {line}", file=sys.stderr)
    (root / "submitted").mkdir(exist_ok=True)
    with course_lock(root):
        return _run(root, args, available)


def _run(root: Path, args, available: list[str]) -> int:
    todo, failed = submissions(root, available)
    gradebook.prepare(gradebook.url(root))  # reachable? SQLite: WAL, lock waits
    with gradebook.exclusive(gradebook.url(root)):  # one registration at a time, all machines
        register(root, available, sorted({student for _, student in todo}))
    sandbox.protect(root)
    if not todo:
        where = root / "submitted"
        print(f"grade: nothing to grade under {where}/<student>/<id>/", file=sys.stderr)

    from concurrent.futures import as_completed

    from tqdm import tqdm

    base = Path(tempfile.mkdtemp(prefix="grade-templates-"))
    templates = {}
    if not args.no_nbgrader:
        for aid in sorted({a for a, _ in todo}):
            templates[aid] = str(build_template(root, aid, base))
    failures = {(f["assignment"], f["student"]): f["why"] for f in failed}
    results = []
    bar = tqdm(total=len(todo), desc="grading", unit="submission", file=sys.stderr)

    def done(r):
        results.append(r)
        try:
            record(root, r)
            export(root, failures)
        except Exception as err:  # noqa: BLE001 - one submission never stops the batch
            print(f"grade: cannot record {r['student']}/{r['assignment']}: {err}", file=sys.stderr)
        bar.update()

    try:
        jobs = [(str(root), aid, s, templates.get(aid, ""), i) for i, (aid, s) in enumerate(todo)]
        if args.jobs <= 1:
            for job in jobs:
                done(grade_one(*job))
        else:
            ctx = get_context("spawn")
            with ProcessPoolExecutor(max_workers=args.jobs, mp_context=ctx) as pool:
                futures = {pool.submit(grade_one, *job): job for job in jobs}
                for future in as_completed(futures):
                    job = futures[future]
                    try:
                        done(future.result())
                    except Exception as err:  # noqa: BLE001 - a dead worker
                        done(
                            {
                                "assignment": job[1],
                                "student": job[2],
                                "ok": False,
                                "code": "kernel_died",
                                "why": f"Kernel died: grader worker: {err}",
                                "cells": {},
                                "seconds": 0.0,
                            }
                        )
    finally:
        bar.close()
        shutil.rmtree(base, ignore_errors=True)

    failed += [r for r in results if not r["ok"]]
    seconds: dict[str, list[float]] = {}
    for r in results:
        seconds.setdefault(r["assignment"], []).append(r.get("seconds", 0.0))
    rows = export(root, failures)
    plots_dir = plot_distributions(root, rows) if rows else root / "_build" / "grades"
    print(summary(rows, failed, seconds, plots_dir, root))
    flagged = [
        r for r in rows if r["status"] not in ("ok",) and not r["status"].startswith("failed")
    ]
    if flagged:
        print("flagged submissions (the independent result stands):")
        for r in flagged:
            print(f"  {r['student']}/{r['assignment']}: {r['status']}: {r['reason'][:200]}")
    leaks = check_feedback(root, results)
    if leaks:
        print("hidden tests leaked into feedback:", *leaks, sep="\n  ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
