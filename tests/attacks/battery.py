"""Adversarial submissions for tests/test_hardening.py, all on 02_numerical_stability.

Each entry: ``name``; how to build the submission from the solution notebook (``replace``:
grade_id -> new solution-cell source; ``edit``: grade_id -> new test-cell source; ``delete`` /
``duplicate``: grade_ids; ``raw``: the notebook file's text instead; ``filename``: another
notebook name; ``no_notebook``; ``extra_files``: name -> content next to the notebook); and the
expected ``score`` (autograded points, out of 12) and ``status`` (the grades.csv column).

What a submission does to its own process (patching torch or the check helpers, returning
objects that claim to equal anything) cannot change its grade: the tests run in the grader.
What it cannot reach (the gradebook, the solutions, the network) it cannot use. A fault costs
the tests of the function that caused it, and the status says which fault.
"""

from pathlib import Path

AID = "02_numerical_stability"
FULL = 12.0
SIGMOID_POINTS = 4.0  # sigmoid_values_shape_dtype 1 + extremes_finite 1 + tail_accurate 2

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


def build(attack: dict, solution_nb, folder) -> None:
    """Write the submission folder of one attack (folder = submitted/<student>/<id>)."""
    import copy

    import nbformat

    folder.mkdir(parents=True, exist_ok=True)
    for name, text in attack.get("extra_files", {}).items():
        (folder / name).write_text(text, encoding="utf-8")
    if attack.get("no_notebook"):
        return
    target = folder / attack.get("filename", f"{AID}.ipynb")
    if "raw" in attack:
        target.write_text(attack["raw"], encoding="utf-8")
        return
    nb = copy.deepcopy(solution_nb)
    cells = []
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in attack.get("delete", []):
            continue
        if gid in attack.get("replace", {}):
            root = folder.resolve().parents[2]
            repo = Path(__file__).resolve().parents[2]
            source = attack["replace"][gid].replace("{ROOT}", str(root))
            cell.source = source.replace("{REPO}", str(repo))
        if gid in attack.get("edit", {}):
            cell.source = attack["edit"][gid]
        cells.append(cell)
        if gid in attack.get("duplicate", []):
            dup = copy.deepcopy(cell)
            dup.id = f"{dup.id}-copy"
            cells.append(dup)
    nb.cells = cells
    nbformat.write(nb, target)
