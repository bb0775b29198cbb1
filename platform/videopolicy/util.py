"""Small process and file helpers that several parts of the platform need (standard library only).

    free_port / port_is_free   a loopback TCP port for a server we start (127.0.0.1 only)
    pid_alive / cmdline        is a process ours to wait for or stop (zombies count as gone)
    file_lock                  an exclusive advisory lock (flock) held for a `with` block
    write_atomic               write a file so that readers see all of it or none (tmp + os.replace)
    git_state                  the checkout's commit and dirty flag (run provenance)
    local_num_cpus             logical CPUs for a Ray cluster we start here (oversubscribed, see there)

Anything may import this module: it sits at the bottom of the import graph and imports nothing of
the package.
"""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that is free on `host` now (the OS picks it; another process may take it before use)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """True when `port` can be bound on `host` now."""
    try:
        with socket.socket() as s:
            s.bind((host, int(port)))
        return True
    except (OSError, ValueError, OverflowError):
        return False


def pid_alive(pid: int) -> bool:
    """True while process `pid` exists and is not a zombie (an exited child nobody has reaped yet)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, but another user's
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def cmdline(pid: int) -> str:
    """The command line of `pid`, arguments joined by spaces ("" when it is gone or unreadable)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive flock on `path` (created, with its parent, when missing) for the block."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def write_atomic(path: str | Path, data: str | bytes) -> Path:
    """Write `data` to `path` through a temporary file in the same directory and `os.replace`, so a
    reader (or a crash) never sees half a file. The temporary name is unique per process and thread
    and is hidden (``.<name>.tmp<pid>-<thread>``), so globs such as ``*.json`` never match it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}-{threading.get_ident()}")
    try:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def git_state(repo_dir: str | Path | None = None) -> tuple[str, bool | None]:
    """(commit SHA, dirty?) of the checkout holding this package, or ("unknown", None).

    Under `ray job submit --working-dir .` a job runs from an uploaded copy without ``.git``: the
    submitting side passes VIDEOPOLICY_GIT_SHA / VIDEOPOLICY_GIT_DIRTY, which win over what this
    process can see."""
    if os.environ.get("VIDEOPOLICY_GIT_SHA"):
        dirty = os.environ.get("VIDEOPOLICY_GIT_DIRTY", "")
        return os.environ["VIDEOPOLICY_GIT_SHA"], (dirty.lower() in ("1", "true")) if dirty else None
    cwd = Path(repo_dir) if repo_dir else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                             check=True, timeout=10).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                                capture_output=True, text=True, check=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown", None
    return sha, bool(status.strip())


def local_num_cpus(requested: int = 0) -> int:
    """Logical CPUs of a Ray cluster started on this machine: `requested`, else max(4, cores). Booked
    exactly, Ray Data starves beside a TorchTrainer or a rollout pool and hangs with only a warning
    (measured on the 2-core box: a stage-1 worker with cpus_per_worker 2 waited forever on its shuffle)."""
    return requested if requested > 0 else max(4, os.cpu_count() or 1)
