"""Fast unit tests of the grader's parts: codec, recorder and bans, notebook markers, course
layout, status, and the sandbox itself (one fork server for the module; seconds, no notebooks)."""

import json
import math
import os
import socket
import subprocess
import sys
import time

import pytest
import torch
import torch.nn.functional as F

from logreg_grader import bans, codec, sandbox
from logreg_grader import notebook as nbm
from logreg_grader.course import Course
from logreg_grader.recorder import Recorder
from logreg_grader.status import Graded, Status, TestResult

# --- codec ----------------------------------------------------------------------------------


def _roundtrip(value):
    handles = []

    def out(obj):
        handles.append(obj)
        return {"__h__": len(handles)}

    def back(d):
        return handles[d["__h__"] - 1] if "__h__" in d else d

    return codec.decode(json.loads(json.dumps(codec.encode(value, out))), back)


@pytest.mark.parametrize(
    "dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int64, torch.bool]
)
def test_tensors_cross_bit_for_bit(dtype):
    t = (torch.randn(3, 4) * 100).to(dtype)
    got = _roundtrip(t)
    assert got.dtype == dtype and got.shape == t.shape and torch.equal(got, t)


def test_containers_numbers_and_special_values_cross():
    g = torch.Generator().manual_seed(3)
    value = {"a": (1, 2.5, None, "s"), "b": [float("inf"), -0.0], "dt": torch.float32, "g": g}
    got = _roundtrip(value)
    assert got["a"] == (1, 2.5, None, "s") and math.isinf(got["b"][0])
    assert got["dt"] is torch.float32
    assert torch.equal(got["g"].get_state(), g.get_state())


def test_a_tensor_subclass_crosses_as_plain_data():
    class Liar(torch.Tensor):
        def __eq__(self, other):
            return True

    got = _roundtrip(torch.zeros(2).as_subclass(Liar))
    assert type(got) is torch.Tensor


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"__t__": "float64", "shape": [3], "b64": ""}, "size does not match"),
        ({"__t__": "object", "shape": [1], "b64": ""}, "dtype"),
        ({"__t__": "float32", "shape": [-1], "b64": ""}, "shape"),
        ({"__dtype__": "evil"}, "dtype"),
        ({"__dict__": [[{"__iter__": []}, 1]]}, "unhashable"),
        ({"nonsense": 1}, "unexpected"),
    ],
)
def test_malformed_values_are_protocol_errors(bad, match):
    def table(d):
        raise codec.ProtocolError("unexpected value")

    with pytest.raises(codec.ProtocolError, match=match):
        codec.decode(bad, table)


def test_framing_rejects_oversized_and_non_json_messages():
    a, b = socket.socketpair()
    a.sendall(b"\x7f\xff\xff\xff")
    with pytest.raises(codec.ProtocolError, match="bytes"):
        codec.recv(b, time.monotonic() + 1)
    a.sendall(b"\x00\x00\x00\x03abc")
    with pytest.raises(codec.ProtocolError, match="not JSON"):
        codec.recv(b, time.monotonic() + 1)
    with pytest.raises(TimeoutError):
        codec.recv(b, time.monotonic() + 0.05)


# --- recorder and bans ----------------------------------------------------------------------

X = torch.randn(4, 3, dtype=torch.float64)
Y = torch.tensor([0, 1, 2, 1])
# One real call for every entry of bans.OPERATORS: the table is checked against torch itself.
CALLS = {
    "sigmoid": lambda: torch.sigmoid(X),
    "expit": lambda: torch.special.expit(X),
    "Sigmoid": lambda: torch.nn.Sigmoid()(X),
    "logit": lambda: torch.logit(torch.rand(3, dtype=torch.float64)),
    "log_sigmoid": lambda: F.logsigmoid(X),
    "logsigmoid": lambda: F.logsigmoid(X),
    "softplus": lambda: F.softplus(X),
    "logsumexp": lambda: X.logsumexp(1),
    "logaddexp": lambda: torch.logaddexp(X, X),
    "logaddexp2": lambda: torch.logaddexp2(X, X),
    "softmax": lambda: torch.special.softmax(X, 1),
    "Softmax": lambda: torch.nn.Softmax(1)(X),
    "log_softmax": lambda: F.log_softmax(X, 1),
    "LogSoftmax": lambda: torch.nn.LogSoftmax(1)(X),
    "nll_loss": lambda: F.nll_loss(X, Y),
    "NLLLoss": lambda: torch.nn.NLLLoss()(X, Y),
    "cross_entropy": lambda: F.cross_entropy(X, Y),
    "CrossEntropyLoss": lambda: torch.nn.CrossEntropyLoss()(X, Y),
    "binary_cross_entropy": lambda: F.binary_cross_entropy(torch.rand(3), torch.ones(3)),
    "BCELoss": lambda: torch.nn.BCELoss()(torch.rand(3), torch.ones(3)),
    "binary_cross_entropy_with_logits": lambda: torch.binary_cross_entropy_with_logits(
        X, torch.ones_like(X)
    ),
    "BCEWithLogitsLoss": lambda: torch.nn.BCEWithLogitsLoss()(X, torch.ones_like(X)),
    "relu": lambda: X.relu(),
    "ReLU": lambda: torch.nn.ReLU()(X),
    "tanh": lambda: X.clone().tanh_(),
    "Tanh": lambda: torch.nn.Tanh()(X),
}


def test_every_operator_table_entry_has_a_real_call():
    assert set(CALLS) == set(bans.OPERATORS)


@pytest.mark.parametrize("name", sorted(bans.OPERATORS))
def test_operator_table_matches_what_torch_runs(name):
    with Recorder() as rec:
        CALLS[name]()
    assert rec.obs.ops & bans.OPERATORS[name], (name, rec.obs.ops)


@pytest.mark.parametrize(
    "route",
    [
        lambda z: torch.sigmoid(z),
        lambda z: z.clone().sigmoid_(),
        lambda z: torch.ops.aten.sigmoid(z),
        lambda z: torch._C._VariableFunctions.sigmoid(z),
        lambda z: getattr(torch, "sig" + "moid")(z),
        lambda z: list(map(torch.sigmoid, [z]))[0],
    ],
)
def test_every_route_to_a_kernel_is_observed(route):
    with Recorder() as rec:
        route(X)
    with pytest.raises(bans.BannedOperation, match="aten::sigmoid"):
        bans.judge(rec.obs, ("torch.sigmoid",), "f")


def test_an_honest_stable_sigmoid_is_not_a_banned_one():
    with Recorder() as rec:
        e = torch.exp(-X.abs())
        torch.where(X >= 0, 1 / (1 + e), e / (1 + e))
    bans.judge(rec.obs, ("torch.sigmoid", "torch.special.expit", "logreg_lessons.sigmoid"), "f")


def test_library_code_is_observed_by_code_object_not_name():
    import logreg_lessons
    from logreg_grader.check import watched_dirs

    home = dict(vars(__import__(logreg_lessons.sigmoid.__module__, fromlist=["x"])))
    home["__name__"] = "__main__"  # as if the student had copied it into their notebook
    copied = type(logreg_lessons.sigmoid)(logreg_lessons.sigmoid.__code__, home)
    with Recorder(watched_dirs()) as rec:
        copied(X)
    with pytest.raises(bans.BannedOperation, match="logreg_lessons.sigmoid"):
        bans.judge(rec.obs, ("logreg_lessons.sigmoid",), "f")


@pytest.mark.parametrize(
    "switch_off",
    [
        lambda: __import__("sys").setprofile(None),
        lambda: torch._C._DisableTorchDispatch().__enter__(),
    ],
)
def test_switching_the_recorder_off_is_observed(switch_off):
    with Recorder() as rec:
        switch_off()
        torch.sigmoid(X)
    assert rec.obs.tampering
    with pytest.raises(bans.BannedOperation) as info:
        bans.judge(rec.obs, (), "f")
    assert info.value.kind == "tampering"
    assert torch._C._len_torch_dispatch_stack() == 0  # and everything is back afterwards


def test_autograd_is_observed_as_a_backward_pass():
    w = torch.randn(3, dtype=torch.float64, requires_grad=True)
    with Recorder() as rec:
        (X @ w).sum().backward()
    with pytest.raises(bans.BannedOperation, match="backward pass"):
        bans.judge(rec.obs, (bans.AUTOGRAD,), "f")


def test_unknown_ban_names_are_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="add its operators"):
        bans.ban("torch.not_a_kernel")
    with pytest.raises(ValueError, match="dotted name"):
        bans.ban("sigmoid")
    with pytest.raises(ValueError, match="does not exist"):
        bans.ban("logreg_lessons.no_such_function")


# --- notebook markers, course layout, status ------------------------------------------------

TEST_CELL = '''"""sigmoid is right."""
assert sigmoid(0) == 0.5
### BEGIN HIDDEN TESTS
assert sigmoid(1000.0) == 1.0  # a hidden line
### END HIDDEN TESTS
'''


def test_markers_are_read_in_one_place():
    assert nbm.visible(TEST_CELL) == '"""sigmoid is right."""\nassert sigmoid(0) == 0.5'
    assert nbm.hidden_lines(TEST_CELL) == ["assert sigmoid(1000.0) == 1.0  # a hidden line"]
    assert nbm.docstring(TEST_CELL) == "sigmoid is right."
    src = "def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION\n"
    # as nbgrader releases it: every line of the stub indented like the BEGIN line
    assert nbm.stub(src) == "def f():\n    # YOUR CODE HERE\n    raise NotImplementedError()\n"
    assert nbm.referenced_names(TEST_CELL) >= {"sigmoid"}


def test_master_knows_tests_hidden_lines_and_default_bans():
    cells = [
        {"cell_type": "code", "source": "def sigmoid(z):\n    ### BEGIN SOLUTION\n    return z\n"
         "    ### END SOLUTION\n", "metadata": {"nbgrader": {"grade_id": "sigmoid",
                                                            "solution": True}}},
        {"cell_type": "code", "source": TEST_CELL.replace("sigmoid(0)", "call_student(sigmoid, "
         "0, banned=('torch.sigmoid',))"), "metadata": {"nbgrader": {
             "grade_id": "t", "grade": True, "points": 2}}},
    ]  # fmt: skip
    m = nbm.Master.from_text("a", json.dumps({"cells": cells}))
    assert set(m.tests) == {"t"} and m.tests["t"].points == 2
    assert m.graded_names == {"sigmoid"}
    assert m.default_bans == {"sigmoid": ("torch.sigmoid",)}
    assert m.strip_hidden("ok\nassert sigmoid(1000.0) == 1.0  # a hidden line") == "ok"


def test_course_builds_every_path(tmp_path):
    c = Course(tmp_path)
    assert c.submission("ann", "02") == tmp_path / "submitted/ann/02/02.ipynb"
    assert c.autograded("ann", "02") == tmp_path / "autograded/ann/02/02.ipynb"
    assert c.findings("ann", "02") == tmp_path / "autograded/ann/02/results.json"
    assert c.autograded_timestamp("ann", "02") == tmp_path / "autograded/ann/02/timestamp.txt"
    assert c.feedback("ann", "02") == tmp_path / "feedback/ann/02/02.html"
    c.make_private()
    assert (tmp_path / "feedback").stat().st_mode & 0o777 == 0o700
    c.submitted("ann", "02").mkdir(parents=True)
    stamp = c.timestamp("ann", "02", 0.0)
    assert stamp.startswith("1970-01-01 00:00:00")
    assert (c.submitted("ann", "02") / "timestamp.txt").read_text() == stamp


def test_status_is_chosen_by_priority():
    g = Graded("a", "s", tests=[TestResult("t1", 1, 0, kind="timeout"),
                                TestResult("t2", 1, 0, kind="banned_operation")])  # fmt: skip
    g.settle()
    assert g.status is Status.BANNED_OPERATION and g.score == 0 and g.max_score == 2
    assert Graded.from_dict(g.to_dict()) == g
    assert Status.SYMLINK.failed and not Status.TIMEOUT.failed


# --- the sandbox ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def session():
    from logreg_grader.remote import ForkServer, Session

    server = ForkServer()
    s = Session(server, sandbox.lease_uid_block() + 7, sandbox.Limits(), call_timeout=5)
    yield s
    s.close()
    server.close()


def _run(session, source):
    reply = session.execute("t", source, 30)
    assert reply.get("ok"), reply
    return reply["stdout"]


def test_sandbox_sees_only_what_it_needs(session):
    import logreg_lessons

    out = _run(session, "import os\nprint(sorted(os.listdir('/')), os.getuid(), os.getcwd())")
    top, uid, cwd = out.rsplit(" ", 2)
    exposure = sandbox.Exposure.for_this_interpreter("logreg_lessons", "logreg_grader")
    exposed = {p.split("/")[1] for p in exposure.paths + exposure.files}
    exposed |= {link.split("/")[1] for link, _ in exposure.symlinks}
    # Only what was exposed (wherever the checkout lives) and the sandbox's own mounts.
    assert set(eval(top)) <= exposed | {"dev", "submission", "tmp"}
    assert int(uid) >= sandbox.UID_BASE and cwd.strip() == sandbox.WORKDIR
    repo = str(Course(__import__("pathlib").Path(logreg_lessons.__file__).parents[1]).root)
    out = _run(session, f"import os\nprint(os.path.exists({repo + '/README.md'!r}), "
                        "os.path.exists('/proc/1'), os.path.exists('/etc/passwd'))")  # fmt: skip
    assert out.split() == ["False", "False", "False"]


def test_a_checkout_below_tmp_is_exposed_inside_the_private_tmp():
    """A checkout in /tmp (its venv and packages exposed) is bound read-only into the
    sandbox's own /tmp, which stays private and writable; nothing else of the host's /tmp is
    there, and no descriptor the set-up held on host paths is left open."""
    import shutil
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    host = Path(tempfile.mkdtemp(dir="/tmp", prefix="logreg-checkout-"))
    try:
        (host / "pkg").mkdir()
        (host / "pkg" / "mod.txt").write_text("seen")
        (host / "secret.txt").write_text("host")
        code = f"""
import os
from logreg_grader import sandbox
base = sandbox.Exposure.for_this_interpreter("logreg_grader")
exposure = sandbox.Exposure(base.paths + ({str(host / "pkg")!r},), base.files, base.symlinks)
sandbox.enter({sandbox.lease_uid_block() + 9}, sandbox.Limits(), exposure)
print(open({str(host / "pkg" / "mod.txt")!r}).read())
print(os.path.exists({str(host / "secret.txt")!r}))
try:
    open({str(host / "pkg" / "new")!r}, "w")
    print("wrote")
except OSError:
    print("read-only")
open("/tmp/mine", "w").write("x")
print("tmp-writable")
def is_open(fd):
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False
print([fd for fd in range(3, 256) if is_open(fd)])
"""
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.split("\n")[:5] == ["seen", "False", "read-only", "tmp-writable", "[]"]
        assert not (host / "pkg" / "new").exists()
    finally:
        shutil.rmtree(host)


def test_sandbox_has_no_network_and_cannot_write_outside_its_tmpfs(session):
    reply = session.execute(
        "t", "import socket\nsocket.create_connection(('127.0.0.1', 22), 1)", 30
    )
    assert not reply["ok"] and reply["ename"] in ("OSError", "ConnectionRefusedError")
    reply = session.execute("t", "open('/usr/evil', 'w')", 30)
    assert not reply["ok"] and reply["ename"] in ("OSError", "PermissionError")


def test_a_hang_costs_one_call_and_the_process_comes_back(session):
    from logreg_grader.remote import SandboxLost

    _run(session, "def hang():\n    while True:\n        pass\n\ndef ok():\n    return 42\n")
    names = session.lookup({"hang", "ok"})
    with pytest.raises(SandboxLost) as info:
        names["hang"]()
    assert info.value.kind == "timeout"
    assert session.lookup({"ok"})["ok"]() == 42  # replayed after the restart


# --- what the instructor's browser renders ----------------------------------------------------


def test_student_markdown_is_inert_but_says_what_it_said():
    from logreg_grader.neutralise import markdown_cell

    png = "iVBORw0KGgo="
    cell = {
        "cell_type": "markdown",
        "metadata": {},
        "source": "If $z < -104$ then `p < 1e-45` holds, and a < b.\n<script>alert(1)</script>\n"
        "<img src=x onerror=alert(1)> [x](javascript:alert(1)) [y]( JaVa&#115;cript:x)\n"
        "![s](attachment:s.png) ![v](attachment:v.svg)\n$$\\begin{aligned} a &= b \\end{aligned}$$",
        "attachments": {"s.png": {"image/png": png}, "v.svg": {"image/svg+xml": "<svg/>"}},
    }
    out = markdown_cell(cell)
    src = out["source"]
    assert "$z < -104$" in src and "`p < 1e-45`" in src and "a &lt; b" in src
    assert "<script" not in src and "<img" not in src and "javascript" not in src.lower()
    assert "](#)" in src and "![s](attachment:s.png)" in src and "![v](#)" in src
    assert "a &= b" in src
    assert out["attachments"] == {"s.png": {"image/png": png}}
    raw = markdown_cell({"cell_type": "raw", "metadata": {"raw_mimetype": "text/html"},
                         "source": "<script>x</script>"})  # fmt: skip
    assert raw["source"] == "&lt;script>x&lt;/script>" and raw["metadata"] == {}


def test_a_child_imports_nothing_the_fork_server_could_have_imported(session):
    """What the notebooks do on their first lines (draw blobs: torch.broadcast_shapes, which
    imports sympy; plot and save a figure: the Agg backend, contourpy, PIL) finds every module
    already imported by the fork server: each child paid 0.8 s for sympy before."""
    out = _run(
        session,
        "import io, sys\n"
        "before = set(sys.modules)\n"
        "import matplotlib.pyplot as plt\n"
        "import logreg_lessons as ll\n"
        "from logreg_lessons.plots import plot_data\n"
        "X, y = ll.make_blobs(20, means=[[0.0, 0.0], [2.0, 2.0]], cov=[[1.0, 0.0], [0.0, 1.0]])\n"
        "fig, ax = plt.subplots()\n"
        "plot_data(X, y, ax=ax)\n"
        "ax.contourf([[0.0, 1.0], [1.0, 2.0]])\n"
        "fig.savefig(io.BytesIO(), format='png')\n"
        "print(sorted(set(sys.modules) - before))",
    )
    assert out.strip() == "[]"


def test_the_fork_server_preloads_without_running_an_operator_or_a_thread():
    """Its imports (forkserver._preload, LAZY included) start no thread beyond what importing
    torch starts, and run no operator (forking after an operator is unsafe)."""
    code = (
        "import os, sys\n"
        "import torch\n"
        "bare = len(os.listdir('/proc/self/task'))\n"
        "from torch.utils._python_dispatch import TorchDispatchMode\n"
        "ran = []\n"
        "class Spy(TorchDispatchMode):\n"
        "    def __torch_dispatch__(self, func, types, args=(), kwargs=None):\n"
        "        ran.append(str(func))\n"
        "        return func(*args, **(kwargs or {}))\n"
        "from logreg_grader import forkserver\n"
        "with Spy():\n"
        "    forkserver._preload()\n"
        "missing = [m for m in forkserver.LAZY if m not in sys.modules]\n"
        "print(len(os.listdir('/proc/self/task')) - bare, ran, missing)\n"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["0", "[]", "[]"], out.stdout
