"""Nobody else gets into the Ray clusters the platform starts (ray_auth.py; README "Security").

Real Ray, a real MLflow server, traffic on loopback only:
- the local head, started the way `make run` starts it (LocalHead.start), listens on loopback only: every
  process of it, the Ray client server included; it registers as 127.0.0.1;
- token auth: the store's token file is 0600; the Jobs API answers 401 without it; a driver with a wrong
  token or none is refused; the job submitted with it runs a Ray Data pipeline (the auth-mismatch
  hang described in videopolicy/ray_auth.py would show here) on node 127.0.0.1;
- the dashboard and the MLflow server bind 127.0.0.1;
- the `ray.init()` auto-start (runtime.init_ray) is loopback-only with token auth too, even when `ray`
  was imported before.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import stat
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from pathlib import Path
from unittest import mock

import pytest

from videopolicy.local_cluster import LocalHead
from videopolicy.ray_auth import SINGLE_NODE, is_loopback, listening_sockets, token_file
from videopolicy.runtime import NO_DASHBOARD_NOISE

ROOT = Path(__file__).resolve().parents[1]


def _cmd(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _clean_env(**extra: str) -> dict[str, str]:
    """This process's env without any Ray auth / address / single-node settings (a new user's shell)."""
    drop = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS", *SINGLE_NODE)
    return {**{k: v for k, v in os.environ.items() if k not in drop}, **extra}


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    h = LocalHead(temp_dir=f"/tmp/vpray_sec{os.getpid()}", num_cpus=2, token_path=str(token_file(store)),
                  logs_dir=str(store / "logs" / "ray"))
    with mock.patch.dict(os.environ, _clean_env(), clear=True):  # a new user's shell: nothing set for Ray
        h.start()
    yield h
    assert h.stop() == []
    # the Ray session's full logs outlive the head's temp dir, in the store
    kept = list((store / "logs" / "ray").glob("session_2*/raylet.out"))
    assert kept and not Path(h.temp_dir).exists(), sorted((store / "logs").rglob("*"))[:20]


def test_every_socket_of_the_local_head_is_on_loopback(head):
    socks = listening_sockets(head.pids())
    by_port = {port: (pid, addr) for pid, addr, port in socks}
    # the check sees the whole head: GCS, raylet, dashboard, and the client server (no temp dir in its cmdline)
    assert head.dashboard_port in by_port and head.client_server_port in by_port, socks
    assert "ray.util.client.server" in _cmd(by_port[head.client_server_port][0])
    programs = {Path(_cmd(pid).split(" ")[0]).name for pid, _, _ in socks}
    assert {"gcs_server", "raylet"} <= programs, programs
    exposed = [(addr, port, _cmd(pid)[:80]) for pid, addr, port in socks if not is_loopback(addr)]
    assert not exposed, f"listening beyond loopback: {exposed}"
    assert by_port[head.dashboard_port][1] == "127.0.0.1"  # the dashboard / Jobs API
    gcs = Path(head.temp_dir, "ray_current_cluster").read_text().strip()
    assert gcs.startswith("127.0.0.1:"), f"node registered as {gcs}, not 127.0.0.1"


def test_token_auth_refuses_clients_without_the_token_and_runs_the_job_with_it(head, tmp_path):
    token = Path(head.token_path)
    assert stat.S_IMODE(token.stat().st_mode) == 0o600 and re.fullmatch(r"[0-9a-f]{64}", token.read_text())

    # Ray drivers (gRPC) with a wrong token, with none, and with the token; they run while the job below does.
    gcs = Path(head.temp_dir, "ray_current_cluster").read_text().strip()
    connect = "import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR'); print('CONNECTED', ray.get(ray.put(7)))"
    envs = {"wrong token": _clean_env(**SINGLE_NODE, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32)),
            "no token": _clean_env(**SINGLE_NODE, RAY_AUTH_MODE="disabled"),
            "the token": _clean_env(**SINGLE_NODE, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))}
    procs = {name: subprocess.Popen([sys.executable, "-c", connect, gcs], env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True) for name, env in envs.items()}

    with pytest.raises(urllib.error.HTTPError) as e:  # the Jobs API without a token
        urllib.request.urlopen(f"{head.address}/api/jobs/", timeout=30)
    assert e.value.code == 401
    with urllib.request.urlopen(urllib.request.Request(f"{head.address}/api/jobs/", headers=head.auth_headers()),
                                timeout=30) as r:
        assert r.status == 200

    # The job, submitted with the head's token, runs Ray Data on node 127.0.0.1 with token auth.
    job_dir, result = tmp_path / "job", tmp_path / "result.json"
    job_dir.mkdir()
    (job_dir / "job.py").write_text(textwrap.dedent("""
        import json, os, sys
        import ray
        ray.init()
        n = ray.data.range(64).map_batches(lambda b: {"id": b["id"] * 2}).count()
        json.dump({"rows": n, "node": ray.util.get_node_ip_address(), "mode": os.environ.get("RAY_AUTH_MODE"),
                   "nodes": [x["NodeManagerAddress"] for x in ray.nodes()]}, open(sys.argv[1], "w"))
    """))
    assert head.submit([sys.executable, "job.py", str(result)], working_dir=str(job_dir), timeout_s=300) == 0
    got = json.loads(result.read_text())
    assert got == {"rows": 64, "node": "127.0.0.1", "mode": "token", "nodes": ["127.0.0.1"]}

    outs = {name: p.communicate(timeout=240)[0] for name, p in procs.items()}
    assert "CONNECTED 7" in outs["the token"], outs["the token"][-2000:]
    for name in ("wrong token", "no token"):
        assert procs[name].returncode != 0 and "CONNECTED" not in outs[name], f"{name}: {outs[name][-2000:]}"
        assert "token" in outs[name].lower(), f"{name}: refused for another reason: {outs[name][-2000:]}"


def test_the_mlflow_server_binds_loopback(tmp_path):
    from videopolicy.tracking.server import TrackingServer, _group_members

    server = TrackingServer.for_store(tmp_path)
    server.start()
    try:
        socks = listening_sockets(_group_members(server.pid))
        assert any(port == server.port for _, _, port in socks), socks
        assert all(addr == "127.0.0.1" for _, addr, _ in socks), socks
    finally:
        server.stop()


AUTO_START = """
import json, os, sys
import ray  # imported before init_ray sets anything: Ray caches the auth mode and the node mode at import
from videopolicy.config import RayConfig
from videopolicy.local_cluster import _children_map
from videopolicy.ray_auth import listening_sockets
from videopolicy.runtime import NO_DASHBOARD_NOISE, init_ray

init_ray(RayConfig(), store=sys.argv[1])  # num_cpus 0: the default, max(4, cores) (util.local_num_cpus)
n = ray.data.range(16).map_batches(lambda b: b).count()
import logging
quiet = ray.get(ray.remote(lambda: logging.getLogger(NO_DASHBOARD_NOISE).level).remote())
kids, tree, stack = _children_map(), set(), [os.getpid()]
while stack:
    pid = stack.pop()
    if pid not in tree:
        tree.add(pid)
        stack.extend(kids.get(pid, []))
print("RESULT", json.dumps({"rows": n, "mode": os.environ["RAY_AUTH_MODE"], "token": os.environ.get("RAY_AUTH_TOKEN_PATH"),
                            "node": ray.util.get_node_ip_address(), "sockets": listening_sockets(sorted(tree)),
                            "cpus": ray.cluster_resources().get("CPU"), "quiet": quiet}))
ray.shutdown()
"""


def test_ray_init_auto_start_is_loopback_only_with_the_store_token(tmp_path):
    out = subprocess.run([sys.executable, "-c", AUTO_START, str(tmp_path / "store")], env=_clean_env(), cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert out.returncode == 0 and line, out.stdout[-2000:] + out.stderr[-3000:]
    got = json.loads(line[len("RESULT "):])
    assert got["rows"] == 16 and got["mode"] == "token" and got["node"] == "127.0.0.1"
    # booked at the machine's cores (2 here), a stage-1 trainer left Ray Data no CPU and the sweep hung
    assert got["cpus"] == max(4, os.cpu_count()), f"in-process cluster has {got['cpus']} CPUs"
    assert got["token"] == str(token_file(tmp_path / "store"))
    # workers run the setup hook: no dashboard here, so Ray Train's cleaner would warn every second
    assert got["quiet"] == logging.ERROR, f"worker log level of {NO_DASHBOARD_NOISE}: {got['quiet']}"
    assert stat.S_IMODE(Path(got["token"]).stat().st_mode) == 0o600
    assert len(got["sockets"]) >= 2, got["sockets"]  # GCS and raylet at least: the check saw the cluster
    exposed = [s for s in got["sockets"] if not is_loopback(s[1])]
    assert not exposed, f"auto-started cluster listens beyond loopback: {exposed}"
