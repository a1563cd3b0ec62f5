"""logreg_lessons: the small reference library of the course.

Every name the book, the exercises and the tests rely on is importable from here. Each module
holds one concept; gradients are derived by hand (autograd is used only as a test oracle).

Conventions: ``X`` is ``(n, d)``; binary ``y`` is ``(n,)`` with values in {0, 1}; ``w`` is
``(d,)`` and ``b`` a scalar tensor; multiclass ``y`` is ``(n,)`` int64 class indices, ``W`` is
``(d, C)`` and ``b`` is ``(C,)``. Every loss is a mean over samples.
"""

from logreg_lessons.data import (
    Standardizer,
    make_blobs,
    make_moons,
    make_multiclass_blobs,
    train_val_test_split,
)
from logreg_lessons.gradcheck import (
    GradCheckResult,
    check_gradient,
    numerical_gradient,
    relative_error,
)
from logreg_lessons.gradients import logistic_gradients, softmax_gradients
from logreg_lessons.linear import logits, predict, predict_proba
from logreg_lessons.losses import bce_from_probs, bce_with_logits, cross_entropy
from logreg_lessons.metrics import (
    accuracy,
    confusion_matrix,
    f1_score,
    precision_recall_f1,
    precision_score,
    recall_score,
)
from logreg_lessons.mlp import fit_mlp, init_mlp, mlp_backward, mlp_forward, mlp_predict
from logreg_lessons.optim import FitResult, gradient_descent, minibatches, sgd
from logreg_lessons.softmax_regression import (
    fit_softmax,
    softmax_logits,
    softmax_predict,
    softmax_predict_proba,
)
from logreg_lessons.stable import (
    log_sigmoid,
    log_softmax,
    logsumexp,
    naive_sigmoid,
    sigmoid,
    softmax,
    softplus,
)

__version__ = "0.1.0"

__all__ = [
    "FitResult",
    "GradCheckResult",
    "Standardizer",
    "accuracy",
    "bce_from_probs",
    "bce_with_logits",
    "check_gradient",
    "confusion_matrix",
    "cross_entropy",
    "f1_score",
    "fit_mlp",
    "fit_softmax",
    "gradient_descent",
    "init_mlp",
    "log_sigmoid",
    "log_softmax",
    "logistic_gradients",
    "logits",
    "logsumexp",
    "make_blobs",
    "make_moons",
    "make_multiclass_blobs",
    "minibatches",
    "mlp_backward",
    "mlp_forward",
    "mlp_predict",
    "naive_sigmoid",
    "numerical_gradient",
    "precision_recall_f1",
    "precision_score",
    "predict",
    "predict_proba",
    "recall_score",
    "relative_error",
    "sgd",
    "sigmoid",
    "softmax",
    "softmax_gradients",
    "softmax_logits",
    "softmax_predict",
    "softmax_predict_proba",
    "softplus",
    "train_val_test_split",
]
