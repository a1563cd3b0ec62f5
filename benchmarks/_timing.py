"""Timing helpers shared by the benchmark sections: clocks, interleaved runs, figures, budget.

Every figure is a *ratio*: a median of several runs of the thing measured, divided by the
median of a floor measured in the same process, interleaved with it (measure, floor, measure,
floor, ...), so that a slow patch of a shared, noisy machine hits both sides alike.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

CHILD = Path(__file__).resolve().with_name("_child.py")


def clock(fn: Callable[[], object], number: int = 1) -> float:
    """Seconds per call of ``fn()``, over ``number`` back-to-back calls (garbage collector off)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(number):
            fn()
        return (time.perf_counter() - start) / number
    finally:
        if enabled:
            gc.enable()


class Budget:
    """A wall-clock deadline; `allows(cost)` says whether `cost` more seconds still fit."""

    def __init__(self, seconds: float | None):
        self.start = time.monotonic()
        self.deadline = None if seconds is None else self.start + seconds

    def left(self) -> float:
        return float("inf") if self.deadline is None else self.deadline - time.monotonic()

    def allows(self, cost: float) -> bool:
        return cost <= self.left()

    def share(self, fraction: float) -> Budget:
        """A sub-budget holding `fraction` of what is left."""
        left = self.left()
        return Budget(None if left == float("inf") else max(0.0, left * fraction))


def interleaved(
    measure: Callable[[], float],
    floor: Callable[[], float],
    repeats: int,
    warmup: int = 1,
    budget: Budget | None = None,
    reserve: float = 0.0,
    tick: Callable[[], object] | None = None,
) -> tuple[list[float], list[float]]:
    """Run ``measure`` and ``floor`` alternately (ABAB...) and return both lists of seconds.

    Both callables return the seconds of one run. ``warmup`` untimed pairs come first. After
    the first timed pair, another pair runs only if it fits in ``budget`` with ``reserve``
    seconds to spare (a pair is assumed to cost what the last one did).
    """
    for _ in range(warmup):
        measure()
        floor()
    runs, floors = [], []
    for i in range(repeats):
        start = time.monotonic()
        runs.append(measure())
        floors.append(floor())
        if tick is not None:
            tick()
        cost = time.monotonic() - start
        if i + 1 < repeats and budget is not None and not budget.allows(cost + reserve):
            break
    return runs, floors


@dataclass
class Measured:
    """One subprocess run: wall seconds, exit status, peak memory of its largest process."""

    seconds: float
    returncode: int
    maxrss_mib: float
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


def run_measured(
    command: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    log: Path,
    timeout: float = 1800,
) -> Measured:
    """Run ``command`` through benchmarks/_child.py: its wall time and ru_maxrss, output to log."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        result_path = Path(handle.name)
    try:
        with open(log, "a", encoding="utf-8") as out:
            out.write("$ " + " ".join(map(str, command)) + "\n")
            out.flush()
            wrapper = [sys.executable, str(CHILD), "run", str(result_path), str(timeout), "--"]
            proc = subprocess.Popen(
                wrapper + [str(c) for c in command],
                cwd=cwd,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            try:
                returncode = proc.wait()
            except BaseException:  # stopped (SIGTERM, Ctrl-C): the wrapper stops its command
                proc.terminate()
                proc.wait()
                raise
            if returncode:
                raise subprocess.CalledProcessError(returncode, proc.args)
        return Measured(**json.loads(result_path.read_text(encoding="utf-8")))
    finally:
        result_path.unlink(missing_ok=True)


def tool_env(**extra: str) -> dict[str, str]:
    """The environment for subprocesses: this interpreter's bin/ first on PATH, fixed seeds."""
    env = dict(os.environ, PYTHONHASHSEED="0", MPLBACKEND="Agg")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(extra)
    return env


@dataclass
class Figure:
    """A measured cost, its floor, and an optional target on their ratio.

    ``ratio = median / floor`` where both are medians of the runs (same unit). ``target`` is
    ``(op, value)`` with op ``"<="`` or ``">="``, compared with the ratio. A figure that could
    not be measured has ``unavailable`` set (and no runs); one whose runs went wrong (a failed
    build, a submission that did not grade) has ``invalid`` set and is neither met nor missed.
    """

    key: str
    name: str
    floor_name: str
    runs: list[float] = field(default_factory=list)
    floor_runs: list[float] = field(default_factory=list)
    unit: str = "s"
    target: tuple[str, float] | None = None
    target_label: str = ""
    note: str = ""
    invalid: str = ""
    unavailable: str = ""
    planned: int | None = None

    @property
    def median(self) -> float | None:
        return statistics.median(self.runs) if self.runs else None

    @property
    def floor(self) -> float | None:
        return statistics.median(self.floor_runs) if self.floor_runs else None

    @property
    def ratio(self) -> float | None:
        if self.median is None or not self.floor:
            return None
        return self.median / self.floor

    @property
    def met(self) -> bool | None:
        if self.target is None or self.invalid or self.ratio is None:
            return None
        op, value = self.target
        return self.ratio <= value if op == "<=" else self.ratio >= value

    @property
    def verdict(self) -> str:
        if self.unavailable:
            return "not available"
        if self.invalid:
            return "invalid"
        if self.met is None:
            return "-"
        return "met" if self.met else "missed"

    def as_dict(self) -> dict:
        return {
            "key": self.key,
            "name": self.name,
            "floor_name": self.floor_name,
            "unit": self.unit,
            "median": self.median,
            "floor": self.floor,
            "ratio": self.ratio,
            "target": None
            if self.target is None
            else {"op": self.target[0], "value": self.target[1]},
            "met": self.met,
            "verdict": self.verdict,
            "runs": self.runs,
            "floor_runs": self.floor_runs,
            "planned_runs": self.planned,
            "target_label": self.target_label,
            "note": self.note,
            "invalid": self.invalid,
            "unavailable": self.unavailable,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Figure:
        target = d.get("target")
        return cls(
            d["key"],
            d["name"],
            d["floor_name"],
            list(d.get("runs", [])),
            list(d.get("floor_runs", [])),
            d.get("unit", "s"),
            None if target is None else (target["op"], target["value"]),
            d.get("target_label", ""),
            d.get("note", ""),
            d.get("invalid", ""),
            d.get("unavailable", ""),
            d.get("planned_runs"),
        )


@dataclass
class Section:
    """One part of the report: its figures, or why it did not run."""

    key: str
    title: str
    status: str = "ran"  # ran | skipped | not run | failed
    reason: str = ""
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    details: str = ""  # extra Markdown (profiles of missed targets)
    settings: dict = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {
            "key": self.key,
            "title": self.title,
            "status": self.status,
            "reason": self.reason,
            "seconds": self.seconds,
            "settings": self.settings,
            "notes": self.notes,
            "details": self.details,
            "figures": [f.as_dict() for f in self.figures],
        }

    @classmethod
    def from_dict(cls, d: dict) -> Section:
        return cls(
            d["key"],
            d["title"],
            d.get("status", "ran"),
            d.get("reason", ""),
            [Figure.from_dict(f) for f in d.get("figures", [])],
            list(d.get("notes", [])),
            d.get("details", ""),
            dict(d.get("settings", {})),
            d.get("seconds", 0.0),
        )


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(threads: int) -> dict:
    """Cores, CPU, load, versions: what a reader needs to compare two reports."""
    import torch

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "torch_threads": threads,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {
            name: _version(name)
            for name in (
                "torch",
                "numpy",
                "jupyter-book",
                "myst-nb",
                "sphinx",
                "jupytext",
                "nbclient",
                "nbgrader",
            )
        },
        "torch_parallel": torch.__config__.parallel_info().splitlines()[0:3],
    }
