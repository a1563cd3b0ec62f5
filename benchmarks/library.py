"""The library's costs against the PyTorch work they cannot avoid (section "library").

- one full-batch gradient-descent step (``logistic_gradients`` + the update) on n x d float32
  against its floor, the two matrix-vector products any such step needs (``X @ w``,
  ``X.T @ r``);
- one SGD epoch (batch size 256) against that gradient-descent step;
- the stable functions against PyTorch's own kernels on large tensors;
- ``mlp_backward`` against autograd on the same network.

Each figure interleaves the measured call and its floor (ABAB) after a warm-up; inputs are
fixed (seeded) and built once, outside the clock. When a target is missed, the measured call
is profiled (torch.profiler) and the operators that dominate are reported.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

import logreg_lessons as ll
from benchmarks._timing import Figure, Section, clock, interleaved

FULL = {"n": 1_000_000, "d": 32, "elements": 2**22, "rows": 4096, "cols": 1024, "mlp_n": 8192}
FULL["mlp_sizes"] = [64, 256, 256, 10]
QUICK = {"n": 20_000, "d": 32, "elements": 2**16, "rows": 256, "cols": 256, "mlp_n": 512}
QUICK["mlp_sizes"] = [16, 32, 32, 3]


def _pair(key, name, floor_name, measure, floor, cfg, number=1, target=None, note="") -> Figure:
    runs, floors = interleaved(
        lambda: clock(measure, number),
        lambda: clock(floor, number),
        repeats=cfg.library_repeats,
        warmup=cfg.warmup,
    )
    return Figure(key, name, floor_name, runs, floors, target=target, note=note)


def _profile(fn: Callable[[], object], rows: int = 6) -> str:
    """The operators that dominate one call of ``fn`` (self CPU time), as a Markdown table."""
    from torch.profiler import ProfilerActivity, profile

    fn()  # warm
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events) or 1
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    lines = ["| operator | calls | self CPU | share |", "| --- | --- | --- | --- |"]
    for e in events[:rows]:
        share = 100 * e.self_cpu_time_total / total
        lines.append(
            f"| `{e.key}` | {e.count} | {e.self_cpu_time_total / 1e3:.2f} ms | {share:.0f}% |"
        )
    return "\n".join(lines)


def _gd_breakdown(X, y, w, b, lr, number) -> str | None:
    """Seconds of the checks, the arithmetic and the update inside one GD step."""
    try:
        from logreg_lessons._validation import check_binary_problem
        from logreg_lessons.gradients import _logistic_gradients
    except ImportError:  # private helpers renamed: the profile above still says enough
        return None
    dw, db = _logistic_gradients(X, y, w, b)
    parts = {
        "input checks (`check_binary_problem`: shapes, dtypes, 0/1 labels)": clock(
            lambda: check_binary_problem(X, y, w, b), number
        ),
        "gradient arithmetic (`_logistic_gradients`)": clock(
            lambda: _logistic_gradients(X, y, w, b), number
        ),
        "update `w - lr * dw`, `b - lr * db`": clock(lambda: (w - lr * dw, b - lr * db), number),
    }
    total = sum(parts.values())
    lines = ["| part of one step | time | share |", "| --- | --- | --- |"]
    lines += [f"| {k} | {v * 1e3:.2f} ms | {100 * v / total:.0f}% |" for k, v in parts.items()]
    return "\n".join(lines)


def run(cfg, bar) -> Section:
    """Measure every library figure; ``cfg`` holds quick, threads, library_repeats, warmup."""
    sizes = QUICK if cfg.quick else FULL
    torch.set_num_threads(cfg.threads)
    section = Section(
        "library",
        "The library",
        settings={
            "torch_threads": torch.get_num_threads(),
            "repeats": cfg.library_repeats,
            "warmup": cfg.warmup,
            **{k: v for k, v in sizes.items()},
        },
    )
    bar.reset(total=8)
    gen = torch.Generator().manual_seed(0)
    n, d = sizes["n"], sizes["d"]
    X = torch.randn(n, d, generator=gen)
    w_true = torch.randn(d, generator=gen)
    y = (torch.rand(n, generator=gen) < torch.sigmoid(X @ w_true)).float()
    w = 0.1 * torch.randn(d, generator=gen)
    b = torch.tensor(0.0)
    r = torch.randn(n, generator=gen)
    lr = 0.1
    small = 20 if cfg.quick else 1  # calls per timed sample: enough to leave timer noise behind

    def gd_step():
        dw, db = ll.logistic_gradients(X, y, w, b)
        return w - lr * dw, b - lr * db

    def matvecs():
        return X @ w, X.T @ r

    figures = section.figures

    def add(figure: Figure) -> None:
        figures.append(figure)
        bar.update()

    add(
        _pair(
            "gd_step",
            f"GD step: `logistic_gradients` + update, n = {n:,}, d = {d}, float32",
            "`X @ w` + `X.T @ r`",
            gd_step,
            matvecs,
            cfg,
            number=small,
            target=("<=", 1.5),
        )
    )

    def sgd_epoch():
        return ll.sgd(X, y, lr=lr, num_epochs=1, batch_size=256, seed=0)

    runs, floors = interleaved(
        lambda: clock(sgd_epoch),
        lambda: clock(gd_step, small),
        repeats=max(1, min(cfg.library_repeats, 5)),
        warmup=cfg.warmup,
    )
    add(
        Figure(
            "sgd_epoch",
            f"SGD epoch, batch size 256 ({-(-n // 256):,} updates)",
            "one GD step (above)",
            runs,
            floors,
            note="`sgd(num_epochs=1)`: input checks once, every batch's loss and gradients, "
            "and the full-data loss at the end of the epoch",
        )
    )

    z = 8 * torch.randn(sizes["elements"], generator=gen)
    Z = 8 * torch.randn(sizes["rows"], sizes["cols"], generator=gen)
    stable = [
        ("sigmoid", "`sigmoid(z)`", "`torch.sigmoid`", ll.sigmoid, torch.sigmoid, z),
        ("log_sigmoid", "`log_sigmoid(z)`", "`F.logsigmoid`", ll.log_sigmoid, F.logsigmoid, z),
        (
            "logsumexp",
            "`logsumexp(Z, dim=-1)`",
            "`torch.logsumexp`",
            lambda t: ll.logsumexp(t, dim=-1),
            lambda t: torch.logsumexp(t, dim=-1),
            Z,
        ),
        (
            "log_softmax",
            "`log_softmax(Z, dim=-1)`",
            "`F.log_softmax`",
            lambda t: ll.log_softmax(t, dim=-1),
            lambda t: F.log_softmax(t, dim=-1),
            Z,
        ),
    ]
    for key, name, floor_name, ours, theirs, t in stable:
        shape = " x ".join(f"{s:,}" for s in t.shape)
        add(
            _pair(
                key,
                f"{name} on {shape} float32",
                floor_name,
                lambda ours=ours, t=t: ours(t),
                lambda theirs=theirs, t=t: theirs(t),
                cfg,
                number=small if cfg.quick else 3,
                target=("<=", 2.0),
            )
        )

    add(_mlp_figure(sizes, cfg, gen))
    add(_unchecked_gd_figure(X, y, w, b, lr, matvecs, cfg, small))

    section.details = _explain_misses(figures, gd_step, stable, X, y, w, b, lr, small)
    return section


def _mlp_figure(sizes, cfg, gen) -> Figure:
    """``mlp_backward`` against ``torch.autograd.grad`` through the same forward pass."""
    layer_sizes, n = sizes["mlp_sizes"], sizes["mlp_n"]
    X = torch.randn(n, layer_sizes[0], generator=gen)
    y = torch.randint(0, layer_sizes[-1], (n,), generator=gen)
    params = ll.init_mlp(layer_sizes, seed=0, dtype=torch.float32)
    _, cache = ll.mlp_forward(params, X)
    number = 10 if cfg.quick else 2

    def autograd_seconds() -> float:
        # The graph is built outside the clock (autograd frees it after each backward).
        total = 0.0
        for _ in range(number):
            leaves = {k: v.detach().requires_grad_() for k, v in params.items()}
            logits, _ = ll.mlp_forward(leaves, X)
            loss = F.cross_entropy(logits, y)
            start = time.perf_counter()
            torch.autograd.grad(loss, list(leaves.values()))
            total += time.perf_counter() - start
        return total / number

    runs, floors = interleaved(
        lambda: clock(lambda: ll.mlp_backward(params, cache, y), number),
        autograd_seconds,
        repeats=cfg.library_repeats,
        warmup=cfg.warmup,
    )
    arch = " -> ".join(map(str, layer_sizes))
    return Figure(
        "mlp_backward",
        f"`mlp_backward`, MLP {arch} (tanh), n = {n:,}, float32",
        "autograd backward (same forward, `F.cross_entropy`)",
        runs,
        floors,
        note="both sides time the backward pass alone; the forward pass is outside the clock",
    )


def _unchecked_gd_figure(X, y, w, b, lr, matvecs, cfg, number) -> Figure:
    """The GD step without its input checks, to show what the checks cost (no target)."""
    try:
        from logreg_lessons.gradients import _logistic_gradients
    except ImportError:
        return Figure(
            "gd_step_unchecked",
            "GD step without input checks",
            "`X @ w` + `X.T @ r`",
            unavailable="logreg_lessons.gradients._logistic_gradients no longer exists",
        )

    def step():
        dw, db = _logistic_gradients(X, y, w, b)
        return w - lr * dw, b - lr * db

    fig = _pair(
        "gd_step_unchecked",
        "GD step without input checks (private `_logistic_gradients` + update)",
        "`X @ w` + `X.T @ r`",
        step,
        matvecs,
        cfg,
        number=number,
    )
    fig.note = "what the optimisers run per step (they validate once, up front)"
    return fig


def _explain_misses(figures, gd_step, stable, X, y, w, b, lr, number) -> str:
    """Markdown: for every missed target, what one call spends its time on."""
    calls = {"gd_step": gd_step}
    calls.update({key: (lambda ours=ours, t=t: ours(t)) for key, _, _, ours, _, t in stable})
    parts = []
    for fig in figures:
        if fig.met is not False or fig.key not in calls:
            continue
        parts.append(f"#### {fig.name}: {fig.ratio:.3g}x its floor (target {fig.target[1]}x)")
        if fig.key == "gd_step":
            breakdown = _gd_breakdown(X, y, w, b, lr, number)
            if breakdown:
                parts += ["", breakdown]
        parts += ["", "Operators of one call, by self CPU time (torch.profiler):", ""]
        parts.append(_profile(calls[fig.key]))
        parts.append("")
    return "\n".join(parts)
