"""Run untrusted student code in a locked-down child process (no Docker: plain Linux).

Every sandboxed process:

- runs as its own unprivileged uid (``SANDBOX_UID_BASE + slot``, no passwd entry needed), with
  no supplementary groups, so it cannot read the root-owned 0700 folders of the course
  (solutions/, gradebook/, submitted/, autograded/, feedback/: see :func:`protect`) nor another
  submission's scratch folder (each slot owns its own 0700 folder);
- has no network: a fresh, empty network namespace (``unshare(CLONE_NEWNET)``, as root);
- has rlimits: address space (``memory``), CPU seconds, file size, no core dumps, a process cap;
- is killed with its whole process group (SIGKILL: swallowed interrupts do not help) when its
  wall-clock budget runs out;
- starts in a scratch folder that holds only what the caller copied there, with a clean
  environment (no PYTHONPATH, HOME = scratch).

:func:`capabilities` says which of these are available; when one is not (no root, no
``unshare``), the sandbox still runs and :func:`warnings` tells the caller what is missing.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import fcntl
import os
import resource
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SANDBOX_UID_BASE = 61000
CLONE_NEWNET = 0x40000000
CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_NOSUID, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4096, 16384, 1 << 18
SECRET_DIRS = ("solutions", "gradebook", "submitted", "autograded", "feedback", ".git")
GIB = 1024**3


@dataclass
class Limits:
    memory: int = 3 * GIB  # RLIMIT_AS; importing torch maps ~1.5 GiB of address space
    cpu_s: int = 120  # RLIMIT_CPU (SIGXCPU, then SIGKILL)
    wall_s: float = 180.0  # whole process group killed after this
    nproc: int = 256  # RLIMIT_NPROC (threads count): a fork bomb stops here
    fsize: int = 64 * 1024**2  # RLIMIT_FSIZE: largest file it may write
    output: int = 1024**2  # bytes of stdout/stderr kept


@dataclass
class Outcome:
    status: str  # ok, error, timeout, memory, kernel_died
    returncode: int | None
    stdout: bytes = b""
    stderr: bytes = b""
    seconds: float = 0.0
    detail: str = ""
    warnings: list[str] = field(default_factory=list)


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def capabilities() -> dict[str, bool]:
    """What isolation this machine offers: root (uid switch), netns (unshare)."""
    root = os.geteuid() == 0
    netns = False
    if root:
        probe = subprocess.run(
            [
                sys.executable,
                "-c",
                "import ctypes,sys; sys.exit(ctypes.CDLL(None).unshare(0x40020000) != 0)",
            ],
            capture_output=True,
        )
        netns = probe.returncode == 0
    # Switching to an unprivileged uid needs an interpreter that uid can run: either the mount
    # namespace exposes it (see _setup_mounts) or every folder above it is world-searchable.
    exe = Path(os.path.realpath(sys.executable))
    reachable = all(p.stat().st_mode & 0o001 for p in exe.parents)
    return {"root": root, "netns": netns, "uid": root and (netns or reachable)}


_CAPS: dict[str, bool] | None = None


def caps() -> dict[str, bool]:
    global _CAPS
    if _CAPS is None:
        _CAPS = capabilities()
    return _CAPS


def warnings() -> list[str]:
    """Human-readable list of the protections that are not available here."""
    c, out = caps(), []
    if not c["uid"]:
        out.append(
            "cannot switch to an unprivileged uid (not root, or the interpreter is not reachable): "
            "student code runs as the grader's own user and can read the course's files"
        )
    if not c["netns"]:
        out.append(
            "unshare(CLONE_NEWNET | CLONE_NEWNS) unavailable: student code has network access and "
            "secret folders are protected by their file modes only"
        )
    return out


# Two grading runs on one host must never share a uid: finishing a submission SIGKILLs every
# process of its uid. Each run leases a block of BLOCK_SIZE uids under a host-wide file lock
# (held until the run exits); its worker processes inherit the block through the environment.
BLOCK_SIZE, NUM_BLOCKS = 100, 20
_BLOCK_ENV = "LOGREG_SANDBOX_UID_BLOCK"
_LOCK_DIR = Path("/tmp/logreg-sandbox-uid-locks")
_block_lock = None  # the open, locked file of this run's block (kept until exit)


def _uid_block() -> int:
    global _block_lock
    if _BLOCK_ENV in os.environ:
        return int(os.environ[_BLOCK_ENV])
    _LOCK_DIR.mkdir(mode=0o700, exist_ok=True)
    for block in range(NUM_BLOCKS):
        handle = open(_LOCK_DIR / f"{block}.lock", "w")  # held open for the whole run
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        _block_lock = handle
        os.environ[_BLOCK_ENV] = str(block)
        return block
    raise RuntimeError(f"all {NUM_BLOCKS} sandbox uid blocks are in use by other grading runs")


def uid_for(slot: int) -> int:
    """The uid of a slot: inside this run's leased block, never shared with another run."""
    return SANDBOX_UID_BASE + BLOCK_SIZE * _uid_block() + (slot % BLOCK_SIZE)


def protect(*roots: Path) -> None:
    """Make the secret folders of each course root readable by root only (mode 0700)."""
    if not caps()["root"]:
        return
    for root in roots:
        for name in SECRET_DIRS:
            if name == ".git":  # hidden by the mount namespace; its mode is left alone
                continue
            path = Path(root) / name
            if path.is_dir():
                mode = stat.S_IMODE(path.stat().st_mode)
                if mode & 0o077:
                    os.chmod(path, mode & 0o700)


_BASE: Path | None = None


def scratch_base() -> Path:
    """A world-traversable (0711) parent for per-submission scratch folders."""
    global _BASE
    if _BASE is None or not _BASE.exists():
        _BASE = Path(tempfile.mkdtemp(prefix="logreg-sandbox-"))
        os.chmod(_BASE, 0o711)
        atexit.register(shutil.rmtree, _BASE, True)
    return _BASE


def make_scratch(slot: int) -> Path:
    """A fresh 0700 folder owned by the slot's uid."""
    path = Path(tempfile.mkdtemp(prefix=f"s{slot}-", dir=scratch_base()))
    if caps()["uid"]:
        os.chown(path, uid_for(slot), uid_for(slot))
    os.chmod(path, 0o700)
    return path


def give(path: Path, slot: int) -> None:
    """Hand a file or folder (recursively) in the scratch over to the slot's uid."""
    if not caps()["uid"]:
        return
    uid = uid_for(slot)
    os.chown(path, uid, uid)
    if path.is_dir():
        for p in path.rglob("*"):
            os.lchown(p, uid, uid)


def remove(path: Path, slot: int | None = None) -> None:
    if slot is not None:
        kill_uid(uid_for(slot))
    shutil.rmtree(path, ignore_errors=True)


def kill_uid(uid: int) -> None:
    """SIGKILL every process of a sandbox uid (daemons that left the process group)."""
    if not caps()["uid"] or uid < SANDBOX_UID_BASE:
        return
    for _ in range(5):
        found = False
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if entry.stat().st_uid == uid:
                    os.kill(int(entry.name), signal.SIGKILL)
                    found = True
            except (OSError, ProcessLookupError):
                continue
        if not found:
            return
        time.sleep(0.05)


def environment(scratch: Path, extra: dict | None = None) -> dict:
    venv_bin = str(Path(sys.executable).parent)
    env = {
        "PATH": f"{venv_bin}:/usr/bin:/bin",
        "HOME": str(scratch),
        "TMPDIR": str(scratch),
        "LANG": "C.UTF-8",
        "PYTHONNOUSERSITE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": str(scratch / ".mpl"),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "JUPYTER_RUNTIME_DIR": str(scratch / ".jupyter"),
        "IPYTHONDIR": str(scratch / ".ipython"),
    }
    env.update(extra or {})
    return env


def _mount(src, target, fstype, flags, data=None):
    libc = _libc()
    res = libc.mount(
        src.encode() if src else None,
        str(target).encode(),
        fstype.encode() if fstype else None,
        ctypes.c_ulong(flags),
        data.encode() if data else None,
    )
    if res != 0:
        raise OSError(ctypes.get_errno(), f"mount {target}")


def hidden_paths(roots=()) -> list[Path]:
    """Folders replaced by an empty tmpfs inside the sandbox's mount namespace."""
    out = [REPO / name for name in SECRET_DIRS]
    for root in roots:
        out += [Path(root) / name for name in SECRET_DIRS]
    return [p for p in dict.fromkeys(out) if p.is_dir()]


def _setup_mounts(hide: list[Path]) -> None:
    """Private mount namespace: /root replaced by a tmpfs that only shows the Python install
    (the venv's interpreter lives there), and every secret folder replaced by an empty tmpfs."""
    _libc().unshare(CLONE_NEWNS)
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    exe_home = Path(os.path.realpath(sys.executable)).parents[2]  # e.g. /root/.pyenv/versions/X
    if str(exe_home).startswith("/root/"):
        stage = _STAGE
        _mount(str(exe_home), stage, None, MS_BIND | MS_REC)
        _mount("tmpfs", "/root", "tmpfs", MS_NOSUID, "mode=755,size=1m")
        os.makedirs(exe_home, exist_ok=True)
        _mount(stage, str(exe_home), None, MS_BIND | MS_REC)
    for path in hide:
        _mount("tmpfs", str(path), "tmpfs", MS_NOSUID, "mode=700,size=1m")


_STAGE = ""


def _loopback_up() -> None:
    import fcntl
    import socket
    import struct

    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(
            s, 0x8914, struct.pack("16sH14x", b"lo", 0x1 | 0x8 | 0x40)
        )  # UP|LOOPBACK|RUNNING


def _preexec(slot: int, limits: Limits, netns: bool, root: bool, hide=()):
    def run():
        os.setsid()
        if netns:
            _setup_mounts(list(hide))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory, limits.memory))
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 5))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.fsize, limits.fsize))
        if netns:
            _libc().unshare(CLONE_NEWNET)
            _loopback_up()  # the new namespace's own loopback only: kernels talk over it
        if root:
            uid = uid_for(slot)
            resource.setrlimit(resource.RLIMIT_NPROC, (limits.nproc, limits.nproc))
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
        os.umask(0o077)

    return run


def popen(
    cmd: list[str],
    scratch: Path,
    slot: int,
    limits: Limits,
    env_extra=None,
    roots=(),
    stderr=subprocess.PIPE,
):
    """Start cmd in the sandbox with stdin/stdout/stderr pipes."""
    global _STAGE
    c = caps()
    if c["netns"] and not _STAGE:
        stage = scratch_base() / ".python-stage"
        stage.mkdir(exist_ok=True)
        _STAGE = str(stage)
    return subprocess.Popen(
        cmd,
        cwd=scratch,
        env=environment(scratch, env_extra),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        preexec_fn=_preexec(slot, limits, c["netns"], c["uid"], hidden_paths(roots)),
        close_fds=True,
    )


def kill(proc: subprocess.Popen) -> None:
    """SIGKILL the process group of proc (and the uid's other processes in it)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    with contextlib.suppress(Exception):
        proc.wait(timeout=5)


def classify(
    returncode: int | None, stderr: bytes, timed_out: bool, limits: Limits
) -> tuple[str, str]:
    """(status, detail) of a finished sandboxed process."""
    text = stderr[-4000:].decode("utf-8", "replace")
    if timed_out:
        return "timeout", f"killed after the wall-clock limit of {limits.wall_s:g} s"
    if returncode == -signal.SIGXCPU or returncode == -signal.SIGKILL and "CPU" in text:
        return "timeout", f"CPU-time limit of {limits.cpu_s} s exceeded"
    if "MemoryError" in text or "std::bad_alloc" in text or "DefaultCPUAllocator" in text:
        return "memory", f"memory limit of {limits.memory / GIB:g} GiB exceeded"
    if returncode is not None and returncode < 0:
        name = (
            signal.Signals(-returncode).name
            if -returncode in signal.Signals._value2member_map_
            else str(-returncode)
        )
        return "kernel_died", f"the process died from signal {name}"
    if returncode not in (0, None):
        return "kernel_died", f"the process exited with status {returncode}"
    return "ok", ""


def run(
    cmd: list[str], scratch: Path, slot: int, limits: Limits, env_extra=None, roots=()
) -> Outcome:
    """Run cmd to completion in the sandbox (stdin closed), output capped, wall clock enforced."""
    start = time.monotonic()
    proc = popen(cmd, scratch, slot, limits, env_extra, roots)
    proc.stdin.close()
    bufs = {proc.stdout.fileno(): bytearray(), proc.stderr.fileno(): bytearray()}
    streams = {proc.stdout.fileno(): proc.stdout, proc.stderr.fileno(): proc.stderr}
    open_fds = set(bufs)
    timed_out = False
    while open_fds:
        left = limits.wall_s - (time.monotonic() - start)
        if left <= 0:
            timed_out = True
            break
        ready, _, _ = select.select(list(open_fds), [], [], min(left, 1.0))
        for fd in ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                open_fds.discard(fd)
                continue
            buf = bufs[fd]
            if len(buf) < limits.output:
                buf.extend(chunk[: limits.output - len(buf)])
    if timed_out:
        kill(proc)
    else:
        try:
            proc.wait(timeout=max(0.1, limits.wall_s - (time.monotonic() - start)))
        except subprocess.TimeoutExpired:
            timed_out = True
            kill(proc)
    kill(proc)  # stray children in the group
    kill_uid(uid_for(slot))  # and any that escaped it (setsid, double fork)
    for s in streams.values():
        s.close()
    out, err = (bytes(b) for b in bufs.values())
    status, detail = classify(proc.returncode, err, timed_out, limits)
    return Outcome(status, proc.returncode, out, err, time.monotonic() - start, detail, warnings())
