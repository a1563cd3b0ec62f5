"""A multilayer perceptron with hand-written backpropagation (no autograd).

``D`` layers ``l = 1..D`` with parameters ``W_l`` of shape ``(sizes[l-1], sizes[l])`` and
``b_l`` of shape ``(sizes[l],)``. Forward, with ``H_0 = X`` and ``f`` the hidden activation::

    Z_l = H_{l-1} W_l + b_l          # pre-activation, (n, sizes[l])
    H_l = f(Z_l)                     # for l < D; the last Z_D is the logits

Backward of the mean cross-entropy, from the top layer down (the chain rule, one layer at a
time)::

    dZ_D = (softmax(Z_D) - onehot(y)) / n
    dW_l = H_{l-1}^T dZ_l            # (sizes[l-1], sizes[l]), like W_l
    db_l = sum over samples of dZ_l  # (sizes[l],), like b_l
    dH_{l-1} = dZ_l W_l^T            # back through the linear map
    dZ_{l-1} = dH_{l-1} * f'(Z_{l-1}) # back through the activation, element-wise
"""

from __future__ import annotations

import math
import re

import torch

from logreg_lessons._validation import check_class_labels, check_count, check_matrix, check_rate
from logreg_lessons.losses import cross_entropy
from logreg_lessons.optim import _progress
from logreg_lessons.stable import sigmoid, softmax

# Each activation: forward f(z), and f'(z) written from the output a = f(z) when that is cheaper.
ACTIVATIONS = {
    "tanh": (torch.tanh, lambda z, a: 1 - a * a),
    "relu": (lambda z: z.clamp(min=0), lambda z, a: (z > 0).to(z.dtype)),
    "sigmoid": (sigmoid, lambda z, a: a * (1 - a)),
}


def init_mlp(sizes, seed=0, dtype=torch.float64):
    """Random parameters for an MLP with layer widths ``sizes = [d, h_1, ..., C]``.

    ``W_l`` is drawn from ``N(0, 2 / (fan_in + fan_out))`` (Glorot/Xavier, suited to tanh)
    with a private ``torch.Generator`` seeded by ``seed`` (the global RNG is untouched);
    biases start at zero.

    Returns
    -------
    dict
        Keys ``"W1", "b1", ..., "WD", "bD"`` with ``D = len(sizes) - 1`` layers.
    """
    sizes = [check_count(s, f"sizes[{i}]", minimum=1) for i, s in enumerate(list(sizes))]
    if len(sizes) < 2:
        raise ValueError(f"sizes must list at least 2 widths [d, C], got {sizes}")
    gen = torch.Generator().manual_seed(int(seed))
    params = {}
    for l in range(1, len(sizes)):
        fan_in, fan_out = sizes[l - 1], sizes[l]
        scale = math.sqrt(2.0 / (fan_in + fan_out))
        params[f"W{l}"] = torch.randn(fan_in, fan_out, generator=gen, dtype=dtype) * scale
        params[f"b{l}"] = torch.zeros(fan_out, dtype=dtype)
    return params


def mlp_forward(params, X, activation="tanh"):
    """Forward pass; returns the logits and a cache for :func:`mlp_backward`.

    Parameters
    ----------
    params : dict
        ``W1, b1, ..., WD, bD`` as made by :func:`init_mlp`.
    X : torch.Tensor of shape (n, d)
    activation : {"tanh", "relu", "sigmoid"}
        Hidden-layer activation (the output layer has none: its scores are logits).

    Returns
    -------
    logits : torch.Tensor of shape (n, C)
    cache : dict
        ``inputs`` (``H_0 = X, ..., H_{D-1}``), ``pre`` (``Z_1, ..., Z_{D-1}``), ``logits``
        and ``activation``.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    X = check_matrix("X", X)
    D = _check_params(params, X)
    f, _ = ACTIVATIONS[activation]
    H, inputs, pre = X, [], []
    for l in range(1, D + 1):
        inputs.append(H)
        Z = H @ params[f"W{l}"] + params[f"b{l}"]
        if l < D:
            pre.append(Z)
            H = f(Z)
    cache = {"inputs": inputs, "pre": pre, "logits": Z, "activation": activation}
    return Z, cache


def mlp_backward(params, cache, y):
    """Gradients of the mean ``cross_entropy(logits, y)`` with respect to every parameter.

    Parameters
    ----------
    params : dict
        The parameters used in the forward pass.
    cache : dict
        Second output of :func:`mlp_forward`.
    y : torch.Tensor of shape (n,), int64 class indices

    Returns
    -------
    dict
        Same keys and shapes as ``params``: ``dW_l`` under ``"W{l}"`` and ``db_l`` under
        ``"b{l}"``.
    """
    if not isinstance(cache, dict) or not {"inputs", "pre", "logits", "activation"} <= cache.keys():
        raise ValueError("cache must be the second output of mlp_forward(params, X)")
    D = _check_params(params, cache["inputs"][0])
    logits = cache["logits"]
    n, C = logits.shape
    y = check_class_labels("y", y, n, num_classes=C, against="the logits")
    _, dact = ACTIVATIONS[cache["activation"]]
    dZ = (softmax(logits, dim=1) - torch.nn.functional.one_hot(y, C).to(logits.dtype)) / n
    grads = {}
    for l in range(D, 0, -1):
        H_prev = cache["inputs"][l - 1]
        grads[f"W{l}"] = H_prev.T @ dZ
        grads[f"b{l}"] = dZ.sum(dim=0)
        if l > 1:
            dH = dZ @ params[f"W{l}"].T
            dZ = dH * dact(cache["pre"][l - 2], H_prev)  # H_prev = f(Z_{l-1})
    return {key: grads[key] for key in params}


def fit_mlp(X, y, sizes, lr, num_steps, seed=0, progress=False, activation="tanh"):
    """Train an MLP by full-batch gradient descent on the mean cross-entropy.

    Parameters
    ----------
    X : torch.Tensor of shape (n, d), floating dtype
    y : torch.Tensor of shape (n,), int64 labels in ``[0, sizes[-1])``
    sizes : list of int
        ``[d, h_1, ..., C]``; ``sizes[0]`` must equal ``d``.
    lr : float
        Learning rate, > 0.
    num_steps : int
        Number of updates.
    seed : int
        Seed of :func:`init_mlp`.
    progress : bool, default False
        Show a tqdm progress bar.
    activation : str, default "tanh"

    Returns
    -------
    params : dict
    history : list of float
        Loss before each update (``len(history) == num_steps``).
    """
    X = check_matrix("X", X)
    sizes = list(sizes)
    if len(sizes) < 2 or sizes[0] != X.shape[1]:
        raise ValueError(f"sizes[0] must equal the number of features {X.shape[1]}, got {sizes}")
    y = check_class_labels("y", y, X.shape[0], num_classes=sizes[-1])
    lr = check_rate(lr)
    num_steps = check_count(num_steps, "num_steps")
    params = init_mlp(sizes, seed=seed, dtype=X.dtype)
    history = []
    for _ in _progress(range(num_steps), progress, "mlp"):
        logits, cache = mlp_forward(params, X, activation)
        history.append(float(cross_entropy(logits, y)))
        grads = mlp_backward(params, cache, y)
        params = {key: params[key] - lr * grads[key] for key in params}
    return params, history


def mlp_predict(params, X, activation="tanh"):
    """Predicted class ``argmax`` of the logits, shape (n,), int64."""
    logits, _ = mlp_forward(params, X, activation)
    return logits.argmax(dim=1)


def _check_params(params, X=None) -> int:
    """Validate an MLP parameter dict (keys, shapes, chaining); return the number of layers."""
    if not isinstance(params, dict) or not params:
        raise ValueError(f"params must be a non-empty dict of tensors, got {type(params).__name__}")
    layers = [int(k[1:]) for k in params if isinstance(k, str) and re.fullmatch(r"[Wb][1-9]\d*", k)]
    D = max(layers, default=1)
    expected = {f"{p}{l}" for l in range(1, D + 1) for p in "Wb"}
    missing, extra = sorted(expected - params.keys()), sorted(map(str, params.keys() - expected))
    if missing or extra:
        raise ValueError(
            f"params must have keys W1, b1, ..., W{D}, b{D}: missing {missing}, unexpected {extra}"
        )
    width = None if X is None else X.shape[1]
    for l in range(1, D + 1):
        W, b = params[f"W{l}"], params[f"b{l}"]
        if not isinstance(W, torch.Tensor) or W.ndim != 2:
            raise ValueError(f"params['W{l}'] must be a 2-D tensor, got {_shape(W)}")
        if X is not None and W.dtype != X.dtype:
            raise ValueError(f"params['W{l}'] has dtype {W.dtype} but X has dtype {X.dtype}")
        if width is not None and W.shape[0] != width:
            src = "X has" if l == 1 else f"W{l - 1} has shape {_shape(params[f'W{l - 1}'])}, so"
            raise ValueError(
                f"params['W{l}'] has shape {_shape(W)} but {src} {width} columns: "
                f"W{l} must have {width} rows"
            )
        if not isinstance(b, torch.Tensor) or tuple(b.shape) != (W.shape[1],):
            raise ValueError(
                f"params['b{l}'] must have shape ({W.shape[1]},) to match W{l} {_shape(W)}, "
                f"got {_shape(b)}"
            )
        if b.dtype != W.dtype:
            raise ValueError(f"params['b{l}'] has dtype {b.dtype} but W{l} has dtype {W.dtype}")
        width = W.shape[1]
    return D


def _shape(t):
    return tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
