"""The linear forward pass and the classification metrics (against scikit-learn)."""

import numpy as np
import pytest
import sklearn.metrics as skm
import torch
from hypothesis import given
from hypothesis import strategies as st

from logreg_lessons.linear import logits, predict, predict_proba
from logreg_lessons.metrics import (
    accuracy,
    confusion_matrix,
    f1_score,
    precision_recall_f1,
    precision_score,
    recall_score,
)

DTYPES = [torch.float16, torch.float32, torch.float64]


# Any warning (overflow, invalid value, deprecation) fails the test: stable means silent.
pytestmark = pytest.mark.filterwarnings("error")


def _problem(n=20, d=3, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64).to(dtype)
    w = torch.randn(d, generator=g, dtype=torch.float64).to(dtype)
    b = torch.tensor(0.3, dtype=dtype)
    return X, w, b


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_logits_is_X_at_w_plus_b(dtype):
    X, w, b = _problem(dtype=dtype)
    z = logits(X, w, b)
    assert z.shape == (20,) and z.dtype == dtype
    torch.testing.assert_close(z, X @ w + b)


def test_python_float_bias_and_numpy_inputs_are_accepted():
    X, w, b = _problem()
    expected = logits(X, w, b)
    torch.testing.assert_close(logits(X, w, 0.3), expected)
    torch.testing.assert_close(logits(X.numpy(), w.numpy(), 0.3), expected)
    X32, w32, _ = _problem(dtype=torch.float32)
    assert logits(X32, w32, 0.3).dtype == torch.float32  # the Python float follows X's dtype


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_predict_proba_is_stable_sigmoid_of_logits(dtype):
    X = torch.tensor([[1e4], [-1e4], [0.0]], dtype=dtype)
    w = torch.ones(1, dtype=dtype)
    p = predict_proba(X, w, torch.tensor(0.0, dtype=dtype))
    assert p.tolist() == [1.0, 0.0, 0.5]
    X, w, b = _problem(dtype=dtype)
    torch.testing.assert_close(predict_proba(X, w, b), torch.sigmoid(X @ w + b))


def test_predict_thresholds_probabilities():
    X = torch.tensor([[-2.0], [-0.1], [0.0], [0.1], [2.0]])
    w, b = torch.ones(1), torch.tensor(0.0)
    y_hat = predict(X, w, b)
    assert y_hat.dtype == torch.int64
    assert y_hat.tolist() == [0, 0, 1, 1, 1]  # p = 0.5 counts as class 1
    assert predict(X, w, b, threshold=0.9).tolist() == [0, 0, 0, 0, 0]
    assert predict(X, w, b, threshold=0.0).tolist() == [1, 1, 1, 1, 1]


labels = st.integers(0, 3)


@given(st.lists(st.tuples(labels, labels), min_size=1, max_size=60), st.integers(4, 6))
def test_multiclass_metrics_match_sklearn(pairs, C):
    y_true = np.array([t for t, _ in pairs])
    y_pred = np.array([p for _, p in pairs])
    t, p = torch.as_tensor(y_true), torch.as_tensor(y_pred)
    assert accuracy(t, p) == pytest.approx(skm.accuracy_score(y_true, y_pred))
    M = confusion_matrix(t, p, num_classes=C)
    assert M.dtype == torch.int64 and M.shape == (C, C)
    np.testing.assert_array_equal(M.numpy(), skm.confusion_matrix(y_true, y_pred, labels=range(C)))
    ours = precision_recall_f1(t, p, num_classes=C)
    theirs = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=list(range(C)), zero_division=0.0
    )
    for key, expected in zip(("precision", "recall", "f1", "support"), theirs, strict=True):
        np.testing.assert_allclose(ours[key].numpy(), expected, rtol=1e-12, err_msg=key)
    assert ours["support"].dtype == torch.int64


@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1)), min_size=1, max_size=60))
def test_binary_scores_match_sklearn(pairs):
    y_true = np.array([t for t, _ in pairs])
    y_pred = np.array([p for _, p in pairs])
    # float labels (as make_blobs returns) against int64 predictions (as predict returns)
    t, p = torch.as_tensor(y_true, dtype=torch.float32), torch.as_tensor(y_pred)
    for ours, theirs in [
        (precision_score, skm.precision_score),
        (recall_score, skm.recall_score),
        (f1_score, skm.f1_score),
    ]:
        expected = theirs(y_true, y_pred, zero_division=0.0)
        result = ours(t, p)
        assert isinstance(result, float)
        assert result == pytest.approx(expected, rel=1e-12)


def test_zero_division_gives_zero():
    y_true = torch.tensor([0, 0, 1, 1])
    nothing_positive = torch.tensor([0, 0, 0, 0])
    assert precision_score(y_true, nothing_positive) == 0.0
    assert f1_score(y_true, nothing_positive) == 0.0
    assert recall_score(torch.zeros(4), torch.tensor([1, 0, 1, 0])) == 0.0
    metrics = precision_recall_f1(y_true, nothing_positive, num_classes=3)
    assert metrics["precision"].tolist() == [0.5, 0.0, 0.0]
    assert metrics["support"].tolist() == [2, 2, 0]


def test_confusion_matrix_infers_num_classes_and_rows_are_true_labels():
    M = confusion_matrix(torch.tensor([0, 2, 2]), torch.tensor([1, 2, 0]))
    assert M.tolist() == [[0, 1, 0], [0, 0, 0], [1, 0, 1]]
