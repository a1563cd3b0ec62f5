"""Write the benchmark results as Markdown (results.md) and JSON (results.json, the same data)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks._timing import Figure, Section

TABLE_HEADER = "| figure | median | floor | ratio | target | met/missed | runs |"
TABLE_RULE = "| --- | ---: | --- | ---: | --- | --- | ---: |"

INTRO = """\
Every figure is the **median** of several runs divided by the median of its **floor**, the
unavoidable work it is compared with, measured in the same run and interleaved with it
(measure, floor, measure, floor, ...) so that the noise of a shared machine hits both alike.
Compare ratios between reports, not absolute times. *ratio* = median / floor; a target
applies to the ratio. `runs` counts the measured runs (each floor ran as many times); fewer
than planned means the time budget ran out. Regenerate with `make bench`
(`python benchmarks/run.py --help` for the options)."""


def fmt_value(value: float | None, unit: str) -> str:
    """A duration or a memory size, in a unit a person reads at a glance."""
    if value is None:
        return "-"
    if unit == "MiB":
        return f"{value:,.0f} MiB"
    if value < 1e-3:
        return f"{value * 1e6:.1f} us"
    if value < 1:
        return f"{value * 1e3:.2f} ms"
    return f"{value:.2f} s"


def fmt_ratio(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.3g}x"


def fmt_target(figure: Figure) -> str:
    if figure.target is None:
        return "-"
    op, value = figure.target
    text = f"{op} {value:.3g}x"
    return f"{text} ({figure.target_label})" if figure.target_label else text


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def figure_row(figure: Figure) -> str:
    floor = f"{fmt_value(figure.floor, figure.unit)} ({figure.floor_name})"
    runs = str(len(figure.runs))
    if figure.planned and len(figure.runs) < figure.planned:
        runs += f" of {figure.planned}"
    cells = [
        figure.name,
        fmt_value(figure.median, figure.unit),
        floor,
        fmt_ratio(figure.ratio),
        fmt_target(figure),
        figure.verdict,
        runs,
    ]
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def section_markdown(section: Section) -> list[str]:
    lines = [f"## {section.title}", ""]
    if section.status != "ran":
        label = {"skipped": "Skipped", "not run": "Not run", "failed": "Failed"}.get(
            section.status, section.status
        )
        lines += [f"**{label}**: {section.reason}", ""]
        if not section.figures:
            return lines
    if section.settings:
        shown = ", ".join(f"{k} = {v}" for k, v in section.settings.items())
        lines += [f"Settings: {shown}; {section.seconds:.0f} s in all.", ""]
    if section.figures:
        lines += [TABLE_HEADER, TABLE_RULE] + [figure_row(f) for f in section.figures] + [""]
    remarks = []
    for fig in section.figures:
        for label, text in (
            ("not available", fig.unavailable),
            ("invalid", fig.invalid),
            ("note", fig.note),
        ):
            if text:
                remarks.append(f"- {fig.name} ({label}): {text}")
    remarks += [f"- {note}" for note in section.notes]
    if remarks:
        lines += remarks + [""]
    if section.details:
        lines += [section.details.rstrip(), ""]
    return lines


def machine_markdown(machine: dict) -> list[str]:
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
    load_end = machine.get("load_average_at_end", "-")
    rows = [
        ("date", machine["date"]),
        ("CPU", machine["cpu"]),
        ("cores", f"{machine['cores']} ({machine['usable_cores']} usable by this process)"),
        ("torch threads", f"{machine['torch_threads']} (`torch.set_num_threads`, every section)"),
        (
            "load average (1, 5, 15 min)",
            f"{machine['load_average_at_start']} at start, {load_end} at end",
        ),
        ("platform", f"{machine['platform']}, Python {machine['python']}"),
        ("versions", versions),
    ]
    return ["## Machine", "", "| | |", "| --- | --- |"] + [f"| {k} | {_cell(v)} |" for k, v in rows]


def write(results: dict, sections: list[Section], out: Path) -> tuple[Path, Path]:
    """Write out/results.md and out/results.json; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    data = dict(results, sections={s.key: s.as_dict() for s in sections})
    json_path = out / "results.json"
    json_path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    lines = [
        "# Benchmarks",
        "",
        f"Measured by `{results['command']}` in {results['total_seconds']:.0f} s "
        f"(time budget {results['budget_seconds']:.0f} s).",
        "",
        INTRO,
        "",
    ]
    for section in sections:
        lines += section_markdown(section)
    lines += machine_markdown(results["machine"]) + [""]
    md_path = out / "results.md"
    md_path.write_text("\n".join(lines), encoding="utf-8")
    return md_path, json_path
