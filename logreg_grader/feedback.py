"""The feedback page a student reads: every test, its points and what to look at.

Built from the grader's own results (never from anything the student's code produced as
HTML), with every hidden test line removed, every string escaped, long messages wrapped.
"""

from __future__ import annotations

import datetime
import html

from logreg_grader.notebook import Master
from logreg_grader.status import Graded

_CSS = """
body { font: 16px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 60rem;
       margin: 2rem auto; padding: 0 1rem; color: #1b1b1b; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } .meta { color: #555; margin-top: 0; }
table { border-collapse: collapse; width: 100%; } th, td { border-bottom: 1px solid #ddd;
       padding: .5rem; text-align: left; vertical-align: top; }
td.pts { white-space: nowrap; } .pass { color: #1a7f37; } .fail { color: #b3261e; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; margin: 0; font-size: .9rem; }
.status { background: #f6f8fa; padding: .6rem .8rem; border-radius: 6px; }
"""


def _e(text) -> str:
    return html.escape(str(text))


def page(graded: Graded, master: Master) -> str:
    """The HTML feedback of one graded submission."""
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    rows = []
    for t in graded.tests:
        doc = master.tests[t.grade_id].doc if t.grade_id in master.tests else ""
        mark = "pass" if t.passed else "fail"
        message = master.strip_hidden(t.message) if t.message else ("passed" if t.passed else "")
        rows.append(
            f"<tr><td><code>{_e(t.grade_id)}</code><br><small>{_e(doc)}</small></td>"
            f'<td class="pts {mark}">{t.score:g} / {t.points:g}</td>'
            f"<td><pre>{_e(message)}</pre></td></tr>"
        )
    errors = "".join(
        f"<li><code>{_e(e.label)}</code>: {_e(e.ename)}: {_e(master.strip_hidden(e.evalue))}</li>"
        for e in graded.cell_errors
    )
    written = sum(master.answers.values())
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{_e(graded.assignment)}: feedback for {_e(graded.student)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{_e(graded.assignment)}</h1>",
        f'<p class="meta">Feedback for <strong>{_e(graded.student)}</strong>, graded {when}'
        + (f"; submitted {_e(graded.timestamp)}" if graded.timestamp else "")
        + "</p>",
        f'<div id="grade" class="status"><p>Autograded tests: <strong>{graded.score:g} / '
        f"{graded.max_score:g}</strong> points. Status: <code>{_e(graded.status.value)}</code>."
        + (f" Written answers ({written:g} points) are graded by hand." if written else "")
        + "</p>"
        + (f"<p>{_e(master.strip_hidden(graded.reason))}</p>" if graded.reason else "")
        + "</div>",
    ]
    if errors:
        parts.append(f"<h2>Cells that raised an error</h2><ul>{errors}</ul>")
    parts.append("<h2>Tests</h2><table><tr><th>test</th><th>points</th><th>message</th></tr>")
    parts += rows
    parts.append("</table></body></html>")
    return "\n".join(parts)
