"""What a student process may see and use: told what to expose, never what to hide.

:func:`enter` turns the calling process (a freshly forked child of the fork server, still
root) into a sandbox, in this order:

1. new mount, network and IPC namespaces: no network interface is up, no SysV IPC is shared;
2. a new root on a tmpfs holding only the :class:`Exposure`: the interpreter, the standard
   library, the virtual environment and the course library, bound **read-only** at their own
   paths (from descriptors taken before the host's ``/tmp`` is covered, so that a checkout in
   ``/tmp`` works; they are closed before student code runs), plus
   ``/dev/{null,zero,random,urandom}``; nothing else of the host exists there
   (no course folder, no other submission, no ``/proc``, no home folders);
3. private, size-capped tmpfs mounts at ``/submission`` (the working folder and ``$HOME``), ``/tmp``
   and ``/dev/shm``: they vanish with the namespace;
4. rlimits (address space, CPU seconds, file size, processes, no core dumps), then
   ``chroot`` and a switch to an unprivileged uid with no groups and ``no_new_privs``; the
   parent-death signal kills it if the fork server goes away.

The grader refuses to start when this cannot be done (:func:`probe` runs it once in a child
and reports why), rather than grading with weaker isolation.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import resource
import signal
import sys
import sysconfig
import time
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path

GIB, MIB = 1024**3, 1024**2
CLONE_NEWNS, CLONE_NEWNET, CLONE_NEWIPC = 0x00020000, 0x40000000, 0x08000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = (
    1,
    2,
    4,
    32,
    4096,
    16384,
    1 << 18,
)
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
UID_BASE = 61000  # sandbox uids: UID_BASE + BLOCK_SIZE * block + slot (no passwd entry needed)
BLOCK_SIZE, NUM_BLOCKS = 100, 20
DEVICES = ("null", "zero", "random", "urandom")
WORKDIR = "/submission"  # the student's working folder and $HOME (a private tmpfs)


class SandboxUnavailable(RuntimeError):
    """Isolation cannot be set up on this machine; the message says why and what to do."""


@dataclass(frozen=True)
class Limits:
    """Resources of one sandboxed process."""

    memory: int = 3 * GIB  # address space beyond what the fork server already maps
    cpu_s: int = 600  # CPU seconds of the whole process (its calls have their own wall clock)
    nproc: int = 64  # processes and threads of its uid
    fsize: int = 64 * MIB  # largest file it may write
    work: int = 256 * MIB  # tmpfs sizes
    tmp: int = 256 * MIB
    shm: int = 64 * MIB


@dataclass(frozen=True)
class Exposure:
    """Host paths visible (read-only, at the same path) inside the sandbox."""

    paths: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    symlinks: tuple[tuple[str, str], ...] = field(default=())

    @classmethod
    def for_this_interpreter(cls, *packages: str) -> Exposure:
        """The system libraries, the Python install, the venv and the given packages' dirs."""
        wanted = ["/usr", "/lib", "/lib64", "/bin", sys.base_prefix, sys.prefix]
        wanted += [sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib")]
        for name in packages:  # found, not imported (importing torch here costs a second)
            module = sys.modules.get(name)
            origin = module.__file__ if module else getattr(find_spec(name), "origin", None)
            if not origin:
                raise SandboxUnavailable(f"package {name!r} is not installed")
            wanted.append(str(Path(origin).resolve().parent))
        paths, links = [], []
        for p in wanted:
            if not os.path.lexists(p):
                continue
            if os.path.islink(p):  # /lib -> usr/lib on merged-/usr systems
                links.append((p, os.readlink(p)))
                p = os.path.realpath(p)
            paths.append(os.path.realpath(p))
        # Keep only the outermost of nested paths (binding /usr covers /usr/lib/python3).
        paths = sorted(set(paths))
        outer = [p for p in paths if not any(p != q and p.startswith(q + "/") for q in paths)]
        files = [f for f in ("/etc/ld.so.cache",) if os.path.isfile(f)]
        for p in outer + files:
            private = (WORKDIR, "/dev")  # the sandbox mounts its own; below /tmp is allowed
            if p == "/tmp" or any(p == q or p.startswith(q + "/") for q in private):
                raise SandboxUnavailable(f"{p} cannot be exposed: the sandbox mounts its own there")
        return cls(tuple(outer), tuple(files), tuple(links))


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _check(res: int, what: str) -> None:
    if res != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(src, target, fstype, flags, data=None) -> None:
    res = _libc().mount(
        src.encode() if src else None,
        str(target).encode(),
        fstype.encode() if fstype else None,
        ctypes.c_ulong(flags),
        data.encode() if data else None,
    )
    _check(res, f"mount {target}")


def _bind_ro(src: str, target: str) -> None:
    _mount(src, target, None, MS_BIND | MS_REC)
    _mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _tmpfs(target: str, size: int, mode: str, uid: int | None = None) -> None:
    owner = f",uid={uid},gid={uid}" if uid is not None else ""
    _mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size},mode={mode}{owner}")


def _mkdirs(path: str) -> None:
    os.makedirs(path, mode=0o755, exist_ok=True)


def enter(uid: int, limits: Limits, exposure: Exposure) -> None:
    """Make this process a sandbox (see the module docstring). Root only; irreversible."""
    if os.geteuid() != 0:
        raise SandboxUnavailable("the grader must run as root to sandbox student code")
    libc = _libc()
    _check(libc.unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC), "unshare")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    # Hold every exposed path by a descriptor first: the new root's tmpfs below covers the
    # host's /tmp, where a checkout (and so its venv) may live; binding from the descriptor
    # reaches it all the same. The descriptors are closed before any student code runs.
    held = {p: os.open(p, os.O_PATH | os.O_CLOEXEC) for p in exposure.paths + exposure.files}
    try:
        # The new root lives in a tmpfs over /tmp (the host's /tmp is then out of sight too).
        _tmpfs("/tmp", 4 * MIB, "755")
        new = "/tmp/root"
        _mkdirs(new)
        # The private /tmp and /dev/shm first, so that an exposed path below /tmp (a
        # checkout in /tmp) is bound into it rather than hidden by it.
        for name in ("/tmp", "/dev/shm", WORKDIR):
            _mkdirs(new + name)
        _tmpfs(new + "/tmp", limits.tmp, "1777")
        _tmpfs(new + "/dev/shm", limits.shm, "1777")
        for path in exposure.paths:
            _mkdirs(new + path)
            _bind_ro(f"/proc/self/fd/{held[path]}", new + path)
        for path in exposure.files:
            _mkdirs(os.path.dirname(new + path))
            open(new + path, "w").close()  # noqa: SIM115 - a mount point
            _bind_ro(f"/proc/self/fd/{held[path]}", new + path)
    finally:
        for fd in held.values():
            os.close(fd)
    for link, target in exposure.symlinks:
        if not os.path.lexists(new + link):
            _mkdirs(os.path.dirname(new + link))
            os.symlink(target, new + link)
    for dev in DEVICES:
        open(f"{new}/dev/{dev}", "w").close()  # noqa: SIM115 - a mount point
        _mount(f"/dev/{dev}", f"{new}/dev/{dev}", None, MS_BIND)
    _tmpfs(new + WORKDIR, limits.work, "700", uid)
    mapped = _address_space()
    os.chroot(new)
    os.chdir(WORKDIR)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_AS, (mapped + limits.memory,) * 2)
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 5))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.fsize, limits.fsize))
    resource.setrlimit(resource.RLIMIT_NPROC, (limits.nproc, limits.nproc))
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(no_new_privs)")
    _check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(pdeathsig)")
    os.umask(0o077)
    os.environ.clear()
    os.environ.update(
        HOME=WORKDIR,
        TMPDIR="/tmp",
        PATH="/usr/bin:/bin",
        LANG="C.UTF-8",
        MPLBACKEND="Agg",
        MPLCONFIGDIR="/tmp/matplotlib",
        OMP_NUM_THREADS="1",
        PYTHONDONTWRITEBYTECODE="1",
    )


def _address_space() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


# --- uids -----------------------------------------------------------------------------------

_LOCK_DIR = Path("/run/logreg-grader-uids")
_leases: dict[int, object] = {}


def lease_uid_block() -> int:
    """A block of BLOCK_SIZE sandbox uids for this grading process, held until it exits.

    Finishing a submission kills every process of its uid, so two grading runs (or workers) on
    one host must never share one: each takes a block under a host-wide file lock.
    """
    _LOCK_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    for block in range(NUM_BLOCKS):
        handle = open(_LOCK_DIR / f"{block}.lock", "w")  # noqa: SIM115 - held for the run
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        _leases[block] = handle
        return UID_BASE + BLOCK_SIZE * block
    raise SandboxUnavailable(f"all {NUM_BLOCKS} sandbox uid blocks are held by other runs")


def kill_uid(uid: int) -> None:
    """SIGKILL every process of a sandbox uid (what left the process group, daemons)."""
    if uid < UID_BASE:
        raise ValueError(f"uid {uid} is not a sandbox uid (>= {UID_BASE})")
    for _ in range(20):
        found = False
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                if entry.stat().st_uid == uid:
                    os.kill(int(entry.name), signal.SIGKILL)
                    found = True
        if not found:
            return
        time.sleep(0.01)


def preflight() -> None:
    """Raise SandboxUnavailable unless the machine can run :func:`enter` at all."""
    if sys.platform != "linux":
        raise SandboxUnavailable("sandboxing needs Linux namespaces")
    if os.geteuid() != 0:
        raise SandboxUnavailable(
            "the grader must run as root: it runs each submission as its own unprivileged uid "
            "in private mount and network namespaces (run `sudo make grade`)"
        )
