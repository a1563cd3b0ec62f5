"""Smoke tests of the plotting helpers with the Agg backend: each returns labelled Axes."""

import warnings

import matplotlib
import matplotlib.pyplot as plt  # the Agg backend is chosen in conftest.py (MPLBACKEND)
import pytest
import torch
from matplotlib.colors import to_hex

from logreg_lessons import (
    fit_softmax,
    gradient_descent,
    make_blobs,
    make_multiclass_blobs,
    plots,
    predict,
    predict_proba,
    sigmoid,
    softmax_predict,
    softmax_predict_proba,
)

F64 = torch.float64


@pytest.fixture(autouse=True)
def _close_figures():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a plot helper must not warn (strict book build)
        yield
    plt.close("all")


@pytest.fixture(scope="module")
def binary():
    X, y = make_blobs(n_per_class=30, seed=0, dtype=F64)
    X = (X - X.mean(0)) / X.std(0)
    res = gradient_descent(X, y, lr=0.5, num_steps=20)
    return X, y, res


@pytest.fixture(scope="module")
def three_classes():
    X, y = make_multiclass_blobs(n_per_class=20, num_classes=3, seed=0, dtype=F64)
    return X, y, fit_softmax(X, y, 3, lr=0.1, num_steps=30)


def _labelled(ax, title=None):
    assert isinstance(ax, matplotlib.axes.Axes)
    assert ax.get_xlabel() and ax.get_ylabel()
    if title is not None:
        assert ax.get_title() == title
    return True


def test_palette_is_okabe_ito_and_use_style_sets_cycle():
    assert len(plots.PALETTE) == 8 and len(set(plots.PALETTE)) == 8
    assert "#E69F00" in plots.PALETTE and "#56B4E9" in plots.PALETTE
    plots.use_style()
    cycle = [to_hex(c["color"]).upper() for c in matplotlib.rcParams["axes.prop_cycle"]]
    assert cycle == plots.PALETTE
    assert matplotlib.rcParams["axes.grid"] and matplotlib.rcParams["grid.alpha"] < 1


def test_plot_data(binary):
    X, y, _ = binary
    ax = plots.plot_data(X, y, title="two blobs")
    assert _labelled(ax, "two blobs") and len(ax.collections) == 2


def test_plot_data_rejects_one_feature(binary):
    X, y, _ = binary
    with pytest.raises(ValueError, match=r"X must have shape \(n, d >= 2\)"):
        plots.plot_data(X[:, :1], y)


@pytest.mark.parametrize("output", ["proba", "labels"])
def test_decision_boundary_binary(binary, output):
    X, y, res = binary
    fn = predict_proba if output == "proba" else predict
    _, ax = plt.subplots()
    out = plots.plot_decision_boundary(lambda G: fn(G, res.w, res.b), X, y, ax=ax, resolution=40)
    assert out is ax and _labelled(ax)


@pytest.mark.parametrize("output", ["labels", "proba"])
def test_decision_boundary_three_classes(three_classes, output):
    X, y, res = three_classes
    fn = softmax_predict if output == "labels" else softmax_predict_proba
    ax = plots.plot_decision_boundary(
        lambda G: fn(G, res.w, res.b), X, y, resolution=30, title="three classes"
    )
    assert _labelled(ax, "three classes")


def test_plot_curves_with_smoothing_log_scale_and_divergence():
    histories = {"gd": [1.0, 0.5, 0.25, 0.2], "diverging": [1.0, 10.0, float("inf"), float("nan")]}
    ax = plots.plot_curves(histories, smooth=2, logy=True, title="loss")
    assert _labelled(ax, "loss") and ax.get_yscale() == "log"
    assert ax.get_xlabel() == "step" and ax.get_ylabel() == "loss"
    ax = plots.plot_curves({"sgd": list(range(1, 50))}, smooth=100, xlabel="update")
    assert ax.get_xlabel() == "update"


@pytest.mark.parametrize(
    ("histories", "smooth", "match"),
    [({}, None, "non-empty dict"), ({"a": [1.0]}, 0, "smooth must be a positive integer")],
)
def test_plot_curves_errors(histories, smooth, match):
    with pytest.raises(ValueError, match=match):
        plots.plot_curves(histories, smooth=smooth)


def test_plot_activation_curves():
    z = torch.linspace(-6, 6, 50, dtype=F64)
    ax = plots.plot_activation_curves(z, {"sigmoid": sigmoid, "tanh": torch.tanh(z)}, title="f")
    assert _labelled(ax, "f") and len(ax.get_lines()) >= 2


def test_plot_loss_surface_with_paths(binary):
    X, y, res = binary
    paths = {"gd": [(torch.zeros(2, dtype=F64), torch.tensor(0.0)), (res.w, res.b)]}
    ax = plots.plot_loss_surface(X, y, paths=paths, feature=0, resolution=20, levels=10, title="s")
    assert _labelled(ax, "s") and ax.get_xlabel() == "$w$" and ax.get_ylabel() == "$b$"
    ax = plots.plot_loss_surface(X[:, 1], y, paths=[(0.0, 0.0), (1.0, -1.0)], resolution=10)
    assert _labelled(ax)
    with pytest.raises(ValueError, match="same number of samples"):
        plots.plot_loss_surface(X, y[:-1])
