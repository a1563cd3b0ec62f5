"""Synthetic data, the stratified split and the Standardizer."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from logreg_lessons.data import (
    Standardizer,
    make_blobs,
    make_moons,
    make_multiclass_blobs,
    train_val_test_split,
)
from logreg_lessons.linear import logits

GENERATORS = [
    lambda seed: make_blobs(n_per_class=50, seed=seed),
    lambda seed: make_multiclass_blobs(n_per_class=30, seed=seed),
    lambda seed: make_moons(n_samples=60, seed=seed),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_make_blobs_shapes_labels_and_moments(dtype):
    X, y = make_blobs(n_per_class=2000, dtype=dtype)
    assert X.shape == (4000, 2) and y.shape == (4000,)
    assert X.dtype == dtype and y.dtype == dtype
    assert y[:2000].eq(0).all() and y[2000:].eq(1).all()
    cov = torch.tensor([[1.0, 0.25], [0.25, 1.0]], dtype=torch.float64)
    for k, mean in enumerate([(5.0, 10.0), (0.0, 5.0)]):
        Xk = X[y == k].double()
        torch.testing.assert_close(
            Xk.mean(0), torch.tensor(mean, dtype=torch.float64), atol=0.1, rtol=0
        )
        torch.testing.assert_close(torch.cov(Xk.T), cov, atol=0.1, rtol=0)


def test_make_blobs_custom_means_and_per_class_covariances():
    covs = [[[1.0, 0.0], [0.0, 1.0]], [[4.0, 0.0], [0.0, 0.25]]]
    X, y = make_blobs(n_per_class=3000, means=((0.0, 0.0), (3.0, 3.0)), cov=covs)
    var1 = X[y == 1].double().var(0)
    torch.testing.assert_close(
        var1, torch.tensor([4.0, 0.25], dtype=torch.float64), rtol=0.1, atol=0
    )


@pytest.mark.parametrize("make", GENERATORS)
def test_same_seed_same_data_other_seed_other_data(make):
    X1, y1 = make(0)
    X2, y2 = make(0)
    X3, _ = make(1)
    assert torch.equal(X1, X2) and torch.equal(y1, y2)
    assert not torch.equal(X1, X3)


@pytest.mark.parametrize("make", GENERATORS)
def test_global_rng_untouched(make):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    make(7)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(torch.rand(3), expected)


def test_make_multiclass_blobs_centres_on_a_circle():
    X, y = make_multiclass_blobs(n_per_class=2000, num_classes=4, spread=0.5, radius=3.0)
    assert X.shape == (8000, 2) and y.dtype == torch.int64
    assert torch.bincount(y).tolist() == [2000] * 4
    for k in range(4):
        angle = 2 * math.pi * k / 4
        centre = torch.tensor([3 * math.cos(angle), 3 * math.sin(angle)])
        torch.testing.assert_close(X[y == k].mean(0), centre, atol=0.05, rtol=0)
        torch.testing.assert_close(X[y == k].std(0), torch.tensor([0.5, 0.5]), atol=0.05, rtol=0)


@pytest.mark.parametrize("n", [2, 7, 400])
def test_make_moons_shapes_and_noise_free_geometry(n):
    X, y = make_moons(n_samples=n, noise=0.0, dtype=torch.float64)
    assert X.shape == (n, 2) and y.shape == (n,) and y.dtype == torch.int64
    assert y.sum().item() == n // 2 and set(y.tolist()) == {0, 1}
    outer, inner = X[y == 0], X[y == 1] - torch.tensor([1.0, 0.5], dtype=torch.float64)
    torch.testing.assert_close(outer.norm(dim=1), torch.ones(len(outer), dtype=torch.float64))
    torch.testing.assert_close(inner.norm(dim=1), torch.ones(len(inner), dtype=torch.float64))
    assert (outer[:, 1] >= -1e-12).all() and (inner[:, 1] <= 1e-12).all()


@st.composite
def split_problems(draw):
    n = draw(st.integers(1, 120))
    num_classes = draw(st.integers(1, 4))
    cuts = sorted(draw(st.lists(st.integers(0, 100), min_size=2, max_size=2)))
    fractions = (cuts[0] / 100, (cuts[1] - cuts[0]) / 100, (100 - cuts[1]) / 100)
    seed = draw(st.integers(0, 1000))
    return n, num_classes, fractions, seed


@given(split_problems(), st.booleans())
def test_split_partitions_the_indices(problem, stratify):
    n, num_classes, fractions, seed = problem
    X = torch.arange(n, dtype=torch.float64)[:, None]
    y = torch.arange(n) % num_classes
    parts = train_val_test_split(X, y, fractions=fractions, seed=seed, stratify=stratify)
    Xs, ys = parts[:3], parts[3:]
    assert sum(len(p) for p in Xs) == n
    seen = torch.cat([p[:, 0] for p in Xs]).long()
    assert sorted(seen.tolist()) == list(range(n))  # nothing duplicated, nothing lost
    for Xp, yp in zip(Xs, ys, strict=True):
        assert torch.equal(yp, y[Xp[:, 0].long()])  # rows stay paired with their labels
    if stratify:
        for c in range(num_classes):
            n_c = int((y == c).sum())
            for f, yp in zip(fractions, ys, strict=True):
                assert abs(int((yp == c).sum()) - f * n_c) < 1, "stratified counts off by >= 1"
    else:
        for f, Xp in zip(fractions, Xs, strict=True):
            assert abs(len(Xp) - f * n) < 1


def test_stratified_split_keeps_class_proportions_and_is_reproducible():
    X, y = make_blobs(n_per_class=100)
    X, y = X[:130], y[:130]  # 100 of class 0, 30 of class 1
    parts = train_val_test_split(X, y, seed=3)
    counts = [(int((yp == 0).sum()), int((yp == 1).sum())) for yp in parts[3:]]
    # class 1: 0.15 * 30 = 4.5 in both val and test; the tie goes to the earlier part
    assert counts == [(70, 21), (15, 5), (15, 4)]
    again = train_val_test_split(X, y, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(parts, again, strict=True))
    other = train_val_test_split(X, y, seed=4)
    assert not torch.equal(parts[0], other[0])


def test_standardizer_fit_transform_and_constant_feature():
    X = torch.tensor([[1.0, 5.0, 2.0], [3.0, 5.0, 4.0], [5.0, 5.0, 9.0]], dtype=torch.float64)
    s = Standardizer()
    Z = s.fit_transform(X)
    assert s.std_[1] == 1.0  # constant feature: std 0 guarded to 1
    assert torch.equal(Z[:, 1], torch.zeros(3, dtype=torch.float64))
    torch.testing.assert_close(Z[:, [0, 2]].mean(0), torch.zeros(2, dtype=torch.float64))
    torch.testing.assert_close(
        Z[:, [0, 2]].std(0, correction=0), torch.ones(2, dtype=torch.float64)
    )
    torch.testing.assert_close(s.inverse_transform(Z), X)


@given(st.integers(2, 30), st.integers(1, 5), st.integers(1, 4), st.integers(0, 2**16))
def test_unstandardize_round_trip(n, d, C, seed):
    g = torch.Generator().manual_seed(seed)
    X_raw = 10 * torch.randn(n, d, generator=g, dtype=torch.float64) + 3
    s = Standardizer().fit(X_raw)
    X_std = s.transform(X_raw)
    w, b = torch.randn(d, generator=g, dtype=torch.float64), torch.randn((), dtype=torch.float64)
    w_raw, b_raw = s.unstandardize(w, b)
    assert w_raw.shape == (d,) and b_raw.shape == ()
    torch.testing.assert_close(logits(X_raw, w_raw, b_raw), logits(X_std, w, b))
    W = torch.randn(d, C, generator=g, dtype=torch.float64)
    bC = torch.randn(C, generator=g, dtype=torch.float64)
    W_raw, bC_raw = s.unstandardize(W, bC)
    assert W_raw.shape == (d, C) and bC_raw.shape == (C,)
    torch.testing.assert_close(X_raw @ W_raw + bC_raw, X_std @ W + bC)
