"""Grade one submission: its cells run once, in notebook order; the master's tests judge them.

Every code cell of the student's notebook that is not a test cell runs in the sandboxed
student process (solution cells and any cell the student added; a locked cell runs as the
master has it, as nbgrader's OverwriteCells would). At each test cell's position the
**master's** test cell, hidden tests included, runs here, in the trusted grader, against the
student's namespace: the names it uses are looked up in the student process (data comes back
as data, functions and objects as :class:`~logreg_grader.remote.Remote` proxies). The
student's copies of test cells never run; a test cell the student deleted runs at the end.

A cell that raises costs the tests that need what it should have defined (they fail with
NameError, as in nbgrader). A call or a cell that hangs, runs out of memory or crashes the
process costs only its own tests: the process is restarted and the cells that had run are
replayed. The autograded notebook is assembled here from what ran, with every output the
student saved discarded and their markdown's HTML escaped.
"""

from __future__ import annotations

import builtins
import contextlib
import copy
import io
import json
import sys
import time
import warnings

from logreg_grader import neutralise
from logreg_grader import notebook as nbm
from logreg_grader.bans import BannedOperation
from logreg_grader.remote import Remote, SandboxLost, Session
from logreg_grader.status import NOT_ATTEMPTED_REASON, CellError, Graded, Status, TestResult

CELL_TIMEOUT = 60.0  # seconds for one student cell
TEST_TIMEOUT = 180.0  # seconds for one test cell (all its calls together)


class TestNamespace(dict):
    """A test cell's globals: rebinding a student name to a course-library object (as the
    master does to grade ``sgd`` with the reference ``minibatches``) rebinds it in the student
    process too, until the test cell ends."""

    def __init__(self, session: Session, graded: set[str]):
        super().__init__(__name__="__main__", __builtins__=builtins)
        self.session, self.graded, self.bound = session, graded, set()

    def __setitem__(self, key, value):
        if key in self.graded:
            module = getattr(value, "__module__", "") or ""
            if isinstance(value, Remote):
                self.session.bind(key, None)
            elif module.startswith("logreg_lessons") and hasattr(value, "__name__"):
                self.session.bind(key, value.__name__)
                self.bound.add(key)
        super().__setitem__(key, value)

    def restore(self) -> None:
        for key in self.bound:
            with contextlib.suppress(SandboxLost):
                self.session.bind(key, None)


def _magics_to_python(source: str) -> str:
    """IPython syntax (``%matplotlib inline``, ``!ls``) as plain Python calls."""
    if not any(line.lstrip().startswith(("%", "!")) for line in source.split("\n")):
        return source
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(source)


_IPYTHON_STUB = '''
import builtins as _builtins


class _GraderIPython:
    """What get_ipython() is while grading. Magics that run code in IPython run it here
    (%time, %timeit once, %%capture, ...); the others (plots, extensions) do nothing."""

    _RUN = {"time", "timeit", "prun", "capture"}

    def run_line_magic(self, name, line, *args, **kwargs):
        if name in self._RUN and line.strip():
            exec(line, globals())
        return None

    def run_cell_magic(self, name, line, cell, *args, **kwargs):
        if name in self._RUN:
            exec(cell, globals())
        return None

    def system(self, *args, **kwargs):
        return None

    getoutput = system


def get_ipython():
    return _GraderIPython()


def display(*objs, **kwargs):
    """IPython's display() without a front end: the text form of each object."""
    for obj in objs:
        print(repr(obj))


_builtins.display = display
'''


_BUILTIN_NAMES = frozenset(dir(builtins))


def _run_test(session: Session, master: nbm.Master, test: nbm.TestCell) -> TestResult:
    from logreg_grader import check

    check.GRADER["remote"] = True
    result = TestResult(test.grade_id, test.points, 0.0)
    ns = TestNamespace(session, master.graded_names)
    try:
        values = session.lookup(test.names - _BUILTIN_NAMES)
        for name, value in values.items():
            if isinstance(value, tuple) and len(value) == 2 and value[0] == "module":
                if value[1] in sys.modules:  # only modules the grader itself has loaded
                    dict.__setitem__(ns, name, sys.modules[value[1]])
                continue
            if isinstance(value, Remote):
                value._bans = master.default_bans.get(name, ())
            dict.__setitem__(ns, name, value)
        session.deadline = time.monotonic() + TEST_TIMEOUT
        sink = io.StringIO()
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                exec(test.code, ns)
        result.score = test.points
    except SandboxLost as lost:
        result.kind = lost.kind
        result.message = f"The code under test {lost.detail}."
    except BannedOperation as err:
        result.kind, result.message = err.kind, str(err)
    except Exception as err:  # noqa: BLE001 - a failed test
        result.message = master.strip_hidden(f"{type(err).__name__}: {err}")[:3000]
    finally:
        session.deadline = None
        ns.restore()
    return result


def _code_outputs(reply: dict) -> list[dict]:
    outputs = []
    for name in ("stdout", "stderr"):
        if reply.get(name):
            outputs.append({"output_type": "stream", "name": name, "text": reply[name]})
    if not reply.get("ok", True):
        tb = reply.get("traceback") or f"{reply.get('ename')}: {reply.get('evalue')}"
        outputs.append(
            {
                "output_type": "error",
                "ename": str(reply.get("ename")),
                "evalue": str(reply.get("evalue")),
                "traceback": tb.split("\n"),
            }
        )
    return outputs


def grade(master: nbm.Master, nb: dict, session: Session, graded: Graded) -> None:
    """Run and judge one parsed submission; fill ``graded`` (tests, errors, notebook)."""
    cells = nb["cells"]
    structure(master, cells, graded)
    out_cells, done = [], set()
    session.execute("grader-setup", _IPYTHON_STUB, CELL_TIMEOUT)
    session.history.clear()
    session.history.append(("grader-setup", _IPYTHON_STUB))
    count = 0

    def test_cell(gid: str, meta_from: dict) -> dict:
        result = _run_test(session, master, master.tests[gid])
        graded.tests.append(result)
        cell = copy.deepcopy(meta_from)
        cell["source"] = master.tests[gid].source
        cell["outputs"] = (
            []
            if result.passed
            else [
                {
                    "output_type": "error",
                    "ename": "AssertionError",
                    "evalue": result.message,
                    "traceback": [f"AssertionError: {result.message}"],
                }
            ]
        )
        return cell

    master_cells = {nbm.nbgrader_meta(c).get("grade_id"): c for c in master.nb["cells"]}
    for index, cell in enumerate(cells):
        if not isinstance(cell, dict):
            continue
        cell = copy.deepcopy(cell)
        gid = str(nbm.nbgrader_meta(cell).get("grade_id", ""))
        if cell.get("cell_type") != "code":
            out_cells.append(neutralise.markdown_cell(cell))
            continue
        cell.pop("attachments", None)
        cell["outputs"], cell["execution_count"] = [], None
        if gid in master.tests:
            if gid not in done:
                done.add(gid)
                out_cells.append(test_cell(gid, master_cells[gid]))
            continue
        source = master.locked.get(gid, nbm.source_of(cell))
        if not source.strip():
            out_cells.append(cell)
            continue
        count += 1
        label = gid or f"cell {index}"
        try:
            python = _magics_to_python(source)
        except Exception:  # noqa: BLE001 - the cell's own syntax error shows when it runs
            python = source
        reply = session.execute(label, python, CELL_TIMEOUT)
        cell["source"], cell["execution_count"] = source, count
        cell["outputs"] = _code_outputs(reply)
        if not reply.get("ok", True):
            graded.cell_errors.append(
                CellError(
                    label,
                    str(reply.get("ename")),
                    str(reply.get("evalue"))[:500],
                    reply.get("fault", ""),
                )
            )
            if reply.get("fault"):
                graded.reasons.append(f"cell {label}: {reply.get('evalue')}")
        out_cells.append(cell)
    for gid in master.tests:  # test cells the student deleted: run at the end
        if gid not in done:
            out_cells.append(test_cell(gid, master_cells[gid]))
    for test in graded.tests:
        if test.kind in ("banned_operation", "tampering"):
            graded.reasons.append(f"{test.grade_id}: {test.message}")
        elif test.kind:
            graded.reasons.append(f"{test.grade_id}: {test.message}")
    result_nb = {k: v for k, v in nb.items() if k != "cells"}
    result_nb["metadata"] = {
        k: v for k, v in (nb.get("metadata") or {}).items() if k in ("kernelspec", "language_info")
    }
    result_nb["cells"] = out_cells
    graded.autograded = json.dumps(result_nb, indent=1, sort_keys=True, ensure_ascii=False)


def structure(master: nbm.Master, cells: list, graded: Graded) -> None:
    """Compare the submission's graded cells with the master's; note what was changed."""
    counts: dict[str, int] = {}
    attempted = False
    for cell in cells:
        if not isinstance(cell, dict):
            continue
        gid = str(nbm.nbgrader_meta(cell).get("grade_id", ""))
        counts[gid] = counts.get(gid, 0) + 1
        src = nbm.source_of(cell)
        if gid in master.tests and nbm.visible(src) != nbm.visible(master.tests[gid].source):
            graded.reasons.append(f"test cell {gid} was edited: graded from the master copy")
            graded.status = Status.CELLS_TAMPERED
        if gid in master.solutions and src.strip() != nbm.stub(master.solutions[gid]).strip():
            attempted = True
        if gid in master.answers and src.strip() not in ("", nbm.ANSWER_STUB):
            attempted = True
    for gid in master.tests:
        if counts.get(gid, 0) == 0:
            graded.reasons.append(f"test cell {gid} was deleted: run from the master copy")
            graded.status = Status.CELLS_TAMPERED
        elif counts[gid] > 1:
            graded.reasons.append(f"test cell {gid} appears {counts[gid]} times: run once")
            graded.status = Status.CELLS_TAMPERED
    for gid in master.solutions:
        if counts.get(gid, 0) == 0:
            graded.reasons.append(f"solution cell {gid} is missing: its tests fail")
            graded.status = Status.CELLS_TAMPERED
    if not attempted and graded.status is Status.OK:
        graded.status = Status.NOT_ATTEMPTED
        graded.reasons.append(NOT_ATTEMPTED_REASON)
