"""Every path of a course, built in one place (nbgrader's ``CourseDirectory.format_path``).

Layout, relative to the course root::

    nbgrader_config.py                   ASSIGNMENTS = [...], nbgrader's configuration
    solutions/<id>/<id>.md               the instructor's source (a person edits only this)
    solutions/<id>/<id>.ipynb            the master notebook, hidden tests included (written)
    exercises/<id>/<id>.ipynb            the students' release
    submitted/<student>/<id>/<id>.ipynb  a submission (+ timestamp.txt)
    autograded/<student>/<id>/<id>.ipynb what ran, for formgrader      (private, 0700)
    feedback/<student>/<id>/<id>.html    the student's feedback page    (private, 0700)
    gradebook/gradebook.db               nbgrader's gradebook           (private, 0700)
    grades.csv, _build/grades/           the exports
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import os
import sys
from dataclasses import dataclass
from pathlib import Path

PRIVATE = ("autograded", "feedback", "gradebook", "submitted", "solutions")


@dataclass(frozen=True)
class Course:
    root: Path

    def source(self, aid: str) -> Path:
        return self.root / "solutions" / aid / f"{aid}.md"

    def master(self, aid: str) -> Path:
        return self.root / "solutions" / aid / f"{aid}.ipynb"

    def release(self, aid: str) -> Path:
        return self.root / "exercises" / aid / f"{aid}.ipynb"

    def submitted(self, student: str, aid: str) -> Path:
        return self.root / "submitted" / student / aid

    def submission(self, student: str, aid: str) -> Path:
        return self.submitted(student, aid) / f"{aid}.ipynb"

    def autograded(self, student: str, aid: str) -> Path:
        return self.root / "autograded" / student / aid / f"{aid}.ipynb"

    def feedback(self, student: str, aid: str) -> Path:
        return self.root / "feedback" / student / aid / f"{aid}.html"

    @property
    def grades_csv(self) -> Path:
        return self.root / "grades.csv"

    @property
    def plots(self) -> Path:
        return self.root / "_build" / "grades"

    def assignments(self, one: str | None = None) -> list[str]:
        """The assignment ids with a source (``one`` only, checked against them)."""
        from logreg_grader import release

        known = sorted(p.stem for p in release.sources(self.root))
        if one is None:
            return known
        if one not in known:
            raise release.SourceError(
                f"no assignment {one!r}; the assignments are: {', '.join(known)}"
            )
        return [one]

    def timestamp(self, student: str, aid: str, mtime: float) -> str:
        """The submission's time: its timestamp.txt (nbgrader's collect writes one), else the
        notebook's mtime, which is then written as timestamp.txt for formgrader."""
        path = self.submitted(student, aid) / "timestamp.txt"
        if path.is_file() and not path.is_symlink():
            text = path.read_text(encoding="utf-8", errors="replace").strip()
            if text:
                return text[:64]
        when = datetime.datetime.fromtimestamp(mtime, datetime.UTC)
        text = when.strftime("%Y-%m-%d %H:%M:%S.%f UTC")
        with contextlib.suppress(OSError):
            path.write_text(text, encoding="utf-8")
        return text

    def make_private(self) -> None:
        """The folders that hold secrets or other students' work: root only (0700)."""
        for name in PRIVATE:
            path = self.root / name
            path.mkdir(mode=0o700, exist_ok=True)
            os.chmod(path, 0o700)

    def write_private(self, path: Path, text: str) -> None:
        """Write atomically, creating parents readable by the owner only."""
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)

    @contextlib.contextmanager
    def lock(self):
        """One grading run at a time per course (a second one waits, and says so)."""
        (self.root / "gradebook").mkdir(mode=0o700, exist_ok=True)
        with open(self.root / "gradebook" / ".lock", "a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                print(
                    "grade: another grading run holds gradebook/.lock; waiting for it",
                    file=sys.stderr,
                )
                fcntl.flock(f, fcntl.LOCK_EX)
            yield
