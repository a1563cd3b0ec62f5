"""The notebook markers, read in one place: solution regions, hidden tests, cell kinds.

nbgrader's conventions: a code cell with ``solution: true`` holds ``### BEGIN SOLUTION`` ...
``### END SOLUTION`` (replaced by a stub in the release); a test cell (``grade: true``,
``solution: false``) may hold ``### BEGIN HIDDEN TESTS`` ... ``### END HIDDEN TESTS`` (removed
in the release, run by the grader); a markdown cell with ``solution`` and ``grade`` is a written
answer graded by hand. :class:`Master` is the instructor's notebook read that way.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import re
from dataclasses import dataclass, field

SOLUTION = re.compile(r"### BEGIN SOLUTION.*?### END SOLUTION", re.S)
STUB = "# YOUR CODE HERE\nraise NotImplementedError()"
ANSWER_STUB = "YOUR ANSWER HERE"
HIDDEN_BEGIN, HIDDEN_END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION", HIDDEN_BEGIN, HIDDEN_END)


def source_of(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def nbgrader_meta(cell: dict) -> dict:
    meta = cell.get("metadata")
    meta = meta.get("nbgrader") if isinstance(meta, dict) else None
    return meta if isinstance(meta, dict) else {}


def kind_of(cell: dict) -> str:
    """``test``, ``solution``, ``answer`` (written), ``locked``, ``code`` or ``markdown``."""
    meta = nbgrader_meta(cell)
    code = cell.get("cell_type") == "code"
    if code and meta.get("grade") and not meta.get("solution"):
        return "test"
    if meta.get("solution"):
        return "solution" if code else "answer"
    if code:
        return "locked" if meta.get("locked") and meta.get("grade_id") else "code"
    return "markdown"


def visible(source: str) -> str:
    """A test cell's source without its hidden region (what the release shows), with blank
    lines and trailing spaces dropped so that the two can be compared."""
    out, inside = [], False
    for line in source.split("\n"):
        if HIDDEN_BEGIN in line or HIDDEN_END in line:
            inside = HIDDEN_BEGIN in line
            continue
        if not inside and line.strip():
            out.append(line.rstrip())
    return "\n".join(out)


def hidden_lines(source: str) -> list[str]:
    out, inside = [], False
    for line in source.split("\n"):
        if HIDDEN_BEGIN in line or HIDDEN_END in line:
            inside = HIDDEN_BEGIN in line
        elif inside and line.strip():
            out.append(line.strip())
    return out


def stub(source: str) -> str:
    """A solution cell as the release gives it to students: nbgrader replaces each solution
    region by the stub, every line of it indented as the ``### BEGIN SOLUTION`` line."""
    out, inside = [], False
    for line in source.split("\n"):
        if not inside and "### BEGIN SOLUTION" in line:
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out += [indent + part for part in STUB.split("\n")]
        elif inside:
            inside = "### END SOLUTION" not in line
        else:
            out.append(line)
    return "\n".join(out)


def docstring(source: str) -> str:
    """The one-line docstring a test cell opens with ('' if none)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return ""
    doc = ast.get_docstring(tree) or ""
    return doc.strip().split("\n")[0]


def referenced_names(source: str) -> frozenset[str]:
    """Every identifier the code loads (test cells: which student names to bring in)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return frozenset()
    return frozenset(n.id for n in ast.walk(tree) if isinstance(n, ast.Name))


def defined_names(source: str) -> set[str]:
    """Top-level functions, classes and assigned names of a cell."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    out = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            out.add(node.name)
        elif isinstance(node, ast.Assign):
            out |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return out


def _literal_strings(node) -> list[str]:
    return [
        n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    ]


def bans_in(source: str) -> tuple[frozenset[str], set[str]]:
    """(names used, banned names) of a test cell: its ``banned=`` arguments, resolved."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set(), set()
    assigned = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Tuple | ast.List):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    assigned[t.id] = _literal_strings(node.value)
    banned = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "banned":
            if isinstance(node.value, ast.Name):
                banned.update(assigned.get(node.value.id, []))
            else:
                banned.update(_literal_strings(node.value))
    return referenced_names(source), banned


@dataclass
class TestCell:
    grade_id: str
    source: str
    points: float
    doc: str

    # Asked for at every submission: parsed and compiled once per master, on first use.
    @functools.cached_property
    def names(self) -> frozenset[str]:
        """The identifiers the cell loads: the student names a test brings in."""
        return referenced_names(self.source)

    @functools.cached_property
    def code(self):
        """The cell compiled, named ``<test grade_id>`` in tracebacks."""
        return compile(self.source, f"<test {self.grade_id}>", "exec")


@dataclass
class Master:
    """The instructor's notebook of one assignment, read for grading."""

    assignment: str
    nb: dict
    text: str
    tests: dict[str, TestCell] = field(default_factory=dict)
    locked: dict[str, str] = field(default_factory=dict)  # grade_id -> source
    solutions: dict[str, str] = field(default_factory=dict)
    answers: dict[str, float] = field(default_factory=dict)  # written answers: points
    graded_names: set[str] = field(default_factory=set)
    default_bans: dict[str, tuple[str, ...]] = field(default_factory=dict)
    hidden: set[str] = field(default_factory=set)

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    @classmethod
    def from_text(cls, assignment: str, text: str) -> Master:
        nb = json.loads(text)
        m = cls(assignment, nb, text)
        visible_lines = set()
        for cell in nb["cells"]:
            meta, src, kind = nbgrader_meta(cell), source_of(cell), kind_of(cell)
            gid = str(meta.get("grade_id", ""))
            if kind == "test":
                m.tests[gid] = TestCell(gid, src, float(meta.get("points") or 0), docstring(src))
                m.hidden.update(hidden_lines(src))
                visible_lines.update(line.strip() for line in visible(src).split("\n"))
            elif kind == "solution":
                m.solutions[gid] = src
                m.graded_names |= defined_names(SOLUTION.sub("", src)) | defined_names(src)
            elif kind == "answer" and meta.get("grade"):
                m.answers[gid] = float(meta.get("points") or 0)
            elif kind == "locked":
                m.locked[gid] = src
        m.hidden = {h for h in m.hidden - visible_lines if len(h) >= 8}
        bans: dict[str, set[str]] = {n: set() for n in m.graded_names}
        for test in m.tests.values():
            used, banned = bans_in(test.source)
            for name in used & m.graded_names:
                bans[name] |= banned
        m.default_bans = {n: tuple(sorted(b)) for n, b in bans.items()}
        return m

    def strip_hidden(self, text: str) -> str:
        """``text`` without the lines that quote a hidden test."""
        return "\n".join(
            ln for ln in str(text).split("\n") if not any(h in ln for h in self.hidden)
        )
