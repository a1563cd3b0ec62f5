"""nbgrader configuration of the course (read by `nbgrader`, logreg-release and logreg-grade).

Layout, relative to the folder of this file (the course root):

    solutions/<id>/<id>.md      the only files a person edits (jupytext MyST notebooks)
    solutions/<id>/<id>.ipynb   written by logreg-release / logreg-grade (git-ignored)
    exercises/<id>/<id>.ipynb   the students' notebooks (committed; `make release`)
    submitted/<student>/<id>/   what students hand in (git-ignored)
    autograded/, feedback/      written by `make grade` and `make grades` (git-ignored)
    gradebook/gradebook.db      nbgrader's SQLite gradebook (git-ignored)

nbgrader's exchange (its release/fetch/submit/collect service on a shared machine or
JupyterHub) is optional. Without it, students download the notebook from the book and hand it
in by any means (an LMS: `make collect`); the instructor puts it in submitted/, and returns
feedback/<student>/<id>/<id>.html through the LMS. With it, set the exchange folder below
(`c.Exchange.root = "/srv/nbgrader/exchange"`, for you and your students): students run
`nbgrader fetch_assignment` and `nbgrader submit`, you `nbgrader collect`, and `make grade` and
`make grades` return each page of a submission that came through the exchange to it, where the
student gets it with `nbgrader fetch_feedback <id> --course logreg-lessons`.
"""

import os
import re

from nbgrader.preprocessors import ClearHiddenTests

c = get_config()  # noqa: F821 (injected by traitlets when it loads this file)

ROOT = os.path.dirname(os.path.abspath(__file__))
ASSIGNMENTS = [
    "01_synthetic_data",
    "02_numerical_stability",
    "03_forward_pass",
    "04_gradients",
    "05_gd_vs_sgd",
    "06_softmax_regression",
    "07_backpropagation",
    "08_pytorch_training_loop",
    "09_capstone",
]

c.CourseDirectory.root = ROOT
c.CourseDirectory.course_id = "logreg-lessons"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"
c.CourseDirectory.submitted_directory = "submitted"
c.CourseDirectory.autograded_directory = "autograded"
c.CourseDirectory.feedback_directory = "feedback"
# nbgrader's exchange, if the course uses one (see above); unset, nothing is returned through it.
# c.Exchange.root = "/srv/nbgrader/exchange"
# Text sources (and anything else that is not a notebook) never reach exercises/ or autograded/.
c.CourseDirectory.ignore = [
    ".ipynb_checkpoints",
    "*.pyc",
    "__pycache__",
    "feedback",
    "*.md",
    "*.py",
    "README*",
]
# The gradebook: $LOGREG_GRADEBOOK_URL (any SQLAlchemy URL, e.g. a PostgreSQL database shared by
# grading machines: postgresql://user:password@host/dbname), else the SQLite file below.
# postgresql:// means the psycopg2 driver installed with the grader extra (SQLAlchemy 2.1 would
# pick psycopg 3). logreg_grader/gradebook.py resolves the same variable for `make grade`.
if os.environ.get("LOGREG_GRADEBOOK_URL", "").strip():
    _url = os.environ["LOGREG_GRADEBOOK_URL"].strip()
    c.CourseDirectory.db_url = re.sub(r"^postgres(ql)?://", "postgresql+psycopg2://", _url)
else:
    os.makedirs(os.path.join(ROOT, "gradebook"), exist_ok=True)  # SQLite does not create folders
    c.CourseDirectory.db_url = "sqlite:///" + os.path.join(ROOT, "gradebook", "gradebook.db")

# For nbgrader's own runs (a student's `nbgrader validate`): 60 s a cell, and messages wide
# enough for the tests' diagnoses (nbgrader cuts each line at 90 characters by default).
# `make grade` does not use nbgrader's executor (see logreg_grader.runner).
c.Execute.timeout = 60
c.Validator.width = 400

# Release: nbgrader's defaults (clear solutions, hidden tests and outputs, lock cells).
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class ClearHiddenTestsAndTracebacks(ClearHiddenTests):
    """Remove hidden tests from feedback: their source and every traceback line quoting it.

    nbgrader's ClearHiddenTests removes the hidden region from the cell source only; a failed
    hidden assertion would still quote that line in the error output's traceback.
    """

    def preprocess_cell(self, cell, resources, cell_index):
        hidden, inside = set(), False
        for line in cell.source.split("\n"):
            if self.begin_test_delimeter in line or self.end_test_delimeter in line:
                inside = self.begin_test_delimeter in line
                hidden.add(line.strip())
            elif inside and line.strip():
                hidden.add(line.strip())
        cell, resources = super().preprocess_cell(cell, resources, cell_index)
        if hidden and cell.cell_type == "code":
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    output["traceback"] = [
                        _strip_lines(entry, hidden) for entry in output.get("traceback", [])
                    ]
                elif output.get("output_type") == "stream":
                    output["text"] = _strip_lines(output.get("text", ""), hidden)
        return cell, resources


def _strip_lines(text, hidden):
    """Drop the lines of ``text`` that quote a hidden line (traceback frames show source)."""
    kept = []
    for line in text.split("\n"):
        plain = _ANSI.sub("", line)
        # Traceback source lines look like "---> 12     assert ..." or "     13 x = ...".
        code = re.sub(r"^\s*(-*>)?\s*\d+\s", "", plain).strip()
        if code and any(code == h or (len(h) > 8 and h in code) for h in hidden):
            continue
        kept.append(line)
    return "\n".join(kept)


c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    ClearHiddenTestsAndTracebacks,
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]
