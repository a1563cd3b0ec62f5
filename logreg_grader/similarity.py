"""``logreg-similarity`` (``make similarity ASSIGNMENT=<id>``): pairs of submissions whose
solution code is alike, for a person to review.

    logreg-similarity --assignment 04_gradients [--threshold 0.6] [--min-tokens 60] [--root .]

reads every ``submitted/<student>/<id>/<id>.ipynb`` as JSON (never executes it), keeps the code
of its solution cells (the cells whose ``grade_id`` is a solution cell of the release, in the
release's order), and compares every pair with `copydetect
<https://github.com/blingenf/copydetect>`_: winnowed fingerprints of the code after pygments
has replaced every name by one letter, so renaming variables changes nothing. The release's
solution cells (signatures, docstrings, the ``YOUR CODE HERE`` stub) are copydetect's
boilerplate: code the students were given never counts, and an untouched notebook has no code
of its own to match.

A pair's similarities are the shares of each submission's own code (tokens) found in the
other; a pair is listed when either share is above ``--threshold`` and they share at least
``--min-tokens`` tokens. It writes, private to the instructor (0700 folder, 0600 files) since
they name students:

- ``reports/<id>/similarity.csv``: one row per pair, most alike first;
- ``reports/<id>/similarity.html``: each pair side by side with the shared code highlighted
  (copydetect's highlighting), then the submissions left out and why.

The page is this module's, not copydetect's own report, whose template loads Bootstrap from a
CDN (a request leaving the machine each time it is opened) and prints file names unescaped;
the side-by-side code in it is copydetect's, escaped by copydetect.

It reads nothing else and writes nothing else: grades, the gradebook and ``grades.csv`` are
never touched. A listed pair is a question for a person, not a finding. Exit status 0, or 2
for bad arguments.
"""

from __future__ import annotations

import argparse
import csv
import html
import io
import json
import os
import stat
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from logreg_grader import notebook, release
from logreg_grader import term as termmod
from logreg_grader.course import Course

# copydetect's parameters, chosen from what tests/grader/test_similarity.py measures on
# 04_gradients: a match is a run of at least NOISE characters of name-filtered code, and
# every run of GUARANTEE characters is found (window 1: every k-gram is kept). copydetect's
# default, 25, misses a copy of the five-line logistic_gradients next to an honest
# numerical_gradient (0.36); 20 finds it (0.69) and leaves independent solutions below 0.5.
NOISE = 20
GUARANTEE = 20
# Listed when either share of a pair is above THRESHOLD. Measured on 04_gradients (k = 20):
# three independent correct solutions 0.12-0.46 pairwise, one of the two functions copied
# with its names changed 0.69-0.77, the whole solution renamed 1.00.
THRESHOLD = 0.6
# ... and they share at least MIN_TOKENS tokens (characters of filtered code). Every k-gram that
# touches a submission's own code counts, so one changed line already covers about 2 k: two
# notebooks whose only code is `return torch.zeros_like(x)` share 48 and match fully (1.00);
# a copied function shares 139 or more.
MIN_TOKENS = 60
MAX_VIEWS = 200  # pairs shown side by side (a class copying one text has thousands)
MAX_NOTEBOOK = 50 * 1024**2  # as logreg-grade
MAX_CODE = 1024**2  # solution code kept per submission (characters)
CSV_COLUMNS = (
    "student_a",
    "name_a",
    "student_b",
    "name_b",
    "similarity_a",
    "similarity_b",
    "token_overlap",
)


class SimilarityError(Exception):
    """Bad arguments or an assignment without a release to take the starter code from."""


class Skipped(Exception):
    """A submission left out of the comparison (the message says why)."""


@dataclass
class Pair:
    """Two submissions and how much of each one's own code is found in the other."""

    student_a: str
    student_b: str
    similarity_a: float  # share of a's own tokens that b also has
    similarity_b: float
    token_overlap: int  # tokens of a in shared runs
    code_a: str = ""  # copydetect's highlighted HTML (escaped)
    code_b: str = ""

    @property
    def score(self) -> float:
        return max(self.similarity_a, self.similarity_b)


@dataclass
class Report:
    assignment: str
    threshold: float
    min_tokens: int = MIN_TOKENS
    compared: list[str] = field(default_factory=list)  # students whose code was compared
    starter_only: list[str] = field(default_factory=list)  # no code beyond the release's
    skipped: dict[str, str] = field(default_factory=dict)  # student -> reason
    pairs: list[Pair] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)  # roster names, when there is one


# --- the code to compare ---------------------------------------------------------------------


def solution_ids(nb: dict) -> list[str]:
    """The grade_ids of the solution code cells of a notebook, in order."""
    out = []
    for cell in nb.get("cells", []):
        if isinstance(cell, dict) and notebook.kind_of(cell) == "solution":
            gid = str(notebook.nbgrader_meta(cell).get("grade_id", ""))
            if gid and gid not in out:
                out.append(gid)
    return out


def solution_code(nb: dict, ids: list[str]) -> str:
    """The source of the cells of ``nb`` whose grade_id is in ``ids``, in that order, each
    under a ``# <grade_id>`` line (a comment: copydetect ignores it, a reader sees it)."""
    cells = {}
    for cell in nb.get("cells", []):
        if isinstance(cell, dict) and cell.get("cell_type") == "code":
            gid = str(notebook.nbgrader_meta(cell).get("grade_id", ""))
            if gid in ids and gid not in cells:
                cells[gid] = notebook.source_of(cell)
    parts = [f"# {gid}\n{cells[gid].rstrip()}\n" for gid in ids if gid in cells]
    return "\n".join(parts)


def starter(course: Course, aid: str) -> tuple[list[str], str]:
    """(solution cell ids, their code as released): the release's solution cells, or the
    source's solution cells with nbgrader's stub when the release is not there."""
    path = course.release(aid)
    if path.is_file():
        nb = json.loads(path.read_text(encoding="utf-8"))
    else:
        source = release.source_notebook(course.source(aid))
        nb = json.loads(release.notebook_text(source))
        for cell in nb["cells"]:
            if notebook.kind_of(cell) == "solution":
                cell["source"] = notebook.stub(notebook.source_of(cell))
    ids = solution_ids(nb)
    if not ids:
        raise SimilarityError(f"assignment {aid!r}: the release has no solution cells")
    return ids, solution_code(nb, ids)


def read_notebook(course: Course, student: str, aid: str) -> dict:
    """A submission as JSON (never a link, at most 50 MB); raises Skipped saying why.

    The checks of logreg-grade's ``read_submission`` without its side effect (it writes a
    missing timestamp.txt into submitted/, which this command must leave as it is)."""
    from logreg_grader.status import Graded
    from logreg_grader.worker import parse_notebook

    folder = course.submitted(student, aid)
    for path in (course.root / "submitted", folder.parent, folder):
        if path.is_symlink():
            raise Skipped(f"{path.relative_to(course.root)} is a symbolic link")
    path = course.submission(student, aid)
    if path.is_symlink():
        raise Skipped(f"{aid}.ipynb is a symbolic link (never followed)")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise Skipped(f"no {aid}.ipynb in the submission") from None
    except OSError as err:
        raise Skipped(f"{aid}.ipynb cannot be opened: {err.strerror or err}") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise Skipped(f"{aid}.ipynb is not a plain file")
        if info.st_size > MAX_NOTEBOOK:
            raise Skipped("the notebook is larger than 50 MB")
        data = f.read()
    graded = Graded(aid, student)
    nb = parse_notebook(data, graded)
    if nb is None:
        raise Skipped("; ".join(graded.reasons) or "not a valid notebook")
    return nb


# --- comparing -------------------------------------------------------------------------------


def compare(
    codes: dict[str, str],
    boilerplate: str,
    threshold: float = THRESHOLD,
    min_tokens: int = MIN_TOKENS,
) -> tuple[list[Pair], list[str]]:
    """copydetect on every pair of ``codes`` (student -> code), ``boilerplate`` excluded.

    Returns the pairs with a similarity above ``threshold`` that share at least ``min_tokens``
    tokens (most alike first), and the students with no code of their own (everything they
    have is boilerplate)."""
    from copydetect import CopyDetector

    with tempfile.TemporaryDirectory(prefix="logreg-similarity-") as tmp:
        folder = Path(tmp)
        files: dict[str, str] = {}
        for i, (student, code) in enumerate(sorted(codes.items())):
            path = folder / f"{i:05d}.py"
            # errors="replace": JSON may hold a lone surrogate, which UTF-8 cannot encode
            path.write_text(code, encoding="utf-8", errors="replace")
            files[str(path)] = student
        (folder / "boilerplate").mkdir()
        (folder / "boilerplate" / "starter.py").write_text(boilerplate, encoding="utf-8")
        detector = CopyDetector(
            noise_t=NOISE,
            guarantee_t=GUARANTEE,
            display_t=threshold,
            force_language="python",
            autoopen=False,
            silent=True,
            out_file=str(folder / "unused.html"),
        )
        for path in files:
            detector.add_file(path)
        detector.add_file(str(folder / "boilerplate" / "starter.py"), type="boilerplate")
        if len(files) < 2:
            return [], []  # nothing to compare with
        detector.run()
        rows = detector.get_copied_code_list()
        own = {files[p] for p, data in detector.file_data.items() if p in files and data.hashes}
    pairs = []
    for sim_a, sim_b, path_a, path_b, code_a, code_b, overlap in rows:
        if overlap < min_tokens:
            continue
        a, b = files[path_a], files[path_b]
        if b < a:  # the pair in name order, whichever file copydetect tested first
            a, b, sim_a, sim_b, code_a, code_b = b, a, sim_b, sim_a, code_b, code_a
        pairs.append(Pair(a, b, float(sim_a), float(sim_b), int(overlap), code_a, code_b))
    pairs.sort(key=lambda p: (-p.score, -p.token_overlap, p.student_a, p.student_b))
    return pairs, sorted(set(codes) - own)


def submissions(course: Course, aid: str) -> list[str]:
    """The students with a folder submitted/<student>/<id>/ (as logreg-grade finds them)."""
    from logreg_grader.cli import discover

    todo, _ = discover(course, [aid], None)
    return [student for _, student in todo]


def analyse(
    course: Course, aid: str, threshold: float = THRESHOLD, min_tokens: int = MIN_TOKENS
) -> Report:
    """Read, extract and compare every submission of ``aid``; nothing is written."""
    if not 0 < threshold <= 1:
        raise SimilarityError(f"--threshold must be in (0, 1], got {threshold!r}")
    if min_tokens < 0:
        raise SimilarityError(f"--min-tokens must be 0 or more, got {min_tokens!r}")
    aid = course.assignments(aid)[0]
    ids, boilerplate = starter(course, aid)
    report = Report(aid, threshold, min_tokens)
    codes = {}
    for student in submissions(course, aid):
        try:
            nb = read_notebook(course, student, aid)
            code = solution_code(nb, ids)
            if not code.strip():
                raise Skipped("no solution cell of the release (were the cells deleted?)")
            if len(code) > MAX_CODE:
                raise Skipped(f"the solution cells hold more than {MAX_CODE} characters")
        except Skipped as why:
            report.skipped[student] = str(why)
            continue
        codes[student] = code
    report.compared = sorted(codes)
    report.pairs, report.starter_only = compare(codes, boilerplate, threshold, min_tokens)
    try:
        roster = termmod.load(course.root).roster
    except termmod.TermError as err:
        print(f"similarity: names left out, the roster cannot be read: {err}", file=sys.stderr)
        roster = {}
    report.names = {s: roster[s].name for s in codes.keys() | report.skipped if s in roster}
    return report


# --- writing ---------------------------------------------------------------------------------


def csv_text(report: Report) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for p in report.pairs:
        writer.writerow(
            [
                p.student_a,
                report.names.get(p.student_a, ""),
                p.student_b,
                report.names.get(p.student_b, ""),
                f"{p.similarity_a:.3f}",
                f"{p.similarity_b:.3f}",
                p.token_overlap,
            ]
        )
    return out.getvalue()


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 110rem;
       padding: 0 1rem; line-height: 1.4; color: #222; }
table.pairs { border-collapse: collapse; margin: 1rem 0; }
table.pairs td, table.pairs th { border-bottom: 1px solid #ddd; padding: .3rem .8rem;
                                 text-align: left; }
details { border: 1px solid #ccc; border-radius: 4px; margin: 1rem 0; padding: .5rem 1rem; }
summary { cursor: pointer; font-weight: 600; }
.side { display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; }
.side pre { background: #f7f7f7; padding: .6rem; overflow-x: auto; font-size: .85rem;
            white-space: pre-wrap; word-break: break-word; }
.highlight-red { background: #f2b6b6; }
.highlight-green { background: #b6f2b6; }
.note { color: #555; }
"""


def copydetect_version() -> str:
    from copydetect import __version__

    return __version__


def html_text(report: Report) -> str:
    """The report page: no script, no link to anything outside it, every name escaped."""
    e = html.escape

    def who(student: str) -> str:
        name = report.names.get(student)
        return e(f"{student} ({name})" if name else student)

    aid, t = e(report.assignment), report.threshold
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Similarity report: {aid}</title><style>{STYLE}</style></head><body>",
        f"<h1>Similarity report: {aid}</h1>",
        f"<p>{len(report.compared)} submissions compared, {len(report.pairs)} pairs with a "
        f"similarity above {t:.2f} and at least {report.min_tokens} shared tokens. "
        "A pair's similarity is the share of each submission's "
        "own solution code (after every name is replaced by one letter, the starter code "
        "left out) that the other one also has. "
        "<strong>A listed pair is a question for a person, not a finding</strong>: open it, "
        "read both, and decide. This report changes no grade.</p>",
    ]
    if report.pairs:
        out.append(
            '<table class="pairs"><tr><th>#</th><th>student A</th><th>student B</th>'
            "<th>A in B</th><th>B in A</th><th>shared tokens</th></tr>"
        )
        for i, p in enumerate(report.pairs, 1):
            number = f'<a href="#pair-{i}">{i}</a>' if i <= MAX_VIEWS else str(i)
            out.append(
                f"<tr><td>{number}</td><td>{who(p.student_a)}</td>"
                f"<td>{who(p.student_b)}</td><td>{p.similarity_a:.0%}</td>"
                f"<td>{p.similarity_b:.0%}</td><td>{p.token_overlap}</td></tr>"
            )
        out.append("</table>")
        if len(report.pairs) > MAX_VIEWS:
            out.append(
                f"<p>Side by side below: the {MAX_VIEWS} most alike pairs (all "
                f"{len(report.pairs)} are in similarity.csv).</p>"
            )
        for i, p in enumerate(report.pairs[:MAX_VIEWS], 1):
            out.append(
                f'<details id="pair-{i}"><summary>{i}. {who(p.student_a)} '
                f"({p.similarity_a:.0%}) and {who(p.student_b)} ({p.similarity_b:.0%})"
                '</summary><div class="side">'
                f"<div><h3>{who(p.student_a)}</h3><pre><code>{p.code_a}</code></pre></div>"
                f"<div><h3>{who(p.student_b)}</h3><pre><code>{p.code_b}</code></pre></div>"
                "</div></details>"
            )
    else:
        out.append("<p>No pair is above the threshold.</p>")
    if report.starter_only:
        out.append(
            "<h2>Nothing beyond the starter code</h2><p class=note>Compared, but with no code "
            "of their own (the release's solution cells unchanged, or only trivially "
            "edited): they cannot match anyone.</p><ul>"
            + "".join(f"<li>{who(s)}</li>" for s in report.starter_only)
            + "</ul>"
        )
    if report.skipped:
        out.append(
            "<h2>Left out</h2><ul>"
            + "".join(f"<li>{who(s)}: {e(r)}</li>" for s, r in sorted(report.skipped.items()))
            + "</ul>"
        )
    out.append(
        '<p class="note">The highlighting can run over a line or two of starter code next to '
        "shared code (a signature, a docstring): starter code never matches by itself. "
        f"copydetect {copydetect_version()}, noise and guarantee thresholds {NOISE} and "
        f"{GUARANTEE} characters of filtered code; made by logreg-similarity.</p>"
    )
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def write(course: Course, report: Report) -> tuple[Path, Path]:
    """similarity.csv and similarity.html in reports/<id>/ (folders 0700, files 0600)."""
    folder = course.reports(report.assignment)
    for path in (folder.parent, folder):
        path.mkdir(mode=0o700, exist_ok=True)
        os.chmod(path, 0o700)
    out = []
    texts = {"similarity.csv": csv_text(report), "similarity.html": html_text(report)}
    for name, text in texts.items():
        path = folder / name
        tmp = folder / f".{name}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
        out.append(path)
    return out[0], out[1]


def similarity_main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="logreg-similarity",
        description="Pairs of submissions of one assignment whose solution code is alike "
        "(copydetect; starter code excluded), as reports/<id>/similarity.csv and .html. "
        "Changes no grade.",
    )
    parser.add_argument("--assignment", required=True, help="the assignment id (04_gradients)")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="the course folder")
    parser.add_argument(
        "--threshold",
        type=float,
        default=THRESHOLD,
        help=f"list a pair when either similarity is above this share (default {THRESHOLD})",
    )
    parser.add_argument(
        "--min-tokens",
        type=int,
        default=MIN_TOKENS,
        help=f"... and they share at least this many tokens (default {MIN_TOKENS})",
    )
    args = parser.parse_args(argv)
    course = Course(args.root.resolve())
    folder = course.foreign_folder(("submitted", "reports"))
    if folder is not None:
        print(
            f"similarity: {folder} belongs to another user (`sudo make grade` makes it root's, "
            "0700): run this as that user too (`sudo make similarity`)",
            file=sys.stderr,
        )
        return 2
    try:
        report = analyse(course, args.assignment, args.threshold, args.min_tokens)
    except (SimilarityError, release.SourceError) as err:
        print(f"similarity: {err}", file=sys.stderr)
        return 2
    csv_path, html_path = write(course, report)
    for student, why in sorted(report.skipped.items()):
        print(f"similarity: left out {student}: {why}", file=sys.stderr)
    print(
        f"similarity {report.assignment}: {len(report.compared)} submissions compared, "
        f"{len(report.pairs)} pairs above {report.threshold:.2f}, "
        f"{len(report.skipped)} left out; {html_path.relative_to(course.root)}, "
        f"{csv_path.relative_to(course.root)}"
    )
    return 0
