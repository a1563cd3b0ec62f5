"""Plotting helpers for the book: data, decision boundaries, loss curves and loss surfaces.

matplotlib only; ``pyplot`` is imported inside the functions so that importing the library
stays cheap. Colours come from the Okabe-Ito palette (Okabe & Ito, "Color Universal Design",
2008), which stays distinguishable under the common colour-vision deficiencies; classes also
get different markers. Every function labels its axes, sets the title when one is given, and
returns the ``Axes`` (no ``plt.show()``: the notebook displays the figure).
"""

from __future__ import annotations

import numpy as np
import torch

from logreg_lessons._validation import as_tensor, check_label_vector
from logreg_lessons.stable import log_sigmoid

# Okabe-Ito, reordered so that the first colours contrast most on white (yellow near the end).
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]


def use_style():
    """Set matplotlib defaults for the book: palette as colour cycle, light grid, no top/right."""
    import matplotlib as mpl
    from cycler import cycler

    mpl.rcParams.update(
        {
            "axes.prop_cycle": cycler(color=PALETTE),
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.titlesize": "medium",
            "figure.figsize": (6.0, 4.0),
            "figure.dpi": 100,
            "legend.frameon": False,
            "image.cmap": "viridis",
        }
    )


def _axes(ax):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots()
    return ax


def _numpy(x):
    return as_tensor("x", x).detach().cpu().to(torch.float64).numpy()


def _finish(ax, xlabel, ylabel, title):
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title is not None:
        ax.set_title(title)
    return ax


def plot_data(X, y, ax=None, title=None, xlabel="$x_1$", ylabel="$x_2$", alpha=0.8, s=18):
    """Scatter the first two features of ``X`` (n, d >= 2), one colour and marker per class."""
    X_np, y_np = _numpy(X), check_label_vector("y", y).numpy()
    if X_np.ndim != 2 or X_np.shape[1] < 2 or X_np.shape[0] != y_np.shape[0]:
        raise ValueError(f"X must have shape (n, d >= 2) with n = len(y), got {X_np.shape}")
    ax = _axes(ax)
    for k in np.unique(y_np):
        pts = X_np[y_np == k]
        colour, marker = PALETTE[k % len(PALETTE)], MARKERS[k % len(MARKERS)]
        ax.scatter(
            pts[:, 0],
            pts[:, 1],
            color=colour,
            marker=marker,
            s=s,
            alpha=alpha,
            edgecolors="white",
            linewidths=0.4,
            label=f"class {k}",
        )
    ax.legend(loc="best")
    return _finish(ax, xlabel, ylabel, title)


def plot_decision_boundary(
    predict_fn,
    X,
    y,
    ax=None,
    resolution=200,
    pad=0.1,
    threshold=0.5,
    title=None,
    xlabel="$x_1$",
    ylabel="$x_2$",
    alpha=0.25,
):
    """Colour the plane by the model's prediction and draw the data on top.

    Parameters
    ----------
    predict_fn : callable
        Maps a tensor ``(m, 2)`` (dtype of ``X``) to either probabilities of class 1 ``(m,)``
        (binary: shaded, with the ``threshold`` contour drawn), class labels ``(m,)`` (filled
        regions in palette colours), or class probabilities/scores ``(m, C)`` (argmax taken).
    X : tensor of shape (n, 2)
    y : tensor of shape (n,), labels
    resolution : int
        Grid points per axis.
    pad : float
        Margin around the data, as a fraction of its range.
    """
    from matplotlib.colors import LinearSegmentedColormap

    X_t = as_tensor("X", X)
    X_np, y_np = _numpy(X_t), check_label_vector("y", y).numpy()
    lo, hi = X_np[:, :2].min(axis=0), X_np[:, :2].max(axis=0)
    margin = pad * np.maximum(hi - lo, 1e-12)
    g0 = np.linspace(lo[0] - margin[0], hi[0] + margin[0], resolution)
    g1 = np.linspace(lo[1] - margin[1], hi[1] + margin[1], resolution)
    G0, G1 = np.meshgrid(g0, g1)
    dtype = X_t.dtype if X_t.is_floating_point() else torch.float32
    grid = torch.as_tensor(np.column_stack([G0.ravel(), G1.ravel()]), dtype=dtype)
    with torch.no_grad():
        out = as_tensor("predict_fn(grid)", predict_fn(grid)).detach().cpu()
    if out.ndim == 2:
        out = out.argmax(dim=1)
    out = out.to(torch.float64).numpy().reshape(G0.shape)
    num_classes = int(max(y_np.max(initial=0), out.max(initial=0))) + 1
    ax = _axes(ax)
    is_proba = num_classes <= 2 and not np.all(out == np.round(out))
    if is_proba:  # probabilities of class 1: shade from class-0 colour to class-1 colour
        cmap = LinearSegmentedColormap.from_list("binary", [PALETTE[0], "white", PALETTE[1]])
        ax.contourf(G0, G1, out, levels=np.linspace(0, 1, 11), cmap=cmap, alpha=alpha + 0.2)
        ax.contour(G0, G1, out, levels=[threshold], colors="black", linewidths=1.5)
    else:
        colours = [PALETTE[k % len(PALETTE)] for k in range(max(num_classes, 2))]
        ax.contourf(
            G0, G1, out, levels=np.arange(len(colours) + 1) - 0.5, colors=colours, alpha=alpha
        )
        ax.contour(
            G0, G1, out, levels=np.arange(len(colours)) + 0.5, colors="black", linewidths=0.8
        )
    plot_data(X_np, y_np, ax=ax)
    return _finish(ax, xlabel, ylabel, title)


def _moving_average(values, window):
    return np.convolve(values, np.ones(window) / window, mode="valid")


def plot_curves(
    histories, ax=None, smooth=None, ylabel="loss", xlabel="step", logy=False, title=None
):
    """Plot one curve per entry of ``histories`` (name -> list of floats).

    With ``smooth=k`` the raw curve is drawn faintly and its moving average over ``k`` points
    on top (useful for noisy mini-batch losses). ``logy=True`` uses a log scale for y.
    Non-finite values (a diverging run) are simply not drawn.
    """
    if not isinstance(histories, dict) or not histories:
        raise ValueError("histories must be a non-empty dict name -> list of values")
    if smooth is not None and (not isinstance(smooth, int) or smooth < 1):
        raise ValueError(f"smooth must be a positive integer window or None, got {smooth!r}")
    ax = _axes(ax)
    for i, (name, values) in enumerate(histories.items()):
        values = np.asarray([float(v) for v in values], dtype=np.float64)
        values[~np.isfinite(values)] = np.nan
        colour = PALETTE[i % len(PALETTE)]
        steps = np.arange(len(values))
        if smooth and smooth > 1 and len(values) >= smooth:
            ax.plot(steps, values, color=colour, alpha=0.25, linewidth=0.8)
            avg = _moving_average(values, smooth)
            ax.plot(steps[smooth - 1 :], avg, color=colour, label=f"{name} (avg of {smooth})")
        else:
            ax.plot(steps, values, color=colour, label=name)
    if logy:
        ax.set_yscale("log")
    ax.legend(loc="best")
    return _finish(ax, xlabel, ylabel, title)


def plot_activation_curves(z, curves, ax=None, title=None, xlabel="$z$", ylabel="$f(z)$"):
    """Plot functions of ``z``: ``curves`` maps a name to values at ``z`` or to a callable."""
    z_np = _numpy(z)
    ax = _axes(ax)
    for i, (name, curve) in enumerate(curves.items()):
        values = curve(as_tensor("z", z)) if callable(curve) else curve
        ax.plot(z_np, _numpy(values), color=PALETTE[i % len(PALETTE)], label=name)
    ax.axhline(0.0, color="grey", linewidth=0.6)
    ax.axvline(0.0, color="grey", linewidth=0.6)
    ax.legend(loc="best")
    return _finish(ax, xlabel, ylabel, title)


def _scalar(value, feature):
    t = torch.as_tensor(value).detach().reshape(-1)
    return float(t[feature] if t.numel() > 1 else t[0])


def plot_loss_surface(
    X,
    y,
    paths=None,
    w_range=(-5.0, 5.0),
    b_range=(-5.0, 5.0),
    feature=0,
    ax=None,
    levels=30,
    resolution=100,
    title=None,
    xlabel="$w$",
    ylabel="$b$",
):
    """Contours of the mean binary cross-entropy of ``sigmoid(w x + b)`` over a (w, b) grid.

    ``x = X[:, feature]`` (or ``X`` itself when 1-D). ``paths`` maps a name to a sequence of
    ``(w, b)`` pairs (floats or tensors; for a vector ``w`` its ``feature`` entry is used), for
    example the parameters visited by an optimiser; each is drawn with markers, its start as a
    circle and its end as a star. A bare list is taken as one path named "path".
    """
    x = _numpy(X)
    x = x[:, feature] if x.ndim == 2 else x
    y_np = check_label_vector("y", y).numpy().astype(np.float64)
    if x.shape[0] != y_np.shape[0]:
        raise ValueError(
            f"X and y must have the same number of samples, got {x.shape[0]} and {y_np.shape[0]}"
        )
    ws = np.linspace(*w_range, resolution)
    bs = np.linspace(*b_range, resolution)
    x_t, y_t = torch.as_tensor(x), torch.as_tensor(y_np)
    loss = np.empty((resolution, resolution))
    for i, b in enumerate(bs):  # one row of the grid at a time keeps memory at (res, n)
        z = torch.as_tensor(ws)[:, None] * x_t + b
        loss[i] = (-(y_t * log_sigmoid(z) + (1 - y_t) * log_sigmoid(-z))).mean(dim=1).numpy()
    ax = _axes(ax)
    filled = ax.contourf(ws, bs, loss, levels=levels, cmap="viridis")
    ax.contour(ws, bs, loss, levels=levels, colors="white", linewidths=0.3, alpha=0.5)
    ax.figure.colorbar(filled, ax=ax, label="mean binary cross-entropy")
    if paths is not None:
        if not isinstance(paths, dict):
            paths = {"path": paths}
        for i, (name, path) in enumerate(paths.items()):
            pw = [_scalar(w, feature) for w, _ in path]
            pb = [_scalar(b, 0) for _, b in path]
            colour = PALETTE[(i + 1) % len(PALETTE)]
            ax.plot(pw, pb, color=colour, marker=".", markersize=4, linewidth=1.2, label=name)
            ax.plot(pw[:1], pb[:1], color=colour, marker="o", markersize=8)
            ax.plot(
                pw[-1:],
                pb[-1:],
                color=colour,
                marker="*",
                markersize=14,
                zorder=4,
                markeredgecolor="black",
                markeredgewidth=0.8,
            )
        ax.legend(loc="best")
    ax.set_xlim(*w_range)
    ax.set_ylim(*b_range)
    return _finish(ax, xlabel, ylabel, title)
