"""Stable sigmoid, softplus, logsumexp and softmax against PyTorch and high-precision values.

Every test runs with warnings turned into errors: a stable function must be silent. Where
PyTorch itself is imprecise (``F.softplus`` returns ``z`` exactly for ``z > 20``), the
reference is computed with Python's ``decimal`` module at 400 significant digits.
"""

import doctest
import math
from decimal import Decimal, localcontext

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from logreg_lessons import stable
from logreg_lessons.stable import (
    log_sigmoid,
    log_softmax,
    logsumexp,
    naive_sigmoid,
    sigmoid,
    softmax,
    softplus,
)

DTYPES = [torch.float16, torch.float32, torch.float64]


# Any warning (overflow, invalid value, deprecation) fails the test: stable means silent.
pytestmark = pytest.mark.filterwarnings("error")


def extremes(dtype):
    """Finite test points for ``dtype``: 0, tiny, moderate, +-1e4, +-1e30 and +-max where
    representable."""
    info = torch.finfo(dtype)
    values = [0.0, info.tiny, 1e-8, 0.5, 1.0, 2.0, 10.0, 20.0, 30.0, 40.0, 100.0, 1e4, info.max]
    values += [1e30] if info.max > 1e30 else []
    points = torch.tensor(values, dtype=torch.float64).to(dtype)
    return torch.cat([-points, points])


def tolerances(dtype):
    """rtol of a few units in the last place, atol of a few subnormal steps."""
    info = torch.finfo(dtype)
    return {"rtol": 4 * info.eps, "atol": 4 * info.eps * info.tiny}


def _decimal_reference(kind, z):
    """sigmoid, log_sigmoid or softplus of the float ``z`` at 400 significant digits."""
    if abs(z) > 800:  # exp(-800) < 1e-347: below float64's resolution of any of the results
        return {
            "sigmoid": float(z > 0),
            "log_sigmoid": min(z, 0.0),
            "softplus": max(z, 0.0),
        }[kind]
    with localcontext() as ctx:
        ctx.prec = 400  # 1 + exp(-800) needs ~350 digits to keep exp(-800) visible
        d = Decimal(z)
        value = {
            "sigmoid": 1 / (1 + (-d).exp()),
            "log_sigmoid": -(1 + (-d).exp()).ln(),
            "softplus": (1 + d.exp()).ln(),
        }[kind]
        return float(value)


def reference(kind, z):
    values = [_decimal_reference(kind, v) for v in z.double().tolist()]
    return torch.tensor(values, dtype=torch.float64).to(z.dtype)


TORCH_OWN = {"sigmoid": torch.sigmoid, "log_sigmoid": F.logsigmoid, "softplus": F.softplus}
OURS = {"sigmoid": sigmoid, "log_sigmoid": log_sigmoid, "softplus": softplus}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("kind", sorted(OURS))
def test_elementwise_matches_high_precision_reference(kind, dtype):
    z = extremes(dtype)
    out = OURS[kind](z)
    assert out.dtype == dtype and out.shape == z.shape
    assert torch.isfinite(out).all(), f"{kind} gave a non-finite value for finite {dtype} input"
    torch.testing.assert_close(out, reference(kind, z), **tolerances(dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("kind", sorted(OURS))
def test_elementwise_matches_torch_own(kind, dtype):
    z = extremes(dtype)
    z = z[z.abs() <= 20] if kind == "softplus" else z  # F.softplus returns z above 20
    tol = tolerances(dtype)
    torch.testing.assert_close(OURS[kind](z), TORCH_OWN[kind](z), rtol=2 * tol["rtol"], atol=1e-7)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_exact_values_at_plus_minus_1e4(dtype):
    z = torch.tensor([-1e4, 1e4], dtype=dtype)
    assert sigmoid(z).tolist() == [0.0, 1.0]
    assert log_sigmoid(z).tolist() == [-1e4, 0.0]
    assert softplus(z).tolist() == [0.0, 1e4]


@given(st.floats(-1e4, 1e4, allow_nan=False))
def test_identities_hold_in_float64(z):
    z = torch.tensor([z], dtype=torch.float64)
    torch.testing.assert_close(sigmoid(z) + sigmoid(-z), torch.ones(1, dtype=torch.float64))
    torch.testing.assert_close(log_sigmoid(z), -softplus(-z), rtol=1e-15, atol=0)
    torch.testing.assert_close(softplus(z) - softplus(-z), z, rtol=1e-12, atol=1e-12)


def test_naive_sigmoid_fails_where_the_stable_one_does_not():
    """Why naive_sigmoid exists: exp(1e4) = inf, the probability is exactly 0 and the naive log
    loss becomes inf (label 1) or nan (label 0, through 0 * log(0))."""
    z = torch.tensor([-1e4, -1e4])
    y = torch.tensor([1.0, 0.0])
    p = naive_sigmoid(z)
    assert p.tolist() == [0.0, 0.0]
    naive_loss = -(y * torch.log(p) + (1 - y) * torch.log(1 - p))
    assert naive_loss[0] == math.inf and torch.isnan(naive_loss[1])
    stable_loss = -(y * log_sigmoid(z) + (1 - y) * log_sigmoid(-z))
    assert stable_loss.tolist() == [1e4, 0.0]


def test_naive_sigmoid_is_fine_for_moderate_inputs():
    z = torch.linspace(-30, 30, 61, dtype=torch.float64)
    torch.testing.assert_close(naive_sigmoid(z), torch.sigmoid(z))


def test_docstring_examples_run():
    result = doctest.testmod(stable, extraglobs={"torch": torch})
    assert result.attempted >= 5 and result.failed == 0


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_logsumexp_extremes(dtype):
    z = torch.tensor([[1e4, 1e4], [-1e4, -1e4], [0.0, -1e4], [1e4, -1e4]], dtype=dtype)
    expected = torch.tensor(
        [1e4 + math.log(2), -1e4 + math.log(2), 0.0, 1e4], dtype=torch.float64
    ).to(dtype)
    out = logsumexp(z, dim=1)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, expected, **tolerances(dtype))
    torch.testing.assert_close(out, torch.logsumexp(z, dim=1), **tolerances(dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_logsumexp_of_minus_inf_row_is_minus_inf(dtype):
    z = torch.full((2, 3), -math.inf, dtype=dtype)
    z[1, 0] = 0.0
    out = logsumexp(z)
    assert out[0] == -math.inf and out[1] == 0.0
    assert log_softmax(z)[1].tolist() == [0.0, -math.inf, -math.inf]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_softmax_family_matches_torch_on_extremes(dtype, dim):
    z = torch.tensor([[1e4, -1e4, 0.0], [1e4, 1e4, 1e4], [0.0, 1e-4, -1e-4]], dtype=dtype)
    tol = tolerances(dtype)
    # the float64 result of torch, rounded to dtype, is the high-precision reference
    z64 = z.double()
    for ours, theirs in [(softmax, torch.softmax), (log_softmax, torch.log_softmax)]:
        out = ours(z, dim=dim)
        assert out.dtype == dtype and torch.isfinite(out).all()
        torch.testing.assert_close(out, theirs(z, dim=dim), **tol)
        torch.testing.assert_close(out, theirs(z64, dim=dim).to(dtype), **tol)
    out = logsumexp(z, dim=dim, keepdim=True)
    torch.testing.assert_close(out, torch.logsumexp(z64, dim=dim, keepdim=True).to(dtype), **tol)


finite_rows = st.lists(st.floats(-1e4, 1e4, allow_nan=False), min_size=1, max_size=8)


@given(finite_rows, st.floats(-1e3, 1e3))
def test_softmax_properties_float64(row, shift):
    z = torch.tensor(row, dtype=torch.float64)
    p = softmax(z)
    assert torch.all(p >= 0) and abs(float(p.sum()) - 1) < 1e-12
    torch.testing.assert_close(p, torch.softmax(z, dim=-1), rtol=1e-12, atol=1e-300)
    torch.testing.assert_close(softmax(z + shift), p, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(logsumexp(z), torch.logsumexp(z, dim=-1), rtol=1e-14, atol=0)
    torch.testing.assert_close(log_softmax(z), torch.log_softmax(z, dim=-1), rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_random_batches_against_float64(dtype):
    g = torch.Generator().manual_seed(0)
    z = (torch.randn(64, 10, generator=g, dtype=torch.float64) * 30).to(dtype)
    tol = tolerances(dtype)
    tol = {"rtol": 4 * tol["rtol"], "atol": 4 * torch.finfo(dtype).eps}
    z64 = z.double()
    torch.testing.assert_close(sigmoid(z), torch.sigmoid(z64).to(dtype), **tol)
    torch.testing.assert_close(log_softmax(z), torch.log_softmax(z64, -1).to(dtype), **tol)
    torch.testing.assert_close(logsumexp(z), torch.logsumexp(z64, -1).to(dtype), **tol)
