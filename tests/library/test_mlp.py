"""MLP: init, forward pass, hand-written backprop against autograd and finite differences."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from logreg_lessons import (
    accuracy,
    check_gradient,
    cross_entropy,
    fit_mlp,
    init_mlp,
    make_moons,
    mlp_backward,
    mlp_forward,
    mlp_predict,
    softmax_logits,
)

F64 = torch.float64


def _problem(seed, n, sizes):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, sizes[0], generator=g, dtype=F64)
    y = torch.randint(0, sizes[-1], (n,), generator=g)
    params = init_mlp(sizes, seed=seed)
    # non-zero biases so that a missing db term would show
    params = {k: v + 0.1 * torch.randn(v.shape, generator=g, dtype=F64) for k, v in params.items()}
    return X, y, params


def _autograd_grads(params, X, y, activation):
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    acts = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid}
    H, L = X, len(params) // 2
    for l in range(1, L + 1):
        Z = H @ leaves[f"W{l}"] + leaves[f"b{l}"]
        H = acts[activation](Z) if l < L else Z
    grads = torch.autograd.grad(F.cross_entropy(Z, y), list(leaves.values()))
    return dict(zip(leaves, grads, strict=True))


def test_init_shapes_scale_and_determinism():
    state = torch.get_rng_state()
    params = init_mlp([3, 5, 4, 2], seed=7)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is not touched
    assert list(params) == ["W1", "b1", "W2", "b2", "W3", "b3"]
    assert [tuple(params[k].shape) for k in params] == [(3, 5), (5,), (5, 4), (4,), (4, 2), (2,)]
    assert all(v.dtype == F64 for v in params.values())
    assert all(torch.equal(params[f"b{l}"], torch.zeros_like(params[f"b{l}"])) for l in (1, 2, 3))
    again = init_mlp([3, 5, 4, 2], seed=7)
    assert all(torch.equal(params[k], again[k]) for k in params)
    assert not torch.equal(init_mlp([3, 5, 4, 2], seed=8)["W1"], params["W1"])
    big = init_mlp([300, 200], seed=0, dtype=torch.float32)["W1"]
    assert big.dtype == torch.float32
    assert float(big.std()) == pytest.approx(math.sqrt(2 / 500), rel=0.05)  # Glorot normal


def test_no_hidden_layer_is_softmax_regression():
    X, y, params = _problem(0, 10, [3, 4])
    logits, cache = mlp_forward(params, X)
    torch.testing.assert_close(logits, softmax_logits(X, params["W1"], params["b1"]))
    assert cache["pre"] == [] and cache["inputs"][0] is X and cache["activation"] == "tanh"


def test_cache_holds_layer_inputs_and_pre_activations():
    X, y, params = _problem(1, 6, [2, 5, 3, 2])
    logits, cache = mlp_forward(params, X, activation="relu")
    assert [tuple(h.shape) for h in cache["inputs"]] == [(6, 2), (6, 5), (6, 3)]
    assert [tuple(z.shape) for z in cache["pre"]] == [(6, 5), (6, 3)]
    torch.testing.assert_close(cache["inputs"][1], cache["pre"][0].clamp(min=0))
    assert cache["logits"] is logits and logits.shape == (6, 2)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu"])
@pytest.mark.parametrize("hidden", [[4], [5, 3], [4, 3, 5]], ids=["1hidden", "2hidden", "3hidden"])
def test_backward_matches_autograd_and_finite_differences(activation, hidden):
    sizes = [3, *hidden, 3]
    X, y, params = _problem(2, 12, sizes)
    logits, cache = mlp_forward(params, X, activation)
    grads = mlp_backward(params, cache, y)
    ref = _autograd_grads(params, X, y, activation)
    assert list(grads) == list(params)
    for key in params:
        assert grads[key].shape == params[key].shape
        torch.testing.assert_close(grads[key], ref[key], rtol=1e-6, atol=1e-12)
    if activation == "relu":
        return  # finite differences are unreliable at the kink of relu
    for key in params:

        def loss(value, key=key):
            return cross_entropy(mlp_forward({**params, key: value}, X, activation)[0], y)

        def grad(value, key=key):
            p = {**params, key: value}
            return mlp_backward(p, mlp_forward(p, X, activation)[1], y)[key]

        res = check_gradient(loss, grad, params[key], n=12, name=key)
        assert res, res.message


@given(
    st.integers(0, 10_000),
    st.integers(1, 10),
    st.lists(st.integers(1, 5), min_size=0, max_size=3),
    st.integers(2, 4),
)
def test_backward_matches_autograd_for_random_shapes(seed, n, hidden, C):
    sizes = [2, *hidden, C]
    X, y, params = _problem(seed, n, sizes)
    grads = mlp_backward(params, mlp_forward(params, X)[1], y)
    ref = _autograd_grads(params, X, y, "tanh")
    for key in params:
        torch.testing.assert_close(grads[key], ref[key], rtol=1e-6, atol=1e-12)


def test_fit_mlp_learns_moons():
    X, y = make_moons(n_samples=200, noise=0.1, seed=0, dtype=F64)
    params, history = fit_mlp(X, y, [2, 16, 2], lr=1.0, num_steps=500, seed=0)
    assert accuracy(y, mlp_predict(params, X)) > 0.95
    assert len(history) == 500 and all(isinstance(h, float) for h in history)
    assert history[-1] < history[0] / 10
    assert history[0] == pytest.approx(
        float(cross_entropy(mlp_forward(init_mlp([2, 16, 2], seed=0), X)[0], y))
    )


def test_fit_mlp_learns_xor():
    g = torch.Generator().manual_seed(0)
    X = torch.rand(200, 2, generator=g, dtype=F64) * 2 - 1
    y = ((X[:, 0] > 0) ^ (X[:, 1] > 0)).long()
    params, _ = fit_mlp(X, y, [2, 8, 2], lr=1.0, num_steps=500)
    pred = mlp_predict(params, X)
    assert pred.dtype == torch.int64 and accuracy(y, pred) > 0.95


def test_fit_mlp_float32_and_progress():
    X, y = make_moons(n_samples=40, seed=1)
    params, history = fit_mlp(X, y, [2, 4, 2], lr=0.5, num_steps=3, progress=True)
    assert params["W1"].dtype == torch.float32 and len(history) == 3


X_ERR, Y_ERR, P_ERR = _problem(3, 5, [2, 3, 2])


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({k: v for k, v in P_ERR.items() if k != "b2"}, r"missing \['b2'\], unexpected \[\]"),
        (P_ERR | {"W3": torch.zeros(2, 2, dtype=F64)}, r"W1, b1, \.\.\., W3, b3: missing \['b3'\]"),
        (P_ERR | {"bias": torch.zeros(2, dtype=F64)}, r"unexpected \['bias'\]"),
        (
            P_ERR | {"W2": torch.zeros(4, 2, dtype=F64)},
            r"params\['W2'\] has shape \(4, 2\) but W1 "
            r"has shape \(2, 3\), so 3 columns: W2 must have 3 rows",
        ),
        (
            P_ERR | {"W1": torch.zeros(5, 3, dtype=F64)},
            r"params\['W1'\] has shape \(5, 3\) but X has "
            r"2 columns",
        ),
        (
            P_ERR | {"b1": torch.zeros(2, dtype=F64)},
            r"params\['b1'\] must have shape \(3,\) to match "
            r"W1 \(2, 3\), got \(2,\)",
        ),
        (
            P_ERR | {"W1": torch.zeros(2, dtype=F64)},
            r"params\['W1'\] must be a 2-D tensor, got \(2,\)",
        ),
        (
            P_ERR | {"W1": P_ERR["W1"].float()},
            r"params\['W1'\] has dtype torch.float32 but X has "
            "dtype torch.float64",
        ),
        ([1, 2], "params must be a non-empty dict of tensors, got list"),
        ({"W1": P_ERR["W1"], "b1": P_ERR["b1"], "w2": P_ERR["W2"]}, r"unexpected \['w2'\]"),
    ],
)
def test_bad_params_are_named(params, match):
    with pytest.raises(ValueError, match=match):
        mlp_forward(params, X_ERR)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: mlp_forward(P_ERR, X_ERR, activation="softplus"), "activation must be one of"),
        (lambda: mlp_forward(P_ERR, X_ERR[:, 0]), "X must be a 2-D tensor"),
        (lambda: mlp_backward(P_ERR, mlp_forward(P_ERR, X_ERR)[1], Y_ERR + 2), "class indices"),
        (
            lambda: mlp_backward(P_ERR, mlp_forward(P_ERR, X_ERR)[1], Y_ERR[:3]),
            r"shape \(n,\) = \(5,\)",
        ),
        (lambda: mlp_backward(P_ERR, {"logits": X_ERR}, Y_ERR), "cache must be the second output"),
        (lambda: init_mlp([3]), r"sizes must list at least 2 widths \[d, C\], got \[3\]"),
        (lambda: init_mlp([3, 0, 2]), r"sizes\[1\] must be an integer >= 1, got 0"),
        (
            lambda: fit_mlp(X_ERR, Y_ERR, [3, 4, 2], 0.1, 1),
            r"sizes\[0\] must equal the number of "
            r"features 2, got \[3, 4, 2\]",
        ),
        (lambda: fit_mlp(X_ERR, Y_ERR, [2, 4, 2], 0.0, 1), "lr must be a positive finite number"),
        (lambda: fit_mlp(X_ERR, Y_ERR, [2, 4, 2], 0.1, -1), "num_steps must be an integer >= 0"),
        (lambda: fit_mlp(X_ERR, Y_ERR.double(), [2, 4, 2], 0.1, 1), "integer class indices"),
    ],
)
def test_other_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
