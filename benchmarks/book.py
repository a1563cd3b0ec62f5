"""The book build's costs (section "book"), on a temporary copy of the repository.

Figures:

- cold build: `jupyter-book build` exactly as `make book` runs it (-W --keep-going, HTML), into
  a fresh --path-output, with a copy of _config.yml whose ``execute_notebooks`` is ``force``;
  floor: every chapter's code as a plain Python script (jupytext --to py:percent), each run
  by its own ``python script.py`` (MPLBACKEND=Agg) in book/, **summed over the chapters**. One
  process per chapter, because the build also starts one kernel per chapter (interpreter and
  imports paid each time); one process for all chapters would share the imports and hide
  what the chapters cost on their own. The two alternate: build, scripts, build, scripts.
- cold build in cache mode (``execute_notebooks: cache``, the setting of `make book`) into a
  fresh output folder whose jupyter-cache is empty: it fills the cache for the next two;
- rebuild with nothing changed (cache mode, same output folder) against the cold build;
- rebuild after editing one chapter's code: a harmless code cell is appended to the chapter
  whose script time is the median one (a different cell each run, so each run misses the
  cache for that chapter alone), against the cold build.
"""

from __future__ import annotations

import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks._timing import Budget, Figure, Section, run_measured, tool_env

ROOT = Path(__file__).resolve().parents[1]
COPY_IGNORE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "_build",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".jupyter_cache",
    ".ipynb_checkpoints",
    "submitted",
    "autograded",
    "feedback",
    "gradebook",
    "results.json",
    "results.md",
)
BUILD_TIMEOUT = 1500  # seconds; a build that hangs is stopped and reported


def _load_pair_notebooks(root: Path):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "pair_notebooks", root / "tools" / "pair_notebooks.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_config(src: Path, path: Path, mode: str) -> Path:
    """A copy of src/_config.yml with ``execute_notebooks: mode`` and absolute extension paths.

    ``raise_on_error`` is off (as in tests/book/book_build.py) so that one failing chapter does not
    stop the build: it is detected from the execution reports and the figure marked invalid.
    """
    config = yaml.safe_load((src / "_config.yml").read_text(encoding="utf-8"))
    config.setdefault("execute", {}).update(execute_notebooks=mode, raise_on_error=False)
    sphinx = config.setdefault("sphinx", {})
    sphinx["local_extensions"] = {
        name: str((src / rel).resolve())
        for name, rel in (sphinx.get("local_extensions") or {}).items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


class Builder:
    """Runs `jupyter-book build` on one source copy and inspects what each build did."""

    def __init__(self, src: Path, logs: Path, env: dict, pages: list[str]):
        self.src, self.logs, self.env, self.pages = src, logs, env, pages
        self.jb = str(Path(sys.executable).with_name("jupyter-book"))
        self.count = 0

    def build(self, out: Path, config: Path) -> tuple[float, dict]:
        self.count += 1
        log = self.logs / f"build-{self.count:02d}-{out.name}.log"
        command = [self.jb, "build", self.src, "--path-output", out, "--config", config]
        command += ["-W", "--keep-going", "--builder", "html"]
        start = log.stat().st_size if log.exists() else 0
        result = run_measured(command, cwd=self.src, env=self.env, log=log, timeout=BUILD_TIMEOUT)
        text = log.read_text(encoding="utf-8", errors="replace")[start:]
        reports = sorted(
            p.relative_to(out / "_build" / "html" / "reports").as_posix()
            for p in (out / "_build" / "html" / "reports").rglob("*.log")
        )
        html = out / "_build" / "html"
        missing = [page for page in self.pages if not (html / f"{page}.html").is_file()]
        changed = re.findall(r"(\d+) added, (\d+) changed, (\d+) removed", text)
        info = {
            "returncode": result.returncode,
            "timed_out": result.timed_out,
            "maxrss_mib": result.maxrss_mib,
            "warnings": [ln for ln in text.splitlines() if "WARNING:" in ln or "ERROR:" in ln],
            "failed_chapters": [r.replace(".err.log", "") for r in reports],
            "missing_pages": missing,
            "executed": text.count("Executing notebook using"),
            "changed": changed[-1] if changed else None,
            "log": str(log),
        }
        return result.seconds, info


def _show(path: Path) -> str:
    """`path` relative to the repository when it lies inside it."""
    try:
        return path.relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


def _problem(info: dict) -> str:
    """Why a build's time cannot be trusted ("" when it can)."""
    if info["timed_out"]:
        return f"the build ran past {BUILD_TIMEOUT} s and was stopped"
    if info["missing_pages"]:
        return f"the build wrote no page for {', '.join(info['missing_pages'])} (see its log)"
    if info["failed_chapters"]:
        return "chapters failed to execute: " + ", ".join(info["failed_chapters"])
    return ""


def _warning_note(info: dict) -> str:
    if info["returncode"] == 0:
        return ""
    first = info["warnings"][0] if info["warnings"] else "no WARNING line in the log"
    return (
        f"the strict build exited {info['returncode']} ({len(info['warnings'])} warnings; "
        f"first: {first[:200]}); times still cover the whole build (--keep-going)"
    )


def scripts_for(chapters: list[Path], folder: Path) -> list[Path]:
    """Each chapter's code as a py:percent script (jupytext), into folder."""
    import jupytext

    folder.mkdir(parents=True, exist_ok=True)
    scripts = []
    for md in chapters:
        nb = jupytext.read(md)
        path = folder / f"{md.stem}.py"
        path.write_text(jupytext.writes(nb, fmt="py:percent"), encoding="utf-8")
        scripts.append(path)
    return scripts


def run(cfg, bar, budget: Budget, root: Path = ROOT) -> Section:
    """Measure the book figures within ``budget``; ``cfg`` holds repeats, threads and logs."""
    section = Section(
        "book",
        "Book build",
        settings={"repeats": cfg.repeats, "threads per process (OMP_NUM_THREADS)": cfg.threads},
    )
    jb = Path(sys.executable).with_name("jupyter-book")
    if not jb.exists():
        section.status, section.reason = "skipped", f"{jb} does not exist (run `make venv`)"
        return section
    toc = _load_pair_notebooks(root).toc_files(root)
    missing = [p.relative_to(root).as_posix() for p in toc if not p.is_file()]
    if missing:
        section.status = "skipped"
        section.reason = "_toc.yml lists files that do not exist yet: " + ", ".join(missing)
        return section

    env = tool_env(OMP_NUM_THREADS=str(cfg.threads))
    R = cfg.repeats
    bar.reset(total=3 * R + 2)
    with tempfile.TemporaryDirectory(prefix="bench-book-") as tmp_name:
        tmp = Path(tmp_name)
        src = tmp / "src"
        shutil.copytree(root, src, ignore=COPY_IGNORE, symlinks=True)
        logs = cfg.logs / "book"
        shutil.rmtree(logs, ignore_errors=True)
        logs.mkdir(parents=True)
        section.notes.append(f"logs of every build and script: {_show(logs)}")
        pn = _load_pair_notebooks(src)
        pages = [p.relative_to(src).with_suffix("").as_posix() for p in pn.toc_files(src)]
        builder = Builder(src, logs, env, pages)
        force_cfg = write_config(src, tmp / "config-force" / "_config.yml", "force")
        cache_cfg = write_config(src, tmp / "config-cache" / "_config.yml", "cache")

        import jupytext

        chapters = [p for p in pn.toc_files(src) if pn.is_notebook(jupytext.read(p))]
        scripts = scripts_for(chapters, tmp / "scripts")
        # Untimed warm-up: load the interpreter and the heavy imports into the page cache.
        warm = [sys.executable, "-c", "import torch, matplotlib.pyplot, logreg_lessons, sphinx"]
        run_measured(warm, cwd=src, env=env, log=logs / "warmup.log")
        bar.update()

        per_chapter: dict[str, list[float]] = {md.stem: [] for md in chapters}
        script_failures: set[str] = set()

        def floor_once() -> float:
            total = 0.0
            for script in scripts:
                result = run_measured(
                    [sys.executable, script],
                    cwd=src / "book",
                    env=env,
                    log=logs / f"script-{script.stem}.log",
                    timeout=600,
                )
                if not result.ok:
                    script_failures.add(script.stem)
                per_chapter[script.stem].append(result.seconds)
                total += result.seconds
            return total

        cold, floor, cold_info = [], [], []
        for i in range(R):
            start = time.monotonic()
            seconds, info = builder.build(tmp / f"cold-{i}", force_cfg)
            shutil.rmtree(tmp / f"cold-{i}", ignore_errors=True)
            cold.append(seconds)
            cold_info.append(info)
            floor.append(floor_once())
            bar.update()
            pair = time.monotonic() - start
            # Still to come: a cold cache-mode build, R no-change and R edited rebuilds.
            reserve = seconds * (1 + 0.5 * R)
            if i + 1 < R and not budget.allows(pair + reserve):
                break

        floor_name = f"{len(scripts)} chapter scripts, one `python` each, summed"
        fig = Figure(
            "cold_build",
            "cold build, forced execution",
            floor_name,
            cold,
            floor,
            target=("<=", 1.5),
            planned=R,
        )
        fig.invalid = next((_problem(i) for i in cold_info if _problem(i)), "")
        if script_failures:
            fig.invalid = (fig.invalid + "; " if fig.invalid else "") + (
                "chapter scripts failed (see logs): " + ", ".join(sorted(script_failures))
            )
        fig.note = _warning_note(cold_info[-1])
        section.figures.append(fig)
        section.notes.append(
            "peak memory of the largest process in a cold build: "
            f"{max(i['maxrss_mib'] for i in cold_info):,.0f} MiB"
        )
        medians = {k: statistics.median(v) for k, v in per_chapter.items() if v}
        slowest = sorted(medians.items(), key=lambda kv: -kv[1])
        section.notes.append(
            "chapter scripts (median seconds): "
            + ", ".join(f"{name} {secs:.1f}" for name, secs in slowest)
        )

        # Cache mode: fill the cache, then rebuild with nothing changed, then after an edit.
        out = tmp / "cache"
        seconds, info = builder.build(out, cache_cfg)
        bar.update()
        prime = Figure(
            "cold_build_cache",
            "cold build, cache mode, empty cache (fills the cache)",
            floor_name,
            [seconds],
            floor,
            invalid=_problem(info),
            note=_warning_note(info),
        )
        section.figures.append(prime)

        nochange, nochange_info = [], []
        for i in range(R):
            seconds, info = builder.build(out, cache_cfg)
            nochange.append(seconds)
            nochange_info.append(info)
            bar.update()
            if i + 1 < R and not budget.allows(seconds + cold[0] * 0.5 * R):
                break
        fig = Figure(
            "nochange_rebuild",
            "rebuild, nothing changed (cache mode)",
            "cold build, forced execution",
            nochange,
            cold,
            target=("<=", 0.15),
            planned=R,
            invalid=next((_problem(i) for i in nochange_info if _problem(i)), ""),
        )
        executed = sum(i["executed"] for i in nochange_info)
        changed = nochange_info[-1]["changed"]
        fig.note = f"notebooks executed: {executed}" + (
            f"; Sphinx: {changed[0]} added, {changed[1]} changed, {changed[2]} removed"
            if changed
            else ""
        )
        section.figures.append(fig)

        ordered = sorted(medians, key=medians.get)
        chapter = ordered[len(ordered) // 2] if ordered else chapters[0].stem
        target_md = src / "book" / f"{chapter}.md"
        original = target_md.read_text(encoding="utf-8")
        edits, edit_info = [], []
        for i in range(R):
            cell = f"\n```{{code-cell}} ipython3\n_benchmark_edit = {i + 1}\n```\n"
            target_md.write_text(original.rstrip("\n") + "\n" + cell, encoding="utf-8")
            seconds, info = builder.build(out, cache_cfg)
            edits.append(seconds)
            edit_info.append(info)
            bar.update()
            if i + 1 < R and not budget.allows(seconds):
                break
        target_md.write_text(original, encoding="utf-8")
        executed = [i["executed"] for i in edit_info]
        section.figures.append(
            Figure(
                "edit_rebuild",
                f"rebuild after editing {chapter}'s code (cache mode)",
                "cold build, forced execution",
                edits,
                cold,
                planned=R,
                invalid=next((_problem(i) for i in edit_info if _problem(i)), ""),
                note=f"a code cell appended to book/{chapter}.md, a new one each run; that "
                f"chapter's script takes {medians.get(chapter, float('nan')):.1f} s; notebooks "
                f"executed per rebuild: {executed}",
            )
        )
    return section
