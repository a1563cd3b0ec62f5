"""Every path of a course, built in one place (nbgrader's ``CourseDirectory.format_path``).

Layout, relative to the course root::

    nbgrader_config.py                   ASSIGNMENTS = [...], nbgrader's configuration
    solutions/<id>/<id>.md               the instructor's source (a person edits only this)
    solutions/<id>/<id>.ipynb            the master notebook, hidden tests included (written)
    exercises/<id>/<id>.ipynb            the students' release
    course.toml                          the term: roster, due dates, late policy (term.py)
    submitted/<student>/<id>/<id>.ipynb  a submission (+ timestamp.txt, collected.json)
    autograded/<student>/<id>/<id>.ipynb what ran, for formgrader (+ timestamp.txt; private, 0700)
    feedback/<student>/<id>/<id>.html    the student's feedback page    (private, 0700)
    gradebook/gradebook.db               nbgrader's gradebook           (private, 0700)
    reports/<id>/similarity.{csv,html}   alike submissions (similarity.py, private, 0700)
    grades.csv, grades-canvas.csv        the exports (report.py), with _build/grades/
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

STAMP = "timestamp.txt"  # nbgrader's name for the time a submission was handed in
PRIVATE = ("autograded", "feedback", "gradebook", "submitted", "solutions")
COLLECTED = "collected.json"  # written by logreg-collect next to a submission


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

    def autograded_timestamp(self, student: str, aid: str) -> Path:
        """nbgrader's timestamp.txt beside the autograded notebook: formgrader compares it with
        the gradebook's time to show the submission as autograded."""
        return self.autograded(student, aid).parent / STAMP

    def findings(self, student: str, aid: str) -> Path:
        """What grading found that the gradebook does not keep (test messages, answers),
        next to the autograded notebook: it holds hidden-test text, so it stays private."""
        return self.autograded(student, aid).parent / "results.json"

    def feedback(self, student: str, aid: str) -> Path:
        return self.root / "feedback" / student / aid / f"{aid}.html"

    def reports(self, aid: str) -> Path:
        """The instructor's reports on one assignment (they name students: private)."""
        return self.root / "reports" / aid

    def collected(self, student: str, aid: str) -> dict:
        """What logreg-collect recorded about a submission (collected.json; {} if none)."""
        path = self.submitted(student, aid) / COLLECTED
        if not path.is_file() or path.is_symlink():
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    @property
    def origin(self) -> str:
        """This machine and course folder, as kept with each grade (host:root)."""
        return f"{socket.gethostname()}:{self.root}"

    @property
    def grades_csv(self) -> Path:
        return self.root / "grades.csv"

    @property
    def canvas_csv(self) -> Path:
        return self.root / "grades-canvas.csv"

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
        """The submission's time: its timestamp.txt (nbgrader's collect and logreg-collect
        write one), "" when logreg-collect found no time for it, else the notebook's mtime,
        which is then written as timestamp.txt for formgrader."""
        path = self.submitted(student, aid) / STAMP
        if path.is_file() and not path.is_symlink():
            text = path.read_text(encoding="utf-8", errors="replace").strip()
            if text:
                return text[:64]
        if self.collected(student, aid).get("time") == "unknown":
            return ""
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

    def foreign_folder(self, names: tuple[str, ...] = PRIVATE) -> Path | None:
        """The first of the private folders ``names`` that exists but this user cannot use
        (another user's, 0700: `sudo make grade` makes them root's), else None."""
        for name in names:
            path = self.root / name
            if path.is_dir() and not os.access(path, os.R_OK | os.W_OK | os.X_OK):
                return path
        return None

    def write_private(self, path: Path, text: str) -> None:
        """Write atomically, as a file (0600) in folders (0700) of the owner only: every
        missing parent is made 0700 too (``mkdir(parents=True)`` gives them the umask's)."""
        missing = []
        parent = path.parent
        while not parent.exists():
            missing.append(parent)
            parent = parent.parent
        for folder in reversed(missing):
            folder.mkdir(mode=0o700, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o600)  # an older temporary file keeps its mode through O_TRUNC
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
