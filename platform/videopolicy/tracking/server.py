"""The MLflow tracking server: the given one (MLFLOW_TRACKING_URI), or a lean local one per store.

A local server is started once per store and shared by every driver that uses that store:
`<store>/mlflow/server.json` records its PID, port and URL; a second driver finds it alive and healthy
and re-uses it. Lean settings (measured): one uvicorn worker and job execution off,
two processes and about 0.5 GB instead of 15 processes and 2-3 GB. It binds 127.0.0.1 on a free port
and runs in its own session (process group), so stopping it signals exactly the group we started,
after checking that the PID still belongs to our server (PID reuse).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from videopolicy.util import cmdline, file_lock, free_port, pid_alive, port_is_free, write_atomic

ENV_URI = "MLFLOW_TRACKING_URI"


def mlflow_dir(store: str | Path) -> Path:
    """`<store>/mlflow`: the database, artifacts, server files and the outbox."""
    return Path(store).expanduser().resolve() / "mlflow"


def healthy(uri: str, timeout_s: float = 2.0) -> bool:
    """True when an http(s) tracking server answers /health; local file/sqlite URIs are always up."""
    if not uri.startswith(("http://", "https://")):
        return True
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


@dataclass
class TrackingServer:
    """A lean `mlflow server` for one store, started and stopped by PID."""

    store: Path
    pid: int = 0
    port: int = 0
    started_s: float = 0.0  # seconds from spawn to a healthy /health (0 when re-used)

    @classmethod
    def for_store(cls, store: str | Path) -> TrackingServer:
        return cls(store=Path(store).expanduser().resolve())

    @property
    def dir(self) -> Path:
        return mlflow_dir(self.store)

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def marker(self) -> str:
        """Appears in our server's command line (its backend store URI): proof a PID is ours."""
        return f"sqlite:///{self.dir / 'mlflow.db'}"

    def command(self) -> list[str]:
        mlflow = str(Path(sys.executable).with_name("mlflow"))
        return [mlflow, "server", "--workers", "1", "--backend-store-uri", self.marker,
                "--default-artifact-root", str(self.dir / "artifacts"),
                "--host", "127.0.0.1", "--port", str(self.port)]

    def is_ours_and_alive(self) -> bool:
        return bool(self.pid) and pid_alive(self.pid) and self.marker in cmdline(self.pid)

    def _load(self) -> bool:
        info = self.dir / "server.json"
        if not info.exists():
            return False
        data = json.loads(info.read_text())
        self.pid, self.port = int(data["pid"]), int(data["port"])
        return True

    def attach(self) -> bool:
        """Re-use a server recorded in server.json when it is ours, alive and healthy."""
        return self._load() and self.is_ours_and_alive() and healthy(self.uri)

    def _previous_port_if_free(self) -> int:
        try:
            port = int(json.loads((self.dir / "server.json").read_text())["port"])
        except (OSError, ValueError, KeyError):
            return 0
        return port if port_is_free(port) else 0

    def start(self, timeout_s: float = 120.0) -> None:
        """Spawn the server detached (it outlives this driver) and wait for /health."""
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "artifacts").mkdir(exist_ok=True)
        self.port = self._previous_port_if_free() or free_port()  # same URL as before when possible
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        env.pop(ENV_URI, None)
        t0 = time.monotonic()
        with open(self.dir / "server.log", "ab") as log:
            proc = subprocess.Popen(self.command(), env=env, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.dir)
        self.pid = proc.pid
        write_atomic(self.dir / "server.json", json.dumps({"pid": self.pid, "port": self.port, "uri": self.uri,
                                                           "started_at": time.time()}))
        while not healthy(self.uri):
            if proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {proc.returncode} before becoming healthy; "
                                   f"see {self.dir / 'server.log'}")
            if time.monotonic() - t0 > timeout_s:
                self.stop()
                raise TimeoutError(f"mlflow server not healthy after {timeout_s:.0f} s; see {self.dir / 'server.log'}")
            time.sleep(0.25)
        self.started_s = time.monotonic() - t0

    def stop(self, grace_s: float = 10.0) -> bool:
        """SIGTERM our server's process group (server + uvicorn worker), SIGKILL after grace_s.

        Signals nothing unless the recorded PID is alive and its command line is our server's.
        """
        if not self.pid:
            self._load()
        if not self.is_ours_and_alive():
            return False
        for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.pid, sig)  # start_new_session: the group id is the server's PID
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and _group_alive(self.pid):
                time.sleep(0.1)
            if not _group_alive(self.pid):
                break
        return True

    def memory_mb(self) -> dict[str, float]:
        """RSS and PSS (MB) of the server's process group, from /proc smaps_rollup."""
        rss = pss = 0.0
        for pid in _group_members(self.pid):
            try:
                for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1]) / 1024
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1]) / 1024
            except OSError:
                continue
        return {"rss_mb": rss, "pss_mb": pss, "processes": len(_group_members(self.pid))}

    def info(self) -> dict:
        return {**asdict(self), "store": str(self.store), "uri": self.uri}


def _group_members(pgid: int) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            fields = (p / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(p.name))
    return out


def _group_alive(pgid: int) -> bool:
    return bool(_group_members(pgid))


def local_server(store: str | Path, timeout_s: float = 120.0) -> TrackingServer:
    """The store's lean local server: the live one recorded under <store>/mlflow, else a new one."""
    server = TrackingServer.for_store(store)
    with file_lock(server.dir / "server.lock"):  # two drivers starting at once get one server
        if not server.attach():
            server.start(timeout_s=timeout_s)
    return server


def fail_fast_client() -> None:
    """This process's MLflow client gives up on a down server after a few short retries instead of minutes
    of back-off (one log_batch to a refused port, measured: 245 s with MLflow's defaults, 3.2 s with these),
    so logging falls back to the outbox quickly. Explicit settings in the environment win."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")


def ensure_tracking(store: str | Path) -> str:
    """The tracking URI to log to: MLFLOW_TRACKING_URI when set, else the store's local server.

    Also makes this process's MLflow client fail fast while a server is down (a few short retries
    instead of minutes of back-off), so logging falls back to the outbox quickly.
    """
    fail_fast_client()
    uri = os.environ.get(ENV_URI)
    if uri:
        return uri
    return local_server(store).uri


def stop_tracking(store: str | Path) -> bool:
    """Stop the store's local server if one of ours is running (by PID); True if one was stopped."""
    return TrackingServer.for_store(store).stop()


def main(argv: list[str] | None = None) -> int:
    """`python -m videopolicy.tracking.server start|status|stop --store DIR`."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("action", choices=["start", "status", "stop"])
    ap.add_argument("--store", required=True)
    args = ap.parse_args(argv)
    server = TrackingServer.for_store(args.store)
    if args.action == "start":
        server = local_server(args.store)
        print(json.dumps(server.info()))
    elif args.action == "status":
        up = server.attach()
        print(json.dumps({**server.info(), "healthy": up, **(server.memory_mb() if up else {})}))
        return 0 if up else 1
    else:
        print("stopped" if server.stop() else "no server of this store running")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
