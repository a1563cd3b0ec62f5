"""A throw-away PostgreSQL server for tests: Debian's binaries, a temporary cluster, 127.0.0.1.

``PostgresServer`` runs ``initdb`` and ``pg_ctl`` from the installed PostgreSQL (found on PATH,
in $LOGREG_PG_BINDIR or under /usr/lib/postgresql/<version>/bin). PostgreSQL refuses to run as
root, so as root every server command runs as the ``postgres`` user (``runuser``), with a
temporary data folder owned by that user. The server listens on 127.0.0.1 only, on a free
port, with its socket in the temporary folder and password (SCRAM) authentication.

    with PostgresServer() as server:
        url = server.create_database("gradebook", user="grader", password="secret")

``stop()`` (also on leaving the ``with`` block, on failure too) shuts the server down and
deletes the folder. ``binaries_or_skip()`` skips the calling test when PostgreSQL is not
installed, or fails it when $CI is true (CI must install it: see .ci/run).
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SUPERUSER = "logreg_admin"


def find_bindir() -> Path | None:
    """Folder holding initdb, pg_ctl and postgres, or None."""
    candidates = []
    if os.environ.get("LOGREG_PG_BINDIR"):
        candidates.append(Path(os.environ["LOGREG_PG_BINDIR"]))
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += [Path(p) for p in sorted(versions, key=_version, reverse=True)]
    for folder in candidates:
        if all((folder / exe).is_file() for exe in ("initdb", "pg_ctl", "postgres")):
            return folder
    return None


def _version(path: str) -> float:
    try:
        return float(Path(path).parent.name)
    except ValueError:
        return 0.0


def binaries_or_skip() -> Path:
    """The PostgreSQL bin folder; else skip the test (fail it on CI, where it must exist)."""
    import pytest

    folder = find_bindir()
    problem = None
    if folder is None:
        problem = (
            "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found: "
            "install Debian's package (apt-get install postgresql) or set LOGREG_PG_BINDIR"
        )
    elif os.geteuid() == 0 and _service_user() is None:
        problem = "running as root and there is no 'postgres' user to run the server as"
    if problem:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(problem + " (CI=true: the PostgreSQL tests must run)")
        pytest.skip(problem)
    return folder


def _service_user() -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """One temporary PostgreSQL cluster; see the module docstring."""

    def __init__(self, bindir: Path | None = None):
        self.bindir = bindir or find_bindir()
        if self.bindir is None:
            raise RuntimeError("PostgreSQL binaries not found")
        self.password = secrets.token_hex(12)
        self.port = None
        self.folder = None
        self.started = False
        self.user = _service_user() if os.geteuid() == 0 else None

    # -- running commands as the server's user ---------------------------------------------
    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.user is not None:
            cmd = ["runuser", "-u", self.user.pw_name, "--", *cmd]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", LANG="C")
        return subprocess.run(
            cmd, cwd=self.folder, env=env, capture_output=True, text=True, timeout=timeout
        )

    def _check(self, result: subprocess.CompletedProcess, what: str) -> None:
        if result.returncode != 0:
            log = self.log_text()
            raise RuntimeError(
                f"{what} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}\n{log}"
            )

    def log_text(self) -> str:
        path = Path(self.folder or "/nonexistent") / "server.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> PostgresServer:
        self.folder = tempfile.mkdtemp(prefix="logreg-pg-")
        if self.user is not None:
            os.chown(self.folder, self.user.pw_uid, self.user.pw_gid)
        pwfile = Path(self.folder) / "pw"
        pwfile.write_text(self.password + "\n")
        if self.user is not None:
            os.chown(pwfile, self.user.pw_uid, self.user.pw_gid)
        result = self._run(
            "initdb",
            "-D",
            "data",
            "-U",
            SUPERUSER,
            f"--pwfile={pwfile}",
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
            "--no-instructions",
        )
        self._check(result, "initdb")
        pwfile.unlink()
        for attempt in range(3):
            self.port = _free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.folder} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=60"
            )
            result = self._run(
                "pg_ctl", "-D", "data", "-l", "server.log", "-w", "-t", "60", "-o", options, "start"
            )
            if result.returncode == 0:
                self.started = True
                return self
            if attempt == 2 or "could not bind" not in self.log_text():
                self._check(result, "pg_ctl start")
        return self

    def stop(self) -> None:
        """Shut the server down (fast, then by signal) and delete its folder."""
        try:
            if self.folder and Path(self.folder, "data", "postmaster.pid").exists():
                result = self._run("pg_ctl", "-D", "data", "-m", "fast", "-w", "-t", "30", "stop")
                if result.returncode != 0:
                    self._kill_postmaster()
        finally:
            self.started = False
            if self.folder:
                shutil.rmtree(self.folder, ignore_errors=True)
                self.folder = None

    def _kill_postmaster(self) -> None:
        pidfile = Path(self.folder, "data", "postmaster.pid")
        try:
            pid = int(pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return
        try:
            os.kill(pid, signal.SIGQUIT)  # immediate shutdown of the server this object started
            for _ in range(50):
                os.kill(pid, 0)
                time.sleep(0.1)
        except ProcessLookupError:
            pass

    def __enter__(self) -> PostgresServer:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- databases ---------------------------------------------------------------------------
    def connect(self, dbname: str = "postgres", user: str = SUPERUSER, password: str = None):
        import psycopg2

        return psycopg2.connect(
            host="127.0.0.1",
            port=self.port,
            dbname=dbname,
            user=user,
            password=password or self.password,
            connect_timeout=10,
        )

    def create_database(self, name: str, user: str, password: str) -> str:
        """A new database owned by a new (non-superuser) role; returns its SQLAlchemy URL."""
        con = self.connect()
        con.autocommit = True
        try:
            with con.cursor() as cur:
                cur.execute(f'CREATE ROLE "{user}" LOGIN PASSWORD %s', (password,))
                cur.execute(f'CREATE DATABASE "{name}" OWNER "{user}"')
        finally:
            con.close()
        return f"postgresql://{user}:{password}@127.0.0.1:{self.port}/{name}"
