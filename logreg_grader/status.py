"""How a graded submission ended: one status, its reason, and the per-test results."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Status(enum.StrEnum):
    """The status column of grades.csv and of the gradebook's grader table.

    The first group are graded submissions (their score stands; the status says what a person
    may want to look at); the ``failed: ...`` group could not be graded at all (score 0).
    """

    OK = "ok"
    NOT_ATTEMPTED = "not_attempted"  # every solution cell is still the release's stub
    BANNED_OPERATION = "banned_operation"  # some tests got 0: a banned operation ran
    TAMPERING = "tampering"  # some tests got 0: the recording of what ran was switched off
    CELLS_TAMPERED = "cells_tampered"  # test cells edited, deleted or duplicated (master used)
    TIMEOUT = "timeout"  # some code ran past its time limit (only its tests lost points)
    MEMORY = "memory"  # some code ran out of memory (only its tests lost points)
    KERNEL_DIED = "kernel_died"  # some code crashed its process (only its tests lost points)
    UNREADABLE = "failed: unreadable"  # not valid JSON, or not a valid notebook
    MISSING_NOTEBOOK = "failed: missing_notebook"
    SYMLINK = "failed: symlink"  # a symbolic or hard link: refused, never followed
    WORKER_DIED = "failed: worker_died"
    MISSING = "missing"  # a roster student with no submission

    @property
    def failed(self) -> bool:
        return self.value.startswith("failed") or self is Status.MISSING


NOT_ATTEMPTED_REASON = "every solution cell is still the release's stub"

# When several things happened, the status shown is the first of these that applies.
PRIORITY = (
    Status.TAMPERING,
    Status.BANNED_OPERATION,
    Status.CELLS_TAMPERED,
    Status.MEMORY,
    Status.TIMEOUT,
    Status.KERNEL_DIED,
    Status.NOT_ATTEMPTED,
    Status.OK,
)


@dataclass
class TestResult:
    """One autograded test cell."""

    __test__ = False  # not a pytest test class

    grade_id: str
    points: float
    score: float
    message: str = ""  # why it failed, as the student will read it (hidden lines removed)
    kind: str = ""  # "", or the Status value a failure of this kind contributes

    @property
    def passed(self) -> bool:
        return self.score >= self.points


@dataclass
class CellError:
    """A student cell that raised (or hung, or crashed its process)."""

    label: str
    ename: str
    evalue: str
    fault: str = ""  # "", "timeout", "memory" or "kernel_died"


@dataclass
class Graded:
    """Everything the grader learned about one submission."""

    assignment: str
    student: str
    status: Status = Status.OK
    reasons: list[str] = field(default_factory=list)
    tests: list[TestResult] = field(default_factory=list)
    cell_errors: list[CellError] = field(default_factory=list)
    seconds: float = 0.0
    timestamp: str = ""  # ISO time of the submission (timestamp.txt or the file's mtime)
    submission_hash: str = ""
    master_hash: str = ""
    autograded: str = ""  # the autograded notebook (ipynb text); "" when it could not run
    feedback: str = ""  # what its feedback page needs (feedback.Findings as JSON)
    origin: str = ""  # host:course root of the run that graded it (a removed folder is noticed)
    late_mark: str = ""  # the LMS that marked it late (Canvas's LATE_), from logreg-collect

    @property
    def score(self) -> float:
        return sum(t.score for t in self.tests)

    @property
    def max_score(self) -> float:
        return sum(t.points for t in self.tests)

    @property
    def reason(self) -> str:
        """The reasons, each text once: tests failing with one message are named together
        ("t1, t2: the message")."""
        known = {t.grade_id for t in self.tests}
        grouped: dict[str, list[str]] = {}
        for text in self.reasons:
            gid, sep, message = text.partition(": ")
            if sep and gid in known:
                names = grouped.setdefault(message, [])
                if gid not in names:
                    names.append(gid)
            else:
                grouped.setdefault(text, [])
        parts = [f"{', '.join(ids)}: {text}" if ids else text for text, ids in grouped.items()]
        return "; ".join(parts)[:1000]

    def settle(self) -> None:
        """Pick the status from what happened (see PRIORITY)."""
        if self.status.failed:
            return
        seen = {Status(t.kind) for t in self.tests if t.kind}
        seen |= {Status(e.fault) for e in self.cell_errors if e.fault}
        if self.status is not Status.OK:
            seen.add(self.status)
        if Status.NOT_ATTEMPTED in seen and any(t.score > 0 for t in self.tests):
            # The solution cells are the stubs, yet a test passed: the student's code is in
            # cells of their own. It was attempted.
            seen.discard(Status.NOT_ATTEMPTED)
            self.reasons = [r for r in self.reasons if r != NOT_ATTEMPTED_REASON]
        self.status = next((s for s in PRIORITY if s in seen), Status.OK)

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["status"] = self.status.value
        d["tests"] = [t.__dict__ for t in self.tests]
        d["cell_errors"] = [e.__dict__ for e in self.cell_errors]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Graded:
        d = dict(d)
        d["status"] = Status(d["status"])
        d["tests"] = [TestResult(**t) for t in d.get("tests", [])]
        d["cell_errors"] = [CellError(**e) for e in d.get("cell_errors", [])]
        return cls(**d)
