"""Measure the course's costs against their floors; write benchmarks/results.md and .json.

Sections (each module's docstring says what is measured and against what):

- library: a gradient-descent step, an SGD epoch, the stable functions, mlp_backward;
- book: cold and incremental `jupyter-book build`s against running the chapters as scripts;
- grading: `logreg-grade` on classes of one assignment against nbclient and plain nbgrader,
  one submission in its own command, 2 workers against 1, and 10x the submissions.

Every figure is the median of several runs over the median of a floor measured in the same
run, interleaved with it; ratios travel between machines, absolute times do not. A section
that cannot run (a missing tool, an unfinished book) is reported as skipped, with the reason.

Usage: python benchmarks/run.py [--only SECTION] [--quick] [--out DIR] [--repeats N] ...
(`make bench` runs every section; the whole run aims to fit in --budget seconds.)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a script: make the `benchmarks` package importable

from benchmarks import report  # noqa: E402
from benchmarks._timing import Budget, Section, machine_info  # noqa: E402
from benchmarks.grading import CLASS_ASSIGNMENTS, SCALE_ASSIGNMENT, SCALE_FACTOR  # noqa: E402

SECTIONS = ("library", "book", "grading")
TITLES = {"library": "The library", "book": "Book build", "grading": "Grading"}
BOOK_SHARE = 0.45  # of the time left after the library, when grading still has to run


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=SECTIONS,
        help="run only this section (repeat the option for several; default: all)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes, 1-2 runs per figure: checks that everything works (for the tests)",
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks", help="folder for results.md/.json"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="runs of each book and grading figure (default 3; --quick: 1)",
    )
    parser.add_argument(
        "--library-repeats",
        type=int,
        default=None,
        help="runs of each library figure (default 7; --quick: 2)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch.set_num_threads here, OMP_NUM_THREADS in builds and kernels (default 1)",
    )
    parser.add_argument(
        "--class-size",
        type=int,
        default=None,
        help="submissions in each graded class (default 50; --quick 3)",
    )
    parser.add_argument(
        "--class-assignments",
        type=lambda text: tuple(a for a in text.split(",") if a),
        default=None,
        help="comma-separated assignments graded as a class, one submission alone, and\n"
        "with 2 workers (default " + ",".join(CLASS_ASSIGNMENTS) + f"; --quick {SCALE_ASSIGNMENT})",
    )
    parser.add_argument(
        "--scale",
        type=int,
        default=None,
        help=f"the smaller synthetic class of the scaling figure; the larger has {SCALE_FACTOR}x\n"
        "as many (default 100, so 1,000; --quick 2)",
    )
    parser.add_argument(
        "--scale-assignment",
        default=SCALE_ASSIGNMENT,
        help=f"the assignment of the scaling figure (default {SCALE_ASSIGNMENT}, a cheap one)",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=1200.0,
        help="seconds for the whole run (default 1200 = 20 min); book and grading figures stop\n"
        "repeating when the rest would not fit, and report how many runs they made",
    )
    args = parser.parse_args(argv)
    defaults = {  # (normal, --quick); None in args means "not given"
        "repeats": (3, 1),
        "library_repeats": (7, 2),
        "class_size": (50, 3),
        "class_assignments": (CLASS_ASSIGNMENTS, (SCALE_ASSIGNMENT,)),
        "scale": (100, 2),
    }
    for name, (normal, quick) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else normal)
    args.warmup = 1 if args.quick else 2
    args.grading_warmup = 0 if args.quick else 1
    args.out = args.out.resolve()
    args.logs = ROOT / "_build" / "benchmarks" / "logs"
    for name in ("repeats", "library_repeats", "threads", "class_size", "scale"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if not args.class_assignments:
        parser.error("--class-assignments needs at least one assignment id")
    return args


def run_section(key: str, args, bar, budget: Budget) -> Section:
    """Run one section; an unexpected error becomes a failed section with its traceback."""
    start = time.monotonic()
    try:
        if key == "library":
            from benchmarks import library

            section = library.run(args, bar)
        elif key == "book":
            from benchmarks import book

            section = book.run(args, bar, budget)
        else:
            from benchmarks import grading

            section = grading.run(args, bar, budget)
    except Exception as err:  # noqa: BLE001 - reported in results.md; the exit status is 1
        section = Section(key, TITLES[key], status="failed", reason=f"{type(err).__name__}: {err}")
        section.details = "```\n" + traceback.format_exc()[-3000:] + "```"
    section.seconds = time.monotonic() - start
    return section


def placeholder(key: str, selected: list[str], earlier: dict | None = None) -> Section:
    """A section not (yet) run, saying why: not selected, or the run stopped before it.

    A section not selected keeps its figures from ``earlier`` (the results.json being
    replaced), marked with that run's date, when that run measured it.
    """
    if key in selected:
        reason = "pending: the run stopped before this section"
    else:
        old = (earlier or {}).get("sections", {}).get(key)
        if old and old.get("status") == "ran" and not (earlier or {}).get("quick"):
            section = Section.from_dict(old)
            date = earlier.get("machine", {}).get("date", "an earlier run")
            section.notes.insert(
                0, f"kept from the run of {date} (`{earlier.get('command', '?')}`)"
            )
            return section
        reason = "not selected (--only " + ", ".join(selected) + ")"
    return Section(key, TITLES[key], status="not run", reason=reason)


def _stop(signum, frame):
    raise SystemExit(128 + signum)  # unwinds: temporary courses and the loopback cluster go


def main(argv=None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    import torch
    from tqdm import tqdm

    torch.set_num_threads(args.threads)
    selected = args.only or list(SECTIONS)
    budget = Budget(args.budget)
    shown = shlex.join(sys.argv[1:] if argv is None else argv)
    results = {
        "command": f"python benchmarks/run.py {shown}".strip(),
        "budget_seconds": args.budget,
        "total_seconds": 0.0,
        "quick": args.quick,
        "machine": machine_info(args.threads),
    }
    earlier = None
    with contextlib.suppress(OSError, ValueError):
        earlier = json.loads((args.out / "results.json").read_text(encoding="utf-8"))
    sections = [placeholder(key, selected, earlier) for key in SECTIONS]
    start = time.monotonic()
    failed = False
    with tqdm(total=1, desc="benchmarks", file=sys.stderr, unit="step") as bar:
        for index, key in enumerate(SECTIONS):
            if key not in selected:
                continue
            bar.set_description(key)
            grading_later = key == "book" and "grading" in selected
            share = BOOK_SHARE if grading_later else 1.0
            sections[index] = run_section(key, args, bar, budget.share(share))
            failed |= sections[index].status == "failed"
            results["total_seconds"] = time.monotonic() - start
            results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
            report.write(results, sections, args.out)  # after each section: a partial report
    md, js = report.write(results, sections, args.out)
    over = " (over budget)" if results["total_seconds"] > args.budget else ""
    print(f"wrote {md} and {js} in {results['total_seconds']:.0f} s{over}")
    for section in sections:
        verdicts = [f.verdict for f in section.figures]
        counts = [f"{verdicts.count(v)} {v}" for v in ("met", "missed", "invalid") if v in verdicts]
        line = f"  {section.key}: {section.status}"
        line += f" ({', '.join(counts)})" if counts else ""
        line += f": {section.reason}" if section.reason else ""
        print(line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
