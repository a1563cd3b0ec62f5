"""A grading worker: one warm fork server, the parsed masters, one sandbox uid.

It grades one submission at a time (:meth:`Worker.grade`): the notebook is parsed and checked
here (:func:`parse_notebook`), its cells run in a sandboxed child of the fork server, and the
master's test cells judge them in this process (:mod:`logreg_grader.runner`). ``logreg-grade``
holds one in its own process, each local helper (:mod:`logreg_grader.pool`) and each Dask
worker (:mod:`logreg_grader.cluster`) one of its own.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

from logreg_grader import sandbox
from logreg_grader.status import Graded, Status


def parse_notebook(data: bytes, graded: Graded) -> dict | None:
    """The notebook as a dict, or None with status ``unreadable`` and the reason."""
    import nbformat

    try:
        nb = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        graded.status = Status.UNREADABLE
        graded.reasons.append(f"the notebook is not valid JSON: {str(err)[:200]}")
        return None
    try:
        if not isinstance(nb, dict):
            raise ValueError("the top level is not an object")
        cells = nb.get("cells")
        if not isinstance(cells, list):
            raise ValueError("'cells' must be a list of cells")
        for i, cell in enumerate(cells):
            if not isinstance(cell, dict):
                raise ValueError(f"cell {i} is not an object")
            if cell.get("cell_type") not in ("code", "markdown", "raw"):
                raise ValueError(f"cell {i} has no valid cell_type")
            src = cell.get("source", "")
            if not isinstance(src, str) and not (
                isinstance(src, list) and all(isinstance(x, str) for x in src)
            ):
                raise ValueError(f"the source of cell {i} is not text")
        node = nbformat.from_dict(nb)
        if nb.get("nbformat") != 4:
            raise ValueError(f"nbformat {nb.get('nbformat')!r}, expected 4")
        nbformat.validate(node)
    except Exception as err:  # noqa: BLE001 - every kind of invalid notebook
        graded.status = Status.UNREADABLE
        graded.reasons.append(f"not a valid Jupyter notebook: {str(err).splitlines()[0][:200]}")
        return None
    return nb


class Worker:
    """Grades submissions one at a time with its own fork server and sandbox uid."""

    def __init__(self, masters: dict[str, str] | None, uid: int, call_timeout: float):
        from logreg_grader import forkserver

        sandbox.preflight()
        started = forkserver.spawn()  # before this process imports torch: the two overlap
        from logreg_grader.remote import ForkServer

        self.server = ForkServer(started=started)
        self.masters = {}
        self.preloaded: set[str] = set()
        self.uid, self.call_timeout = uid, call_timeout
        sandbox.kill_uid(uid)
        if masters:
            self.load(masters)

    def load(self, masters: dict[str, str]) -> None:
        from logreg_grader.notebook import Master

        self.masters = {aid: Master.from_text(aid, text) for aid, text in masters.items()}
        self._preload(masters.values())

    def _preload(self, texts) -> None:
        """Heavy modules a master's code needs (forkserver.OPTIONAL: torch.optim needs
        torch._dynamo, the capstone scikit-learn) are imported by the fork server once, not by
        every child (students elsewhere who reach for them pay the import, once a call)."""
        from logreg_grader.forkserver import OPTIONAL

        texts = list(texts)
        wanted = [
            module
            for key, module in OPTIONAL.items()
            if module not in self.preloaded and any(key in text for text in texts)
        ]
        if wanted:
            self.preloaded.update(self.server.preload(wanted))

    def grade_master(
        self, digest: str, aid: str, text: str, student: str, data: bytes, graded: dict
    ) -> dict:
        """:meth:`grade` with the master given by content (parsed once per new hash)."""
        from logreg_grader.notebook import Master

        if aid not in self.masters or self.masters[aid].hash != digest:
            master = Master.from_text(aid, text)
            if master.hash != digest:
                raise ValueError(f"the master of {aid} does not match its hash {digest[:12]}")
            self.masters[aid] = master
            self._preload([text])
        return self.grade(aid, student, data, graded)

    def grade(self, aid: str, student: str, data: bytes, graded: dict) -> dict:
        from logreg_grader import feedback, runner
        from logreg_grader.remote import Session

        start = time.perf_counter()
        g = Graded.from_dict(graded)
        master = self.masters[aid]
        g.master_hash = master.hash
        nb = parse_notebook(data, g)
        if nb is not None:
            session = Session(self.server, self.uid, sandbox.Limits(), self.call_timeout)
            try:
                runner.grade(master, nb, session, g)
            finally:
                session.close()
        if not g.tests and g.status.failed:
            from logreg_grader.status import TestResult

            g.tests = [
                TestResult(t.grade_id, t.points, 0.0, "not run: " + g.reason)
                for t in master.tests.values()
            ]
        g.settle()
        g.seconds = time.perf_counter() - start
        g.feedback = feedback.findings(g, master, nb).to_json()  # the page is written at export
        return g.to_dict()

    def probe(self, root: Path) -> None:
        """Run a self-test in a sandboxed child; SandboxUnavailable says what failed."""
        from logreg_grader.remote import Session

        session = Session(self.server, self.uid, sandbox.Limits(), self.call_timeout)
        try:
            reply = session.execute("sandbox self-test", PROBE.format(root=str(root)), 60)
        finally:
            session.close()
        if not reply.get("ok"):
            raise sandbox.SandboxUnavailable(
                f"the sandbox self-test failed: {reply.get('ename')}: {reply.get('evalue')}"
            )

    def close(self):
        self.server.close()
        with contextlib.suppress(Exception):
            sandbox.kill_uid(self.uid)


# What a sandboxed child must be able to do, and must not (run once before grading).
PROBE = """
import fractions, os, socket, tqdm  # the standard library and the venv, imported lazily
assert os.getuid() >= 61000, "the student's code would run as uid %d" % os.getuid()
assert not os.path.exists({root!r}), "the course folder would be visible"
try:
    socket.create_connection(("127.0.0.1", 9), timeout=1)
    raise AssertionError("the network would be reachable")
except OSError:
    pass
open("/tmp/probe", "w").write("x")
"""
