"""The instructor's term step by step on a class of 50 submissions of 04_gradients, once.

Not part of `make bench`: it prints the wall-clock seconds of each step of
book/10_instructor_guide.md and the load average around it, for the closing note of the term.
The class is benchmarks/grading.py's ``class_plan`` (25 solutions, 20 planted bugs, 5 untouched
releases), handed in as one Canvas download (every seventh marked ``LATE_``) by a Canvas roster
of 50, with the guide's example ``course.toml``; one more student, ``nobody`` (uid 65534),
submits through nbgrader's exchange and fetches the feedback. Each step runs the command the
Makefile runs, with ``--root`` on a temporary course; ``JOBS=2`` grades a copy of the collected
course, so that both first runs start from the same state. Run as root:

    .venv/bin/python benchmarks/term_steps.py [--size 50] [--json out.json]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.grading import class_plan, load_bugs  # noqa: E402
from logreg_grader import release  # noqa: E402

BIN = Path(sys.executable).parent
AID = "04_gradients"
NOBODY = 65534
GUIDE = ROOT / "book" / "10_instructor_guide.md"


def env(**extra) -> dict[str, str]:
    """The environment the Makefile exports to its commands."""
    out = dict(os.environ, MPLBACKEND="Agg", PYTHONHASHSEED="0", **extra)
    out["PATH"] = str(BIN) + os.pathsep + out.get("PATH", "")
    out.pop("LOGREG_GRADEBOOK_URL", None)
    return out


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


class Steps:
    """Runs and times commands; ``rows`` holds (step, seconds, load before, load after)."""

    def __init__(self):
        self.rows: list[tuple[str, float, str, str]] = []

    def run(self, name: str, argv: list, cwd: Path, **kw) -> subprocess.CompletedProcess:
        before, start = load(), time.perf_counter()
        result = subprocess.run(
            [str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=3600, **kw
        )
        seconds = time.perf_counter() - start
        if result.returncode != 0:
            sys.exit(f"{name} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        self.rows.append((name, seconds, before, load()))
        print(f"{name}: {seconds:.2f} s (load {before} -> {load()})", flush=True)
        return result

    def tool(self, name: str, tool: str, root: Path, *args) -> subprocess.CompletedProcess:
        return self.run(name, [BIN / tool, *args, "--root", root], root, env=env())

    def lab(self, root: Path, home: Path) -> None:
        """logreg-lab from its start to the line with formgrader's address; then stopped."""
        before, start = load(), time.perf_counter()
        proc = subprocess.Popen(
            [str(BIN / "logreg-lab"), "--root", str(root), "--port", "18931", "--no-browser"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=home,
            env=env(HOME=str(home), JUPYTER_RUNTIME_DIR=str(home / "runtime")),
        )
        url = None
        try:
            for line in proc.stdout:
                if line.startswith("lab: formgrader at "):
                    url = line
                    break
        finally:
            seconds = time.perf_counter() - start
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=60)
        if url is None:
            sys.exit("logreg-lab did not print formgrader's address")
        self.rows.append(("sudo make lab: start-up to the printed URL", seconds, before, load()))
        print(f"lab start-up: {seconds:.2f} s", flush=True)


def canvas_zip(entries) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for k, e in enumerate(entries):
            late = "LATE_" if k % 7 == 3 else ""
            z.writestr(f"{e.student}_{late}{2000 + k}_{9000 + k}_{AID}.ipynb", e.text)
    return buf.getvalue()


def roster(entries) -> str:
    lines = ["Student,ID,SIS User ID,SIS Login ID,Section", "    Points Possible,,,,"]
    lines += [f'"{e.student}, Ann",{2000 + k},S{k},{e.student},A' for k, e in enumerate(entries)]
    lines.append('"Body, No",1999,S-1,nobody,A')
    lines.append('"Lee, Ann",1998,S-2,ann,A')  # the guide's course.toml gives her an extension
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=50, help="submissions in the Canvas zip")
    parser.add_argument("--json", type=Path, help="write the rows here too")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("term_steps: grading needs root")
    if args.size < 1:
        sys.exit(f"term_steps: --size must be at least 1, got {args.size}")
    md = ROOT / "solutions" / AID / f"{AID}.md"
    import nbformat

    solution = nbformat.writes(release.source_notebook(md))
    released = (ROOT / "exercises" / AID / f"{AID}.ipynb").read_text(encoding="utf-8")
    entries = class_plan(args.size, solution, load_bugs().get(AID, []), released)
    shared = Path(tempfile.mkdtemp(prefix="logreg-term-steps-"))
    steps = Steps()
    try:
        os.chmod(shared, 0o755)
        exchange, home, root = shared / "exchange", shared / "home", shared / "course"
        exchange.mkdir(mode=0o777)
        os.chmod(exchange, 0o777)
        (home / ".jupyter").mkdir(parents=True)
        setting = f"c.Exchange.root = {str(exchange)!r}\n"
        (home / ".jupyter" / "nbgrader_config.py").write_text(setting)
        for path in (home, home / ".jupyter", home / ".jupyter" / "nbgrader_config.py"):
            os.chown(path, NOBODY, NOBODY)
        (root / "solutions" / AID).mkdir(parents=True)
        shutil.copy(md, root / "solutions" / AID)
        shutil.copytree(ROOT / "exercises" / AID, root / "exercises" / AID)
        config = (ROOT / "nbgrader_config.py").read_text(encoding="utf-8")
        (root / "nbgrader_config.py").write_text(config + "\n" + setting)
        toml = re.findall(r"^```toml\n(.*?)^```", GUIDE.read_text(), flags=re.S | re.M)[0]
        (root / "course.toml").write_text(toml)
        (root / "roster.csv").write_text(roster(entries))
        (root / "downloaded").mkdir()
        (root / "downloaded" / "submissions.zip").write_bytes(canvas_zip(entries))

        steps.tool(
            f"make collect (Canvas zip of {args.size})",
            "logreg-collect",
            root,
            "--assignment",
            AID,
            "downloaded/submissions.zip",
        )
        collected = list((root / "submitted").glob(f"*/{AID}/{AID}.ipynb"))
        if len(collected) != args.size:
            sys.exit(f"make collect wrote {len(collected)} submissions, not {args.size}")
        twin = shared / "course-jobs2"
        shutil.copytree(root, twin, symlinks=True)
        steps.tool("make grade (first run, JOBS=1)", "logreg-grade", root, "--jobs", "1")
        steps.tool("make grade (first run, JOBS=2)", "logreg-grade", twin, "--jobs", "2")
        for course in (root, twin):
            with open(course / "grades.csv", newline="", encoding="utf-8") as f:
                graded = [r for r in csv.DictReader(f) if r["status"] != "missing"]
            if len(graded) != args.size:
                sys.exit(f"{course.name}: {len(graded)} graded rows in grades.csv, not {args.size}")
        shutil.rmtree(twin)
        steps.tool("make grade (nothing new)", "logreg-grade", root, "--jobs", "1")
        first = entries[0].student
        steps.tool(f"make grade STUDENT={first}", "logreg-grade", root, "--student", first)
        steps.tool("make grades", "logreg-grades", root)
        steps.tool(
            f"make similarity ASSIGNMENT={AID}", "logreg-similarity", root, "--assignment", AID
        )
        steps.lab(root, home)

        nbg = BIN / "nbgrader"
        as_nobody = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", nbg]
        student_env = env(HOME=str(home))
        steps.run("nbgrader release_assignment", [nbg, "release_assignment", AID], root, env=env())
        course = ["--course", "logreg-lessons"]
        steps.run(
            "nbgrader fetch_assignment (a student)",
            [*as_nobody, "fetch_assignment", AID, *course],
            home,
            env=student_env,
        )
        fetched = home / AID / f"{AID}.ipynb"
        fetched.write_text(solution)
        os.chown(fetched, NOBODY, NOBODY)
        steps.run(
            "nbgrader submit (a student)",
            [*as_nobody, "submit", AID, *course],
            home,
            env=student_env,
        )
        steps.run("nbgrader collect", [nbg, "collect", AID], root, env=env())
        steps.tool("make grade (the one new submission)", "logreg-grade", root, "--jobs", "1")
        steps.run(
            "nbgrader fetch_feedback (a student)",
            [*as_nobody, "fetch_feedback", AID, *course],
            home,
            env=student_env,
        )
        if not list((home / AID / "feedback").rglob(f"{AID}.html")):
            sys.exit("fetch_feedback brought no page")
    finally:
        shutil.rmtree(shared, ignore_errors=True)
    print("\n| step | seconds | load average (1 min) before -> after |\n| --- | --- | --- |")
    for name, seconds, before, after in steps.rows:
        print(f"| {name} | {seconds:.1f} | {before.split()[0]} -> {after.split()[0]} |")
    if args.json:
        args.json.write_text(json.dumps(steps.rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
