"""Generate the students' notebooks exercises/<id>/<id>.ipynb from solutions/<id>/<id>.md.

The MyST source is the only file a person edits (scikit-learn-mooc's rule: the exercise is
generated from the solution, never edited by hand). For every solutions/<id>/<id>.md:

1. read it with jupytext, complete and validate the nbgrader cell metadata (schema_version 3,
   defaults for grade/solution/locked/task, cell id = grade_id or "<id>-<index>"), drop the
   jupytext metadata, and write solutions/<id>/<id>.ipynb (git-ignored; the autograder's
   master copy);
2. run nbgrader's generate_assignment on it in a temporary course folder (so neither the real
   gradebook nor exercises/ is touched half-way), normalise the result byte for byte, and
   check that no solution, hidden test, model answer or text source leaks;
3. write exercises/<id>/<id>.ipynb (only if its content changed).

Usage:
    python tools/release.py [--assignment ID] [--check] [--root DIR]     (`make release`)

--check regenerates everything in memory and exits 1 if exercises/ is stale (a test and CI
use it). Exit 2 on an invalid source, with a message naming the file, cell and problem.
"""

from __future__ import annotations

import argparse
import ast
import logging
import os
import re
import sys
import tempfile
from pathlib import Path

from logreg_grader import notebook as nbm
from logreg_grader.course import Course

ROOT = Path(__file__).resolve().parents[1]
MARKERS = (*(m.lstrip("# ") for m in nbm.MARKERS), "BEGIN MARK SCHEME")
FLAGS = ("grade", "solution", "locked", "task")
KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}
# Cell metadata of JupyterLab's view (and of nbgrader's release: it locks cells itself).
VIEW_METADATA = (
    "collapsed",
    "scrolled",
    "jp-MarkdownHeadingCollapsed",
    "editable",
    "deletable",
    "trusted",
    "execution",
    "ExecuteTime",
)


class SourceError(Exception):
    """An invalid solutions/<id>/<id>.md."""


def course_assignments(root: Path) -> list[str]:
    """The assignment ids listed in ``ASSIGNMENTS = [...]`` of root/nbgrader_config.py."""
    tree = ast.parse((root / "nbgrader_config.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "ASSIGNMENTS":
            return list(ast.literal_eval(node.value))
    return []


def sources(root: Path, assignment: str | None = None) -> list[Path]:
    """The solutions/<id>/<id>.md files to release (one assignment, or every one found)."""
    if assignment:
        path = Course(root).source(assignment)
        if not path.exists():
            raise SourceError(f"{path} does not exist")
        return [path]
    course = Course(root)
    found = (p.name for p in (root / "solutions").iterdir() if p.is_dir())
    return sorted(course.source(aid) for aid in found)


def _has_formats(obj) -> bool:
    if isinstance(obj, dict):
        return "formats" in obj or any(_has_formats(v) for v in obj.values())
    if isinstance(obj, list):
        return any(_has_formats(v) for v in obj)
    return False


def source_notebook(md_path: Path):
    """Read a MyST source, complete its nbgrader metadata and check the conventions."""
    import jupytext

    aid = md_path.stem
    nb = jupytext.read(md_path)
    where = md_path.as_posix()
    if _has_formats(nb.metadata) or any(_has_formats(c.metadata) for c in nb.cells):
        raise SourceError(f"{where}: remove the jupytext 'formats' (pairing) metadata")
    # What JupyterLab writes on saving (through jupytext) is not the source's content: the
    # running kernel's kernelspec, language_info, and view state of cells. The master and the
    # release keep the course's own, so a save from JupyterLab leaves exercises/ unchanged.
    nb.metadata.pop("jupytext", None)
    nb.metadata.pop("language_info", None)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.nbformat, nb.nbformat_minor = 4, 5
    seen: dict[str, int] = {}
    for index, cell in enumerate(nb.cells):
        for key in VIEW_METADATA:
            cell.metadata.pop(key, None)
        meta = cell.metadata.get("nbgrader")
        label = f"{where}: cell {index}"
        if meta is None:
            cell.id = f"{aid}-{index}"
            continue
        for key in FLAGS:
            meta[key] = bool(meta.get(key, False))
        meta["schema_version"] = 3
        gid = meta.get("grade_id")
        if any(meta[k] for k in FLAGS) and not gid:
            raise SourceError(f"{label}: nbgrader cell without a grade_id")
        if gid is not None:
            if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", str(gid)):
                raise SourceError(f"{label}: grade_id {gid!r} must match [A-Za-z0-9_-]{{1,64}}")
            if gid in seen:
                raise SourceError(f"{label}: grade_id {gid!r} already used by cell {seen[gid]}")
            seen[gid] = index
            label += f" ({gid})"
        if meta["grade"]:
            points = meta.get("points")
            if not isinstance(points, int | float) or isinstance(points, bool) or points <= 0:
                raise SourceError(f"{label}: a graded cell needs points > 0, got {points!r}")
        else:
            meta.pop("points", None)
        src = cell.source
        if cell.cell_type == "code" and meta["solution"]:
            if "### BEGIN SOLUTION" not in src or "### END SOLUTION" not in src:
                raise SourceError(f"{label}: a solution cell needs ### BEGIN/END SOLUTION")
        if cell.cell_type == "code" and meta["grade"] and not meta["solution"]:
            if not meta["locked"]:
                raise SourceError(f"{label}: a test cell must be locked: true")
            if not src.lstrip().startswith('"""'):
                raise SourceError(f"{label}: a test cell opens with a one-line docstring")
        if "BEGIN HIDDEN TESTS" in src and not (meta["grade"] and not meta["solution"]):
            raise SourceError(f"{label}: hidden tests belong in a test cell")
        if cell.cell_type == "markdown" and meta["solution"] and not meta["grade"]:
            raise SourceError(f"{label}: a written answer needs grade: true and points")
        cell.id = str(gid) if gid else f"{aid}-{index}"
    if not seen:
        raise SourceError(f"{where}: no nbgrader cells")
    return nb


def notebook_text(nb) -> str:
    """Deterministic ipynb text (sorted keys, one-space indent, final newline)."""
    import nbformat

    return nbformat.writes(nb, version=4).rstrip("\n") + "\n"


def _secrets(nb) -> tuple[set[str], set[str]]:
    """Lines only the solution may show, and every line that is meant to stay visible."""
    secret, visible = set(), set()
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "markdown" and meta.get("solution"):
            secret.update(line.strip() for line in cell.source.split("\n"))
            continue
        inside = False
        for line in cell.source.split("\n"):
            if any(m in line for m in MARKERS):
                inside = "BEGIN" in line
                continue
            (secret if inside else visible).add(line.strip())
    return {s for s in secret - visible if len(s) >= 20}, visible


def check_release(text: str, source_nb, name: str) -> None:
    """Fail if the released notebook leaks a marker, a secret line or jupytext metadata."""
    import nbformat

    problems = [f"marker {m!r}" for m in MARKERS if m in text]
    if '"formats"' in text or '"jupytext"' in text:
        problems.append("jupytext metadata")
    cells = nbformat.reads(text, 4).cells
    released = {line.strip() for cell in cells for line in cell.source.split("\n")}
    secret, _ = _secrets(source_nb)
    problems += [f"solution/hidden line {line!r}" for line in sorted(secret & released)]
    if problems:
        raise SourceError(f"{name} leaks: " + "; ".join(problems))


def prepare_environment() -> None:
    """Run nbgrader's helpers (alembic) and kernels from this interpreter's environment."""
    bindir = str(Path(sys.executable).parent)
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ.setdefault("PYTHONHASHSEED", "0")


def load_config(course_root: Path, config_dir: Path = ROOT):
    """nbgrader config of config_dir/nbgrader_config.py, pointed at course_root."""
    from traitlets.config.loader import PyFileConfigLoader

    cfg = PyFileConfigLoader("nbgrader_config.py", path=str(config_dir)).load_config()
    cfg.CourseDirectory.root = str(course_root)
    (course_root / "gradebook").mkdir(parents=True, exist_ok=True)
    cfg.CourseDirectory.db_url = f"sqlite:///{course_root / 'gradebook' / 'gradebook.db'}"
    return cfg


def nbgrader_api(course_root: Path, config_dir: Path = ROOT):
    """An NbGraderAPI working on course_root with the course's configuration."""
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    prepare_environment()
    cfg = load_config(course_root, config_dir)
    api = NbGraderAPI(coursedir=CourseDirectory(config=cfg), config=cfg)
    api.log.setLevel(logging.WARNING)
    return api


def generate(nbs: dict, config_dir: Path = ROOT) -> dict[str, str]:
    """Run nbgrader generate_assignment in a scratch course; return {id: release text}."""
    import nbformat

    out = {}
    with tempfile.TemporaryDirectory(prefix="release-") as tmp:
        course = Path(tmp)
        for aid, nb in nbs.items():
            Course(course).master(aid).parent.mkdir(parents=True)
            Course(course).master(aid).write_text(notebook_text(nb), encoding="utf-8")
        api = nbgrader_api(course, config_dir)
        for aid, nb in nbs.items():
            result = api.generate_assignment(aid, force=True, create=True)
            if not result["success"]:
                raise SourceError(f"nbgrader generate_assignment {aid} failed:\n{result['log']}")
            released = nbformat.read(Course(course).release(aid), 4)
            extra = [
                p for p in Course(course).release(aid).parent.rglob("*") if p.suffix != ".ipynb"
            ]
            if extra:
                raise SourceError(f"{aid}: the release would contain {extra}")
            out[aid] = normalise(released)
            check_release(out[aid], nb, f"exercises/{aid}/{aid}.ipynb")
    return out


def normalise(nb) -> str:
    """Byte-stable release: no outputs, no execution counts, sorted metadata, fixed ids."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nb.metadata.pop("jupytext", None)
    return notebook_text(nb)


def release(root: Path, assignment: str | None = None, check: bool = False) -> int:
    known = course_assignments(root)
    md_files = sources(root, assignment)
    nbs = {}
    for md in md_files:
        if known and md.stem not in known:
            raise SourceError(f"{md}: {md.stem!r} is not in ASSIGNMENTS of nbgrader_config.py")
        nbs[md.stem] = source_notebook(md)
    released = generate(nbs, root)
    stale = []
    for aid, nb in nbs.items():
        master = Course(root).master(aid)
        write_if_changed(master, notebook_text(nb), check)
        target = Course(root).release(aid)
        if write_if_changed(target, released[aid], check):
            stale.append(target.relative_to(root).as_posix())
    expected = {Course(root).release(aid) for aid in released}
    if assignment is None and (root / "exercises").exists():
        for path in sorted((root / "exercises").rglob("*")):
            if path.is_file() and path not in expected:
                stale.append(f"{path.relative_to(root).as_posix()} (no source)")
                if not check:
                    path.unlink()
        for folder in sorted((root / "exercises").glob("*/"), reverse=True):
            if folder.is_dir() and not any(folder.iterdir()) and not check:
                folder.rmdir()
    if check:
        if stale:
            print("exercises/ is stale; run `make release`:", *stale, sep="\n  ", file=sys.stderr)
            return 1
        print(f"exercises/ is up to date ({len(released)} notebooks)")
    else:
        print(f"released {len(released)} notebooks into exercises/; changed: {stale or 'none'}")
    return 0


def write_if_changed(path: Path, text: str, check: bool = False) -> bool:
    """Write text unless identical; return True if the file differs (or would)."""
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    if not check:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--assignment", help="release one assignment id (default: all)")
    parser.add_argument("--check", action="store_true", help="exit 1 if exercises/ is stale")
    parser.add_argument("--root", type=Path, default=ROOT, help="course root (default: repo)")
    args = parser.parse_args(argv)
    try:
        return release(args.root.resolve(), args.assignment, args.check)
    except SourceError as err:
        print(f"release: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
