"""A local Ray head for `ray job submit` on one machine, started and stopped by PID.

Ray's own stop command kills every Ray process on the machine by name, including other users'
clusters, so we never use it. The head runs under a temp dir unique to this checkout; its processes are the ones
whose command line names that dir, plus their descendants (dashboard modules, workers), plus the Ray
client server (found by the runtime-env agent port it is given), and `stop()` signals exactly those PIDs.

Nobody else gets in (ray_auth.py): every socket of the head binds 127.0.0.1 and token auth is on, with
the store's token (`<store>/ray/auth_token`, 0600). Mode, token path and ports are recorded in
`<temp dir>/vp_head.json`, so whoever attaches to a running head uses its settings, not their own.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from videopolicy.ray_auth import (
    SINGLE_NODE,
    TOKEN_VAR,
    auth_header,
    is_loopback,
    listening_sockets,
    local_cluster_env,
    token_env,
    token_file,
)
from videopolicy.util import cmdline, free_port, git_state, local_num_cpus, pid_alive, write_atomic

HEAD_FILE = "vp_head.json"


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            stat = (p / "stat").read_text()
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(p.name))
    return kids


def processes_under(*markers: str, pattern: str | None = None) -> list[int]:
    """PIDs whose command line contains one of `markers` (or matches regex `pattern`), and all their
    descendants."""
    regex = re.compile(pattern) if pattern else None
    roots = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit() or int(p.name) == os.getpid():
            continue
        cmd = cmdline(int(p.name))
        if any(m in cmd for m in markers) or (regex is not None and regex.search(cmd)):
            roots.append(int(p.name))
    kids = _children_map()
    seen: set[int] = set()
    stack = list(roots)
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        stack.extend(kids.get(pid, []))
    return sorted(seen)


@dataclass
class LocalHead:
    temp_dir: str
    num_cpus: int = 0
    dashboard_port: int = 0
    token_path: str = ""  # the store's token file; a running head's own one wins (see attach)
    client_server_port: int = 0
    runtime_env_agent_port: int = 0
    logs_dir: str = ""  # where stop() keeps the Ray session's logs (default <store>/logs/ray); "" keeps none

    @classmethod
    def for_checkout(cls, root: str | Path, num_cpus: int = 0, store: str | Path | None = None) -> "LocalHead":
        """The head of checkout `root`; a new one takes its token from `store` (default `<root>/.vp_store`)."""
        # Ray's unix socket paths must stay short (~107 chars): a hash under /tmp, not the checkout path.
        tag = hashlib.sha1(str(Path(root).resolve()).encode()).hexdigest()[:8]
        store = Path(store or Path(root) / ".vp_store")
        return cls(temp_dir=f"/tmp/vpray_{tag}", num_cpus=num_cpus, token_path=str(token_file(store)),
                   logs_dir=str(store.expanduser().resolve() / "logs" / "ray"))

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def pids(self) -> list[int]:
        # The Ray client server's command line does not name the temp dir: it is found by the port of our
        # runtime-env agent it is given (on whatever address Ray chose)
        pattern = (rf"ray\.util\.client\.server .*--runtime-env-agent-address=http://\S+:{self.runtime_env_agent_port} "
                   if self.runtime_env_agent_port else None)
        return processes_under(self.temp_dir + "/", pattern=pattern)

    def env(self) -> dict[str, str]:
        """The head's environment: loopback only and token auth, whatever the caller's settings."""
        # RAY_ADDRESS from a driver that started this process would point the new head's processes at
        # that other cluster (the job agent then never registers: "No available agent to submit job")
        env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", TOKEN_VAR)}
        env.update(local_cluster_env(self.token_path))
        env["RAY_USAGE_STATS_ENABLED"] = "0"
        return env

    def job_env(self) -> dict[str, str]:
        """Settings a job on this head and its workers run with (they inherit them; the runtime env repeats
        them so a job's own env_vars cannot switch them off)."""
        return {**SINGLE_NODE, **token_env(self.token_path)}

    def client_env(self) -> dict[str, str]:
        """Environment of a `ray` CLI process talking to this head (e.g. `ray job logs`)."""
        env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", TOKEN_VAR)}
        return {**env, **self.job_env()}

    def auth_headers(self) -> dict[str, str]:
        return auth_header(self.token_path)

    def _write_record(self) -> None:
        Path(self.temp_dir).mkdir(parents=True, exist_ok=True)
        write_atomic(Path(self.temp_dir, HEAD_FILE), json.dumps(asdict(self)))

    def start(self) -> None:
        if self.pids():
            raise RuntimeError(f"a head under {self.temp_dir} is already running (pids {self.pids()}); "
                               f"stop it with `python jobs/local_cluster.py stop`")
        env = self.env()  # makes the token (0600) if the store has none yet
        self.dashboard_port = self.dashboard_port or free_port()
        self.client_server_port, self.runtime_env_agent_port = free_port(), free_port()
        self._write_record()  # before Ray starts: stop() finds a half-started head's client server too
        subprocess.run(self.command(), check=True, env=env, stdout=subprocess.DEVNULL)

    def command(self) -> list[str]:
        ray = str(Path(sys.executable).with_name("ray"))
        # Every port free-picked: a second Ray on the machine (a test session's, a user's) holds the
        # default agent port 52365 (and the client server's 10001), and a head whose job agent cannot
        # bind never accepts a job.
        cmd = [ray, "start", "--head", "--node-ip-address=127.0.0.1", "--port=0",
               f"--temp-dir={self.temp_dir}", "--dashboard-host=127.0.0.1",
               f"--dashboard-port={self.dashboard_port}", "--disable-usage-stats",
               f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
               f"--runtime-env-agent-port={self.runtime_env_agent_port}", f"--metrics-export-port={free_port()}",
               f"--ray-client-server-port={self.client_server_port}"]
        cmd.append(f"--num-cpus={local_num_cpus(self.num_cpus)}")  # oversubscribed: see local_num_cpus
        return cmd

    def attach(self) -> bool:
        """Re-read ports and auth settings of a head started earlier by `start()`."""
        record = Path(self.temp_dir, HEAD_FILE)
        if not record.exists():
            return False
        for key, value in json.loads(record.read_text()).items():
            setattr(self, key, value)
        return bool(self.pids())

    def exposed_sockets(self) -> list[tuple[int, str, int]]:
        """Listening sockets of the head's processes bound to anything but loopback (should be none)."""
        return [s for s in listening_sockets(self.pids()) if not is_loopback(s[1])]

    def stop(self, grace_s: float = 15.0) -> list[int]:
        """SIGTERM our processes, then SIGKILL what is left after `grace_s` (gcs/raylet ignore TERM a while)."""
        if not self.runtime_env_agent_port:
            self.attach()
        pids = self.pids()
        for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.time() + wait
            while time.time() < deadline and any(pid_alive(p) for p in pids):
                time.sleep(0.2)
            pids = [p for p in pids if pid_alive(p)] + [p for p in self.pids() if p not in pids]
            if not pids:
                break
        self.keep_logs()
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        return pids

    def keep_logs(self) -> list[Path]:
        """Copy each Ray session's logs (driver, workers, raylet, GCS: the full output, which the job's
        console shows only in part) to `logs_dir`/<session> before the temp dir goes. Returns the copies."""
        kept: list[Path] = []
        if not self.logs_dir:
            return kept
        for session in sorted(Path(self.temp_dir).glob("session_2*")):
            src, dst = session / "logs", Path(self.logs_dir) / session.name
            if not src.is_dir():
                continue
            try:
                shutil.copytree(src, dst, symlinks=True, dirs_exist_ok=True)
                kept.append(dst)
            except (OSError, shutil.Error) as e:  # a log that vanished mid-copy must not block the stop
                print(f"local head: could not keep all Ray logs of {session.name} in {dst}: {e}", file=sys.stderr)
        return kept

    def submit(self, entrypoint: list[str], working_dir: str = ".", env_vars: dict | None = None,
               ready_timeout_s: float = 120.0, submission_id: str | None = None,
               timeout_s: float | None = None) -> int:
        """Submit a job to this head, follow its logs, return 0 if it succeeded."""
        runtime_env = {"working_dir": working_dir, "env_vars": {**(env_vars or {}), **self.job_env()}}
        status = submit_and_wait(self.address, entrypoint, runtime_env, submission_id, timeout_s, ready_timeout_s,
                                 headers=self.auth_headers(), client_env=self.client_env())
        return 0 if status == "SUCCEEDED" else 1


def submitter_env() -> dict[str, str]:
    """Provenance the job cannot find itself (its working dir is uploaded without .git)."""
    sha, dirty = git_state(Path(__file__).resolve().parents[2])
    return {"VIDEOPOLICY_GIT_SHA": sha, "VIDEOPOLICY_GIT_DIRTY": str(dirty)} if sha else {}


def submit_and_wait(address: str, entrypoint: list[str], runtime_env: dict, submission_id: str | None = None,
                    timeout_s: float | None = None, ready_timeout_s: float = 120.0,
                    headers: dict | None = None, client_env: dict | None = None) -> str:
    """`ray job submit` that also stops the job when it runs past `timeout_s` (killing a client does not
    stop a job) and retries while a just-started head answers "No available agent to submit job".

    headers / client_env: the cluster's auth for this client and its `ray job logs` process (a local
    head's, see LocalHead); by default both come from this process's environment.

    Returns the final status: SUCCEEDED, FAILED, STOPPED, or TIMEOUT (the job was stopped)."""
    import shlex

    from ray.job_submission import JobStatus, JobSubmissionClient

    env = client_env or {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    deadline = time.time() + ready_timeout_s
    while True:
        try:
            client = JobSubmissionClient(address, headers=headers)
            job_id = client.submit_job(entrypoint=shlex.join(entrypoint), runtime_env=runtime_env,
                                       submission_id=submission_id)
            break
        except (RuntimeError, ConnectionError) as e:
            if time.time() > deadline or not ("No available agent" in str(e) or isinstance(e, ConnectionError)):
                raise
            time.sleep(2)
    print(f"job {job_id} submitted to {address}", flush=True)
    ray = str(Path(sys.executable).with_name("ray"))
    try:
        subprocess.run([ray, "job", "logs", "--follow", f"--address={address}", job_id], env=env, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        print(f"job {job_id} ran past {timeout_s:.0f}s: stopping it", flush=True)
        client.stop_job(job_id)
        while client.get_job_status(job_id) not in (JobStatus.STOPPED, JobStatus.FAILED, JobStatus.SUCCEEDED):
            time.sleep(1)
        return "TIMEOUT"
    while (status := client.get_job_status(job_id)) not in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
        time.sleep(1)
    print(f"job {job_id} {status.value.lower()}", flush=True)
    return status.value
