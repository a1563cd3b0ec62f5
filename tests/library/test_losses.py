"""Binary and multiclass cross-entropy against PyTorch, at extreme logits and in every dtype.

Autograd is used here only as an oracle, to show that the clamped probability loss stops
learning from a confidently wrong prediction while the logit loss does not.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from logreg_lessons.losses import bce_from_probs, bce_with_logits, cross_entropy
from logreg_lessons.stable import naive_sigmoid, sigmoid

DTYPES = [torch.float16, torch.float32, torch.float64]


# Any warning (overflow, invalid value, deprecation) fails the test: stable means silent.
pytestmark = pytest.mark.filterwarnings("error")


def tol(dtype, ulps=4):
    return {"rtol": ulps * torch.finfo(dtype).eps, "atol": ulps * torch.finfo(dtype).eps}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(
    ("z", "y", "expected"),
    [(1e4, 0, 1e4), (1e4, 1, 0.0), (-1e4, 1, 1e4), (-1e4, 0, 0.0), (0.0, 1, math.log(2))],
)
def test_bce_with_logits_exact_at_extremes(dtype, z, y, expected):
    out = bce_with_logits(torch.tensor([z], dtype=dtype), torch.tensor([y]))
    assert out.dtype == dtype and out.shape == ()
    assert out.item() == torch.tensor(expected, dtype=dtype).item()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_bce_with_logits_matches_torch_on_extremes(dtype):
    z = torch.tensor([-1e4, -100.0, -20.0, -1.0, 0.0, 1e-4, 1.0, 20.0, 100.0, 1e4] * 2)
    y = torch.tensor([0.0] * 10 + [1.0] * 10)
    z = z.to(dtype)
    out = bce_with_logits(z, y.to(dtype))
    assert torch.isfinite(out)
    expected = F.binary_cross_entropy_with_logits(z.double(), y.double()).to(dtype)
    torch.testing.assert_close(out, expected, **tol(dtype))
    torch.testing.assert_close(
        out, F.binary_cross_entropy_with_logits(z, y.to(dtype)), **tol(dtype, ulps=8)
    )


@given(
    st.lists(st.floats(-60, 60), min_size=1, max_size=30),
    st.randoms(use_true_random=False),
)
def test_bce_with_logits_matches_torch_float64(z, rng):
    z = torch.tensor(z, dtype=torch.float64)
    y = torch.tensor([rng.randint(0, 1) for _ in range(len(z))], dtype=torch.float64)
    expected = F.binary_cross_entropy_with_logits(z, y)
    torch.testing.assert_close(bce_with_logits(z, y), expected, rtol=1e-12, atol=1e-12)


def test_bce_with_logits_accepts_int_bool_and_numpy_labels():
    z = torch.tensor([-2.0, 0.5, 3.0])
    expected = bce_with_logits(z, torch.tensor([0.0, 1.0, 1.0]))
    for y in (
        torch.tensor([0, 1, 1]),
        torch.tensor([False, True, True]),
        np.array([0, 1, 1]),
        [0.0, 1.0, 1.0],
    ):
        assert bce_with_logits(z, y) == expected


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_bce_from_probs_is_finite_when_probabilities_round_to_0_or_1(dtype):
    # 1 - 1e-12 rounds to 1 in float32 and float16: the clamp must still keep log(1 - p) finite
    p = torch.tensor([1.0, 0.0], dtype=dtype)
    out = bce_from_probs(p, torch.tensor([0.0, 1.0]))
    assert out.dtype == dtype
    # the upper clamp 1 - 1e-12 is itself rounded in float64, hence the 1e-5 tolerance
    expected = torch.tensor(-math.log(1e-12), dtype=dtype)
    torch.testing.assert_close(out, expected, rtol=max(1e-5, tol(dtype)["rtol"]), atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_bce_from_probs_matches_torch_inside_the_clamp(dtype):
    g = torch.Generator().manual_seed(0)
    p = (0.01 + 0.98 * torch.rand(50, generator=g, dtype=torch.float64)).to(dtype)
    y = (torch.rand(50, generator=g) < 0.5).to(dtype)
    expected = F.binary_cross_entropy(p, y)
    torch.testing.assert_close(bce_from_probs(p, y), expected, **tol(dtype, ulps=16))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_clamped_probability_loss_stops_learning_but_logit_loss_does_not(dtype):
    """A confidently wrong prediction (label 1, logit -40): the gradient through the clamp is
    exactly 0; the gradient of bce_with_logits is sigmoid(z) - y = -1."""
    y = torch.tensor([1.0], dtype=dtype)
    z = torch.tensor([-40.0], dtype=dtype, requires_grad=True)
    (grad_probs,) = torch.autograd.grad(bce_from_probs(sigmoid(z), y), z)
    (grad_logits,) = torch.autograd.grad(bce_with_logits(z, y), z)
    assert grad_probs.item() == 0.0
    torch.testing.assert_close(grad_logits, torch.tensor([-1.0], dtype=dtype))
    # and the loss itself saturates at -log(eps) instead of growing with the mistake
    assert bce_from_probs(sigmoid(z.detach()), y).item() == pytest.approx(-math.log(1e-12))
    assert bce_with_logits(z.detach(), y).item() == pytest.approx(40.0)


def test_naive_probability_pipeline_gives_nan():
    """naive_sigmoid(-1e4) = 0 exactly and the unclamped log loss of label 0 is 0 * log(0)."""
    p = naive_sigmoid(torch.tensor([-1e4, 1e4]))
    y = torch.tensor([0.0, 1.0])
    naive = -(y * torch.log(p) + (1 - y) * torch.log1p(-p))
    assert torch.isnan(naive).all()
    assert bce_with_logits(torch.tensor([-1e4, 1e4]), y).item() == 0.0


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_matches_torch_on_extremes(dtype, weighted):
    Z = torch.tensor(
        [[1e4, -1e4, 0.0], [1e4, -1e4, 0.0], [1e4, -1e4, 0.0], [0.0, 0.0, 0.0], [-1e4, 1e4, 1e4]],
        dtype=dtype,
    )
    y = torch.tensor([0, 1, 2, 1, 2])
    weight = torch.tensor([0.5, 2.0, 1.0], dtype=dtype) if weighted else None
    out = cross_entropy(Z, y, class_weights=weight)
    assert out.dtype == dtype and out.shape == () and torch.isfinite(out)
    w64 = None if weight is None else weight.double()
    expected = F.cross_entropy(Z.double(), y, weight=w64).to(dtype)
    torch.testing.assert_close(out, expected, **tol(dtype))
    torch.testing.assert_close(out, F.cross_entropy(Z, y, weight=weight), **tol(dtype, ulps=8))


@given(
    st.integers(1, 20),
    st.integers(2, 6),
    st.floats(0.1, 1e3),
    st.booleans(),
    st.integers(0, 2**16),
)
def test_cross_entropy_matches_torch_float64(n, C, scale, weighted, seed):
    g = torch.Generator().manual_seed(seed)
    Z = scale * torch.randn(n, C, generator=g, dtype=torch.float64)
    y = torch.randint(0, C, (n,), generator=g)
    weight = torch.rand(C, generator=g, dtype=torch.float64) + 0.1 if weighted else None
    expected = F.cross_entropy(Z, y, weight=weight)
    torch.testing.assert_close(cross_entropy(Z, y, weight), expected, rtol=1e-12, atol=1e-12)


def test_weighted_cross_entropy_is_the_weighted_mean_of_per_sample_losses():
    Z = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
    y = torch.tensor([0, 1, 1])
    a = torch.tensor([3.0, 1.0], dtype=torch.float64)
    nll = F.cross_entropy(Z, y, reduction="none")
    expected = (a[y] * nll).sum() / a[y].sum()
    torch.testing.assert_close(cross_entropy(Z, y, class_weights=a), expected)
    ones = torch.ones(2, dtype=torch.float64)
    torch.testing.assert_close(cross_entropy(Z, y, class_weights=ones), cross_entropy(Z, y))


def test_cross_entropy_float16_mean_does_not_overflow():
    # 2000 samples with loss 1e4 each: a float16 running sum would overflow at 65504
    Z = torch.tensor([[1e4, -1e4]], dtype=torch.float16).repeat(2000, 1)
    y = torch.ones(2000, dtype=torch.int64)
    assert cross_entropy(Z, y).item() == 20000.0
    a = torch.tensor([1.0, 2.0], dtype=torch.float16)
    assert cross_entropy(Z, y, class_weights=a).item() == 20000.0
