"""Adversarial submissions for tests/grader/test_hardening.py, on 02_numerical_stability (and 05).

Each entry: ``name``; how to build the submission from the solution notebook (``replace``:
grade_id -> new solution-cell source; ``edit``: grade_id -> new test-cell source; ``delete`` /
``duplicate``: grade_ids; ``raw``: the notebook file's text instead; ``filename``: another
notebook name; ``no_notebook``; ``extra_files``: name -> content next to the notebook); and the
expected ``score`` (autograded points, out of 12) and ``status`` (the grades.csv column).

What a submission does to its own process (patching torch or the check helpers, returning
objects that claim to equal anything) cannot change its grade: the tests run in the grader.
What it cannot reach (the gradebook, the solutions, the network) it cannot use. A fault costs
the tests of the function that caused it, and the status says which fault.

The entries of ``ISSUE_10`` each reproduce one weakness listed in issue 10 (the issue reports
the wrong grade the old grader gave each; some, such as the pre-bound dispatch switch, the
generator and the javascript: link, also fooled the rewritten grader until it was fixed).
Extra keys they use: ``assignment`` (default 02), ``move_to_end`` (grade_ids of cells moved to
the end of the notebook), ``symlink`` (the notebook is a symbolic link to that path),
``course_files`` (path relative to the course root -> text, created world-readable before
grading, as an earlier run or nbgrader's zip collect would leave them), ``cells_after``
(grade_id -> raw cells inserted after it, saved outputs included), ``outputs`` (grade_id ->
saved outputs put on that cell) and ``reason`` (a text, or a tuple of texts, the grades.csv
reason must contain). ``{ROOT}`` and ``{REPO}`` in any source are replaced by the course root
and the repository.
"""

from pathlib import Path

AID = "02_numerical_stability"
FULL = 12.0
SIGMOID_POINTS = 4.0  # sigmoid_values_shape_dtype 1 + extremes_finite 1 + tail_accurate 2
SIGMOID_TESTS = ("sigmoid_values_shape_dtype", "sigmoid_extremes_finite", "sigmoid_tail_accurate")
AID_01 = "01_synthetic_data"
FULL_01 = 16.0
AID_05 = "05_gd_vs_sgd"
FULL_05 = 12.0
MINIBATCHES_POINTS = 4.0  # cover_every_index_once 2 + shuffled_and_reproducible 1 + recipe 1

GOOD_SIGMOID = """\
def sigmoid(z):
    e = torch.exp(-torch.abs(z))
    return torch.where(z >= 0, 1 / (1 + e), e / (1 + e))
"""


def _sig(body: str) -> dict:
    return {"sigmoid": body}


ATTACKS = [
    dict(name="correct", replace={}, score=FULL, status="ok"),
    dict(
        name="loop_swallowing_interrupts",
        replace=_sig(
            "def sigmoid(z):\n    while True:\n        try:\n            pass\n"
            "        except BaseException:\n            pass\n"
        ),
        score=FULL - SIGMOID_POINTS,
        status="timeout",
    ),
    dict(
        name="os_exit",
        replace=_sig("import os\n\nos._exit(3)\n"),
        score=FULL - SIGMOID_POINTS,
        status="kernel_died",
    ),  # fmt: skip
    dict(
        name="segfault",
        replace=_sig("import ctypes\n\nctypes.string_at(0)\n"),
        score=FULL - SIGMOID_POINTS,
        status="kernel_died",
    ),  # fmt: skip
    dict(
        name="memory_bomb",
        replace=_sig("def sigmoid(z):\n    hog = bytearray(8 * 1024**3)\n    return z\n"),
        score=FULL - SIGMOID_POINTS,
        status="memory",
    ),
    dict(
        name="output_flood",
        replace=_sig("for _i in range(200):\n    print('A' * 50_000)\n\n" + GOOD_SIGMOID),
        score=FULL,
        status="ok",
    ),
    dict(
        name="malformed_json",
        raw='{"cells": [ this is not json',
        score=0.0,
        status="failed: unreadable",
        reason="not valid JSON",
    ),  # fmt: skip
    dict(
        name="renamed_notebook",
        replace={},
        filename="my_homework.ipynb",
        score=0.0,
        status="failed: missing_notebook",
    ),  # fmt: skip
    dict(
        name="missing_notebook",
        no_notebook=True,
        extra_files={"README.txt": "sorry"},
        score=0.0,
        status="failed: missing_notebook",
    ),  # fmt: skip
    dict(
        name="edited_test_cell",
        replace=_sig("def sigmoid(z):\n    return z * 0\n"),
        edit={"sigmoid_values_shape_dtype": '"""always passes"""\npass\n'},
        score=FULL - SIGMOID_POINTS,
        status="cells_tampered",
    ),
    dict(
        name="deleted_test_cell",
        delete=["sigmoid_tail_accurate"],
        score=FULL,
        status="cells_tampered",
    ),  # fmt: skip
    dict(
        name="duplicated_test_cell",
        duplicate=["logsumexp_values"],
        score=FULL,
        status="cells_tampered",
    ),  # fmt: skip
    dict(
        name="deleted_solution_cell",
        delete=["sigmoid"],
        score=FULL - SIGMOID_POINTS,
        status="cells_tampered",
    ),  # fmt: skip
    dict(
        name="patch_torch_allclose",
        replace=_sig(
            "torch.allclose = lambda *a, **k: True\ntorch.equal = lambda *a, **k: True\n\n"
            "def sigmoid(z):\n    return z * 0\n"
        ),
        score=FULL - SIGMOID_POINTS,
        status="ok",
    ),
    dict(
        name="patch_numpy",
        replace=_sig(
            "import numpy as np\n\nnp.testing.assert_allclose = lambda *a, **k: None\n"
            "np.allclose = lambda *a, **k: True\n\ndef sigmoid(z):\n    return z * 0\n"
        ),
        score=FULL - SIGMOID_POINTS,
        status="ok",
    ),
    dict(  # the helpers are patched in the student's own process only: no effect on the grade
        name="patch_check_helpers",
        replace=_sig(
            "import logreg_grader.check as G\n\nG.assert_tensor = lambda *a, **k: None\n"
            "G.call_student = lambda fn, *a, **k: None\n\ndef sigmoid(z):\n    return z * 0\n"
        ),
        score=FULL - SIGMOID_POINTS,
        status="ok",
    ),
    dict(
        name="equal_to_anything",
        replace=_sig(
            "class Anything:\n    def __eq__(self, other):\n        return True\n\n"
            "    def __getattr__(self, name):\n        return self\n\n"
            "    def __call__(self, *a, **k):\n        return self\n\n"
            "def sigmoid(z):\n    return Anything()\n"
        ),
        score=FULL - SIGMOID_POINTS,
        status="ok",
    ),
    dict(
        name="tensor_subclass_equal",
        replace=_sig(
            "class Liar(torch.Tensor):\n    def __eq__(self, other):\n        return True\n\n"
            "    @classmethod\n"
            "    def __torch_function__(cls, func, types, args=(), kwargs=None):\n"
            "        return True\n\n"
            "def sigmoid(z):\n    return torch.zeros_like(z).as_subclass(Liar)\n"
        ),
        score=FULL - SIGMOID_POINTS,
        status="ok",
    ),
    dict(
        name="read_gradebook",
        replace=_sig(
            "try:\n    LEAK = open('gradebook/gradebook.db', 'rb').read(100)\n"
            "except OSError:\n    LEAK = b''\n\n" + GOOD_SIGMOID
        ),
        score=FULL,
        status="ok",
    ),
    dict(
        name="read_solutions",
        replace=_sig(
            "from pathlib import Path\n\nfor _p in Path('/').glob('**/solutions/*/*.md'):\n"
            "    exec(_p.read_text())\n\n" + GOOD_SIGMOID
        ),
        score=FULL,
        status="ok",
    ),
    # Routes the static scan does not flag: only the sandbox stops them. If the secret can be
    # read (or the network reached), sigmoid returns zeros and the score drops.
    dict(
        name="read_gradebook_unflagged",
        replace=_sig(
            "import io\n\ntry:\n    _leak = io.FileIO('{ROOT}/gradebook/gradebook.db').read(16)\n"
            "except OSError:\n    _leak = b''\n\n"
            "def sigmoid(z):\n    e = torch.exp(-torch.abs(z))\n"
            "    good = torch.where(z >= 0, 1 / (1 + e), e / (1 + e))\n"
            "    return good * 0 if _leak else good\n"
        ),
        score=FULL,
        status="ok",
    ),
    dict(
        name="read_solutions_unflagged",
        replace=_sig(
            "import io\n\n_leak = b''\n"
            "for _p in ('{ROOT}/solutions/02_numerical_stability/02_numerical_stability.md',\n"
            "           '{REPO}/solutions/02_numerical_stability/02_numerical_stability.md'):\n"
            "    try:\n        _leak += io.FileIO(_p).read(16)\n"
            "    except OSError:\n        pass\n\n"
            "def sigmoid(z):\n    e = torch.exp(-torch.abs(z))\n"
            "    good = torch.where(z >= 0, 1 / (1 + e), e / (1 + e))\n"
            "    return good * 0 if _leak else good\n"
        ),
        score=FULL,
        status="ok",
    ),
    dict(
        name="network_unflagged",
        replace=_sig(
            "import urllib.request\n\ntry:\n"
            "    urllib.request.urlopen('http://1.1.1.1/', timeout=3)\n    _net = True\n"
            "except Exception:\n    _net = False\n\n"
            "def sigmoid(z):\n    e = torch.exp(-torch.abs(z))\n"
            "    good = torch.where(z >= 0, 1 / (1 + e), e / (1 + e))\n"
            "    return good * 0 if _net else good\n"
        ),
        score=FULL,
        status="ok",
    ),
    dict(
        name="patch_via_sys_modules",
        replace=_sig(
            "import sys\n\nsys.modules['torch'].testing.assert_close = lambda *a, **k: None\n\n"
            "def sigmoid(z):\n    return z * 0\n"
        ),
        score=FULL - SIGMOID_POINTS,
        status="ok",
    ),
    dict(
        name="kill_the_grader",
        replace=_sig(
            "import os\n\ndef sigmoid(z):\n    try:\n        os.kill(os.getppid(), 9)\n"
            "    except OSError:\n        pass\n    return z * 0\n"
        ),
        score=FULL - SIGMOID_POINTS,
        status="ok",
    ),
    dict(
        name="shadowing_modules",
        replace={},
        extra_files={
            "torch.py": "raise SystemExit('shadowed torch')\n",
            "logreg_lessons.py": "import os\nos._exit(0)\n",
        },
        score=FULL,
        status="ok",
    ),
    dict(
        name="banned_via_getattr",
        replace=_sig("def sigmoid(z):\n    return getattr(torch, 'sig' + 'moid')(z)\n"),
        score=FULL - SIGMOID_POINTS,
        status="banned_operation",
    ),
    dict(
        name="banned_via_importlib",
        replace=_sig(
            "import importlib\n\n_t = importlib.import_module('torch')\n\n"
            "def sigmoid(z):\n    return _t.special.expit(z)\n"
        ),
        score=FULL - SIGMOID_POINTS,
        status="banned_operation",
    ),
    dict(
        name="banned_via_alias",
        replace=_sig("from torch import sigmoid as s\n\ndef sigmoid(z):\n    return s(z)\n"),
        score=FULL - SIGMOID_POINTS,
        status="banned_operation",
    ),
    dict(
        name="banned_direct",
        replace=_sig("def sigmoid(z):\n    return torch.sigmoid(z)\n"),
        score=FULL - SIGMOID_POINTS,
        status="banned_operation",
    ),
]


def _leak_sigmoid(probe: str) -> str:
    """A sigmoid cell that is correct unless ``probe`` (run at cell time) sets ``_leak``."""
    return (
        probe + "\n\ndef sigmoid(z):\n    e = torch.exp(-torch.abs(z))\n"
        "    good = torch.where(z >= 0, 1 / (1 + e), e / (1 + e))\n"
        "    return good * 0 if _leak else good\n"
    )


_GOOD_LOG_SIGMOID = """\
def log_sigmoid(z):
    return torch.clamp(z, max=0) - torch.log1p(torch.exp(-torch.abs(z)))
"""
_LEAK_FILE = "logreg_leak_probe.txt"
_MARKER = "XSS_MARKER"
_INJECTED_MARKDOWN = (
    f"<script>window.{_MARKER}_1 = 1</script>\n\n"
    f'<img src="x" onerror="window.{_MARKER}_2 = 1">\n\n'
    f"[click me](javascript:window.{_MARKER}_3=1) and ![picture](javascript:window.{_MARKER}_4=1)"
    "\n\n![attached](attachment:evil.svg)\n"
)
_SAVED_OUTPUTS = [
    {
        "output_type": "display_data",
        "metadata": {},
        "data": {
            "text/html": f"<script>window.{_MARKER}_5 = 1</script><b>saved HTML</b>",
            "application/javascript": f"window.{_MARKER}_6 = 1",
            "text/plain": "<IPython.core.display.HTML object>",
        },
    },
    {
        "output_type": "execute_result",
        "execution_count": 1,
        "metadata": {},
        "data": {
            "text/html": f'<img src="x" onerror="window.{_MARKER}_7 = 1">',
            "image/svg+xml": f'<svg onload="window.{_MARKER}_8 = 1"></svg>',
            "text/plain": "1",
        },
    },
]

# Each entry below reproduces one weakness of issue 10 (see the module docstring).
ISSUE_10 = [
    # Bans are judged by what ran, by code object: the library's sigmoid, imported in another
    # function's cell, is caught when the (moved) sigmoid tests call it.
    dict(
        name="library_sigmoid_from_another_cell",
        replace={
            "sigmoid": "def sigmoid(z):\n    return z * 0  # replaced in the next cell\n",
            "log_sigmoid": "from logreg_lessons import sigmoid\n\n" + _GOOD_LOG_SIGMOID,
        },
        move_to_end=list(SIGMOID_TESTS),
        score=FULL - SIGMOID_POINTS,
        status="banned_operation",
    ),
    dict(
        name="banned_private_variable_functions",
        replace=_sig("def sigmoid(z):\n    return torch._C._VariableFunctions.sigmoid(z)\n"),
        score=FULL - SIGMOID_POINTS,
        status="banned_operation",
    ),
    dict(
        name="banned_private_aten_op",
        replace=_sig("def sigmoid(z):\n    return torch.ops.aten.sigmoid(z)\n"),
        score=FULL - SIGMOID_POINTS,
        status="banned_operation",
    ),
    dict(
        name="banned_private_aten_overload",
        replace=_sig("def sigmoid(z):\n    return torch.ops.aten.sigmoid.default(z)\n"),
        score=FULL - SIGMOID_POINTS,
        status="banned_operation",
    ),
    dict(
        name="banned_inplace_method",
        replace=_sig("def sigmoid(z):\n    return z.clone().sigmoid_()\n"),
        score=FULL - SIGMOID_POINTS,
        status="banned_operation",
    ),
    dict(
        name="banned_name_built_at_run_time",
        replace=_sig(
            "def sigmoid(z):\n"
            "    name = ''.join(chr(c) for c in (115, 105, 103, 109, 111, 105, 100))\n"
            "    return vars(torch)[name](z)\n"
        ),
        score=FULL - SIGMOID_POINTS,
        status="banned_operation",
    ),
    dict(
        name="banned_methodcaller_reversed_name",
        replace=_sig(
            "import operator\n\ndef sigmoid(z):\n"
            "    return operator.methodcaller('diomgis'[::-1])(z)\n"
        ),
        score=FULL - SIGMOID_POINTS,
        status="banned_operation",
    ),
    # Switching the recording off is itself the observation.
    dict(
        name="tamper_setprofile_none",
        replace=_sig(
            "import sys\n\nimport logreg_lessons\n\ndef sigmoid(z):\n    sys.setprofile(None)\n"
            "    return logreg_lessons.sigmoid(z)\n"
        ),
        score=FULL - SIGMOID_POINTS,
        status="tampering",
    ),
    dict(
        name="tamper_disable_torch_dispatch",
        replace=_sig(
            "def sigmoid(z):\n    with torch._C._DisableTorchDispatch():\n"
            "        return torch.sigmoid(z)\n"
        ),
        score=FULL - SIGMOID_POINTS,
        status="tampering",
    ),
    dict(  # the switch bound at cell time, before any recording starts
        name="tamper_disable_torch_dispatch_prebound",
        replace=_sig(
            "_off = torch._C._DisableTorchDispatch\n\ndef sigmoid(z):\n    with _off():\n"
            "        return torch.ops.aten.sigmoid.default(z)\n"
        ),
        score=FULL - SIGMOID_POINTS,
        status="tampering",
    ),
    # A function called through a test helper (minibatches_as_list) is judged too.
    dict(
        name="minibatches_calls_library",
        assignment=AID_05,
        replace={
            "minibatches": "import logreg_lessons\n\n"
            "def minibatches(n, batch_size, generator=None):\n"
            "    return list(logreg_lessons.minibatches(n, batch_size, generator))\n"
        },
        score=FULL_05 - MINIBATCHES_POINTS,
        status="banned_operation",
    ),
    dict(  # a generator: the library runs only when the helper iterates over the result
        name="minibatches_yields_from_library",
        assignment=AID_05,
        replace={
            "minibatches": "from logreg_lessons import minibatches as _library\n\n"
            "def minibatches(n, batch_size, generator=None):\n"
            "    yield from _library(n, batch_size, generator)\n",
            # left as released (fast to grade): only minibatches could score
            "gradient_descent": "raise NotImplementedError()\n",
            "sgd": "raise NotImplementedError()\n",
        },
        score=0.0,
        status="banned_operation",
    ),
    # Side effects in the student's process are what the tests check too: make_blobs and the
    # split must leave torch's global random state alone (01's tests compare it before and
    # after); seeding the global generator instead of a private one costs those two tests.
    dict(
        name="global_rng_01",
        assignment=AID_01,
        replace={
            "make_blobs": "def make_blobs(n_per_class=500, means=((5.0, 10.0), (0.0, 5.0)),\n"
            "               cov=((1.0, 0.25), (0.25, 1.0)), seed=0, dtype=torch.float32):\n"
            "    torch.manual_seed(seed)  # the global generator: not allowed\n"
            "    means = torch.as_tensor(means, dtype=torch.float64)\n"
            "    L = torch.linalg.cholesky(torch.as_tensor(cov, dtype=torch.float64))\n"
            "    X = torch.cat([m + torch.randn(n_per_class, means.shape[1],\n"
            "                                   dtype=torch.float64) @ L.T for m in means])\n"
            "    y = (torch.arange(2 * n_per_class) >= n_per_class).double()\n"
            "    return X.to(dtype), y.to(dtype)\n",
            "train_val_test_split": "def train_val_test_split(X, y, fractions=(0.7, 0.15, 0.15), "
            "seed=0, stratify=True):\n"
            "    torch.manual_seed(seed)  # the global generator: not allowed\n"
            "    groups = ([torch.nonzero(y == c).squeeze(1) for c in torch.unique(y)]\n"
            "              if stratify else [torch.arange(X.shape[0])])\n"
            "    parts = [[], [], []]\n"
            "    for idx in groups:\n"
            "        idx = idx[torch.randperm(idx.numel())]\n"
            "        a = round(fractions[0] * idx.numel())\n"
            "        b = a + round(fractions[1] * idx.numel())\n"
            "        for k, part in enumerate((idx[:a], idx[a:b], idx[b:])):\n"
            "            parts[k].append(part)\n"
            "    index = [torch.cat(p) for p in parts]\n"
            "    index = [i[torch.randperm(i.numel())] for i in index]\n"
            "    return (*(X[i] for i in index), *(y[i] for i in index))\n",
        },
        score=FULL_01 - 2,
        status="ok",
    ),
    # Results a test relies on are recomputed from what the function returned: a
    # gradient_descent that does not train but reports a decreasing history gets only the
    # test of its result's shape (minibatches and sgd are left as released: fast to grade).
    dict(
        name="fabricated_loss_history",
        assignment=AID_05,
        replace={
            "minibatches": "raise NotImplementedError()\n",
            "gradient_descent": "def gradient_descent(X, y, lr, num_steps, w0=None, b0=None, "
            "progress=False):\n"
            "    w = torch.zeros(X.shape[1], dtype=X.dtype) if w0 is None else w0.clone()\n"
            "    b = torch.zeros((), dtype=X.dtype) if b0 is None else b0.clone()\n"
            "    history = [math.log(2) - 0.005 * k for k in range(num_steps)]\n"
            "    epoch_history = [math.log(2) - 0.005 * (k + 1) for k in range(num_steps)]\n"
            "    return FitResult(w, b, history, epoch_history, num_steps)\n",
            "sgd": "raise NotImplementedError()\n",
        },
        score=1.0,
        status="ok",
    ),
    dict(
        name="symlink_to_solution",
        symlink="{ROOT}/solutions/02_numerical_stability/02_numerical_stability.ipynb",
        score=0.0,
        status="failed: symlink",
    ),
    # World-readable course files outside the hidden folders: a read would zero sigmoid.
    dict(
        name="read_grades_csv_unflagged",
        course_files={"grades.csv": "student,assignment,score\nann,02_numerical_stability,12\n"},
        replace=_sig(
            _leak_sigmoid(
                "import io\n\ntry:\n    _leak = io.FileIO('{ROOT}/grades.csv').read(16)\n"
                "except OSError:\n    _leak = b''"
            )
        ),
        score=FULL,
        status="ok",
    ),
    dict(
        name="read_downloaded_unflagged",
        course_files={
            "downloaded/02_numerical_stability/extracted/ann/02_numerical_stability.ipynb": "{}"
        },
        replace=_sig(
            _leak_sigmoid(
                "import io\nimport os\n\n_leak = [f for _, _, fs in os.walk('{ROOT}/downloaded') "
                "for f in fs]\ntry:\n    _leak.append(io.FileIO('{ROOT}/downloaded/"
                "02_numerical_stability/extracted/ann/02_numerical_stability.ipynb').read(2))\n"
                "except OSError:\n    pass"
            )
        ),
        score=FULL,
        status="ok",
    ),
    # /tmp and /dev/shm are private to each sandbox and vanish with it: the reader (graded
    # after the writer: students are graded in sorted order) finds nothing.
    dict(
        name="0_writes_tmp_and_shm",
        replace=_sig(
            "import os\n\nprint('sandbox uid', os.getuid())\nfor _d in ('/tmp', '/dev/shm'):\n"
            f"    with open(_d + '/{_LEAK_FILE}', 'w') as _f:\n"
            "        _f.write('left by another submission')\n"
            f"    os.chmod(_d + '/{_LEAK_FILE}', 0o666)\n\n" + GOOD_SIGMOID
        ),
        score=FULL,
        status="ok",
    ),
    dict(
        name="zz_reads_tmp_and_shm",
        replace=_sig(
            "import os\n\n\ndef _found():\n"
            f"    return [d for d in ('/tmp', '/dev/shm') if os.path.exists(d + '/{_LEAK_FILE}')]"
            "\n\n\n_leak = _found()\n\n"
            "def sigmoid(z):\n    e = torch.exp(-torch.abs(z))\n"
            "    good = torch.where(z >= 0, 1 / (1 + e), e / (1 + e))\n"
            "    return good * 0 if _leak or _found() else good\n"
        ),
        score=FULL,
        status="ok",
    ),
    dict(
        name="json_not_a_notebook",
        raw='{"hello": "world"}',
        score=0.0,
        status="failed: unreadable",
        reason="not a valid Jupyter notebook",
    ),
    dict(
        name="json_list_not_a_notebook",
        raw="[1, 2, 3]",
        score=0.0,
        status="failed: unreadable",
        reason="not a valid Jupyter notebook",
    ),
    dict(  # the reason says where the problem is (a cell), not how the validator tripped
        name="json_notebook_with_bad_cells",
        raw='{"cells": [1, 2], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}',
        score=0.0,
        status="failed: unreadable",
        reason=("not a valid Jupyter notebook", "cell"),
    ),
    dict(
        name="json_notebook_cells_not_a_list",
        raw='{"cells": "x", "metadata": {}, "nbformat": 4, "nbformat_minor": 5}',
        score=0.0,
        status="failed: unreadable",
        reason=("not a valid Jupyter notebook", "cells"),
    ),
    dict(
        name="html_injection",
        cells_after={
            "sigmoid": [
                {
                    "cell_type": "markdown",
                    "id": "student-markdown",
                    "metadata": {},
                    "source": _INJECTED_MARKDOWN,
                    "attachments": {
                        "evil.svg": {"image/svg+xml": f"<svg onload='{_MARKER}_9=1'></svg>"}
                    },
                },
                {
                    "cell_type": "raw",
                    "id": "student-raw",
                    "metadata": {"raw_mimetype": "text/html", "format": "text/html"},
                    "source": f"<script>window.{_MARKER}_10 = 1</script>",
                },
                {
                    "cell_type": "code",
                    "id": "student-code",
                    "metadata": {},
                    "execution_count": 1,
                    "source": "1",
                    "outputs": _SAVED_OUTPUTS,
                },
            ]
        },
        outputs={"sigmoid": _SAVED_OUTPUTS},
        score=FULL,
        status="ok",
    ),
]
ATTACKS += ISSUE_10


def build(attack: dict, solution_nb, folder) -> None:
    """Write the submission folder of one attack (folder = submitted/<student>/<id>)."""
    import copy
    import os

    import nbformat

    root = folder.resolve().parents[2]
    repo = Path(__file__).resolve().parents[3]

    def fill(text: str) -> str:
        return text.replace("{ROOT}", str(root)).replace("{REPO}", str(repo))

    folder.mkdir(parents=True, exist_ok=True)
    for rel, text in attack.get("course_files", {}).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        path.chmod(0o644)
        for parent in path.relative_to(root).parents:
            if str(parent) != ".":
                (root / parent).chmod(0o755)
    for name, text in attack.get("extra_files", {}).items():
        (folder / name).write_text(text, encoding="utf-8")
    if attack.get("no_notebook"):
        return
    aid = attack.get("assignment", AID)
    target = folder / attack.get("filename", f"{aid}.ipynb")
    if "symlink" in attack:
        os.symlink(fill(attack["symlink"]), target)
        return
    if "raw" in attack:
        target.write_text(attack["raw"], encoding="utf-8")
        return
    nb = copy.deepcopy(solution_nb)
    cells, moved = [], []
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in attack.get("delete", []):
            continue
        if gid in attack.get("replace", {}):
            cell.source = fill(attack["replace"][gid])
        if gid in attack.get("edit", {}):
            cell.source = attack["edit"][gid]
        if gid in attack.get("outputs", {}):
            cell.outputs = [nbformat.from_dict(o) for o in attack["outputs"][gid]]
        (moved if gid in attack.get("move_to_end", []) else cells).append(cell)
        cells += [nbformat.from_dict(c) for c in attack.get("cells_after", {}).get(gid, [])]
        if gid in attack.get("duplicate", []):
            dup = copy.deepcopy(cell)
            dup.id = f"{dup.id}-copy"
            cells.append(dup)
    nb.cells = cells + moved
    nbformat.write(nb, target)


# --- one graded course for the trust tests ---------------------------------------------------

_TRUST: dict = {}


def sandbox_files() -> dict[str, int]:
    """Paths in the host's /tmp and /dev/shm owned by a sandbox uid (>= UID_BASE), by uid."""
    import os

    from logreg_grader.sandbox import UID_BASE

    found = {}
    for top in ("/tmp", "/dev/shm"):
        for dirpath, dirnames, filenames in os.walk(top, onerror=lambda err: None):
            for name in dirnames + filenames:
                path = os.path.join(dirpath, name)
                try:
                    uid = os.lstat(path).st_uid
                except OSError:
                    continue
                if uid >= UID_BASE:
                    found[path] = uid
    return found


def trust_course() -> dict:
    """ATTACKS and the honest submissions (tests/grader/attacks/honest.py) in one course, graded by
    one ``logreg-grade --jobs 2`` run: once per pytest process (tests/grader/test_hardening.py and
    tests/grader/test_honest.py share it), removed at exit.

    The course lives in a world-traversable folder (not pytest's private 0700 one), so that
    the course files the attacks try to read are readable by any uid: only the sandbox keeps
    them away. Returns a dict: ``root``, ``result`` (the CompletedProcess), ``seconds``,
    ``left`` (paths in the host's /tmp and /dev/shm that a sandbox uid created during the
    run) and ``solutions`` (assignment -> solution notebook).
    """
    if _TRUST:
        return _TRUST
    import atexit
    import os
    import shutil
    import subprocess
    import sys
    import tempfile
    import time

    import honest

    from logreg_grader import release

    repo = Path(__file__).resolve().parents[3]
    root = Path(tempfile.mkdtemp(prefix="logreg-trust-"))
    atexit.register(shutil.rmtree, root, True)
    root.chmod(0o755)
    submissions = [(a["name"], a.get("assignment", AID), a, build) for a in ATTACKS]
    submissions += [(honest.student(e), e["assignment"], e, honest.build) for e in honest.HONEST]
    shutil.copy(repo / "nbgrader_config.py", root / "nbgrader_config.py")
    solutions = {}
    for aid in sorted({aid for _, aid, _, _ in submissions}):
        md = repo / "solutions" / aid / f"{aid}.md"
        (root / "solutions" / aid).mkdir(parents=True)
        shutil.copy(md, root / "solutions" / aid / md.name)
        solutions[aid] = release.source_notebook(md)
    for student, aid, entry, make in submissions:
        make(entry, solutions[aid], root / "submitted" / student / aid)
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONHASHSEED="0", LOGREG_CALL_TIMEOUT="10")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    cmd = [str(Path(sys.executable).parent / "logreg-grade"), "--root", str(root), "--jobs", "2"]
    before = sandbox_files()
    start = time.perf_counter()
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1500)
    seconds = time.perf_counter() - start
    left = {p: uid for p, uid in sandbox_files().items() if p not in before}
    _TRUST.update(root=root, result=result, seconds=seconds, left=left, solutions=solutions)
    return _TRUST
