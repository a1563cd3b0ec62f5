"""benchmarks/run.py writes a consistent report: `--only library --quick` end to end (< 30 s).

The figures' values are not checked (they depend on the machine); their presence, their
ratios (median / floor), the verdicts against the targets and the Markdown table are.
"""

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._timing import Budget, Figure, interleaved  # noqa: E402
from benchmarks.report import TABLE_HEADER, fmt_ratio  # noqa: E402

LIBRARY_FIGURES = {
    "gd_step": ("<=", 1.5),
    "sgd_epoch": None,
    "sigmoid": ("<=", 2.0),
    "log_sigmoid": ("<=", 2.0),
    "logsumexp": ("<=", 2.0),
    "log_softmax": ("<=", 2.0),
    "mlp_backward": None,
    "gd_step_unchecked": None,
}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--only", "library", "--quick"]
        + ["--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-3000:]}"
    return out, proc


def test_writes_both_files_with_every_library_figure(quick_run):
    out, _ = quick_run
    data = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert data["quick"] is True
    library = data["sections"]["library"]
    assert library["status"] == "ran"
    assert library["settings"]["torch_threads"] == 1
    figures = {f["key"]: f for f in library["figures"]}
    assert set(figures) == set(LIBRARY_FIGURES)
    for key, target in LIBRARY_FIGURES.items():
        fig = figures[key]
        assert fig["target"] == (None if target is None else {"op": target[0], "value": target[1]})
        assert len(fig["runs"]) == len(fig["floor_runs"]) >= 1, key
        assert all(t > 0 for t in fig["runs"] + fig["floor_runs"]), key
        assert fig["median"] > 0 and fig["floor"] > 0 and fig["ratio"] > 0, key
        assert math.isclose(fig["ratio"], fig["median"] / fig["floor"], rel_tol=1e-12), key
        if target is None:
            assert fig["met"] is None and fig["verdict"] == "-", key
        else:
            met = fig["ratio"] <= target[1]
            assert fig["met"] is met and fig["verdict"] == ("met" if met else "missed"), key
    # The other sections are reported as not run, with the reason, never left out.
    for key in ("book", "grading"):
        assert data["sections"][key]["status"] == "not run"
        assert "--only library" in data["sections"][key]["reason"]
    machine = data["machine"]
    assert machine["torch_threads"] == 1 and machine["cores"] >= 1
    assert machine["versions"]["torch"].startswith("2.")


def test_markdown_table_matches_the_json(quick_run):
    out, _ = quick_run
    data = json.loads((out / "results.json").read_text(encoding="utf-8"))
    md = (out / "results.md").read_text(encoding="utf-8")
    library = md.split("## The library", 1)[1].split("\n## ", 1)[0]
    lines = library.splitlines()
    start = lines.index(TABLE_HEADER)
    assert re.fullmatch(r"\|( -+:? \|)+", lines[start + 1])
    rows = lines[start + 2 : start + 2 + len(LIBRARY_FIGURES)]
    for fig, row in zip(data["sections"]["library"]["figures"], rows, strict=True):
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]]
        assert len(cells) == 7, row
        name, median, floor, ratio, target, verdict, runs = cells
        assert name == fig["name"]
        assert re.fullmatch(r"[\d.,]+ (us|ms|s)", median), median
        assert floor.endswith(f"({fig['floor_name']})"), floor
        assert ratio == fmt_ratio(fig["ratio"])
        assert target == ("-" if fig["target"] is None else f"<= {fig['target']['value']:.3g}x")
        assert verdict == fig["verdict"]
        assert runs == str(len(fig["runs"]))
    assert "**Not run**: not selected (--only library)" in md
    assert "## Machine" in md and "torch threads | 1" in md


def test_missed_library_targets_come_with_a_profile(quick_run):
    out, _ = quick_run
    data = json.loads((out / "results.json").read_text(encoding="utf-8"))
    library = data["sections"]["library"]
    for fig in library["figures"]:
        if fig["met"] is False:
            assert fig["name"] in library["details"]
            assert "| operator | calls | self CPU | share |" in library["details"]


def test_interleaved_alternates_and_stops_at_the_budget():
    order = []
    runs, floors = interleaved(
        lambda: order.append("A") or 2.0, lambda: order.append("B") or 1.0, repeats=3, warmup=1
    )
    assert order == ["A", "B"] * 4
    assert runs == [2.0] * 3 and floors == [1.0] * 3
    # With no time left, one timed pair still runs (a figure always has a value), then it stops.
    runs, floors = interleaved(lambda: 2.0, lambda: 1.0, repeats=5, warmup=0, budget=Budget(0))
    assert runs == [2.0] and floors == [1.0]


def test_figure_ratio_and_verdicts():
    fig = Figure("k", "name", "floor", [3.0, 1.0, 2.0], [1.0, 1.0, 1.0], target=("<=", 1.5))
    assert (fig.median, fig.floor, fig.ratio, fig.met, fig.verdict) == (
        2.0,
        1.0,
        2.0,
        False,
        "missed",
    )
    fig.target = (">=", 1.7)
    assert fig.met is True and fig.verdict == "met"
    fig.invalid = "build failed"
    assert fig.met is None and fig.verdict == "invalid"
    missing = Figure("k", "name", "floor", unavailable="grade.py has no --jobs")
    assert missing.ratio is None and missing.verdict == "not available"
