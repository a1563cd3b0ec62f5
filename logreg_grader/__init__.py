"""logreg-grader: the course's autograder, and the test-cell API its notebooks import.

Student code runs in a sandboxed child of a warm fork server (:mod:`.forkserver`,
:mod:`.sandbox`, :mod:`.child`); the instructor's test cells, hidden tests included, run in the
trusted grader against the student's namespace (:mod:`.remote`, :mod:`.runner`), and bans are
judged by what ran (:mod:`.recorder`, :mod:`.bans`). Paths come from :mod:`.course`, statuses
from :mod:`.status`, notebook markers from :mod:`.notebook`; :mod:`.gradebook` writes
nbgrader's gradebook, :mod:`.feedback` and :mod:`.report` what people read, and :mod:`.cli`
holds the console entry points (``logreg-grade``, ``logreg-release``).
"""
