"""Every bad input raises an error that names the argument, the expected and the actual value."""

import re

import numpy as np
import pytest
import torch

from logreg_lessons import _validation as v
from logreg_lessons.data import (
    Standardizer,
    make_blobs,
    make_moons,
    make_multiclass_blobs,
    train_val_test_split,
)
from logreg_lessons.linear import logits, predict
from logreg_lessons.losses import bce_from_probs, bce_with_logits, cross_entropy
from logreg_lessons.metrics import accuracy, confusion_matrix, precision_score
from logreg_lessons.stable import sigmoid

X = torch.zeros(100, 2)
w = torch.zeros(2)
b = torch.tensor(0.0)
z = torch.zeros(100)
Z = torch.zeros(4, 3)
y3 = torch.tensor([0, 1, 2, 1])


def lit(text):
    """A regex matching ``text`` literally."""
    return re.escape(text)


CASES = {
    "label_column": (
        lambda: bce_with_logits(z, torch.zeros(100, 1)),
        lit(
            "y must have shape (n,) = (100,) to match z, got (100, 1); a (n, 1) label column "
            "would broadcast against (n,) into an (n, n) matrix"
        ),
    ),
    "wrong_label_length": (
        lambda: bce_with_logits(z, torch.zeros(99)),
        lit("y must have shape (n,) = (100,) to match z, got (99,)"),
    ),
    "plus_minus_one_labels": (
        lambda: bce_with_logits(torch.zeros(3), torch.tensor([-1.0, 1.0, 1.0])),
        lit("y must hold binary labels 0 or 1, got values [-1, 1]") + ".*" + lit("(y + 1) / 2"),
    ),
    "other_label_values": (
        lambda: bce_with_logits(torch.zeros(3), torch.tensor([0, 2, 1])),
        lit("y must hold binary labels 0 or 1, got values [0, 1, 2]"),
    ),
    "integer_X": (
        lambda: logits(X.long(), w, b),
        lit("X must be a floating tensor, got torch.int64; convert with X.float()"),
    ),
    "X_not_2d": (
        lambda: logits(z, w, b),
        lit("X must be a 2-D tensor of shape (n_samples, n_features), got shape (100,)")
        + ".*reshape",
    ),
    "dtype_mismatch": (
        lambda: logits(X.double(), w, b),
        lit("w has dtype torch.float32 but X has dtype torch.float64") + ".*" + lit("w.to("),
    ),
    "b_dtype_mismatch": (
        lambda: logits(X, w, torch.tensor(0.0, dtype=torch.float64)),
        lit("b has dtype torch.float64 but X has dtype torch.float32"),
    ),
    "w_wrong_length": (
        lambda: logits(X, torch.zeros(3), b),
        lit("w must have shape (d,) = (2,) to match X's columns, got (3,)"),
    ),
    "w_column": (
        lambda: logits(X, torch.zeros(2, 1), b),
        lit("w must have shape (d,) = (2,) to match X's columns, got (2, 1); use w.reshape(-1)"),
    ),
    "b_shape_1": (
        lambda: logits(X, w, torch.zeros(1)),
        lit("b must be a scalar (0-dim) tensor, got shape (1,); use b.squeeze()"),
    ),
    "threshold": (
        lambda: predict(X, w, b, threshold=1.5),
        lit("threshold must be a probability in [0, 1], got 1.5"),
    ),
    "integer_z": (
        lambda: sigmoid(torch.tensor([1, 2])),
        lit("z must be a floating tensor, got torch.int64; convert with z.float()"),
    ),
    "probs_outside": (
        lambda: bce_from_probs(torch.tensor([0.5, 2.0]), torch.tensor([0, 1])),
        lit("p must hold probabilities in [0, 1], got values in [0.5, 2.0]") + ".*bce_with_logits",
    ),
    "eps": (
        lambda: bce_from_probs(torch.tensor([0.5]), torch.tensor([1]), eps=0.0),
        lit("eps must be in (0, 0.5), got 0.0"),
    ),
    "float_class_labels": (
        lambda: cross_entropy(Z, y3.float()),
        lit("y must hold integer class indices (torch.int64), got torch.float32; ")
        + lit("convert with y.long()"),
    ),
    "class_label_out_of_range": (
        lambda: cross_entropy(Z, torch.tensor([0, 1, 3, 1])),
        lit("y must hold class indices in {0, ..., 2}, got values [0, 1, 3]"),
    ),
    "negative_class_label": (
        lambda: cross_entropy(Z, torch.tensor([0, -1, 2, 1])),
        lit("y must hold class indices in {0, ..., 2}, got values [-1, 0, 1, 2]"),
    ),
    "class_label_column": (
        lambda: cross_entropy(Z, y3[:, None]),
        lit("y must have shape (n,) = (4,) to match Z, got (4, 1); a (n, 1) label column"),
    ),
    "class_weights_length": (
        lambda: cross_entropy(Z, y3, class_weights=torch.ones(2)),
        lit("class_weights must have shape (C,) = (3,) to match Z's columns, got (2,)"),
    ),
    "class_weights_negative": (
        lambda: cross_entropy(Z, y3, class_weights=torch.tensor([1.0, -1.0, 1.0])),
        lit("class_weights must be non-negative, got [1.0, -1.0, 1.0]"),
    ),
    "class_weights_dtype": (
        lambda: cross_entropy(Z, y3, class_weights=torch.ones(3, dtype=torch.float64)),
        lit("class_weights has dtype torch.float64 but Z has dtype torch.float32"),
    ),
    "metric_shapes": (
        lambda: accuracy(torch.tensor([0, 1, 1]), torch.tensor([0, 1])),
        lit("y_pred must have shape (n,) = (3,) to match y_true, got (2,)"),
    ),
    "metric_probabilities": (
        lambda: accuracy(torch.tensor([0, 1]), torch.tensor([0.2, 0.9])),
        lit("y_pred must hold integer labels, got non-integer values"),
    ),
    "metric_column": (
        lambda: accuracy(torch.tensor([[0], [1]]), torch.tensor([0, 1])),
        lit("y_true must be a 1-D tensor of labels of shape (n,), got shape (2, 1)"),
    ),
    "metric_empty": (
        lambda: accuracy(torch.tensor([]), torch.tensor([])),
        lit("y_true and y_pred are empty"),
    ),
    "metric_binary": (
        lambda: precision_score(torch.tensor([0, 2]), torch.tensor([0, 1])),
        lit("y_true must hold binary labels 0 or 1, got values [0, 2]"),
    ),
    "confusion_num_classes": (
        lambda: confusion_matrix(y3, y3, num_classes=2),
        lit("labels must lie in {0, ..., num_classes - 1} = {0, ..., 1}, got a label 2"),
    ),
    "fractions_sum": (
        lambda: train_val_test_split(X, z, fractions=(0.5, 0.3, 0.3)),
        lit("fractions must be three non-negative numbers (train, val, test) summing to 1, ")
        + lit("got (0.5, 0.3, 0.3)"),
    ),
    "fractions_negative": (
        lambda: train_val_test_split(X, z, fractions=(1.2, -0.2, 0.0)),
        "fractions must be three non-negative numbers",
    ),
    "fractions_length": (
        lambda: train_val_test_split(X, z, fractions=(0.5, 0.5)),
        "fractions must be three non-negative numbers",
    ),
    "split_label_shape": (
        lambda: train_val_test_split(X, z[:50]),
        lit("y must have shape (n,) = (100,) to match X, got (50,)"),
    ),
    "blobs_cov": (
        lambda: make_blobs(n_per_class=5, cov=((1.0, 2.0), (2.0, 1.0))),
        lit("cov must be a symmetric positive-definite (d, d) matrix"),
    ),
    "blobs_cov_shape": (
        lambda: make_blobs(n_per_class=5, cov=((1.0,),)),
        lit("cov must have shape (2, 2) or (2, 2, 2), got (1, 1)"),
    ),
    "blobs_means": (
        lambda: make_blobs(n_per_class=5, means=((0.0, 0.0),)),
        lit("means must have shape (2, d), got (1, 2)"),
    ),
    "blobs_n": (
        lambda: make_blobs(n_per_class=0),
        lit("n_per_class must be a positive integer, got 0"),
    ),
    "blobs_dtype": (
        lambda: make_blobs(n_per_class=5, dtype=torch.int64),
        lit("dtype must be a floating torch dtype such as torch.float32, got torch.int64"),
    ),
    "multiclass_classes": (
        lambda: make_multiclass_blobs(num_classes=1),
        lit("num_classes must be at least 2, got 1"),
    ),
    "moons_noise": (
        lambda: make_moons(noise=-0.1),
        lit("noise must be >= 0, got -0.1"),
    ),
    "standardizer_not_fitted": (
        lambda: Standardizer().transform(X),
        lit("this Standardizer is not fitted yet: call fit(X_train) first"),
    ),
    "standardizer_columns": (
        lambda: Standardizer().fit(X).transform(torch.zeros(3, 5)),
        lit("X must have 2 columns as in fit, got 5"),
    ),
    "unstandardize_w": (
        lambda: Standardizer().fit(X).unstandardize(torch.zeros(3), b),
        lit("w must have shape (2,) or (2, C), got (3,)"),
    ),
    "unstandardize_b": (
        lambda: Standardizer().fit(X).unstandardize(torch.zeros(2, 4), b),
        lit("b must have shape (4,) to match w, got ()"),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_error_message(case):
    call, pattern = CASES[case]
    with pytest.raises(ValueError, match=pattern):
        call()


def test_non_tensor_input_raises_type_error_saying_how():
    with pytest.raises(TypeError, match=lit("z must be a torch.Tensor (numpy arrays and lists")):
        sigmoid("0.5")
    with pytest.raises(TypeError, match="X must be a torch.Tensor"):
        logits({"a": 1}, w, b)


def test_numpy_arrays_and_lists_are_converted():
    np_z = np.array([-1.0, 0.0, 1.0])
    out = sigmoid(np_z)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    assert sigmoid([0.0]).dtype == torch.float32
    assert v.check_binary_labels("y", np.array([0, 1]), 2, dtype=torch.float64).dtype == (
        torch.float64
    )


def test_helpers_return_converted_tensors():
    assert v.check_scalar("b", 2, dtype=torch.float64).dtype == torch.float64
    assert v.check_class_labels("y", torch.tensor([0, 1], dtype=torch.int32), 2).dtype == (
        torch.int64
    )
    assert v.check_label_vector("y", torch.tensor([1.0, 0.0])).tolist() == [1, 0]
    assert v.check_positive_int("k", np.int64(3)) == 3
    with pytest.raises(ValueError, match="k must be a positive integer, got True"):
        v.check_positive_int("k", True)
    with pytest.raises(ValueError, match=lit("B has dtype torch.float64 but A has")):
        v.check_same_dtype(A=torch.zeros(1), B=torch.zeros(1, dtype=torch.float64))
