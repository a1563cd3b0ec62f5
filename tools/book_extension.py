"""Sphinx extension with the book's build adjustments, loaded from _config.yml.

1. Let the chapters' kernels draw inline. A MPLBACKEND variable in the environment (the
   Makefile and tests/conftest.py export MPLBACKEND=Agg for everything else) is inherited by
   the kernels and wins over ipykernel's inline backend, so `plt.show()` would display nothing
   and the book would silently lose its figures. The variable is removed from this process's
   environment, which the kernels inherit; ipykernel then picks matplotlib-inline itself.
2. Offer each chapter as an executed ``.ipynb`` in the page's download menu.
   sphinx-book-theme 1.3 lists ``.ipynb`` there only when the page context holds
   ``ipynb_source``, and for text (MyST) notebooks it sets that only while a launch button
   (Binder, JupyterHub, Colab) is configured. myst-nb writes every executed notebook to
   ``<build>/jupyter_execute/<docname>.ipynb``; this copies it (outputs included, build-only
   metadata removed) next to the page's source in ``_sources/`` and sets ``ipynb_source``, so
   every chapter offers ``.md``, ``.ipynb`` and ``.pdf`` whether or not launch buttons are on.
3. Emit each inline script once. Sphinx 7.4 registers an inline script added at
   ``builder-inited`` or later twice (once with filename None, once with ''), and
   sphinx-thebe's ``const THEBE_JS_URL = ...`` declared twice is a JavaScript error on
   every page.
"""

import os
from pathlib import Path

import nbformat
from sphinx.util import logging

logger = logging.getLogger(__name__)
# Notebook metadata that only means something to the build: jupytext's record of the .md
# source, and myst-nb's map from cells to source lines.
BUILD_ONLY_METADATA = ("jupytext", "source_map")


def add_ipynb_source(app, pagename, templatename, context, doctree):
    """Copy the executed notebook of a notebook page into ``_sources/`` and link it."""
    if doctree is None or "kernelspec" not in app.env.metadata.get(pagename, {}):
        return  # generated pages (search, index) and plain MyST pages have no notebook
    executed = Path(app.outdir).parent / "jupyter_execute" / f"{pagename}.ipynb"
    if not executed.is_file():
        logger.warning("executed notebook not found: %s", executed, location=pagename)
        return
    notebook = nbformat.read(executed, as_version=4)
    for key in BUILD_ONLY_METADATA:
        notebook.metadata.pop(key, None)
    target = Path(app.outdir) / "_sources" / f"{pagename}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, target)
    context["ipynb_source"] = f"{pagename}.ipynb"


def drop_duplicate_scripts(app, pagename, templatename, context, doctree):
    """Keep the first of several identical <script> entries (in place: the list is shared)."""
    scripts = context.get("script_files")
    if not isinstance(scripts, list):
        return
    seen, unique = set(), []
    for script in scripts:
        attributes = getattr(script, "attributes", {})
        key = (getattr(script, "filename", script) or "", tuple(sorted(attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique


def setup(app):
    os.environ.pop("MPLBACKEND", None)  # see 1. above; set before any kernel starts
    # Before the theme's header buttons (priority 501), which read `ipynb_source`.
    app.connect("html-page-context", add_ipynb_source, priority=400)
    # After every handler that may add a script to the page.
    app.connect("html-page-context", drop_duplicate_scripts, priority=900)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
