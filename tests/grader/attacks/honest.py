"""Honest submissions for tests/grader/test_honest.py: correct but unusual code that must get
full marks.

Each entry is the solution notebook of one assignment with some cells changed the way real
students write code: helpers in cells they added, extra imports, index assignment, locals named
like builtins, classes, recursion, prints and warnings, plots, NumPy where it is allowed, a
lambda, a decorator, a scratch file in /tmp, a constant from another cell, an allowed library
helper. Every implementation here is correct for every test (hidden ones included: extreme
logits, float16/32/64), so each submission must get every autograded point with status ``ok``.

Keys of an entry: ``name`` (the student), ``assignment``, ``covers`` (what is unusual, in
words), ``replace`` (grade_id -> new source of that cell), ``attachments`` (grade_id -> the
attachments of that markdown cell), ``before`` / ``after`` (grade_id -> cells the student added
just before / after that cell; a string is a code cell, ``("markdown", text)`` a markdown cell)
and ``rendered`` (grade_id -> HTML fragments the formgrader must show for that cell).
"""

from __future__ import annotations

# --- 01: synthetic data, split, standardisation ----------------------------------------------

_MAKE_BLOBS_BUILTIN_NAMES = '''\
def make_blobs(n_per_class=500, means=((5.0, 10.0), (0.0, 5.0)),
               cov=((1.0, 0.25), (0.25, 1.0)), seed=0, dtype=torch.float32):
    """Two Gaussian blobs; locals named like builtins (input, sum) on purpose."""
    g = torch.Generator().manual_seed(seed)
    means = torch.as_tensor(means, dtype=torch.float64)
    L = torch.linalg.cholesky(torch.as_tensor(cov, dtype=torch.float64))
    rows = []
    for mu in means:
        input = torch.randn(n_per_class, means.shape[1], generator=g, dtype=torch.float64)
        rows.append(mu + input @ L.T)
    sum = 2 * n_per_class
    X = torch.cat(rows)
    y = (torch.arange(sum) >= n_per_class).to(torch.float64)
    return X.to(dtype), y.to(dtype)
'''

_SPLIT_BUILTIN_NAMES = '''\
def train_val_test_split(X, y, fractions=(0.7, 0.15, 0.15), seed=0, stratify=True):
    """Stratified split; the groups are called open and the parts getattr (legal names)."""
    g = torch.Generator().manual_seed(seed)
    if stratify:
        open = [torch.nonzero(y == c).squeeze(1) for c in torch.unique(y)]
    else:
        open = [torch.arange(X.shape[0])]
    getattr = {"train": [], "val": [], "test": []}
    for idx in open:
        idx = idx[torch.randperm(idx.numel(), generator=g)]
        n_train = round(fractions[0] * idx.numel())
        n_val = round(fractions[1] * idx.numel())
        getattr["train"].append(idx[:n_train])
        getattr["val"].append(idx[n_train:n_train + n_val])
        getattr["test"].append(idx[n_train + n_val:])
    order = []
    for part in ("train", "val", "test"):
        i = torch.cat(getattr[part])
        order.append(i[torch.randperm(i.numel(), generator=g)])
    return (*(X[i] for i in order), *(y[i] for i in order))
'''

_STANDARDIZER_VARS = '''\
class Standardizer:
    """(X - mean_) / std_, with the variances in a local called vars."""

    def __init__(self):
        self.mean_ = None
        self.std_ = None

    def fit(self, X):
        mean = X.mean(dim=0)
        vars = ((X - mean) ** 2).mean(dim=0)  # population variances, one per column
        std = vars.sqrt()
        self.mean_ = mean
        self.std_ = torch.where(std > 0, std, torch.ones_like(std))
        return self

    def transform(self, X):
        input = X - self.mean_
        return input / self.std_

    def fit_transform(self, X):
        """fit(X), then transform(X)."""
        return self.fit(X).transform(X)

    def unstandardize(self, w, b):
        open = w / self.std_
        sum = (self.mean_ * open).sum()
        return open, b - sum
'''


# --- 02: numerical stability -----------------------------------------------------------------

_HELPER_EXP = '''\
def exp_neg_abs(z):
    """exp(-|z|), always in (0, 1]: the only exponential the stable formulas need."""
    return torch.exp(-torch.abs(z))
'''

_SIGMOID_WITH_HELPER = '''\
def sigmoid(z):
    """Stable sigmoid built on the helper of the cell above."""
    e = exp_neg_abs(z)
    return torch.where(z >= 0, 1 / (1 + e), e / (1 + e))
'''

_LOG_SIGMOID_WITH_HELPER = """\
def log_sigmoid(z):
    return torch.clamp(z, max=0) - torch.log1p(exp_neg_abs(z))
"""

_HELPER_ROW_MAX = '''\
def row_max(z, dim):
    """The maximum along dim, kept for broadcasting."""
    return torch.amax(z, dim=dim, keepdim=True)
'''

_LOGSUMEXP_WITH_HELPER = """\
def logsumexp(z, dim=-1):
    m = row_max(z, dim)
    return (m + torch.log(torch.sum(torch.exp(z - m), dim=dim, keepdim=True))).squeeze(dim)
"""

_SIGMOID_NOISY = '''\
import logging
import sys
import warnings

import numpy as np


def sigmoid(z):
    """Correct, and chatty: stdout, stderr, a UserWarning, a NumPy RuntimeWarning."""
    print(f"sigmoid called on shape {tuple(z.shape)}, dtype {z.dtype}")
    print("sigmoid: debug output on stderr", file=sys.stderr)
    warnings.warn("sigmoid: a harmless warning from a correct solution")
    np.exp(np.float64(1000.0))  # overflow in NumPy: a RuntimeWarning, unrelated to the result
    e = torch.exp(-torch.abs(z))
    return torch.where(z >= 0, 1 / (1 + e), e / (1 + e))
'''

_LOG_SIGMOID_NOISY = """\
def log_sigmoid(z):
    logging.getLogger("student").warning("log_sigmoid: logging to stderr")
    warnings.warn("log_sigmoid: a RuntimeWarning", RuntimeWarning)
    z = torch.tensor(z)  # copy-constructing from a tensor: torch's own UserWarning
    return torch.clamp(z, max=0) - torch.log1p(torch.exp(-torch.abs(z)))
"""

_LOGSUMEXP_NOISY = """\
def logsumexp(z, dim=-1):
    for k in range(50):
        print(f"logsumexp: line {k} of a long debug print")
    warnings.warn("logsumexp: deprecated, but still correct", DeprecationWarning)
    m = torch.amax(z, dim=dim, keepdim=True)
    return (m + torch.log(torch.sum(torch.exp(z - m), dim=dim, keepdim=True))).squeeze(dim)
"""

_DECORATOR_CELL = '''\
import functools


def floating_only(fn):
    """Refuse tensors of an integer dtype with a clear message; keeps fn's name and doc."""

    @functools.wraps(fn)
    def wrapper(z, *args, **kwargs):
        if not torch.is_floating_point(z):
            raise TypeError(f"{fn.__name__}: z must have a floating dtype, got {z.dtype}")
        return fn(z, *args, **kwargs)

    return wrapper
'''

_SIGMOID_DECORATED = """\
@floating_only
def sigmoid(z):
    e = torch.exp(-torch.abs(z))
    return torch.where(z >= 0, 1 / (1 + e), e / (1 + e))
"""

_LOG_SIGMOID_LAMBDA = """\
log_sigmoid = lambda z: torch.clamp(z, max=0) - torch.log1p(torch.exp(-torch.abs(z)))  # noqa: E731
"""

_LOGSUMEXP_DECORATED = """\
@floating_only
def logsumexp(z, dim=-1):
    m = torch.amax(z, dim=dim, keepdim=True)
    return (m + torch.log(torch.sum(torch.exp(z - m), dim=dim, keepdim=True))).squeeze(dim)
"""

_SIGMOID_GETATTR = """\
def sigmoid(z):
    dtype = getattr(z, "dtype")  # an ordinary getattr with a constant name
    one = torch.ones((), dtype=dtype)
    e = torch.exp(-torch.abs(z))
    return torch.where(z >= 0, one / (one + e), e / (one + e))
"""

_LOGSUMEXP_GETATTR = """\
def logsumexp(z, dim=-1):
    amax = getattr(torch, "amax")  # an allowed torch function, looked up by name
    m = amax(z, dim=dim, keepdim=True)
    return (m + torch.log(torch.sum(torch.exp(z - m), dim=dim, keepdim=True))).squeeze(dim)
"""

_SIGMOID_SCRATCH = '''\
import os
import tempfile


def sigmoid(z):
    """Keeps a log of its calls in /tmp and round-trips z through a temporary file."""
    with open("/tmp/sigmoid_calls.txt", "a") as log:
        log.write(f"{tuple(z.shape)} {z.dtype}\\n")
    fd, path = tempfile.mkstemp(suffix=".pt")
    os.close(fd)
    torch.save(z, path)
    z = torch.load(path)
    os.remove(path)
    e = torch.exp(-torch.abs(z))
    return torch.where(z >= 0, 1 / (1 + e), e / (1 + e))
'''

_BRANCH_CELL = """\
BRANCH_POINT = 0.0  # where the two formulas of the stable sigmoid meet
"""

_KEEP_CELL = """\
KEEP = True  # keepdim for the max of logsumexp
"""

_SIGMOID_CONSTANT = """\
def sigmoid(z):
    e = torch.exp(-torch.abs(z))
    return torch.where(z >= BRANCH_POINT, 1 / (1 + e), e / (1 + e))
"""

_LOGSUMEXP_CONSTANT = """\
def logsumexp(z, dim=-1):
    m = torch.amax(z, dim=dim, keepdim=KEEP)
    return (m + torch.log(torch.sum(torch.exp(z - m), dim=dim, keepdim=KEEP))).squeeze(dim)
"""

_SIGMOID_CLASS = '''\
class StableSigmoid:
    """sigma(z) as a callable object; each branch of the stable formula is a method."""

    def positive_branch(self, e):
        return 1 / (1 + e)

    def negative_branch(self, e):
        return e / (1 + e)

    def __call__(self, z):
        e = torch.exp(-torch.abs(z))
        return torch.where(z >= 0, self.positive_branch(e), self.negative_branch(e))


sigmoid = StableSigmoid()
'''

_LOG_SIGMOID_BOUND_METHOD = """\
class LogSigmoid:
    def __init__(self):
        self.calls = 0

    def forward(self, z):
        self.calls += 1
        return torch.clamp(z, max=0) - torch.log1p(torch.exp(-torch.abs(z)))


log_sigmoid = LogSigmoid().forward  # a bound method
"""

_LOGSUMEXP_STATICMETHOD = """\
class Reductions:
    @staticmethod
    def logsumexp(z, dim=-1):
        m = torch.amax(z, dim=dim, keepdim=True)
        return (m + torch.log(torch.sum(torch.exp(z - m), dim=dim, keepdim=True))).squeeze(dim)


logsumexp = Reductions.logsumexp
"""

_PLOT_SIGMOID = """\
%matplotlib inline
import matplotlib.pyplot as plt

zs = torch.linspace(-10, 10, 201, dtype=torch.float64)
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(zs, sigmoid(zs), label="sigmoid")
ax.plot(zs, torch.exp(log_sigmoid(zs)), "--", label="exp(log_sigmoid)")
ax.set_xlabel("z")
ax.legend()
plt.show()
"""

_PLOT_TAIL = """\
%config InlineBackend.figure_format = "png"
zs = torch.linspace(-700, 0, 50, dtype=torch.float64)
plt.figure()
plt.semilogy(zs, sigmoid(zs))
plt.title("the lower tail of sigmoid")
plt.savefig("/tmp/tail.png")
plt.close("all")
"""

_IMPORT_LIBRARY_CELL = """\
import math

import numpy as np

import logreg_lessons
from logreg_lessons import logsumexp as reference_logsumexp
from logreg_lessons import sigmoid as reference_sigmoid
"""

_COMPARE_SIGMOID = """\
z_check = torch.linspace(-30, 30, 61, dtype=torch.float64)
print("largest difference from the library:",
      (sigmoid(z_check) - reference_sigmoid(z_check)).abs().max().item())
"""

_COMPARE_LOGSUMEXP = """\
Z_check = torch.randn(4, 5, dtype=torch.float64)
assert torch.allclose(logsumexp(Z_check), reference_logsumexp(Z_check))
print("logsumexp agrees with logreg_lessons.logsumexp;", math.pi, np.pi)
"""

_LOGSUMEXP_NUMPY = '''\
import numpy as np


def logsumexp(z, dim=-1):
    """The max shift, computed in NumPy (float64), returned as a tensor of z's dtype."""
    a = z.detach().cpu().numpy().astype(np.float64)
    m = a.max(axis=dim, keepdims=True)
    out = m + np.log(np.exp(a - m).sum(axis=dim, keepdims=True))
    return torch.from_numpy(np.squeeze(out, axis=dim)).to(z.dtype)
'''

_LOG_SIGMOID_TIMED = """\
%%time
def log_sigmoid(z):
    return torch.clamp(z, max=0) - torch.log1p(torch.exp(-torch.abs(z)))
"""

_NOTEBOOK_SETUP = """\
%load_ext autoreload
%autoreload 2
!echo setting up
"""

_SIGMOID_DISPLAY = """\
def sigmoid(z):
    display(z.shape)  # IPython's display, a builtin in every Jupyter kernel
    e = torch.exp(-torch.abs(z))
    return torch.where(z >= 0, 1 / (1 + e), e / (1 + e))
"""

_DISPLAY_CELL = """\
display(sigmoid(torch.tensor([-1.0, 0.0, 1.0])))
"""

# --- 03: the forward pass --------------------------------------------------------------------

_IMPORTS_03 = """\
import math

import numpy as np
import sklearn.metrics  # only to compare with, below; accuracy itself does not use it
import torch.nn.functional as F

import logreg_lessons
"""

_PREDICT_PROBA_LIBRARY_LOGITS = '''\
def predict_proba(X, w, b):
    """sigmoid of the library's logits (logreg_lessons.logits is allowed here)."""
    return sigmoid(logreg_lessons.logits(X, w, b))
'''

_BCE_TORCH_LOGSIGMOID = '''\
def bce_with_logits(z, y):
    """torch's logsigmoid is allowed in this assignment (only the fused losses are not)."""
    y = y.to(z.dtype)
    return -(y * F.logsigmoid(z) + (1 - y) * F.logsigmoid(-z)).mean()
'''

_ACCURACY_NUMPY = """\
def accuracy(y_true, y_pred):
    if tuple(y_true.shape) != tuple(y_pred.shape):
        raise ValueError(f"y_true has shape {tuple(y_true.shape)} but y_pred has shape "
                         f"{tuple(y_pred.shape)}: they must be equal")
    a = y_true.numpy().astype(np.float64)
    b = y_pred.numpy().astype(np.float64)
    return float(np.mean(a == b))
"""

_COMPARE_ACCURACY = """\
y_a, y_b = torch.tensor([0, 1, 1, 0, 1]), torch.tensor([0, 1, 0, 0, 1])
print(accuracy(y_a, y_b), sklearn.metrics.accuracy_score(y_a.numpy(), y_b.numpy()), math.e)
"""


# --- 05: GD and SGD --------------------------------------------------------------------------

_MINIBATCHES_GENERATOR = '''\
def minibatches(n, batch_size, generator=None):
    """A generator (the docstring allows it): one permutation, sliced in order."""
    perm = torch.randperm(n, generator=generator)
    for start in range(0, n, batch_size):
        yield perm[start:start + batch_size]
'''

_STEP_HELPER_05 = '''\
import logreg_lessons as ll


def batch_step(X, y, w, b, lr):
    """(loss before the update, w, b after it) on one batch; the gradient is the library's."""
    loss = float(bce_with_logits(X @ w + b, y))
    dw, db = ll.logistic_gradients(X, y, w, b)
    return loss, w - lr * dw, b - lr * db
'''

_GD_WITH_HELPER = """\
def gradient_descent(X, y, lr, num_steps, w0=None, b0=None, progress=False):
    w = torch.zeros(X.shape[1], dtype=X.dtype) if w0 is None else w0.clone()
    b = torch.zeros((), dtype=X.dtype) if b0 is None else b0.clone()
    history, epoch_history = [], []
    for _ in range(num_steps):
        loss, w, b = batch_step(X, y, w, b, lr)
        history.append(loss)
        epoch_history.append(float(bce_with_logits(X @ w + b, y)))
    return FitResult(w, b, history, epoch_history, num_steps)
"""

_SGD_WITH_HELPER = """\
def sgd(X, y, lr, num_epochs, batch_size, seed=0, w0=None, b0=None, progress=False):
    w = torch.zeros(X.shape[1], dtype=X.dtype) if w0 is None else w0.clone()
    b = torch.zeros((), dtype=X.dtype) if b0 is None else b0.clone()
    generator = torch.Generator().manual_seed(seed)
    history, epoch_history = [], []
    for _ in range(num_epochs):
        for idx in minibatches(X.shape[0], batch_size, generator):
            loss, w, b = batch_step(X[idx], y[idx], w, b, lr)
            history.append(loss)
        epoch_history.append(float(bce_with_logits(X @ w + b, y)))
    return FitResult(w, b, history, epoch_history, len(history))
"""


# --- 06: softmax regression ------------------------------------------------------------------

_SOFTMAX_INPLACE = """\
def softmax(z, dim=-1):
    out = torch.exp(z - z.amax(dim=dim, keepdim=True))
    out /= out.sum(dim=dim, keepdim=True)  # in place, on a tensor of our own
    return out
"""

_CROSS_ENTROPY_INDEXED = """\
def cross_entropy(Z, y, class_weights=None):
    n = Z.shape[0]
    shifted = Z - Z.amax(dim=CLASS_DIM, keepdim=True)
    log_probs = shifted - torch.log(torch.exp(shifted).sum(dim=CLASS_DIM, keepdim=True))
    picked = log_probs[torch.arange(n), y]
    if class_weights is None:
        weights = torch.ones(n, dtype=Z.dtype)
    else:
        weights = class_weights[y].to(Z.dtype)
    return -(weights * picked).sum() / weights.sum()
"""

_SOFTMAX_GRADIENTS_INDEXED = '''\
def softmax_gradients(X, y, W, b, class_weights=None):
    """P - onehot(y) by index assignment on P."""
    n = X.shape[0]
    P = softmax(X @ W + b, dim=1)
    P[torch.arange(n), y] -= 1
    if class_weights is None:
        dZ = P / n
    else:
        a = class_weights[y]
        dZ = P * (a / a.sum())[:, None]
    return X.T @ dZ, dZ.sum(dim=0)
'''

_CLASS_DIM_CELL = """\
CLASS_DIM = 1  # the dimension of Z that holds the classes
"""

_SOFTMAX_GRADIENTS_LIBRARY = '''\
import logreg_lessons


def softmax_gradients(X, y, W, b, class_weights=None):
    """With the library's softmax_logits and softmax: only softmax_gradients is banned."""
    Z = logreg_lessons.softmax_logits(X, W, b)
    Y = torch.nn.functional.one_hot(y, W.shape[1]).to(X.dtype)
    if class_weights is None:
        scale = torch.full((X.shape[0],), 1.0 / X.shape[0], dtype=X.dtype)
    else:
        scale = class_weights[y] / class_weights[y].sum()
    dZ = (logreg_lessons.softmax(Z, dim=1) - Y) * scale[:, None]
    return X.T @ dZ, dZ.sum(dim=0)
'''

_PLOT_06 = """\
%matplotlib inline
import matplotlib.pyplot as plt

zs = torch.linspace(-5, 5, 101, dtype=torch.float64)
P_demo = softmax(torch.stack([zs, torch.zeros_like(zs), -zs], dim=1), dim=1)
for k in range(3):
    plt.plot(zs, P_demo[:, k], label=f"class {k}")
plt.legend()
plt.show()
"""

_SOFTMAX_GRADIENTS_NAMEDTUPLE = """\
from typing import NamedTuple


class Gradients(NamedTuple):
    dW: torch.Tensor
    db: torch.Tensor


def softmax_gradients(X, y, W, b, class_weights=None):
    \"\"\"Returns a named tuple (a tuple: unpacking and indexing work as for (dW, db)).\"\"\"
    n, C = X.shape[0], W.shape[1]
    P = softmax(X @ W + b, dim=1)
    Y = torch.nn.functional.one_hot(y, C).to(X.dtype)
    if class_weights is None:
        scale = torch.full((n,), 1.0 / n, dtype=X.dtype)
    else:
        scale = class_weights[y] / class_weights[y].sum()
    dZ = (P - Y) * scale[:, None]
    return Gradients(X.T @ dZ, dZ.sum(dim=0))
"""

# --- 07: backpropagation ---------------------------------------------------------------------

_MLP_BACKWARD_INDEXED = '''\
def mlp_backward(params, cache, y):
    """softmax(logits) - onehot(y) by index assignment, then the layers from the top."""
    L = len(params) // 2
    logits = cache["logits"]
    n = logits.shape[0]
    dZ = softmax(logits, dim=1)
    dZ[torch.arange(n), y] -= 1
    dZ /= n
    grads = {}
    for l in range(L, 0, -1):
        H_prev = cache["inputs"][l - 1]
        grads[f"W{l}"] = H_prev.T @ dZ
        grads[f"b{l}"] = dZ.sum(dim=0)
        if l > 1:
            dH = dZ @ params[f"W{l}"].T
            if cache["activation"] == "tanh":
                dZ = dH * (1 - H_prev**2)
            elif cache["activation"] == "sigmoid":
                dZ = dH * H_prev * (1 - H_prev)
            else:
                dZ = dH * (cache["pre"][l - 2] > 0)
    return {key: grads[key] for key in params}
'''

_LAYERS_CELL = '''\
class Dense:
    """One linear layer H @ W + b, forward and backward side by side."""

    def __init__(self, W, b):
        self.W, self.b = W, b

    def __call__(self, H):
        return H @ self.W + self.b

    def backward(self, dZ, H_prev):
        """(dW, db, dH_prev) for the gradient dZ of this layer's output."""
        return H_prev.T @ dZ, dZ.sum(dim=0), dZ @ self.W.T


# activation name -> (f, f' written from the pre-activation Z and the output H = f(Z))
ACTIVATIONS = {
    "tanh": (torch.tanh, lambda Z, H: 1 - H**2),
    "sigmoid": (sigmoid, lambda Z, H: H * (1 - H)),
    "relu": (lambda Z: Z.clamp(min=0), lambda Z, H: (Z > 0).to(H.dtype)),
}
'''

_MLP_FORWARD_RECURSIVE = '''\
def mlp_forward(params, X, activation="tanh"):
    """The layers as Dense objects, run by recursion."""
    f = ACTIVATIONS[activation][0]
    layers = [Dense(params[f"W{l}"], params[f"b{l}"]) for l in range(1, len(params) // 2 + 1)]

    def run(k, H, inputs, pre):
        Z = layers[k](H)
        if k == len(layers) - 1:
            return Z, inputs + [H], pre
        return run(k + 1, f(Z), inputs + [H], pre + [Z])

    logits, inputs, pre = run(0, X, [], [])
    return logits, {"inputs": inputs, "pre": pre, "logits": logits, "activation": activation}
'''

_MLP_BACKWARD_RECURSIVE = '''\
def mlp_backward(params, cache, y):
    """From the top layer down, by recursion, with the Dense objects' backward."""
    L = len(params) // 2
    logits = cache["logits"]
    n, C = logits.shape
    derivative = ACTIVATIONS[cache["activation"]][1]
    Y = torch.nn.functional.one_hot(y, C).to(logits.dtype)

    def back(l, dZ, grads):
        H_prev = cache["inputs"][l - 1]
        dW, db, dH = Dense(params[f"W{l}"], params[f"b{l}"]).backward(dZ, H_prev)
        grads[f"W{l}"], grads[f"b{l}"] = dW, db
        if l == 1:
            return grads
        return back(l - 1, dH * derivative(cache["pre"][l - 2], H_prev), grads)

    grads = back(L, (softmax(logits, dim=1) - Y) / n, {})
    return {key: grads[key] for key in params}
'''

_MLP_BACKWARD_ORDERED = """\
from collections import OrderedDict


def mlp_backward(params, cache, y):
    \"\"\"The gradients in an OrderedDict (a dict, like a state_dict), keys in params' order.\"\"\"
    L = len(params) // 2
    logits = cache["logits"]
    n, C = logits.shape
    dZ = (softmax(logits, dim=1) - torch.nn.functional.one_hot(y, C).to(logits.dtype)) / n
    grads = {}
    for l in range(L, 0, -1):
        H_prev = cache["inputs"][l - 1]
        grads[f"W{l}"], grads[f"b{l}"] = H_prev.T @ dZ, dZ.sum(dim=0)
        if l > 1:
            dH = dZ @ params[f"W{l}"].T
            if cache["activation"] == "tanh":
                dZ = dH * (1 - H_prev**2)
            elif cache["activation"] == "sigmoid":
                dZ = dH * H_prev * (1 - H_prev)
            else:
                dZ = dH * (cache["pre"][l - 2] > 0)
    return OrderedDict((key, grads[key]) for key in params)
"""

# --- a written answer as students write them: math with < and &, code, a pasted image --------

_WRITTEN_ANSWER = r"""The true value $\sigma(-10^4) \approx e^{-10^4}$ is far below the smallest
float32, so for $z < -104$ `sigmoid` returns 0 and `torch.log(sigmoid(z))` is $-\infty$.
`log_sigmoid` never forms $\sigma(z)$:

$$
\begin{aligned}
\log \sigma(z) &= \min(z, 0) - \log\left(1 + e^{-|z|}\right) \\
               &= -10^4 \quad \text{for } z = -10^4 .
\end{aligned}
$$

A loss computed the first way is `inf` as soon as `p < 1e-45` for one example (R&D tip: use
logits). My sketch of the two curves:

![my sketch](attachment:sketch.png)
"""
# a 1x1 PNG, as Jupyter stores an image pasted into a markdown cell
PNG_1X1 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
    "YPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
# what the formgrader must show of that answer (nbconvert's rendering of the text above)
WRITTEN_ANSWER_RENDERED = (
    "$z &lt; -104$",
    "<code>torch.log(sigmoid(z))</code>",
    "\\log \\sigma(z) &amp;= \\min(z, 0)",
    "<code>p &lt; 1e-45</code>",
    "R&amp;D tip",
    'src="data:image/png;base64,' + PNG_1X1,
)

HONEST = [
    dict(
        name="builtin-names",
        assignment="01_synthetic_data",
        covers="locals named vars (in Standardizer), open, getattr, input, sum",
        replace={
            "make_blobs": _MAKE_BLOBS_BUILTIN_NAMES,
            "train_val_test_split": _SPLIT_BUILTIN_NAMES,
            "Standardizer": _STANDARDIZER_VARS,
        },
    ),
    dict(
        name="helper-cells",
        assignment="02_numerical_stability",
        covers="helper functions in code cells the student inserted, used by graded functions",
        replace={
            "sigmoid": _SIGMOID_WITH_HELPER,
            "log_sigmoid": _LOG_SIGMOID_WITH_HELPER,
            "logsumexp": _LOGSUMEXP_WITH_HELPER,
        },
        before={
            "sigmoid": [("markdown", "My helper for all three functions:"), _HELPER_EXP],
            "logsumexp": [_HELPER_ROW_MAX],
        },
    ),
    dict(
        name="prints-and-warnings",
        assignment="02_numerical_stability",
        covers="print to stdout and stderr, warnings, logging inside graded functions",
        replace={
            "sigmoid": _SIGMOID_NOISY,
            "log_sigmoid": _LOG_SIGMOID_NOISY,
            "logsumexp": _LOGSUMEXP_NOISY,
        },
    ),
    dict(
        name="lambda-and-decorator",
        assignment="02_numerical_stability",
        covers="a lambda; functools.wraps decorator defined in an added cell",
        replace={
            "sigmoid": _SIGMOID_DECORATED,
            "log_sigmoid": _LOG_SIGMOID_LAMBDA,
            "logsumexp": _LOGSUMEXP_DECORATED,
        },
        before={"sigmoid": [_DECORATOR_CELL]},
    ),
    dict(
        name="getattr-dtype",
        assignment="02_numerical_stability",
        covers='getattr(z, "dtype") and getattr(torch, "amax") with constant names',
        replace={"sigmoid": _SIGMOID_GETATTR, "logsumexp": _LOGSUMEXP_GETATTR},
    ),
    dict(
        name="scratch-file",
        assignment="02_numerical_stability",
        covers="a graded function that writes and reads scratch files in /tmp",
        replace={"sigmoid": _SIGMOID_SCRATCH},
    ),
    dict(
        name="constants-elsewhere",
        assignment="02_numerical_stability",
        covers="module-level constants defined in another (added) cell",
        replace={"sigmoid": _SIGMOID_CONSTANT, "logsumexp": _LOGSUMEXP_CONSTANT},
        before={"sigmoid": [_BRANCH_CELL], "logsumexp": [_KEEP_CELL]},
    ),
    dict(
        name="classes",
        assignment="02_numerical_stability",
        covers="a callable object, a bound method and a staticmethod as the graded names",
        replace={
            "sigmoid": _SIGMOID_CLASS,
            "log_sigmoid": _LOG_SIGMOID_BOUND_METHOD,
            "logsumexp": _LOGSUMEXP_STATICMETHOD,
        },
    ),
    dict(
        name="plots",
        assignment="02_numerical_stability",
        covers="%matplotlib inline, %config and plots in added cells",
        after={"log_sigmoid_complement": [_PLOT_SIGMOID, _PLOT_TAIL]},
    ),
    dict(
        name="library-for-comparison",
        assignment="02_numerical_stability",
        covers="banned library functions imported under other names and used only to compare, "
        "outside the graded functions",
        before={"sigmoid": [_IMPORT_LIBRARY_CELL]},
        after={
            "sigmoid_tail_accurate": [_COMPARE_SIGMOID],
            "logsumexp_extremes": [_COMPARE_LOGSUMEXP],
        },
    ),
    dict(
        name="written-answer",
        assignment="02_numerical_stability",
        covers="a written answer with math holding < and &, code spans and a pasted image",
        replace={"q_log_of_sigmoid": _WRITTEN_ANSWER},
        attachments={"q_log_of_sigmoid": {"sketch.png": {"image/png": PNG_1X1}}},
        rendered={"q_log_of_sigmoid": WRITTEN_ANSWER_RENDERED},
    ),
    dict(
        name="cell-magics",
        assignment="02_numerical_stability",
        covers="%%time on a solution cell; %load_ext, %autoreload and a shell command in an "
        "added cell (Jupyter runs the timed cell's code)",
        replace={"log_sigmoid": _LOG_SIGMOID_TIMED},
        before={"sigmoid": [_NOTEBOOK_SETUP]},
    ),
    dict(
        name="display",
        assignment="02_numerical_stability",
        covers="IPython's display(), a builtin in Jupyter, inside a graded function and in an "
        "added cell",
        replace={"sigmoid": _SIGMOID_DISPLAY},
        after={"sigmoid_tail_accurate": [_DISPLAY_CELL]},
    ),
    dict(
        name="numpy-logsumexp",
        assignment="02_numerical_stability",
        covers="NumPy inside logsumexp (float64), the result converted back to z's dtype",
        replace={"logsumexp": _LOGSUMEXP_NUMPY},
    ),
    dict(
        name="allowed-helpers",
        assignment="03_forward_pass",
        covers="extra imports in an added cell; the library's logits and torch's logsigmoid, "
        "both allowed here; NumPy in accuracy; sklearn used outside the graded function",
        replace={
            "predict_proba": _PREDICT_PROBA_LIBRARY_LOGITS,
            "bce_with_logits": _BCE_TORCH_LOGSIGMOID,
            "accuracy": _ACCURACY_NUMPY,
        },
        before={"predict_proba": [_IMPORTS_03]},
        after={"accuracy_rejects_mismatched_shapes": [_COMPARE_ACCURACY]},
    ),
    dict(
        name="generator-and-helper",
        assignment="05_gd_vs_sgd",
        covers="minibatches as a generator (yield); a step helper in an added cell that "
        "calls the allowed logistic_gradients through a module alias",
        replace={
            "minibatches": _MINIBATCHES_GENERATOR,
            "gradient_descent": _GD_WITH_HELPER,
            "sgd": _SGD_WITH_HELPER,
        },
        before={"gradient_descent": [_STEP_HELPER_05]},
    ),
    dict(
        name="index-assignment",
        assignment="06_softmax_regression",
        covers="P[torch.arange(n), y] -= 1 in softmax_gradients; in-place division in "
        "softmax; Z[torch.arange(n), y]; a constant from an added cell",
        replace={
            "softmax": _SOFTMAX_INPLACE,
            "cross_entropy": _CROSS_ENTROPY_INDEXED,
            "softmax_gradients": _SOFTMAX_GRADIENTS_INDEXED,
        },
        before={"cross_entropy": [_CLASS_DIM_CELL]},
    ),
    dict(
        name="library-softmax",
        assignment="06_softmax_regression",
        covers="the library's softmax_logits and softmax in softmax_gradients (allowed); "
        "a plot with %matplotlib inline in an added cell",
        replace={"softmax_gradients": _SOFTMAX_GRADIENTS_LIBRARY},
        after={"softmax_is_stable_for_extreme_logits": [_PLOT_06]},
    ),
    dict(
        name="named-tuple",
        assignment="06_softmax_regression",
        covers="softmax_gradients returns a typing.NamedTuple (dW, db)",
        replace={"softmax_gradients": _SOFTMAX_GRADIENTS_NAMEDTUPLE},
    ),
    dict(
        name="ordered-dict",
        assignment="07_backpropagation",
        covers="mlp_backward returns an OrderedDict, as torch's state_dict does",
        replace={"mlp_backward": _MLP_BACKWARD_ORDERED},
    ),
    dict(
        name="index-assignment",
        assignment="07_backpropagation",
        covers="dZ[torch.arange(n), y] -= 1 and dZ /= n in mlp_backward",
        replace={"mlp_backward": _MLP_BACKWARD_INDEXED},
    ),
    dict(
        name="classes-and-recursion",
        assignment="07_backpropagation",
        covers="a Dense layer class and an activation table in an added cell; forward and "
        "backward passes by recursion",
        replace={"mlp_forward": _MLP_FORWARD_RECURSIVE, "mlp_backward": _MLP_BACKWARD_RECURSIVE},
        before={"mlp_forward": [_LAYERS_CELL]},
    ),
]


def student(entry: dict) -> str:
    """The student folder of an entry: the assignment's number and the entry's name."""
    return f"{entry['assignment'][:2]}-{entry['name']}"


def formgrade_html(path, student="student", aid="assignment") -> str:
    """A notebook rendered as nbgrader's formgrader renders an autograded one: its exporter,
    its template, the course's nbgrader_config.py."""
    from pathlib import Path

    from nbconvert import HTMLExporter
    from nbgrader.server_extensions.formgrader import handlers
    from traitlets.config.loader import PyFileConfigLoader

    repo = Path(__file__).resolve().parents[3]
    config = PyFileConfigLoader("nbgrader_config.py", path=str(repo)).load_config()
    config.HTMLExporter.template_name = "formgrade"
    config.HTMLExporter.extra_template_basedirs = [handlers.template_path]
    exporter = HTMLExporter(config=config)
    resources = {
        "assignment_id": aid,
        "notebook_id": aid,
        "submission_id": "0",
        "index": 0,
        "total": 1,
        "base_url": "",
        "student": student,
        "last_name": "",
        "first_name": "",
        "notebook_path": str(path),
    }
    html, _ = exporter.from_filename(str(path), resources=resources)
    return html


def build(entry: dict, solution_nb, folder) -> None:
    """Write the submission of one entry into folder (submitted/<student>/<id>)."""
    import copy

    import nbformat

    nb = copy.deepcopy(solution_nb)
    known = {c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells}
    for key in ("replace", "attachments", "before", "after", "rendered"):
        unknown = set(entry.get(key, {})) - known
        if unknown:
            raise KeyError(f"{entry['name']}: no cell with grade_id {sorted(unknown)}")
    added = 0

    def new_cells(items):
        nonlocal added
        out = []
        for item in items:
            added += 1
            if isinstance(item, tuple):
                cell = nbformat.v4.new_markdown_cell(item[1])
            else:
                cell = nbformat.v4.new_code_cell(item)
            cell.id = f"student-added-{added}"
            out.append(cell)
        return out

    cells = []
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        cells += new_cells(entry.get("before", {}).get(gid, []))
        if gid in entry.get("replace", {}):
            cell.source = entry["replace"][gid]
        if gid in entry.get("attachments", {}):
            cell.attachments = entry["attachments"][gid]
        cells.append(cell)
        cells += new_cells(entry.get("after", {}).get(gid, []))
    nb.cells = cells
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / f"{entry['assignment']}.ipynb")
