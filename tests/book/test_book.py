"""Tests of the book: its sources, a strict forced build, and every page in headless Chromium.

Fast tests read the sources in book/ and run tools/pair_notebooks.py. The slow ones share one
build per session (tests/book/book_build.py: forced execution, -W --keep-going, into
_build/test-book/; the execution reports of a failed build stay in its html/reports/).
The browser tests serve that HTML on 127.0.0.1, open every page with Playwright driving
Debian's Chromium (/usr/bin/chromium: `apt-get install chromium`) and save a full-page
screenshot of each under _build/screenshots/.

    pytest tests/book/test_book.py -m "not slow"     # sources only (seconds)
    pytest tests/book/test_book.py                   # everything (a few minutes)
"""

import json
import os
import re
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import jupytext
import nbformat
import pytest
import yaml
from book_build import (
    APPENDIX_PREFIX,
    BUILD_DIR,
    JUPYTEXT_FRONT_MATTER,
    PLAIN_PAGES,
    ROOT,
    SCREENSHOT_DIR,
    build_book,
    chapter_docnames,
    front_matter,
    html_pages,
    load_tool,
    previous_build,
    serve,
    toc_docnames,
)

from logreg_grader import release

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
EXERCISE_IDS = release.course_assignments(ROOT)  # the ASSIGNMENTS of nbgrader_config.py
CHAPTERS = chapter_docnames()  # every notebook page, the appendix notebooks included
NUMBERED = [name for name in CHAPTERS if not name.startswith(APPENDIX_PREFIX)]
APPENDICES = [name for name in toc_docnames() if name.startswith(APPENDIX_PREFIX)]
MUSEUM = "book/appendix_bug_museum"


def chapter_source(docname: str) -> str:
    return (ROOT / f"{docname}.md").read_text(encoding="utf-8")


def chapter_number(docname: str) -> str:
    return Path(docname).name[:2]


def label_prefix(docname: str) -> str:
    """`chNN-` for chapter NN, `app-` for an appendix."""
    return "app-" if docname.startswith(APPENDIX_PREFIX) else f"ch{chapter_number(docname)}-"


# --------------------------------------------------------------------------- sources (fast)


def test_toc_lists_existing_files_and_the_plain_pages():
    docnames = toc_docnames()
    missing = [name for name in docnames if not (ROOT / f"{name}.md").is_file()]
    assert not missing, f"listed in _toc.yml but missing: {missing}"
    for page in PLAIN_PAGES:
        assert page in docnames, f"{page} is not in _toc.yml"
    numbers = sorted({chapter_number(name) for name in NUMBERED})
    assert numbers == [f"{k:02d}" for k in range(10)], f"expected chapters 00..09, got {NUMBERED}"
    assert {MUSEUM, "book/appendix_notation"} <= set(APPENDICES), APPENDICES


@pytest.mark.parametrize("docname", CHAPTERS)
def test_chapter_has_the_jupytext_front_matter(docname):
    meta = front_matter(ROOT / f"{docname}.md")
    for key, expected in JUPYTEXT_FRONT_MATTER.items():
        assert meta.get(key) == expected, (
            f"{docname}.md: front matter `{key}` is {meta.get(key)!r}, expected {expected!r}"
        )


@pytest.mark.parametrize("docname", PLAIN_PAGES)
def test_plain_pages_are_not_notebooks(docname):
    """The instructor guide and the statistics page run no code: no kernelspec."""
    assert "kernelspec" not in front_matter(ROOT / f"{docname}.md")


def test_no_notebook_is_committed_under_book():
    """Only the .md sources are committed (notebooks are built into _build/)."""
    import subprocess

    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "--", "book"],
        capture_output=True,
        text=True,
    )
    if listed.returncode == 0:
        files = listed.stdout.split()
    else:  # not a git checkout (e.g. an exported tarball): look at the folder instead
        files = [p.relative_to(ROOT).as_posix() for p in (ROOT / "book").rglob("*")]
    notebooks = [name for name in files if name.endswith(".ipynb")]
    assert not notebooks, f"notebooks committed under book/ (commit the .md only): {notebooks}"


@pytest.mark.parametrize("assignment", EXERCISE_IDS)
def test_chapter_links_its_exercise_notebook(assignment):
    docname = f"book/{assignment}"
    target = f"../exercises/{assignment}/{assignment}.ipynb"
    pattern = re.compile(r"\{download\}`[^`<]*<" + re.escape(target) + r">`")
    assert pattern.search(chapter_source(docname)), (
        f"{docname}.md has no {{download}} link to {target}, e.g.\n"
        f"{{download}}`exercises/{assignment}/{assignment}.ipynb <{target}>`"
    )
    released = ROOT / "exercises" / assignment / f"{assignment}.ipynb"
    assert released.is_file(), f"{released.relative_to(ROOT)} does not exist: run `make release`"


@pytest.mark.parametrize("docname", CHAPTERS)
def test_chapter_has_goals_exercises_and_key_points(docname):
    """Opens with what the reader will be able to do, ends with "Key points"; chapters 1-8
    have self-check exercises with dropdown solutions (the introduction has nothing to
    practise yet)."""
    text = chapter_source(docname)
    problems = []
    intro = re.split(r"^## ", text, maxsplit=1, flags=re.M)[0]
    if not re.search(r"will be able to", intro, re.I):
        problems.append("no 'what you will be able to do' before the first ## section")
    if not re.search(r"^#{2,3} Key points\s*$", text, re.M):
        problems.append('no "## Key points" section')
    if chapter_number(docname) != "00" and docname in NUMBERED:
        if not re.search(r"^(?:```|:::)\{exercise\}", text, re.M):
            problems.append("no {exercise}")
        solutions = re.findall(r"^(?:```|:::)\{solution\}[^\n]*\n((?::[^\n]*\n)*)", text, re.M)
        if any(":class: dropdown" not in options for options in solutions):
            problems.append("a {solution} without `:class: dropdown`")
    assert not problems, f"{docname}.md: " + "; ".join(problems)


@pytest.mark.parametrize("docname", CHAPTERS)
def test_labels_carry_the_chapter_prefix(docname):
    """Section labels are `(chNN-...)=` (`(app-...)=` in appendices); figures are `fig-...`."""
    prefix = label_prefix(docname)
    labels = re.findall(r"^\(([^)]+)\)=\s*$", chapter_source(docname), re.M)
    wrong = [label for label in labels if not label.startswith(prefix)]
    assert not wrong, f"{docname}.md: labels without the prefix {prefix!r}: {wrong}"


@pytest.mark.parametrize("docname", CHAPTERS)
def test_figure_cells_have_caption_name_and_alt_text(docname):
    notebook = jupytext.read(ROOT / f"{docname}.md")
    problems = []
    for index, cell in enumerate(notebook.cells):
        mystnb = cell.metadata.get("mystnb", {})
        if cell.cell_type != "code" or "figure" not in mystnb and "image" not in mystnb:
            continue
        figure, image = mystnb.get("figure", {}), mystnb.get("image", {})
        if not str(figure.get("caption", "")).strip():
            problems.append(f"cell {index}: no mystnb.figure.caption")
        if not str(figure.get("name", "")).startswith("fig-"):
            problems.append(f"cell {index}: mystnb.figure.name should start with 'fig-'")
        if not str(image.get("alt", "")).strip():
            problems.append(f"cell {index}: no mystnb.image.alt")
    assert not problems, f"{docname}.md:\n" + "\n".join(problems)


SOLUTION_SOURCES = sorted(ROOT.glob("solutions/*/*.md"))
CODE_LINE_LENGTH = 88


def test_code_cells_pass_ruff_at_88_characters(tmp_path):
    """The code cells of every chapter and every solution notebook, converted by jupytext,
    pass `ruff check` with the project's rules at a line length of 88 (the width that fits
    the page at 1280 px). Three rules are off because a notebook is not a module: E402
    (each cell imports what it uses at its own top; nbgrader test cells must), F811 (cells
    redefine names on purpose: a buggy version, then the fix; each test cell imports its
    checkers again) and B023 (closures built in a loop are called in that same iteration,
    as check_gradient's callbacks are). Markdown is not checked: only code."""
    sources = [ROOT / f"{name}.md" for name in CHAPTERS] + SOLUTION_SOURCES
    for source in sources:
        folder = tmp_path / source.parent.name
        folder.mkdir(exist_ok=True)
        jupytext.write(jupytext.read(source), folder / f"{source.stem}.ipynb")
    ruff = Path(os.environ.get("RUFF", Path(sys.executable).with_name("ruff")))
    result = subprocess.run(
        [
            str(ruff),
            "check",
            "--no-cache",
            "--config",
            str(ROOT / "pyproject.toml"),
            "--line-length",
            str(CODE_LINE_LENGTH),
            "--extend-ignore",
            "E402,F811,B023",
            "--config",
            "lint.isort.known-first-party = ['logreg_lessons', 'logreg_grader']",
            "--output-format",
            "concise",
            *sorted(str(p) for p in tmp_path.glob("*/*.ipynb")),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert len(list(tmp_path.glob("*/*.ipynb"))) == len(sources)
    assert result.returncode == 0, result.stdout + result.stderr


HIDDEN_INPUT_TAGS = {"remove-input", "hide-input", "remove-cell"}
PROSE_WORDS_PER_MINUTE = 200
CODE_TOKENS_PER_MINUTE = 100
MYST_MARKUP_LINE = re.compile(r"^(?:\([\w-]+\)=|:::.*|```.*|:[\w-]+:.*)$")
SOLUTION_DROPDOWN = re.compile(r"^:::\{solution\}.*?^:::$", re.M | re.S)


def reading_minutes(docname: str) -> tuple[float, float]:
    """(prose minutes, code minutes) of a page as a reader sees it unfolded.

    Prose: the words (whitespace-separated, a formula or a glued number counts as one) of
    the markdown cells at 200 words a minute, without the MyST markup lines (labels,
    directive fences and options) and without the solutions of the self-check exercises,
    which sit folded in dropdowns and are read while doing the exercise, not the chapter.
    Code: the whitespace-separated tokens of the code cells a reader sees (not those tagged
    remove-input, hide-input or remove-cell) at 100 a minute, half the prose rate: code is
    read token by token. Outputs and figures are not counted.
    """
    notebook = jupytext.read(ROOT / f"{docname}.md")
    words = tokens = 0
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            text = SOLUTION_DROPDOWN.sub("", cell.source)
            lines = [line for line in text.splitlines() if not MYST_MARKUP_LINE.match(line)]
            words += len("\n".join(lines).split())
        elif cell.cell_type == "code" and not HIDDEN_INPUT_TAGS & set(
            cell.metadata.get("tags", [])
        ):
            tokens += len(cell.source.split())
    return words / PROSE_WORDS_PER_MINUTE, tokens / CODE_TOKENS_PER_MINUTE


def _chapters_with_their_sections():
    """{top-level page of _toc.yml: [it and the pages listed as its sections]}."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    chapters = {}

    def pages(entry):
        return [entry["file"]] + [p for sub in entry.get("sections", []) for p in pages(sub)]

    for part in toc.get("parts", []):
        for entry in part.get("chapters", []):
            chapters[entry["file"]] = pages(entry)
    return chapters


TOP_LEVEL = _chapters_with_their_sections()


@pytest.mark.parametrize("chapter", [name for name in NUMBERED if name in TOP_LEVEL])
def test_every_chapter_reads_in_15_to_30_minutes(chapter):
    """One idea per chapter, read in 15-30 minutes (reading_minutes states the formula). A
    chapter with sections in _toc.yml (5 and its sequel 5b) is held to it page by page: each
    page is one sitting. The introduction, an overview, only has the upper bound."""
    problems = []
    for page in TOP_LEVEL[chapter]:
        prose, code = reading_minutes(page)
        total = prose + code
        low = 0 if chapter_number(page) == "00" else 15
        if not low <= total <= 30:
            problems.append(
                f"{page}.md reads in {total:.1f} min ({prose:.1f} prose + {code:.1f} code), "
                f"not within {low}-30: split it (a new page in _toc.yml) or tighten it"
            )
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("page", [name for name in APPENDICES if name in CHAPTERS])
def test_every_appendix_reads_in_at_most_30_minutes(page):
    prose, code = reading_minutes(page)
    assert prose + code <= 30, f"{page}.md reads in {prose + code:.1f} min: split it"


BUILD_PLUMBING = re.compile(r"\bglue\(|^\s*(?:from|import) myst_nb\b", re.M)


@pytest.mark.parametrize("docname", CHAPTERS)
def test_glue_lives_only_in_hidden_cells(docname):
    """`glue(...)` and the myst_nb import serve the build, not the reader: every code cell
    that uses them is tagged remove-input (or hide-input), so the code a student reads is
    only the code that teaches."""
    notebook = jupytext.read(ROOT / f"{docname}.md")
    visible = [
        (index, line.strip())
        for index, cell in enumerate(notebook.cells)
        if cell.cell_type == "code" and not HIDDEN_INPUT_TAGS & set(cell.metadata.get("tags", []))
        for line in cell.source.splitlines()
        if BUILD_PLUMBING.search(line)
    ]
    assert not visible, f"{docname}.md: build plumbing in visible cells (move it to a cell " + (
        "tagged remove-input):\n" + "\n".join(f"cell {i}: {line}" for i, line in visible)
    )


def _museum_exhibits():
    """{exhibit heading: [cells]} of the bug museum, split at its `## N. ...` headings."""
    notebook = jupytext.read(ROOT / f"{MUSEUM}.md")
    exhibits, current = {}, None
    for cell in notebook.cells:
        if cell.cell_type != "markdown":
            if current is not None:
                exhibits[current].append(cell)
            continue
        for line in cell.source.splitlines():  # a heading may sit mid-cell
            if line.startswith("## "):
                current = line[3:] if re.match(r"^## \d+\. ", line) else None
                if current is not None:
                    exhibits[current] = []
            elif current is not None:
                exhibits[current].append(nbformat.v4.new_markdown_cell(line))
    return exhibits


def test_museum_has_every_bug_of_the_issue_and_each_exhibit_is_complete():
    """Each exhibit: a bug cell that asserts the symptom, two sentences, a fix cell that
    asserts the fix, and a link to an existing section of a chapter."""
    exhibits = _museum_exhibits()
    assert len(exhibits) >= 12, sorted(exhibits)
    labels = {
        label
        for name in CHAPTERS
        for label in re.findall(r"^\(([^)]+)\)=\s*$", chapter_source(name), re.M)
    }
    problems = []
    for title, cells in exhibits.items():
        tags = [c.metadata.get("tags", []) for c in cells if c.cell_type == "code"]
        bug = [c for c in cells if "museum-bug" in c.metadata.get("tags", [])]
        fix = [c for c in cells if "museum-fix" in c.metadata.get("tags", [])]
        if len(bug) != 1 or "assert " not in bug[0].source:
            problems.append(f"{title}: needs one museum-bug cell with an assert ({tags})")
        if len(fix) != 1 or "assert " not in fix[0].source:
            problems.append(f"{title}: needs one museum-fix cell with an assert")
        prose = " ".join(c.source for c in cells if c.cell_type == "markdown")
        refs = re.findall(r"\{ref\}`([^`]+)`", prose)
        if not any(r.startswith("ch") and r in labels for r in refs):
            problems.append(f"{title}: no link to an existing chapter section ({refs})")
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------- pair_notebooks.py (fast)


def test_pair_notebooks_writes_one_stable_notebook_per_chapter(tmp_path, capsys):
    pair = load_tool("pair_notebooks")
    written = pair.pair_all(ROOT, tmp_path)
    assert sorted(p.name for p in written) == sorted(f"{Path(c).name}.ipynb" for c in CHAPTERS)
    assert sorted(tmp_path.iterdir()) == sorted(written)
    for path in written:
        text = path.read_text(encoding="utf-8")
        notebook = nbformat.reads(text, as_version=4)
        nbformat.validate(notebook)
        chapter = path.stem
        assert [cell.id for cell in notebook.cells] == [
            f"{chapter}-{i:03d}" for i in range(len(notebook.cells))
        ]
        assert '"formats"' not in text and "jupytext" not in notebook.metadata
        assert notebook.metadata.kernelspec.name == "python3"
        source = jupytext.read(ROOT / "book" / f"{chapter}.md")
        assert [c.source for c in notebook.cells] == [c.source for c in source.cells]

    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in written}
    time.sleep(0.01)
    capsys.readouterr()
    again = pair.pair_all(ROOT, tmp_path)
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in again} == before
    assert "wrote" not in capsys.readouterr().out

    stale = tmp_path / "99_removed_chapter.ipynb"
    stale.write_text("{}")
    pair.pair_all(ROOT, tmp_path)
    assert not stale.exists(), "a notebook whose chapter left _toc.yml must be removed"


# ------------------------------------------------------------ the forced build (slow)


@pytest.fixture(scope="session")
def book():
    """One strict, forced build of the whole book per session (see tests/book/book_build.py)."""
    if os.environ.get("BOOK_TEST_REUSE") == "1" and (build := previous_build()) is not None:
        return build
    return build_book(ROOT, BUILD_DIR)


@pytest.fixture(scope="session")
def html(book):
    if not (book.html / "index.html").is_file():
        pytest.fail("the build wrote no HTML:\n" + book.failure_message())
    return book.html


@pytest.mark.slow
def test_book_builds_strictly_with_forced_execution(book):
    print(f"forced build of the book: {book.seconds:.0f} s")
    assert book.returncode == 0, book.failure_message()
    assert "Validation errors in config" not in book.log, book.failure_message()
    assert not book.reports(), book.failure_message()


@pytest.mark.slow
def test_every_chapter_was_executed_and_is_offered_as_ipynb(book, html):
    for docname in CHAPTERS:
        executed = book.executed / f"{docname}.ipynb"
        assert executed.is_file(), f"myst-nb wrote no executed notebook for {docname}"
        page = (html / f"{docname}.html").read_text(encoding="utf-8")
        link = f"_sources/{docname}.ipynb"
        assert link in page, f"{docname}.html: the download menu does not offer the .ipynb"
        offered, ran = (nbformat.read(path, as_version=4) for path in (html / link, executed))
        assert offered.cells == ran.cells, f"{link} differs from the executed notebook"
        assert "jupytext" not in offered.metadata and "source_map" not in offered.metadata
    stats = (html / "book" / "execution_statistics.html").read_text(encoding="utf-8")
    for docname in CHAPTERS:
        assert f">{docname}</span>" in stats, f"{docname} missing from the execution table"


@pytest.mark.slow
def test_figures_in_the_executed_chapters_have_caption_and_alt_text(book):
    """Every image shown comes from a figure cell (caption, alt text), and every figure cell
    shows an image (an exported MPLBACKEND=Agg once made plt.show() draw nothing)."""
    problems = []
    for docname in CHAPTERS:
        path = book.executed / f"{docname}.ipynb"
        if not path.is_file():
            continue  # reported by the previous test
        notebook = nbformat.read(path, as_version=4)
        for index, cell in enumerate(notebook.cells):
            if cell.cell_type != "code":
                continue
            shows_image = any(
                key.startswith("image/") and "scrapbook" not in output.get("metadata", {})
                for output in cell.get("outputs", [])
                for key in output.get("data", {})
            )
            mystnb = cell.metadata.get("mystnb", {})
            caption = mystnb.get("figure", {}).get("caption")
            alt = mystnb.get("image", {}).get("alt")
            first_line = cell.source.splitlines()[0] if cell.source else ""
            if shows_image and not (caption and alt):
                problems.append(f"{docname} cell {index} ({first_line!r}): caption or alt missing")
            if "figure" in mystnb and not shows_image:
                problems.append(
                    f"{docname} cell {index} ({first_line!r}): a figure cell drew nothing"
                )
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_every_museum_exhibit_ran_and_printed_its_symptom(book):
    """In the executed appendix, every bug and fix cell ran without error and printed the
    numbers its assertion is about (the strict build fails on a failed assertion)."""
    notebook = nbformat.read(book.executed / f"{MUSEUM}.ipynb", as_version=4)
    cells = [
        c
        for c in notebook.cells
        if c.cell_type == "code" and {"museum-bug", "museum-fix"} & set(c.metadata.get("tags", []))
    ]
    assert len(cells) >= 24, f"only {len(cells)} exhibit cells were executed"
    problems = []
    for cell in cells:
        outputs = cell.get("outputs", [])
        first = cell.source.splitlines()[0]
        if any(o.output_type == "error" for o in outputs):
            problems.append(f"{first!r}: raised")
        if not any(o.output_type == "stream" and o.text.strip() for o in outputs):
            problems.append(f"{first!r}: printed nothing")
    assert not problems, "\n".join(problems)


class _ResourceFinder(HTMLParser):
    """Collect the URLs a page loads by itself: scripts, images, stylesheets, icons."""

    LOADING_RELS = {"stylesheet", "preload", "modulepreload", "icon", "shortcut", "manifest"}

    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("script", "img", "iframe", "source") and attrs.get("src"):
            self.urls.append(attrs["src"])
        elif tag == "link" and self.LOADING_RELS & set((attrs.get("rel") or "").split()):
            self.urls.append(attrs.get("href") or "")


@pytest.mark.slow
def test_the_html_references_nothing_outside_the_book(html):
    """MathJax comes from _static/mathjax/ and no page loads a script or style from the web."""
    assert (html / "_static" / "mathjax" / "tex-chtml.js").is_file()
    problems = []
    for page in html_pages(html):
        text = (html / page).read_text(encoding="utf-8")
        finder = _ResourceFinder()
        finder.feed(text)
        problems += [f"{page}: loads {url}" for url in finder.urls if urlsplit(url).netloc]
        if 'class="math' in text and not any(
            url.endswith("_static/mathjax/tex-chtml.js") for url in finder.urls
        ):
            problems.append(f"{page}: has math but does not load the local MathJax")
    assert not problems, "\n".join(problems)


# -------------------------------------------------------------- in the browser (slow)

# Run in the page after it loaded: wait for MathJax and the images, then report what is wrong.
INSPECT_PAGE = """async () => {
  const mathNodes = [...document.querySelectorAll('.math')];
  let mathjax = 'none';
  if (mathNodes.length) {
    const t0 = Date.now();
    while (!(window.MathJax && MathJax.startup && MathJax.startup.promise)) {
      if (Date.now() - t0 > 20000) { mathjax = 'never loaded'; break; }
      await new Promise(r => setTimeout(r, 50));
    }
    if (mathjax !== 'never loaded') { await MathJax.startup.promise; mathjax = 'typeset'; }
  }
  const images = [...document.images];
  images.forEach(img => { img.loading = 'eager'; });
  await Promise.all(images.map(img => img.complete ? null :
    new Promise(r => { img.addEventListener('load', r); img.addEventListener('error', r); })));
  const visible = document.body.cloneNode(true);
  visible.querySelectorAll('pre, code, script, style, .highlight').forEach(e => e.remove());
  return {
    mathjax,
    math: mathNodes.length,
    untypeset: mathNodes.filter(e => !e.querySelector('mjx-container'))
      .map(e => e.textContent.slice(0, 80)),
    mathErrors: [...document.querySelectorAll('mjx-merror')].map(e => e.textContent.slice(0, 80)),
    rawDollars: (visible.innerText.match(/.{0,40}\\$\\$.{0,40}/g) || []),
    brokenImages: images.filter(img => !(img.complete && img.naturalWidth > 0)).map(img => img.src),
    imagesWithoutAlt: [...document.querySelectorAll('article img')]
      .filter(img => !img.alt.trim()).map(img => img.src),
    rawMath: rawMathInText(),
    preOverflow: preWiderThanBox(),
    mathOverflow: mathWiderThanColumn(),
    tableOverflow: [...document.querySelectorAll('article table')]
      .filter(table => table.scrollWidth > table.parentElement.clientWidth + 1)
      .map(table => `${table.scrollWidth}px in ${table.parentElement.clientWidth}px: ` +
        table.innerText.slice(0, 80)),
  };

  // Text the reader sees that still holds TeX delimiters: MathJax did not take it (a
  // MyST list item that split a formula, a stray $ ...). Code and MathJax output excluded.
  function rawMathInText() {
    const skip = 'pre, code, script, style, mjx-container, mjx-assistive-mml, .highlight, ' +
      'textarea, title';
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    const found = [];
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const parent = node.parentElement;
      if (!parent || parent.closest(skip)) continue;
      const style = getComputedStyle(parent);
      if (style.display === 'none' || style.visibility === 'hidden') continue;
      const text = node.textContent;
      const at = text.search(/\\$|\\\\\\(|\\\\\\[/);
      if (at >= 0) found.push(text.slice(Math.max(0, at - 40), at + 40).trim());
    }
    return found;
  }

  // `pre` blocks whose content is wider than their box. Code (cell inputs, literal blocks)
  // is measured unwrapped, whatever the style sheet says: a wrapped code line misreads as
  // two. Outputs may wrap (a long error message), so they are measured as rendered.
  function preWiderThanBox() {
    return [...document.querySelectorAll('article pre')].map(pre => {
      const output = pre.closest('.cell_output') !== null;
      const saved = [pre.style.whiteSpace, pre.style.overflowWrap];
      if (!output) { pre.style.whiteSpace = 'pre'; pre.style.overflowWrap = 'normal'; }
      const width = pre.scrollWidth, box = pre.clientWidth;
      [pre.style.whiteSpace, pre.style.overflowWrap] = saved;
      const longest = pre.textContent.split('\\n')
        .reduce((a, b) => (b.length > a.length ? b : a), '');
      return {width, box, text: `${output ? 'output' : 'code'}: ${longest.slice(0, 100)}`};
    }).filter(({width, box}) => width > box + 1)
      .map(({width, box, text}) => `${width}px in ${box}px: ${text}`);
  }

  // Display equations whose typeset width exceeds the text column they sit in, or the
  // box MathJax gives them there (the column less the room of the equation number): the
  // box clips or scrolls what does not fit.
  function mathWiderThanColumn() {
    const column = document.querySelector('article.bd-article') ||
      document.querySelector('main') || document.body;
    const box = column.getBoundingClientRect();
    return [...document.querySelectorAll('mjx-container[display="true"]')]
      .map(container => {
        const math = container.querySelector('mjx-math') || container;
        const r = math.getBoundingClientRect();
        const room = Math.min(box.width, container.clientWidth || box.width);
        return {r, room, scrolls: container.scrollWidth > container.clientWidth + 1,
                text: (container.closest('.math') || container).textContent.slice(0, 80)};
      })
      .filter(({r, room, scrolls}) =>
        scrolls || r.width > room + 1 || r.right > box.right + 1)
      .map(({r, room, text}) => `${Math.round(r.width)}px in ${Math.round(room)}px: ${text}`);
  }
}"""


def _launch_chromium(playwright):
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} not found: install it with `apt-get install chromium`"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = _launch_chromium(playwright)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="session")
def site(html):
    with serve(html) as base_url:
        yield base_url


def _open(browser, url, outside, problems):
    """A new page that records console errors, failed local requests, and blocks the web."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})

    def route(route):
        parts = urlsplit(route.request.url)
        if parts.scheme in ("data", "blob") or parts.hostname == "127.0.0.1":
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: problems.append(f"exception: {e}"))
    page.on(
        "response",
        lambda r: r.status >= 400 and problems.append(f"HTTP {r.status}: {r.url}"),
    )
    page.goto(url, wait_until="load")
    return context, page


@pytest.fixture(scope="session")
def browsed(browser, site, html):
    """Open every page once; record what each one did. {page: dict of findings}."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in html_pages(html):
        outside, problems = [], []
        context, page = _open(browser, site + name, outside, problems)
        try:
            if re.search(r'http-equiv="refresh"', (html / name).read_text(), re.I):
                # index.html only redirects to the first chapter: check where it lands.
                page.wait_for_url(re.compile(r".*/book/.*\.html$"), timeout=10000)
                page.wait_for_load_state("load")
            findings = page.evaluate(INSPECT_PAGE)
            shot = SCREENSHOT_DIR / (name.removesuffix(".html").replace("/", "_") + ".png")
            page.screenshot(path=str(shot), full_page=True)
        finally:
            context.close()
        results[name] = dict(findings, outside=outside, problems=problems)
    (SCREENSHOT_DIR / "findings.json").write_text(json.dumps(results, indent=1))
    return results


def _report(browsed, key):
    return {page: found[key] for page, found in browsed.items() if found[key]}


@pytest.mark.slow
@pytest.mark.browser
def test_pages_have_no_console_errors_or_failed_requests(browsed):
    assert not _report(browsed, "problems"), json.dumps(_report(browsed, "problems"), indent=1)


@pytest.mark.slow
@pytest.mark.browser
def test_no_request_leaves_localhost(browsed):
    assert not _report(browsed, "outside"), json.dumps(_report(browsed, "outside"), indent=1)


@pytest.mark.slow
@pytest.mark.browser
def test_math_is_typeset_by_mathjax(browsed):
    chapters_with_math = [p for p in browsed if p.startswith("book/0") and browsed[p]["math"]]
    assert len(chapters_with_math) >= 5, f"suspiciously little math: {chapters_with_math}"
    problems = {
        page: {k: found[k] for k in ("mathjax", "untypeset", "mathErrors", "rawDollars")}
        for page, found in browsed.items()
        if (found["math"] and found["mathjax"] != "typeset")
        or found["untypeset"]
        or found["mathErrors"]
        or found["rawDollars"]
    }
    assert not problems, json.dumps(problems, indent=1)


@pytest.mark.slow
@pytest.mark.browser
def test_no_raw_tex_delimiters_in_the_rendered_text(browsed):
    """A `$`, `\\(` or `\\[` that a reader sees means MathJax did not typeset a formula."""
    assert not _report(browsed, "rawMath"), json.dumps(_report(browsed, "rawMath"), indent=1)


@pytest.mark.slow
@pytest.mark.browser
def test_code_and_output_blocks_fit_their_box(browsed):
    """No `pre` block is wider than its box at 1280 px: code blocks measured unwrapped (the
    style sheet must not hide a long code line by wrapping it), outputs as rendered."""
    assert not _report(browsed, "preOverflow"), json.dumps(
        _report(browsed, "preOverflow"), indent=1
    )


@pytest.mark.slow
@pytest.mark.browser
def test_display_equations_fit_the_text_column(browsed):
    assert not _report(browsed, "mathOverflow"), json.dumps(
        _report(browsed, "mathOverflow"), indent=1
    )


@pytest.mark.slow
@pytest.mark.browser
def test_tables_fit_the_text_column(browsed):
    """No table (a markdown table or a displayed one) is wider than the box it sits in."""
    assert not _report(browsed, "tableOverflow"), json.dumps(
        _report(browsed, "tableOverflow"), indent=1
    )


@pytest.mark.slow
@pytest.mark.browser
def test_every_image_loads_and_has_alt_text(browsed):
    problems = {
        page: {k: found[k] for k in ("brokenImages", "imagesWithoutAlt")}
        for page, found in browsed.items()
        if found["brokenImages"] or found["imagesWithoutAlt"]
    }
    assert not problems, json.dumps(problems, indent=1)


@pytest.mark.slow
@pytest.mark.browser
def test_search_finds_the_softmax_chapter(browser, site):
    outside, problems = [], []
    context, page = _open(browser, site + "search.html?q=softmax", outside, problems)
    try:
        page.wait_for_selector("#search-results ul.search li a", timeout=20000)
        links = page.eval_on_selector_all(
            "#search-results ul.search li a", "links => links.map(a => a.href)"
        )
        page.screenshot(path=str(SCREENSHOT_DIR / "search_softmax.png"), full_page=True)
    finally:
        context.close()
    assert any("06_softmax_regression" in link for link in links), links
    assert not outside and not problems, (outside, problems)
