"""Build a throw-away nbgrader course, fill it with submissions and grade it with logreg-grade.

Used by tests/grader/test_grading.py. Students of the fixture class:

- ``perfect``: every solution notebook handed in as it is (must get full marks);
- ``untouched``: every released notebook handed in unchanged (must get 0 on every test);
- ``noisy``: the 02 solution with a sigmoid that emits a RuntimeWarning and writes to stderr
  (must still get full marks: ``call_student`` keeps the test cell's stderr empty);
- ``broken`` (not a notebook) and ``crash`` (its kernel dies) for the first assignment: the
  batch must go on and report them;
- ``bug-<name>``: one per entry of tests/grader/fixtures/bugs_*.py, the solution of one
  assignment with some solution cells replaced (exactly ``expect_failed`` tests must fail).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat

from logreg_grader import release

REPO = Path(__file__).resolve().parents[2]

# Extra lines for the ``noisy`` student: a correct sigmoid that warns and prints to stderr.
NOISY_ASSIGNMENT = "02_numerical_stability"
NOISY_SIGMOID = '''\
import sys
import warnings

import numpy as np


def sigmoid(z):
    """A correct sigmoid that also emits a RuntimeWarning and writes to stderr."""
    np.exp(np.float32(1000.0))  # overflow: RuntimeWarning from numpy
    warnings.warn("harmless warning from a correct solution", RuntimeWarning)
    print("debug output on stderr", file=sys.stderr)
    e = torch.exp(-torch.abs(z))
    return torch.where(z >= 0, 1 / (1 + e), e / (1 + e))
'''


def assignments(repo: Path = REPO) -> list[str]:
    """Assignment ids with a source (optionally limited by $GRADING_TEST_ASSIGNMENTS)."""
    found = [p.stem for p in release.sources(repo)]
    wanted = os.environ.get("GRADING_TEST_ASSIGNMENTS")
    return [a for a in found if a in wanted.split(",")] if wanted else found


def load_bugs(aids: list[str], folder: Path = REPO / "tests" / "grader" / "fixtures") -> list[dict]:
    """Every BUGS entry of folder/bugs_*.py whose assignment is in aids."""
    bugs = []
    for path in sorted(folder.glob("bugs_*.py")):
        spec = importlib.util.spec_from_file_location(f"_fixture_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        bugs += [dict(b, source=path.name) for b in module.BUGS if b["assignment"] in aids]
    return bugs


def replace_cells(nb, replace: dict[str, str]):
    """A copy of nb with the source of the cells whose grade_id is a key of replace swapped."""
    nb = nbformat.from_dict(nb)
    ids = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in nb.cells}
    for gid, source in replace.items():
        if gid not in ids or not ids[gid].metadata["nbgrader"].get("solution"):
            raise KeyError(f"no solution cell with grade_id {gid!r}")
        ids[gid].source = source
    return nb


def autograded_cells(nb) -> list[tuple[str, float]]:
    """(grade_id, points) of every autograded test cell."""
    out = []
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("grade") and not meta.get("solution"):
            out.append((meta["grade_id"], float(meta["points"])))
    return out


class Course:
    """A graded fixture course in ``root``; see the module docstring."""

    def __init__(self, root: Path, aids: list[str], bugs: list[dict]):
        self.root, self.aids, self.bugs = root, aids, bugs
        self.sources, self.released, self.students = {}, {}, {}
        self.result = None
        self.seconds = 0.0

    def build(self) -> Course:
        shutil.copy(REPO / "nbgrader_config.py", self.root / "nbgrader_config.py")
        for aid in self.aids:
            (self.root / "solutions" / aid).mkdir(parents=True)
            md = REPO / "solutions" / aid / f"{aid}.md"
            shutil.copy(md, self.root / "solutions" / aid / md.name)
            self.sources[aid] = release.source_notebook(md)
        # The committed release (tests/grader/test_release.py checks that it is fresh); generated
        # here only for an assignment that has not been released yet.
        committed = {a: REPO / "exercises" / a / f"{a}.ipynb" for a in self.aids}
        missing = {a: nb for a, nb in self.sources.items() if not committed[a].exists()}
        texts = release.generate(missing, REPO) if missing else {}
        for aid, path in committed.items():
            text = texts[aid] if aid in texts else path.read_text(encoding="utf-8")
            self.released[aid] = nbformat.reads(text, 4)
        for aid in self.aids:
            self.submit("perfect", aid, self.sources[aid])
            self.submit("untouched", aid, self.released[aid])
        if NOISY_ASSIGNMENT in self.aids:
            noisy = replace_cells(self.sources[NOISY_ASSIGNMENT], {"sigmoid": NOISY_SIGMOID})
            self.submit("noisy", NOISY_ASSIGNMENT, noisy)
        for bug in self.bugs:
            nb = replace_cells(self.sources[bug["assignment"]], bug["replace"])
            self.submit(f"bug-{bug['name']}", bug["assignment"], nb)
        # Submissions that cannot run: not a notebook at all, and a kernel that dies.
        first = self.aids[0]
        self.submit("broken", first, None)
        (self.root / "submitted" / "broken" / first / f"{first}.ipynb").write_text("not json")
        solution_ids = [
            c.metadata["nbgrader"]["grade_id"]
            for c in self.sources[first].cells
            if c.metadata.get("nbgrader", {}).get("solution") and c.cell_type == "code"
        ]
        crash = {solution_ids[0]: "import os\n\nos._exit(1)\n"}
        self.submit("crash", first, replace_cells(self.sources[first], crash))
        return self

    def submit(self, student: str, aid: str, nb) -> None:
        folder = self.root / "submitted" / student / aid
        folder.mkdir(parents=True)
        if nb is not None:
            nbformat.write(nb, folder / f"{aid}.ipynb")
        self.students.setdefault(student, []).append(aid)

    def grade(self, jobs: int = 2, timeout: float = 900) -> Course:
        """Run logreg-grade on the course, as `make grade` does."""
        env = dict(os.environ, MPLBACKEND="Agg", PYTHONHASHSEED="0")
        env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
        start = time.perf_counter()
        self.result = subprocess.run(
            [str(Path(sys.executable).parent / "logreg-grade"), "--root", str(self.root)]
            + ["--jobs", str(jobs)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
        self.seconds = time.perf_counter() - start
        return self

    def scores(self, student: str, aid: str) -> dict[str, tuple[float, float]]:
        """grade_id -> (score, max_score) of every autograded test cell, from the gradebook."""
        from nbgrader.api import Gradebook

        cfg = release.load_config(self.root, self.root)
        out = {}
        with Gradebook(cfg.CourseDirectory.db_url, cfg.CourseDirectory.course_id) as gb:
            for gid, _ in autograded_cells(self.sources[aid]):
                grade = gb.find_grade(gid, aid, aid, student)
                out[gid] = (grade.score, grade.max_score)
        return out

    def feedback(self, student: str, aid: str) -> Path:
        return self.root / "feedback" / student / aid / f"{aid}.html"
