"""Helpers for tests/book/test_book.py: the book's sources, a forced strict build, a local server.

The build runs `jupyter-book build` exactly as `make book` does (-W --keep-going, HTML), with a
copy of _config.yml that differs in three execution settings:

- `execute_notebooks: force`: every chapter runs from scratch (jupyter-cache's key is the code
  of the cells alone, so a cached run would hide a change to logreg_lessons/);
- `raise_on_error: false` and `show_tb: true`: a failing chapter becomes a warning (still a
  failed build under -W) instead of an exception that stops the build at the first failure,
  so one run reports every failing chapter, each with its traceback in `<html>/reports/`.

The output goes to _build/test-book/ (git-ignored), emptied at the start of each session and
kept afterwards, so the execution reports of a failed build stay there to be read.
Set BOOK_TEST_REUSE=1 to reuse the previous session's build instead of building again (for
working on the browser test; never in CI).
"""

import functools
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
BUILD_DIR = ROOT / "_build" / "test-book"
SCREENSHOT_DIR = ROOT / "_build" / "screenshots"

# The front matter every chapter starts with (team contract); the last two pages are plain MyST.
JUPYTEXT_FRONT_MATTER = {
    "jupytext": {
        "text_representation": {
            "extension": ".md",
            "format_name": "myst",
            "format_version": 0.13,
            "jupytext_version": "1.19.6",
        }
    },
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
}
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
PLAIN_PAGES = (
    "book/appendix_notation",
    "book/10_instructor_guide",
    "book/execution_statistics",
)
# Appendices are notebooks or plain pages named book/appendix_*; their labels are `app-...`.
APPENDIX_PREFIX = "book/appendix_"


def load_tool(name: str, root: Path = ROOT):
    """Import tools/<name>.py as a module (tools/ is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, root / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def toc_docnames(root: Path = ROOT) -> list[str]:
    """Docnames listed in _toc.yml (`book/01_synthetic_data`), in reading order."""
    files = load_tool("pair_notebooks", root).toc_files(root)
    return [path.relative_to(root).with_suffix("").as_posix() for path in files]


def chapter_docnames(root: Path = ROOT) -> list[str]:
    """The notebook chapters (everything in the toc but the plain pages)."""
    return [name for name in toc_docnames(root) if name not in PLAIN_PAGES]


def front_matter(path: Path) -> dict:
    """The YAML front matter of a MyST file ({} when there is none)."""
    text = path.read_text(encoding="utf-8")
    if not text.startswith("---\n"):
        return {}
    end = text.index("\n---\n", 4)
    return yaml.safe_load(text[4:end]) or {}


@dataclass
class BookBuild:
    """The outcome of one `jupyter-book build` into `out`."""

    returncode: int
    seconds: float
    out: str

    @property
    def html(self) -> Path:
        return Path(self.out) / "_build" / "html"

    @property
    def executed(self) -> Path:
        """myst-nb's executed notebooks, `<docname>.ipynb`."""
        return Path(self.out) / "_build" / "jupyter_execute"

    @property
    def log(self) -> str:
        return (Path(self.out) / "build.log").read_text(encoding="utf-8", errors="replace")

    def reports(self) -> str:
        """Every execution report (traceback of a failed chapter) written by myst-nb."""
        parts = []
        for report in sorted((self.html / "reports").rglob("*.log")):
            text = ANSI_ESCAPE.sub("", report.read_text(encoding="utf-8", errors="replace"))
            parts.append(f"===== {report.relative_to(self.html)} =====\n{text}")
        return "\n".join(parts)

    def failure_message(self, tail_lines: int = 60) -> str:
        """What a person needs to fix a failed build: warnings, reports, the log's tail."""
        lines = ANSI_ESCAPE.sub("", self.log).splitlines()
        problems = [
            line
            for line in lines
            if any(word in line for word in ("WARNING", "ERROR", "Exception", "Error:"))
            and "Kernel is running over TCP" not in line  # ipykernel's notice, not ours
        ]
        return "\n".join(
            [
                f"jupyter-book build exited with {self.returncode} after {self.seconds:.0f} s "
                f"(full log: {Path(self.out) / 'build.log'}, reports: {self.html / 'reports'})",
                "--- warnings and errors ---",
                *problems[:80],
                "--- execution reports ---",
                self.reports() or "(none)",
                f"--- last {tail_lines} lines of the log ---",
                *lines[-tail_lines:],
            ]
        )


def forced_config(root: Path, out: Path) -> Path:
    """Write a copy of root/_config.yml with forced, non-raising execution into `out`."""
    config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))
    config.setdefault("execute", {}).update(
        execute_notebooks="force", raise_on_error=False, show_tb=True
    )
    sphinx = config.setdefault("sphinx", {})
    # local_extensions paths are relative to the config file: make them absolute.
    sphinx["local_extensions"] = {
        name: str((root / path).resolve())
        for name, path in (sphinx.get("local_extensions") or {}).items()
    }
    path = out / "_config.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def jupyter_book_command() -> str:
    candidate = Path(sys.executable).with_name("jupyter-book")
    return str(candidate) if candidate.exists() else shutil.which("jupyter-book") or "jupyter-book"


def build_book(root: Path = ROOT, out: Path = BUILD_DIR, timeout: float = 1800) -> BookBuild:
    """Build the whole book from scratch (forced execution, strict) into out/_build/html."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    config = forced_config(root, out)
    command = [
        jupyter_book_command(),
        "build",
        str(root),
        "--path-output",
        str(out),
        "--config",
        str(config),
        "-W",
        "--keep-going",
        "--builder",
        "html",
    ]
    env = dict(os.environ, PYTHONHASHSEED="0")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    start = time.perf_counter()
    with open(out / "build.log", "w", encoding="utf-8") as log:
        log.write(" ".join(command) + "\n")
        log.flush()
        try:
            returncode = subprocess.run(
                command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=timeout
            ).returncode
        except subprocess.TimeoutExpired:
            log.write(f"\nTIMEOUT: the build ran for more than {timeout:.0f} s\n")
            returncode = -1
    result = BookBuild(returncode, time.perf_counter() - start, str(out))
    (out / "result.json").write_text(json.dumps(asdict(result)), encoding="utf-8")
    return result


def previous_build(out: Path = BUILD_DIR) -> BookBuild | None:
    """The build recorded in out/result.json by an earlier session, if any."""
    try:
        return BookBuild(**json.loads((out / "result.json").read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the signature of the base class
        pass


@contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serve `directory` on 127.0.0.1 (an ephemeral port) in a thread; yield the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def html_pages(html: Path) -> list[str]:
    """Every page of the built book, relative to `html` (no assets, sources or reports)."""
    return sorted(
        path.relative_to(html).as_posix()
        for path in html.rglob("*.html")
        if not any(
            part.startswith("_") or part == "reports" for part in path.relative_to(html).parts
        )
    )
