"""``logreg-lab`` (``make lab``): JupyterLab with nbgrader's formgrader, set up for this course.

Before the server starts, in the course folder:

1. the environment's ``bin`` goes first on PATH (nbgrader runs ``alembic`` when it creates a
   gradebook; without it the gradebook is left without ``alembic_version`` and
   ``nbgrader db upgrade`` fails on it afterwards);
2. the gradebook is opened as ``make grade`` opens it (:mod:`logreg_grader.gradebook`: the
   same URL, WAL mode, the grader's own tables), so it exists, versioned, before formgrader
   first reads it; a gradebook left unversioned by that failure is stamped with the head
   revision of the installed nbgrader (its tables were created by that version);
3. JupyterLab starts on 127.0.0.1 with a random token, its PyPI extension manager and news
   feed off (nothing leaves the machine), and this module loaded as a server extension.

The extension (:func:`_load_jupyter_server_extension`) changes five of formgrader's routes:

- *Autograde* runs ``logreg-grade --assignment A --student S`` (the sandboxed grader, which
  refuses to run where it cannot sandbox and says why) instead of nbgrader's autograder,
  which would run the student's code unsandboxed inside the Jupyter server's user;
- *Generate Feedback* (one student or all) runs ``logreg-grades`` (``make grades``), which
  writes the grader's feedback pages from the gradebook; nbgrader's would replace them;
- *Generate* (an assignment's release) runs ``logreg-release --assignment A`` (``make
  release``): nbgrader's would write exercises/ without the release's normalisation and
  leak checks;
- the submission page (manual grading) loads MathJax 3 from this server (the copy the book
  uses, from sphinx-mathjax-offline, at ``/logreg-lab/mathjax/``) instead of nbconvert's
  default, MathJax 2 from a CDN;
- the list of an assignment's submissions tells to run ``make grade``, not
  ``nbgrader autograde`` (unsandboxed), to grade them all.

It also gives the login cookie that a ``?token=`` link to formgrader sets the server's base
path (formgrader's pages report the base URL without its slash, so the cookie stayed on the
one page and the page's own API calls went to the login page).

Usage: ``logreg-lab [--root DIR] [--port N] [jupyter lab options...]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import secrets
import socket
import sys
from pathlib import Path

ROUTE = "logreg-lab"  # this extension's own URLs: {base_url}logreg-lab/...
DEFAULT_PORT = 8888


# --- before the server: the gradebook --------------------------------------------------------


def prepare_gradebook(root: Path) -> str:
    """Create (or open) the course's gradebook as the grader does; say what was done."""
    import warnings

    from nbgrader.api import Gradebook

    from logreg_grader import gradebook, release

    release.prepare_environment()  # alembic, from this environment
    warnings.filterwarnings("ignore", module="nbgrader")  # SQLAlchemy session warnings
    warnings.filterwarnings("ignore", module="sqlalchemy")
    url = gradebook.url(root)
    gradebook.prepare(url)
    existed = _has_tables(url)
    with Gradebook(url, "logreg-lessons") as gb:
        gradebook.ensure_tables(gb)
    stamped = gradebook.ensure_versioned(url)
    where = gradebook.redacted(url)
    if stamped:
        return (
            f"lab: the gradebook {where} had no alembic_version (it was created where alembic "
            f"was not on PATH): stamped {stamped}, so `nbgrader db upgrade` works on it again"
        )
    return f"lab: gradebook {where} ({'opened' if existed else 'created'})"


def _has_tables(url: str) -> bool:
    from sqlalchemy import create_engine, inspect

    engine = create_engine(url)
    try:
        return bool(inspect(engine).get_table_names())
    finally:
        engine.dispose()


# --- the command -------------------------------------------------------------------------------


def free_port(host: str, start: int) -> int:
    """The first port from ``start`` on that nothing listens on at ``host``."""
    for port in range(start, start + 100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    raise SystemExit(f"lab: no free port in {start}-{start + 99} on {host}")


def jupyter_command(root: Path, host: str, port: int, extra: list[str]) -> list[str]:
    """The ``jupyter lab`` command line of :func:`lab_main`."""
    bindir = Path(sys.executable).parent
    command = [
        str(bindir / "jupyter-lab"),
        f"--ServerApp.ip={host}",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",  # the printed URL stays right
        f"--ServerApp.root_dir={root}",
        f"--ServerApp.jpserver_extensions={__name__}=True",
        # Nothing leaves the machine: no PyPI search in the extension manager, no news feed,
        # no update check.
        "--LabApp.extension_manager=readonly",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    if os.geteuid() == 0:
        command.append("--allow-root")  # as `sudo make grade`: the course's files are root's
    return command + extra


def lab_main(argv=None) -> int:
    from logreg_grader import release

    parser = argparse.ArgumentParser(
        prog="logreg-lab",
        description="JupyterLab with nbgrader's formgrader on this course (make lab).",
        epilog="Other options are passed on to jupyter lab (e.g. --no-browser).",
    )
    parser.add_argument("--root", type=Path, default=release.ROOT, help="course root")
    parser.add_argument(
        "--port",
        type=int,
        help=f"port on 127.0.0.1 (default: the first free one from {DEFAULT_PORT})",
    )
    args, extra = parser.parse_known_args(argv)
    root = args.root.resolve()
    if not (root / "nbgrader_config.py").is_file():
        parser.error(f"--root: {root} has no nbgrader_config.py (expected the course folder)")
    if args.port is not None and not 0 < args.port < 65536:
        parser.error(f"--port must be between 1 and 65535, got {args.port}")
    from logreg_grader.course import Course

    folder = Course(root).foreign_folder(("gradebook",))
    if folder is not None:
        print(
            f"lab: {folder} belongs to another user (`sudo make grade` makes it root's, 0700): "
            "start the lab as that user too (`sudo make lab`)",
            file=sys.stderr,
        )
        return 2
    host = "127.0.0.1"
    port = args.port if args.port is not None else free_port(host, DEFAULT_PORT)
    try:
        print(prepare_gradebook(root), flush=True)
    except SystemExit as err:  # gradebook.prepare: the database cannot be reached
        print(err, file=sys.stderr)
        return 2
    token = os.environ.get("JUPYTER_TOKEN") or secrets.token_hex(24)  # as Jupyter makes one
    os.environ["JUPYTER_TOKEN"] = token  # not on the command line: `ps` would show it
    print(f"lab: formgrader at http://{host}:{port}/formgrader?token={token}", flush=True)
    print(f"lab: JupyterLab at http://{host}:{port}/lab?token={token}", flush=True)
    os.chdir(root)  # formgrader reads nbgrader_config.py from the working directory
    command = jupyter_command(root, host, port, extra)
    os.execv(command[0], command)
    return 0  # not reached


def lab_console() -> None:
    sys.exit(lab_main())


# --- the server extension ----------------------------------------------------------------------


def _jupyter_server_extension_points():
    return [{"module": __name__}]


# Replaces nbconvert's mathjax macro (MathJax 2 from a CDN) on formgrader's pages. nbgrader's
# formgrade.js speaks MathJax 2: it asks MathJax.Hub.Startup.signal for the "End" of the first
# typesetting, which the shim below sends when MathJax 3 has typeset the page. The setter
# keeps the shim on the MathJax object that MathJax 3 puts in place of its configuration.
MATHJAX_MACRO = r"""{%- macro mathjax(url=None) -%}
<script>
(function () {
  var waiting = [], done = false;
  var hub = {Startup: {signal: {Interest: function (callback) {
    if (done) { callback("End"); } else { waiting.push(callback); }
  }}}};
  var current = {
    tex: {
      inlineMath: [["$", "$"], ["\\(", "\\)"]],
      displayMath: [["$$", "$$"], ["\\[", "\\]"]],
      processEscapes: true,
      processEnvironments: true,
      tags: "ams"
    },
    loader: {load: ["ui/safe"]},
    startup: {pageReady: function () {
      return MathJax.startup.defaultPageReady().then(function () {
        done = true;
        waiting.forEach(function (callback) { callback("End"); });
      });
    }},
    Hub: hub
  };
  Object.defineProperty(window, "MathJax", {
    configurable: true,
    get: function () { return current; },
    set: function (value) { value.Hub = hub; current = value; }
  });
})();
</script>
<script defer src="__MATHJAX__"></script>
{%- endmacro -%}
"""


SUBMISSIONS = "logreg_manage_submissions.tpl"
SUBMISSIONS_TPL = """{%- extends 'manage_submissions.tpl' -%}
{%- block messages -%}
<div class="panel panel-default">
  <div class="panel-body">
    <p>
      The <span class="glyphicon glyphicon-flash"></span> icon grades one submission with the
      course's sandboxed grader (<code>make grade ASSIGNMENT=... STUDENT=...</code>) and
      <span class="glyphicon glyphicon-comment"></span> rewrites the feedback pages
      (<code>make grades</code>). To grade every new submission, run in the course folder:
    </p>
    <pre>cd "{{ course_dir }}"
sudo make grade ASSIGNMENT={{ assignment_id }}</pre>
    <p>Not <code>nbgrader autograde</code>: it would run the students' code unsandboxed.</p>
  </div>
</div>
{%- endblock -%}
"""


def mathjax_dir() -> Path:
    """MathJax 3 as sphinx-mathjax-offline ships it (the book serves the same files)."""
    spec = importlib.util.find_spec("sphinx-mathjax-offline")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("sphinx-mathjax-offline is not installed (it ships MathJax)")
    return Path(next(iter(spec.submodule_search_locations))) / "static" / "mathjax"


def _handlers(base_url: str):
    from jinja2 import ChoiceLoader, DictLoader
    from jupyter_server.utils import url_path_join
    from nbconvert.exporters import HTMLExporter
    from nbgrader.server_extensions.formgrader import apihandlers, handlers
    from nbgrader.server_extensions.formgrader.base import check_notebook_dir, check_xsrf
    from tornado import web

    mathjax_url = url_path_join(base_url, ROUTE, "mathjax", "tex-chtml.js")

    class SubmissionPage(handlers.SubmissionHandler):
        """formgrader's manual-grading page, with MathJax from this server."""

        @property
        def exporter(self):
            exporter = self.settings.get("logreg_lab_exporter")
            if exporter is None:
                base = self.settings["nbgrader_exporter"]
                macro = MATHJAX_MACRO.replace("__MATHJAX__", mathjax_url)
                exporter = HTMLExporter(
                    config=base.config,
                    template_name=base.template_name,
                    extra_template_basedirs=list(base.extra_template_basedirs),
                    extra_loaders=[DictLoader({"mathjax.html.j2": macro})],
                )
                self.settings["logreg_lab_exporter"] = exporter
            return exporter

    class Autograde(apihandlers.BaseApiHandler):
        """formgrader's Autograde button, routed to the sandboxed grader."""

        @web.authenticated
        @check_xsrf
        @check_notebook_dir
        async def post(self, assignment_id, student_id):
            self.write(json.dumps(await grade_one(self.coursedir.root, assignment_id, student_id)))

    class Feedback(apihandlers.BaseApiHandler):
        """formgrader's Generate Feedback buttons (one student, or all), routed to ``make
        grades``: the grader writes the feedback pages, nbgrader's would replace them."""

        @web.authenticated
        @check_xsrf
        @check_notebook_dir
        async def post(self, *ids):
            self.write(json.dumps(await write_exports(self.coursedir.root)))

    class Release(apihandlers.BaseApiHandler):
        """formgrader's Generate button, routed to ``make release`` for that assignment:
        nbgrader's would write exercises/ without the release's normalisation and checks."""

        @web.authenticated
        @check_xsrf
        @check_notebook_dir
        async def post(self, assignment_id):
            root = self.coursedir.root
            reply = await run_tool(
                "logreg-release", f"--root={root}", f"--assignment={assignment_id}"
            )
            self.write(json.dumps(reply))

    class Submissions(handlers.ManageSubmissionsHandler):
        """formgrader's list of an assignment's submissions, whose instructions name the
        course's commands instead of ``nbgrader autograde`` (unsandboxed)."""

        def render(self, name, **ns):
            if name == "manage_submissions.tpl":
                env = self.settings.get("logreg_lab_jinja2_env")
                if env is None:
                    base = self.settings["nbgrader_jinja2_env"]
                    loader = ChoiceLoader([DictLoader({SUBMISSIONS: SUBMISSIONS_TPL}), base.loader])
                    env = self.settings["logreg_lab_jinja2_env"] = base.overlay(loader=loader)
                return env.get_template(SUBMISSIONS).render(**ns)
            return super().render(name, **ns)

    api = r"/formgrader/api/assignment/([^/]+)"
    return [
        (url_path_join(base_url, r"/formgrader/manage_submissions/([^/]+)/?"), Submissions),
        (url_path_join(base_url, api + "/assign"), Release),
        (url_path_join(base_url, api + "/generate_feedback"), Feedback),
        (url_path_join(base_url, api + "/([^/]+)/generate_feedback"), Feedback),
        (url_path_join(base_url, ROUTE, "mathjax", "(.*)"), web.StaticFileHandler,
         {"path": str(mathjax_dir())}),
        (url_path_join(base_url, r"/formgrader/submissions/([^/]+)/?"), SubmissionPage),
        (url_path_join(base_url, r"/formgrader/api/submission/([^/]+)/([^/]+)/autograde"),
         Autograde),
    ]  # fmt: skip


_PROGRESS = re.compile(r"^grading:\s+\d+%\|")


async def run_tool(tool: str, *args: str) -> dict:
    """Run one of the grader's commands; formgrader's reply ({success, log, error})."""
    import asyncio

    from logreg_grader import release

    release.prepare_environment()
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / tool),
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    text = out.decode("utf-8", "replace").replace("\r", "\n")
    lines = [ln for ln in text.splitlines() if not _PROGRESS.match(ln)]  # tqdm's bar
    while lines and not lines[0].strip():
        lines.pop(0)
    shown = " ".join([tool, *(a for a in args if not a.startswith("--root="))])
    log = "\n".join([f"$ {shown}", *lines])
    if proc.returncode == 0:
        return {"success": True, "log": log}
    return {
        "success": False,
        "log": log,
        "error": f"{tool} exited with status {proc.returncode} (see the log above)",
    }


async def grade_one(root, assignment_id: str, student_id: str) -> dict:
    """``make grade ASSIGNMENT=... STUDENT=...``: logreg-grade on one submission."""
    # --name=value: an id cannot pose as an option
    return await run_tool(
        "logreg-grade", f"--root={root}", f"--assignment={assignment_id}", f"--student={student_id}"
    )


async def write_exports(root) -> dict:
    """``make grades``: grades.csv, the plots and every feedback page, from the gradebook."""
    return await run_tool("logreg-grades", f"--root={root}")


def _load_jupyter_server_extension(serverapp) -> None:
    """Put this module's routes in front of formgrader's (tornado takes the first match)."""
    webapp = serverapp.web_app
    rules = _handlers(webapp.settings["base_url"])
    router = webapp.default_router.rules
    before = list(router)
    webapp.add_handlers(".*$", rules)
    ours = [rule for rule in router if not any(rule is old for old in before)]
    router[:] = ours + before  # first, whichever extension is loaded before or after this one
    # formgrader reports the base URL "/" as "": the login cookie would get no Path
    options = serverapp.identity_provider.cookie_options
    options.setdefault("path", webapp.settings["base_url"])
    from logreg_grader import release

    release.prepare_environment()  # alembic and logreg-grade from this environment
    serverapp.log.info(
        "logreg-lab: Autograde runs logreg-grade (sandboxed); MathJax from /%s/mathjax/", ROUTE
    )
