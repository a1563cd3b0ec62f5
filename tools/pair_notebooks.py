"""Write every chapter of the book as a Jupyter notebook into _build/notebooks/.

The chapters are MyST Markdown notebooks (book/NN_slug.md, jupytext). A reader who wants to run
one in Jupyter opens _build/notebooks/NN_slug.ipynb, written here by jupytext from the chapters
that _toc.yml lists (plain MyST pages without a kernelspec are skipped). The notebooks live
outside the Sphinx source tree and are git-ignored; the .md files stay the only source.

The output is deterministic, so a rerun rewrites nothing:
- every cell id is `<chapter>-<cell index>` (nbformat's random ids would change on every run);
- the notebook carries no jupytext metadata (no "formats" pairing: editing the .ipynb in
  Jupyter never writes back to the .md);
- a file whose content would not change is left untouched (its mtime too).

Usage: python tools/pair_notebooks.py [--root DIR] [--out DIR]   (`make notebooks`)
"""

import argparse
import sys
from pathlib import Path

import jupytext
import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]


def toc_files(root: Path) -> list[Path]:
    """Source files listed in root/_toc.yml (root page first), in reading order."""
    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    names = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                names.append(entry["file"])
            walk(entry.get("sections"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    walk(toc.get("sections"))
    files = []
    for name in names:
        path = root / name
        if not path.suffix:
            path = path.with_suffix(".md")
        files.append(path)
    return files


def is_notebook(nb) -> bool:
    """A chapter is a notebook when its front matter declares a kernel."""
    return "kernelspec" in nb.metadata


def to_ipynb(nb, chapter: str) -> str:
    """The notebook as ipynb text: stable cell ids, no jupytext metadata."""
    nb.metadata.pop("jupytext", None)
    nb.nbformat, nb.nbformat_minor = 4, 5
    for index, cell in enumerate(nb.cells):
        cell["id"] = f"{chapter}-{index:03d}"
    nbformat.validate(nb)
    return nbformat.writes(nb) + "\n"


def _show(path: Path) -> str:
    """`path` relative to the working directory when it lies below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def pair_all(root: Path = ROOT, out: Path | None = None) -> list[Path]:
    """Write one notebook per chapter into `out`; return the paths of all of them."""
    out = out if out is not None else root / "_build" / "notebooks"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for source in toc_files(root):
        if not source.is_file():
            raise FileNotFoundError(f"{source} is listed in _toc.yml but does not exist")
        nb = jupytext.read(source)
        if not is_notebook(nb):
            continue
        target = out / f"{source.stem}.ipynb"
        text = to_ipynb(nb, source.stem)
        if target.is_file() and target.read_text(encoding="utf-8") == text:
            status = "unchanged"
        else:
            target.write_text(text, encoding="utf-8")
            status = "wrote"
        print(f"{status:9} {_show(target)}")
        written.append(target)
    for stale in sorted(set(out.glob("*.ipynb")) - set(written)):
        stale.unlink()  # a chapter removed from _toc.yml leaves no orphan behind
        print(f"{'removed':9} {_show(stale)}")
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="book root (with _toc.yml)")
    parser.add_argument("--out", type=Path, default=None, help="default: ROOT/_build/notebooks")
    args = parser.parse_args(argv)
    pair_all(args.root.resolve(), args.out.resolve() if args.out else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
