"""Unit tests of logreg_grader.check, the API every exercise test cell calls (run locally, as in
a student's own kernel: the same recorder and the same verdicts as under the grader)."""

import sys
import warnings

import numpy as np
import pytest
import torch
from torch import sigmoid as _aliased_sigmoid

from logreg_grader.check import assert_gradient, assert_scalar, assert_tensor, call_student

NO_SIGMOID = (
    "torch.sigmoid",
    "torch.Tensor.sigmoid",
    "torch.nn.functional.sigmoid",
    "torch.special.expit",
    "logreg_lessons.sigmoid",
)
Z = torch.linspace(-5, 5, 11, dtype=torch.float64)


def good_sigmoid(z):
    """Stable sigmoid; this docstring mentions torch.sigmoid, which must not count as a call."""
    e = torch.exp(-torch.abs(z))
    return torch.where(z >= 0, 1 / (1 + e), e / (1 + e))


def uses_direct(z):
    return torch.sigmoid(z)


def uses_alias(z):
    return _aliased_sigmoid(z)


def uses_method(z):
    return z.sigmoid()


def uses_local_import(z):
    import torch.nn.functional as F

    return F.sigmoid(z)


def uses_getattr(z):
    name = "".join(["sig", "moid"])  # invisible to the bytecode scan: caught at run time
    return getattr(torch, name)(z)


def uses_getattr_and_swallows(z):
    try:
        return getattr(z, "".join(["sig", "moid"]))()
    except Exception:
        return good_sigmoid(z)


def _helper(z):
    return torch.special.expit(z)


def uses_helper(z):
    return _helper(z)


def uses_nested(z):
    def inner(t):
        return torch.sigmoid(t)

    return inner(z)


def uses_own_sigmoid(z):
    """A loss that calls the student's own (allowed) sigmoid function."""
    return good_sigmoid(z).mean()


class Scaler:
    def fit(self, X):
        self.m = self._centre(X)
        return self

    def _centre(self, X):
        return torch.sigmoid(X).mean(0)


def backward_grad(x):
    x = x.clone().requires_grad_()
    (x**2).sum().backward()
    return x.grad


def autograd_grad(x):
    x = x.detach().clone()
    x.requires_grad = True
    return torch.autograd.grad((x**2).sum(), x)[0]


def leaves_graph(x):
    w = torch.ones_like(x, requires_grad=True)
    return w * x


def _message(fn, *args, **kwargs):
    with pytest.raises(AssertionError) as info:
        call_student(fn, *args, **kwargs)
    return str(info.value)


def test_correct_function_runs_and_returns_its_result():
    out = call_student(good_sigmoid, Z, banned=NO_SIGMOID)
    torch.testing.assert_close(out, torch.sigmoid(Z))
    assert call_student(uses_own_sigmoid, Z, banned=NO_SIGMOID) == pytest.approx(0.5)


@pytest.mark.parametrize(
    "fn", [uses_direct, uses_alias, uses_method, uses_local_import, uses_helper, uses_nested]
)
def test_every_route_to_the_banned_kernel_is_the_same_observation(fn):
    """Whatever name the code used, what ran was aten::sigmoid: one verdict, one message."""
    msg = _message(fn, Z, banned=NO_SIGMOID)
    assert msg == (
        f"{fn.__name__} called torch.sigmoid (it ran the operator aten::sigmoid), which this "
        "exercise asks you to implement yourself: no points for this test"
    )


@pytest.mark.parametrize("fn", [uses_getattr, uses_getattr_and_swallows])
def test_banned_call_caught_at_run_time_even_if_swallowed(fn):
    msg = _message(fn, Z, banned=NO_SIGMOID)
    assert msg.startswith(f"{fn.__name__} called torch.")
    assert "implement yourself: no points for this test" in msg


def test_library_function_banned_by_its_public_name():
    import logreg_lessons

    def uses_library(z):
        return logreg_lessons.sigmoid(z)

    assert "logreg_lessons.sigmoid" in _message(uses_library, Z, banned=NO_SIGMOID)


def test_class_methods_are_scanned():
    assert Scaler() is not None  # constructing it runs nothing banned
    scaler = Scaler()
    assert "torch.sigmoid" in _message(scaler.fit, Z[:, None], banned=NO_SIGMOID)


def test_everything_is_restored_afterwards():
    before = (torch.sigmoid, torch.Tensor.sigmoid, torch.special.expit, _aliased_sigmoid)
    for fn in (uses_getattr, uses_getattr_and_swallows, uses_direct):
        with pytest.raises(AssertionError):
            call_student(fn, Z, banned=NO_SIGMOID)
    with pytest.raises(ZeroDivisionError):
        call_student(lambda z: 1 / 0, Z, banned=NO_SIGMOID)
    after = (torch.sigmoid, torch.Tensor.sigmoid, torch.special.expit, _aliased_sigmoid)
    assert before == after
    assert "sigmoid" not in vars(torch.Tensor)
    torch.testing.assert_close(Z.sigmoid(), torch.sigmoid(Z))


@pytest.mark.parametrize("fn", [backward_grad, autograd_grad, leaves_graph])
def test_autograd_is_refused(fn):
    msg = _message(fn, Z, banned=("AUTOGRAD",))
    assert msg.startswith(f"{fn.__name__} ")
    assert "autograd" in msg and "derived by hand" in msg


def test_student_exceptions_propagate_unchanged():
    def strict(z):
        raise ValueError("z must have shape (n,)")

    with pytest.raises(ValueError, match="z must have shape"):
        call_student(strict, Z, banned=NO_SIGMOID)


def test_warnings_silenced_and_output_captured(capfd):
    def noisy(z):
        warnings.warn("harmless", RuntimeWarning, stacklevel=1)
        np.exp(np.float32(1000.0))  # numpy overflow warning
        print("to stdout")
        print("to stderr", file=sys.stderr)
        return good_sigmoid(z)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call_student(noisy, Z, banned=NO_SIGMOID)
    assert caught == []
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_in_place_change_of_an_argument_is_reported():
    def subtract_mean(X):
        X -= X.mean(0)
        return X

    X = torch.randn(5, 2, dtype=torch.float64)
    msg = _message(subtract_mean, X.clone())
    assert "subtract_mean modified its argument 'X' in place" in msg
    call_student(subtract_mean, X.clone(), allow_mutation=True)


def test_unknown_banned_name_is_an_authoring_error():
    with pytest.raises(ValueError, match="torch.no_such_function"):
        call_student(good_sigmoid, Z, banned=("torch.no_such_function",))


# --- assert_tensor, assert_scalar, assert_gradient -------------------------------------------


def _tensor_message(actual, expected, **kwargs):
    with pytest.raises(AssertionError) as info:
        assert_tensor(actual, expected, name="sigmoid(z)", **kwargs)
    return str(info.value)


def test_assert_tensor_accepts_close_values_and_matching_infinities():
    assert_tensor(Z + 1e-12, Z, name="z")
    inf = torch.tensor([float("inf"), -1.0, float("-inf")])
    assert_tensor(inf.clone(), inf, name="z")
    assert_tensor(torch.tensor(2.0, dtype=torch.float64), 2.0, name="loss", shape=())


def test_assert_tensor_messages():
    msg = _tensor_message([0.5], torch.tensor([0.5]))
    assert msg == "sigmoid(z) must be a torch.Tensor, got list"
    msg = _tensor_message(torch.zeros(3, 1), torch.zeros(3))
    assert "sigmoid(z) has shape (3, 1), expected (3,)" in msg
    msg = _tensor_message(torch.zeros(3), torch.zeros(3), dtype=torch.float64)
    assert msg == "sigmoid(z) has dtype torch.float32, expected torch.float64"
    msg = _tensor_message(torch.tensor([0.0, float("nan")]), torch.tensor([0.0, 1.0]))
    assert "not finite at 1 of 2 entries" in msg and "index (1,)" in msg and "got nan" in msg
    msg = _tensor_message(torch.tensor([0.1, 0.2, 0.9]), torch.tensor([0.1, 0.2, 0.3]))
    assert "1 of 3 entries differ" in msg
    assert "max abs error 0.6" in msg
    assert "worst at index (2,): expected 0.3" in msg and "got 0.9" in msg
    msg = _tensor_message(torch.tensor(1.0), torch.tensor(float("inf")))
    assert "expected inf, got 1.0" in msg


def test_assert_tensor_keeps_float64_precision_of_python_numbers():
    x = torch.tensor([1.632993161855452], dtype=torch.float64)
    assert_tensor(x, [1.632993161855452], name="std_", rtol=1e-14)


def test_assert_scalar():
    assert_scalar(0.75, 0.75, name="accuracy")
    assert_scalar(torch.tensor(0.75), 0.75, name="accuracy")
    with pytest.raises(AssertionError, match=r"accuracy: expected 0.6, got 0.5"):
        assert_scalar(0.5, 0.6, name="accuracy")
    with pytest.raises(AssertionError, match="must be a number, got str"):
        assert_scalar("0.5", 0.5, name="accuracy")


def test_assert_gradient_passes_and_reports_the_diagnosis():
    x = torch.randn(4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def f(t):
        return (t**2).sum()

    assert_gradient(f, lambda t: 2 * t, x, name="x")
    with pytest.raises(AssertionError) as info:
        assert_gradient(f, lambda t: -2 * t, x, name="x")
    assert str(info.value).startswith("dx") and "sign" in str(info.value)


def test_banned_library_code_is_found_by_what_ran_even_if_imported_inside():
    """The student imports scikit-learn inside the function: its code objects ran."""

    def uses_sklearn(X):
        from sklearn.datasets import make_blobs

        return make_blobs(n_samples=4)

    banned = ("sklearn.datasets.make_blobs",)
    msg = _message(uses_sklearn, None, banned=banned)
    assert msg.startswith("uses_sklearn called sklearn.datasets.make_blobs (it ran make_blobs)")
    assert "implement yourself" in msg
