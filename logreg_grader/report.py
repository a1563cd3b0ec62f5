"""What the instructor reads after a run: grades.csv, one plot per assignment, a summary."""

from __future__ import annotations

import csv
import io

from logreg_grader.course import Course

CSV_FIELDS = ("student", "assignment", "score", "max_score", "status", "reason")


def export(course: Course) -> list[dict]:
    """Write grades.csv (atomically) from the gradebook, manual grades included; its rows."""
    from nbgrader.api import Gradebook

    from logreg_grader import gradebook

    rows = []
    with Gradebook(gradebook.url(course.root), "logreg-lessons") as gb:
        status = gradebook.statuses(gb)
        for assignment in sorted(gb.assignments, key=lambda a: a.name):
            for sub in sorted(gb.submission_dicts(assignment.name), key=lambda d: d["student"]):
                info = status.get((assignment.name, sub["student"]), {})
                reason = info.get("reason") or ""
                if sub.get("needs_manual_grade") and not str(info.get("status", "")).startswith(
                    "failed"
                ):
                    reason = (reason + "; " if reason else "") + "written answers need grading"
                rows.append(
                    {
                        "student": sub["student"],
                        "assignment": assignment.name,
                        "score": f"{sub['score']:g}",
                        "max_score": f"{sub['max_score']:g}",
                        "status": info.get("status", "ok"),
                        "reason": reason,
                    }
                )
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    course.write_private(course.grades_csv, out.getvalue())
    if rows:
        plot(course, rows)
    return rows


def plot(course: Course, rows: list[dict]) -> None:
    """A histogram of scores per assignment into _build/grades/<id>.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    course.plots.mkdir(parents=True, exist_ok=True)
    for aid in sorted({r["assignment"] for r in rows}):
        mine = [r for r in rows if r["assignment"] == aid]
        scores = [float(r["score"]) for r in mine if not r["status"].startswith("failed")]
        top = max(float(r["max_score"]) for r in mine)
        fig, ax = plt.subplots(figsize=(5, 3.2))
        edges = [x - 0.5 for x in range(int(top) + 2)]
        ax.hist(scores, bins=edges, color="#0072B2")
        mean = sum(scores) / len(scores) if scores else float("nan")
        nfail = len(mine) - len(scores)
        ax.set(
            xlabel=f"score (out of {top:g})",
            ylabel="students",
            title=f"{aid}: n = {len(scores)}, mean {mean:.1f}"
            + (f" ({nfail} failed)" if nfail else ""),
        )
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        fig.tight_layout()
        fig.savefig(course.plots / f"{aid}.png", dpi=100)
        plt.close(fig)


def summary(course: Course, rows, results, problems, skipped: int) -> str:
    head = ("assignment", "students", "mean", "max", "failed", "s/sub")
    lines = ["{:<24} {:>8} {:>7} {:>5} {:>6} {:>6}".format(*head)]
    for aid in sorted({r["assignment"] for r in rows}):
        mine = [r for r in rows if r["assignment"] == aid]
        mean = sum(float(r["score"]) for r in mine) / len(mine)
        nfail = sum(r["status"].startswith("failed") for r in mine)
        secs = [g.seconds for g in results if g.assignment == aid and g.seconds]
        per = f"{sum(secs) / len(secs):.2f}" if secs else "-"
        lines.append(
            f"{aid:<24} {len(mine):>8} {mean:>7.2f} {mine[0]['max_score']:>5} {nfail:>6} {per:>6}"
        )
    failed = [g for g in results if g.status.failed]
    if failed:
        lines.append("submissions that could not be graded:")
        lines += [f"  {g.student}/{g.assignment}: {g.status.value}: {g.reason}" for g in failed]
    flagged = [
        g for g in results if not g.status.failed and g.status.value not in ("ok", "not_attempted")
    ]
    if flagged:
        lines.append("flagged submissions (scored; for a person to look at):")
        lines += [
            f"  {g.student}/{g.assignment}: {g.status.value}: {g.reason[:200]}" for g in flagged
        ]
    if problems:
        lines.append("found but not graded:")
        lines += [f"  {p}" for p in problems]
    if skipped:
        lines.append(f"{skipped} unchanged submissions kept as graded (--force regrades them)")
    lines.append(f"grades: {course.grades_csv}")
    lines.append(f"feedback: {course.root / 'feedback'}/<student>/<id>/<id>.html")
    lines.append(f"grade distributions: {course.plots}/<id>.png")
    return "\n".join(lines)
