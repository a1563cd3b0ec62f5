"""`make lab` (logreg-lab): the gradebook it prepares, and formgrader in headless Chromium.

One small course (assignment 02; ``ann`` hands in the solution, ``bob`` the untouched
release): logreg-lab starts on it before anything was graded, from an environment whose PATH
does not have .venv/bin (as `.venv/bin/jupyter lab` with the venv not activated), then
logreg-grade grades the two notebooks while the server runs, as an instructor would. Chromium
(Debian's /usr/bin/chromium, driven by Playwright) then opens formgrader's pages with every
request recorded and any to another host than this machine aborted.
"""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import nbformat
import pytest

from logreg_grader import release

REPO = Path(__file__).resolve().parents[2]
AID = "02_numerical_stability"
BIN = Path(sys.executable).parent
LOCAL = {"127.0.0.1", "localhost"}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _versions(root: Path) -> list:
    with sqlite3.connect(root / "gradebook" / "gradebook.db") as con:
        return con.execute("SELECT version_num FROM alembic_version").fetchall()


def _course(root: Path) -> Path:
    shutil.copy(REPO / "nbgrader_config.py", root / "nbgrader_config.py")
    (root / "solutions" / AID).mkdir(parents=True)
    md = REPO / "solutions" / AID / f"{AID}.md"
    shutil.copy(md, root / "solutions" / AID / md.name)
    for student, nb in (
        ("ann", release.source_notebook(md)),
        ("bob", nbformat.read(REPO / "exercises" / AID / f"{AID}.ipynb", 4)),
    ):
        folder = root / "submitted" / student / AID
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / f"{AID}.ipynb")
    # as nbgrader's collect writes it; ann's time is taken from her notebook's mtime
    (root / "submitted" / "bob" / AID / "timestamp.txt").write_text(
        "2025-03-14 19:30:00.000000 UTC"
    )
    return root


def _start(root: Path, home: Path):
    """logreg-lab as `make lab` runs it, but with a PATH without .venv/bin; (process, url)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "LOGREG"))}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if Path(p) != BIN)
    env.update(HOME=str(home), JUPYTER_RUNTIME_DIR=str(home / "runtime"), MPLBACKEND="Agg")
    port = _free_port()
    proc = subprocess.Popen(
        [str(BIN / "logreg-lab"), "--root", str(root), "--port", str(port), "--no-browser"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=home,
    )  # fmt: skip
    lines, url, deadline = [], None, time.time() + 120
    while url is None and time.time() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        lines.append(line)
        if line.startswith("lab: formgrader at "):
            url = line.split(" at ", 1)[1].strip()
    assert url, "".join(lines)
    status = url.replace("/formgrader?", "/api/status?")
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(status, timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            time.sleep(0.3)
    else:
        pytest.fail("logreg-lab's server did not answer within 120 s:\n" + "".join(lines))
    proc.lines = lines
    return proc, url


def _stop(proc) -> str:
    proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail("logreg-lab did not stop within 30 s of SIGTERM:\n" + out[-3000:])
    return "".join(proc.lines) + (out or "")


def _children_of(pid: int) -> list[str]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(entry.name)
    return out


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = _course(tmp_path_factory.mktemp("lab-course"))
    home = tmp_path_factory.mktemp("lab-home")
    proc, url = _start(root, home)
    try:
        before = _versions(root)  # what logreg-lab made, before anything was graded
        env = dict(os.environ, MPLBACKEND="Agg", PYTHONHASHSEED="0")
        env["PATH"] = str(BIN) + os.pathsep + env["PATH"]
        env.pop("LOGREG_GRADEBOOK_URL", None)
        graded = subprocess.run(
            [str(BIN / "logreg-grade"), "--root", str(root)],
            capture_output=True, text=True, timeout=600, env=env,
        )  # fmt: skip
        assert graded.returncode == 0, graded.stdout + graded.stderr
        yield {"root": root, "url": url, "proc": proc, "versions": before}
    finally:
        children = _children_of(proc.pid)
        log = _stop(proc)
        still = [c for c in children if Path("/proc", c).exists()]
        assert proc.returncode is not None
        assert not still, f"processes of the lab server outlived it: {still}\n{log[-2000:]}"


@pytest.mark.slow
def test_a_fresh_course_gets_a_versioned_gradebook_before_the_server_starts(lab):
    assert len(lab["versions"]) == 1 and lab["versions"][0][0], lab["versions"]
    # what the issue saw fail afterwards: nbgrader's own migration command
    env = dict(os.environ, PATH=str(BIN) + os.pathsep + os.environ["PATH"])
    upgrade = subprocess.run([str(BIN / "nbgrader"), "db", "upgrade"], cwd=lab["root"],
                             capture_output=True, text=True, timeout=120, env=env)  # fmt: skip
    assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr


def test_an_unversioned_gradebook_is_stamped(tmp_path):
    """The gradebook that `jupyter lab` without alembic on PATH leaves behind is repaired."""
    from nbgrader.api import Base
    from sqlalchemy import create_engine

    from logreg_grader import gradebook

    url = f"sqlite:///{tmp_path / 'gradebook.db'}"
    engine = create_engine(url)
    Base.metadata.create_all(bind=engine)  # what nbgrader did before alembic failed
    engine.dispose()
    release.prepare_environment()
    head = gradebook.ensure_versioned(url)
    assert head and len(head) == 12, head
    with sqlite3.connect(tmp_path / "gradebook.db") as con:
        assert con.execute("SELECT version_num FROM alembic_version").fetchall() == [(head,)]
    assert gradebook.ensure_versioned(url) is None  # versioned now: left alone


class Watched:
    """A page whose every request and console error is recorded; other hosts are refused."""

    def __init__(self, browser):
        self.requests, self.outside, self.problems = [], [], []
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("console", lambda m: m.type == "error" and self.problems.append(m.text))
        self.page.on("pageerror", lambda e: self.problems.append(f"exception: {e}"))
        self.page.on(
            "response", lambda r: r.status >= 400 and self.problems.append(f"{r.status} {r.url}")
        )

    def _route(self, route):
        parts = urlsplit(route.request.url)
        if parts.scheme in ("data", "blob") or parts.hostname in LOCAL:
            route.continue_()
        else:
            self.outside.append(route.request.url)
            route.abort()

    def check(self):
        hosts = {urlsplit(u).hostname for u in self.requests if urlsplit(u).hostname}
        assert hosts <= LOCAL and not self.outside, (hosts, self.outside)
        assert not self.problems, self.problems

    def close(self):
        self.context.close()


def _open_submissions(watched, lab) -> dict[str, dict]:
    """Open formgrader's manage-submissions page of AID; its rows once they are listed."""
    url = lab["url"].replace("/formgrader?", f"/formgrader/manage_submissions/{AID}?")
    watched.page.goto(url, wait_until="networkidle")
    return _rows(watched.page)


def _rows(page) -> dict[str, dict]:
    page.wait_for_selector("#main-table tr td.student-id", timeout=30000)
    return {
        r["student"]: r
        for r in page.eval_on_selector_all(
            "#main-table tr",
            """rows => rows.map(r => ({
                student: r.querySelector('.student-id')?.textContent.trim(),
                timestamp: r.querySelector('.timestamp')?.textContent.trim(),
                status: r.querySelector('.status')?.textContent.trim(),
                score: r.querySelector('.score')?.textContent.trim(),
            }))""",
        )
    }


@pytest.mark.slow
@pytest.mark.browser
def test_formgrader_lists_the_graded_submissions_as_autograded_offline(lab, browser):
    watched = Watched(browser)
    try:
        rows = _open_submissions(watched, lab)
        instructions = watched.page.inner_text("body")
        watched.page.screenshot(path=str(lab["root"] / "manage_submissions.png"))
        watched.check()
    finally:
        watched.close()
    assert f"sudo make grade ASSIGNMENT={AID}" in instructions, instructions
    assert f'nbgrader autograde "{AID}"' not in instructions, instructions  # nbgrader's advice
    assert set(rows) == {"ann", "bob"}, rows
    for row in rows.values():
        assert row["status"] in ("needs manual grading", "graded"), row
        assert row["timestamp"] and row["timestamp"] != "None", row
    assert rows["bob"]["timestamp"].startswith("2025-03-14 19:30:00"), rows["bob"]
    ann, top = (float(x) for x in rows["ann"]["score"].split(" / "))
    bob, top_bob = (float(x) for x in rows["bob"]["score"].split(" / "))
    assert top == top_bob > 0 and ann > bob == 0.0, rows


@pytest.mark.slow
@pytest.mark.browser
def test_manual_grading_page_typesets_math_with_mathjax_from_the_server(lab, browser):
    api = lab["url"].replace("/formgrader?", f"/formgrader/api/submitted_notebooks/{AID}/{AID}?")
    with urllib.request.urlopen(api, timeout=30) as response:
        ids = {s["student"]: s["id"] for s in json.load(response)}
    watched = Watched(browser)
    try:
        url = lab["url"].replace("/formgrader?", f"/formgrader/submissions/{ids['ann']}/?")
        watched.page.goto(url, wait_until="networkidle")
        # formgrade.js sets MathJax.loaded when the page is typeset (see logreg_grader.lab)
        watched.page.wait_for_function("window.MathJax && MathJax.loaded === true", timeout=60000)
        typeset = watched.page.eval_on_selector_all("mjx-container", "e => e.length")
        errors = watched.page.eval_on_selector_all("mjx-merror", "e => e.length")
        watched.page.screenshot(path=str(lab["root"] / "formgrade.png"))
        watched.check()
    finally:
        watched.close()
    scripts = [u for u in watched.requests if "mathjax" in u.lower()]
    assert scripts and all("/logreg-lab/mathjax/" in u for u in scripts), scripts
    assert typeset > 5 and errors == 0, (typeset, errors)


@pytest.mark.slow
@pytest.mark.browser
def test_autograde_button_runs_the_sandboxed_grader(lab, browser):
    """nbgrader's autograder would run ann's code unsandboxed: the button runs logreg-grade."""
    watched = Watched(browser)
    try:
        _open_submissions(watched, lab)
        row = watched.page.locator("#main-table tr", has_text="ann")
        row.locator("td.autograde a").click()
        modal = watched.page.locator("#success-modal, #error-modal")
        modal.wait_for(timeout=120000)
        text = modal.inner_text()
        watched.page.locator("#success-modal button, #error-modal button").first.click()
        rows = _rows(watched.page)
        watched.check()
    finally:
        watched.close()
    assert f"$ logreg-grade --assignment={AID} --student=ann" in text, text
    assert "AutogradeApp" not in text, text  # nbgrader's autograder logs under that name
    if os.geteuid() == 0:  # where it can sandbox, it grades (elsewhere it says why it cannot)
        assert "Successfully autograded" in text and "graded" in text, text
    else:
        assert "cannot grade safely here" in text, text
    assert rows["ann"]["status"] in ("needs manual grading", "graded"), rows


@pytest.mark.slow
@pytest.mark.browser
def test_generate_feedback_button_rewrites_the_graders_pages(lab, browser):
    """nbgrader's feedback would replace the grader's pages: the button runs `make grades`."""
    page_file = lab["root"] / "feedback" / "bob" / AID / f"{AID}.html"
    assert page_file.is_file()
    watched = Watched(browser)
    try:
        _open_submissions(watched, lab)
        row = watched.page.locator("#main-table tr", has_text="bob")
        row.locator("td.generate-feedback a").click()
        modal = watched.page.locator("#success-modal, #error-modal")
        modal.wait_for(timeout=120000)
        text = modal.inner_text()
        watched.check()
    finally:
        watched.close()
    assert "Successfully generated feedback" in text and "$ logreg-grades" in text, text
    assert "GenerateFeedback" not in text, text  # nbgrader's app logs under that name
    assert "nbgrader_cell" not in page_file.read_text(encoding="utf-8")  # nbgrader's page CSS


@pytest.mark.slow
@pytest.mark.browser
def test_generate_button_releases_as_make_release_does(lab, browser):
    """nbgrader's generate_assignment would write exercises/ without the release's checks."""
    released = lab["root"] / "exercises" / AID / f"{AID}.ipynb"
    assert not released.exists()
    watched = Watched(browser)
    try:
        url = lab["url"].replace("/formgrader?", "/formgrader/manage_assignments?")
        watched.page.goto(url, wait_until="networkidle")
        row = watched.page.locator("#main-table tr", has_text=AID)
        row.locator("td.assign a").click()
        modal = watched.page.locator("#success-modal, #error-modal")
        modal.wait_for(timeout=120000)
        text = modal.inner_text()
        watched.check()
    finally:
        watched.close()
    assert "Successfully created the student version" in text, text
    assert f"$ logreg-release --assignment={AID}" in text, text
    assert released.read_bytes() == (REPO / "exercises" / AID / f"{AID}.ipynb").read_bytes()


def test_bad_arguments_say_what_is_expected(tmp_path, capsys):
    from logreg_grader import lab

    with pytest.raises(SystemExit) as stop:
        lab.lab_main(["--root", str(tmp_path)])
    assert stop.value.code == 2
    assert f"--root: {tmp_path} has no nbgrader_config.py" in capsys.readouterr().err
    shutil.copy(REPO / "nbgrader_config.py", tmp_path / "nbgrader_config.py")
    with pytest.raises(SystemExit) as stop:
        lab.lab_main(["--root", str(tmp_path), "--port", "70000"])
    assert stop.value.code == 2
    assert "--port must be between 1 and 65535, got 70000" in capsys.readouterr().err


def test_a_gradebook_of_another_user_is_named_with_what_to_do(tmp_path, capsys, monkeypatch):
    """After `sudo make grade` the gradebook folder is root's, 0700."""
    from logreg_grader import lab

    shutil.copy(REPO / "nbgrader_config.py", tmp_path / "nbgrader_config.py")
    (tmp_path / "gradebook").mkdir()
    monkeypatch.setattr(lab.os, "access", lambda path, mode: Path(path).name != "gradebook")
    assert lab.lab_main(["--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"lab: {tmp_path / 'gradebook'} belongs to another user" in err
    assert "start the lab as that user too (`sudo make lab`)" in err


def test_the_server_binds_to_this_machine_only_with_its_token():
    from logreg_grader import lab

    command = lab.jupyter_command(Path("/course"), "127.0.0.1", 8888, ["--no-browser"])
    assert "--ServerApp.ip=127.0.0.1" in command and "--ServerApp.port_retries=0" in command
    assert not any("token" in arg.lower() for arg in command)  # JUPYTER_TOKEN, not argv
    assert "--ServerApp.jpserver_extensions=logreg_grader.lab=True" in command
    assert command[-1] == "--no-browser"
