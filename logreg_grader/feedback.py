"""The feedback page a student reads, and its return through nbgrader's exchange.

One page per student and assignment, ``feedback/<student>/<id>/<id>.html``, built from one
record: the :class:`logreg_grader.report.Row` that is also that student's row of grades.csv
(so the page shows the total, the written points and the late penalty that grades.csv shows,
formatted by the same code), with what grading found that the gradebook does not keep
(:class:`Findings`: each test's message, the errors of the student's cells, the text of the
written answers), and the instructor's manual points and comments from the gradebook.

- :func:`findings` is computed where the submission is graded (a worker) and written next to
  the autograded notebook (``autograded/<student>/<id>/results.json``) before the gradebook
  row; :func:`write_all` (called by every export: ``make grade`` at its end and ``make
  grades``) rewrites every page from the gradebook, so manual points and comments appear
  without regrading.
- Everything shown is escaped (student text is never HTML); the page carries a Content
  Security Policy that allows no script and no request. Every hidden test line is removed from
  every text, and a page that would still show one is not written (:func:`leaks`).
- Submissions handed in with ``nbgrader submit`` (they carry nbgrader's
  ``submission_secret.txt``) get their page back through the exchange when
  ``nbgrader_config.py`` sets ``c.Exchange.root`` (:func:`release_to_exchange`, nbgrader's own
  ReleaseFeedback), so ``nbgrader fetch_feedback`` finds it.

Feedback folders are 0700 and files 0600 (Course.write_private); the copy in the exchange is
0644 under nbgrader's unguessable name (an md5 of the submission's secret), as nbgrader does.
"""

from __future__ import annotations

import datetime
import html
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from logreg_grader.notebook import Master, nbgrader_meta, source_of
from logreg_grader.status import CellError, Graded, TestResult

if TYPE_CHECKING:
    from logreg_grader.course import Course
    from logreg_grader.report import Export, Row

SECRET = "submission_secret.txt"  # written by `nbgrader submit`, kept by `nbgrader collect`
MAX_ANSWER = 20_000  # characters of one written answer shown


@dataclass
class Findings:
    """What grading found that the gradebook does not keep (``results.json``)."""

    master_hash: str = ""
    submission_hash: str = ""
    tests: list[TestResult] = field(default_factory=list)  # hidden lines already removed
    cell_errors: list[CellError] = field(default_factory=list)
    docs: dict[str, str] = field(default_factory=dict)  # test grade_id -> its one-line doc
    answers: dict[str, str] = field(default_factory=dict)  # written answer -> student's text

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Findings:
        d = json.loads(text)
        d["tests"] = [TestResult(**t) for t in d.get("tests", [])]
        d["cell_errors"] = [CellError(**e) for e in d.get("cell_errors", [])]
        return cls(**d)


def findings(graded: Graded, master: Master, nb: dict | None = None) -> Findings:
    """The findings of one graded submission (``nb``: the student's notebook, if it was read)."""
    tests = [
        TestResult(t.grade_id, t.points, t.score, master.strip_hidden(t.message), t.kind)
        for t in graded.tests
    ]
    errors = [
        CellError(e.label, e.ename, master.strip_hidden(e.evalue), e.fault)
        for e in graded.cell_errors
    ]
    answers: dict[str, str] = {}
    for cell in (nb or {}).get("cells", []):
        if not isinstance(cell, dict) or cell.get("cell_type") != "markdown":
            continue
        gid = str(nbgrader_meta(cell).get("grade_id", ""))
        if gid in master.answers and gid not in answers:
            answers[gid] = master.strip_hidden(source_of(cell))[:MAX_ANSWER]
    return Findings(
        master.hash,
        graded.submission_hash,
        tests,
        errors,
        {gid: t.doc for gid, t in master.tests.items()},
        answers,
    )


def read_findings(course: Course, student: str, aid: str) -> Findings | None:
    path = course.findings(student, aid)
    if not path.is_file() or path.is_symlink():
        return None
    try:
        return Findings.from_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return None


# --- the page -------------------------------------------------------------------------------

_CSS = """
:root { color-scheme: light; }
body { font: 17px/1.6 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1b1b1b;
       max-width: 46rem; margin: 2.5rem auto; padding: 0 1.25rem; background: #fff; }
h1 { font-size: 1.7rem; line-height: 1.25; margin: 0 0 .3rem; }
h2 { font-size: 1.2rem; margin: 2.2rem 0 .6rem; border-bottom: 1px solid #e3e3e3; }
h3 { font-size: 1rem; margin: 1.4rem 0 .3rem; }
.meta { color: #555; margin: 0 0 1.5rem; }
.total { font-size: 1.35rem; margin: 0 0 .4rem; }
.box { background: #f6f8fa; border: 1px solid #e3e6ea; border-radius: 8px; padding: .9rem 1.1rem; }
table { border-collapse: collapse; width: 100%; }
th, td { border-bottom: 1px solid #e6e6e6; padding: .45rem .5rem; text-align: left;
         vertical-align: top; }
th { font-weight: 600; color: #444; }
td.num, th.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
.pass { color: #1a7f37; } .fail { color: #b3261e; } .wait { color: #8a5a00; }
code { font: .9em ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
pre, .text { white-space: pre-wrap; overflow-wrap: anywhere; margin: .2rem 0 0;
             font: .88rem/1.5 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.answer { border-left: 3px solid #c8d1dc; padding: .3rem .8rem; background: #fafbfc;
          white-space: pre-wrap; overflow-wrap: anywhere; }
#tests col.test { width: 38%; } #tests col.pts { width: 6.5rem; }
.who { display: block; font-size: .8rem; font-weight: 600; color: #0969da; }
.comment { border-left: 3px solid #0969da; padding: .3rem .8rem; margin-top: .5rem;
           background: #f3f8ff; white-space: pre-wrap; overflow-wrap: anywhere; }
small { color: #555; }
@media print { body { margin: 0; max-width: none; } .box { border-color: #999; } }
"""
# No script, no request: the page only styles itself.
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; base-uri 'none'"


def _e(text) -> str:
    return html.escape(str(text))


def _pts(text: str) -> str:
    """``text`` (a number of points as grades.csv shows it) with its unit."""
    return f"{text} point" if text == "1" else f"{text} points"


def page(row: Row, master: Master | None = None, when: datetime.datetime | None = None) -> str:
    """The HTML feedback of one submission, from its record (see the module docstring)."""
    hide = master.strip_hidden if master is not None else str
    when = when or datetime.datetime.now(datetime.UTC)
    shown = row.csv()  # the very strings of its grades.csv row
    found = row.findings or Findings()
    by_test = {t.grade_id: t for t in found.tests}
    tests = [c for c in row.cells if c.kind == "code"]
    answers = [c for c in row.cells if c.kind != "code"]
    who = f"{row.name} ({row.student})" if row.name else row.student
    from logreg_grader.report import NEEDS_GRADING, fmt

    top_auto = fmt(sum(c.points for c in tests))
    top_written = fmt(sum(c.points for c in answers))
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(row.assignment)}: feedback for {_e(who)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{_e(row.assignment)}</h1>",
        f'<p class="meta">Feedback for <strong>{_e(who)}</strong>'
        + (f" &middot; submitted {_e(shown['submitted'])}" if shown["submitted"] else "")
        + (f" &middot; due {_e(shown['due'])}" if shown["due"] else "")
        + f" &middot; written {when.strftime('%Y-%m-%d %H:%M UTC')}</p>",
        '<div id="grade" class="box">',
        f'<p class="total">Total: <strong id="score">{_e(shown["score"])}</strong> / '
        f'<span id="max_score">{_e(shown["max_score"])}</span> '
        f"{'point' if shown['max_score'] == '1' else 'points'}</p>",
        '<table class="breakdown">',
        f'<tr><td>Autograded tests</td><td class="num" id="autograded">{_e(shown["autograded"])}'
        f"</td><td>of {_e(top_auto)}</td></tr>",
    ]
    if answers:
        pending = sum(c.needs_grading for c in answers)
        note = f"{pending} of {len(answers)} not graded yet" if pending else "graded by hand"
        if row.status.startswith("failed"):
            note = "the notebook could not be graded"
        parts.append(
            f'<tr><td>Written answers</td><td class="num" id="written">{_e(shown["written"])}'
            f"</td><td>of {_e(top_written)} ({_e(note)})</td></tr>"
        )
    if row.late_penalty or row.days_late:
        parts.append(
            f'<tr><td>Late penalty</td><td class="num" id="late_penalty">'
            f"&minus;{_e(shown['late_penalty'])}</td><td>{_e(row.late_note)}</td></tr>"
        )
    parts.append("</table>")
    parts.append(f"<p>Status: <code>{_e(row.status)}</code></p>")
    # The reason without what the table above says already (the lateness, answers to grade).
    said = (row.late_note, NEEDS_GRADING)
    reason = "; ".join(p for p in row.reason.split("; ") if p not in said)
    if reason:
        parts.append(f"<p><small>{_e(hide(reason))}</small></p>")
    parts.append("</div>")
    if found.cell_errors:
        parts.append("<h2>Cells of yours that raised an error</h2><ul>")
        parts += [
            f"<li><code>{_e(e.label)}</code>: {_e(e.ename)}: <pre>{_e(hide(e.evalue))}</pre></li>"
            for e in found.cell_errors
        ]
        parts.append("</ul>")
    parts.append(
        '<h2>Tests</h2><table id="tests"><colgroup><col class="test"><col class="pts">'
        '<col></colgroup><tr><th>test</th><th class="num">points</th>'
        "<th>what to look at</th></tr>"
    )
    for c in tests:
        t = by_test.get(c.grade_id)
        passed = c.score is not None and c.score >= c.points
        message = hide(t.message) if t and t.message else ("passed" if passed else "")
        by_hand = " (set by your instructor)" if c.manual else ""
        parts.append(
            f"<tr><td><code>{_e(c.grade_id)}</code><br>"
            f"<small>{_e(hide(found.docs.get(c.grade_id, '')))}</small></td>"
            f'<td class="num {"pass" if passed else "fail"}">{_e(fmt(c.score or 0))} / '
            f"{_e(fmt(c.points))}{_e(by_hand)}</td><td><pre>{_e(message)}</pre></td></tr>"
        )
    parts.append("</table>")
    if answers:
        parts.append('<h2>Written answers</h2><div id="written-answers">')
        for c in answers:
            text = found.answers.get(c.grade_id)
            if c.needs_grading or c.score is None:
                mark = f'<span class="wait">not graded yet</span> ({_e(_pts(fmt(c.points)))})'
            else:
                mark = f"{_e(fmt(c.score))} / {_e(_pts(fmt(c.points)))}"
            parts.append(f"<h3><code>{_e(c.grade_id)}</code>: {mark}</h3>")
            parts.append(
                f'<div class="answer">{_e(hide(text))}</div>'
                if text and text.strip()
                else "<p><small>(no answer found in your notebook)</small></p>"
            )
            if c.comment:
                parts.append(
                    '<div class="comment"><span class="who">Your instructor</span>'
                    f"{_e(hide(c.comment))}</div>"
                )
        parts.append("</div>")
    others = [c for c in row.comments if c[0] not in {a.grade_id for a in answers}]
    if others:
        parts.append("<h2>Comments on your code</h2>")
        for gid, comment in others:
            parts.append(
                f'<h3><code>{_e(gid)}</code></h3><div class="comment">'
                f'<span class="who">Your instructor</span>{_e(hide(comment))}</div>'
            )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def leaks(text: str, master: Master) -> list[str]:
    """The hidden test lines that the page ``text`` would show (none, or it is not written)."""
    visible = html.unescape(re.sub(r"<[^>]+>", "", text))
    return sorted(h for h in master.hidden if h in visible)


# --- writing every page -----------------------------------------------------------------------


@dataclass
class Written:
    """What :func:`write_all` did."""

    pages: int = 0
    released: list[str] = field(default_factory=list)  # "student/aid" put in the exchange
    leaked: list[str] = field(default_factory=list)  # pages not written: they showed a test
    notes: list[str] = field(default_factory=list)


def write_all(course: Course, done: Export) -> Written:
    """Write the page of every submission graded here (its findings are in autograded/ and
    match the gradebook) from its row, then return the exchange's ones through it."""
    out = Written()
    masters: dict[str, Master | None] = {}
    exchanged: list[tuple[str, str]] = []
    stale = []
    for row in done.records:
        if row.findings is None:
            if row.graded_here:
                stale.append(f"{row.student}/{row.assignment}")
            continue
        aid = row.assignment
        if aid not in masters:
            path = course.master(aid)
            masters[aid] = (
                Master.from_text(aid, path.read_text(encoding="utf-8")) if path.is_file() else None
            )
        master = masters[aid]
        if master is None:  # its hidden tests are unknown: no page can be checked
            stale.append(f"{row.student}/{aid} (no {course.master(aid).name})")
            continue
        text = page(row, master)
        found = leaks(text, master)
        if found:
            out.leaked.append(f"{row.student}/{aid}: {found[0][:80]!r}")
            continue
        target = course.feedback(row.student, aid)
        course.write_private(target, text)
        out.pages += 1
        submitted = course.submitted(row.student, aid)
        if (submitted / SECRET).is_file() and not (submitted / SECRET).is_symlink():
            for name in (SECRET, "timestamp.txt"):  # what nbgrader's ReleaseFeedback reads
                source = submitted / name
                if source.is_file() and not source.is_symlink():
                    course.write_private(
                        target.parent / name, source.read_text(encoding="utf-8", errors="replace")
                    )
            exchanged.append((row.student, aid))
    if stale:
        out.notes.append(
            "feedback not rewritten (graded before its results were kept, or its results do "
            "not match the gradebook; `sudo make grade STUDENT=<id>` regrades): " + ", ".join(stale)
        )
    if exchanged:
        release_to_exchange(course, exchanged, out)
    return out


def exchange_root(course: Course) -> str | None:
    """``c.Exchange.root`` of the course's nbgrader_config.py, or None when it sets none."""
    from logreg_grader import release

    cfg = release.load_config(course.root, course.root)
    root = cfg.Exchange.get("root") if "Exchange" in cfg else None
    return str(root) if root else None


def release_to_exchange(course: Course, pairs: list[tuple[str, str]], out: Written) -> None:
    """nbgrader's ReleaseFeedback for each (student, assignment) handed in through the
    exchange, when nbgrader_config.py names one; else the pages stay under feedback/."""
    root = exchange_root(course)
    if root is None:
        out.notes.append(
            f"{len(pairs)} submissions came through nbgrader's exchange, but nbgrader_config.py "
            "sets no c.Exchange.root: their feedback stays under feedback/"
        )
        return
    from nbgrader.utils import notebook_hash

    from logreg_grader import gradebook

    api = gradebook.nbgrader_api(course.root)
    course_id = api.coursedir.course_id
    outbound = Path(root) / course_id / "feedback"
    for student, aid in pairs:
        result = api.release_feedback(aid, student)
        secret = (course.feedback(student, aid).parent / SECRET).read_text(encoding="utf-8")
        released = outbound / f"{notebook_hash(secret=secret, notebook_id=aid)}.html"
        if not result.get("success") or not released.is_file():
            log = (result.get("error") or result.get("log") or "").strip().splitlines()
            out.notes.append(
                f"feedback of {student}/{aid} not released to the exchange {root}: "
                + (log[-1] if log else "nbgrader wrote nothing")
            )
            continue
        os.chmod(released, 0o644)  # the student reads it; its name is the secret's hash
        out.released.append(f"{student}/{aid}")
