"""Who may use the Ray clusters this platform starts: loopback sockets and token auth, set in one place.

Measured with Ray 2.60 on Linux (README, "Security"): `ray start --node-ip-address=127.0.0.1` is not
enough. Ray swaps 127.0.0.1 for the machine's LAN address and binds the GCS, the raylet, the agents
and the Ray client server on every interface. With auth disabled, anyone who can reach the machine
can run code on the cluster (CVE-2023-48022). So every cluster we start ourselves, the local head
(local_cluster.py) and the `ray.init()` auto-start (runtime.py), gets:

- **loopback only**: `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`, Ray's single-node mode (its default on
  macOS and Windows). The node is 127.0.0.1 and every socket binds there. A head and the drivers that
  join it must agree on this: a driver that calls itself 127.0.0.1 finds no raylet at a LAN address, and
  the other way round. Jobs and workers inherit it from the head. We never set it when joining someone
  else's cluster, where a driver must see its real address.
- **token auth**: `RAY_AUTH_MODE=token` and `RAY_AUTH_TOKEN_PATH=<store>/ray/auth_token`. The token is
  32 random bytes as hex, one per store, created on first use with mode 0600 (a group- or
  world-readable token is refused). The head's processes, its jobs and their workers inherit both
  variables; the job runtime env repeats them, and clients send the token as a header. A token-auth
  mismatch between processes hangs Ray Data with no error (measured with Ray 2.60). To avoid it,
  the mode is decided here and recorded with the head, never per process.

cluster.yaml uses the same two variables (RAY_AUTH_MODE=token, RAY_AUTH_TOKEN_PATH) on every node;
tests/test_cluster_yaml.py checks that both paths still agree.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
from pathlib import Path

MODE_VAR, TOKEN_PATH_VAR, TOKEN_VAR = "RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_TOKEN"
SINGLE_NODE = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # Ray's single-node mode: everything on 127.0.0.1
TOKEN_RELPATH = "ray/auth_token"


class TokenError(RuntimeError):
    pass


def token_file(store: str | Path) -> Path:
    """`<store>/ray/auth_token`: the token of the clusters started for this store."""
    store = str(store)
    if "://" in store:
        raise TokenError(f"store {store!r} is not a local directory: the local Ray head keeps its token in a "
                         f"local store. Fix: pass --store <local dir> (or set RAY_AUTH_TOKEN_PATH yourself)")
    return Path(store).expanduser().resolve() / TOKEN_RELPATH


def ensure_token(path: str | Path) -> Path:
    """Create the token file (mode 0600, atomically) unless it exists; refuse one others can read."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise TokenError(f"{path}: Ray auth token has mode {mode:o}, readable by other users. "
                         f"Fix: chmod 600 {path} (or delete it: a new token is made on the next start)")
    if not re.fullmatch(r"[0-9a-fA-F]{32,}", path.read_text().strip()):
        raise TokenError(f"{path}: not a Ray auth token (expected 64 hex characters). "
                         f"Fix: delete it; a new token is made on the next start")
    return path


def token_env(path: str | Path) -> dict[str, str]:
    """What makes a process use token auth with the token at `path` (head, driver, job, workers)."""
    return {MODE_VAR: "token", TOKEN_PATH_VAR: str(Path(path).resolve())}


def local_cluster_env(token_path: str | Path) -> dict[str, str]:
    """The whole environment of a cluster of our own: loopback only, token auth with `token_path`."""
    return {**SINGLE_NODE, **token_env(ensure_token(token_path))}


def auth_header(path: str | Path) -> dict[str, str]:
    """HTTP header for the dashboard / Jobs API. Explicit, so it works in a process whose own Ray is
    set up for another auth mode (Ray caches the mode at first use)."""
    return {"Authorization": f"Bearer {Path(path).read_text().strip()}"}


# ---------------------------------------------------------------------------------------------
# What a process tree listens on (tests, `jobs/local_cluster.py status`)
# ---------------------------------------------------------------------------------------------

def _socket_inodes(pid: int) -> set[str]:
    out = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                out.add(target[8:-1])
    except OSError:
        pass
    return out


def _hex_ip(hex_addr: str) -> str:
    raw = bytes.fromhex(hex_addr)
    if len(raw) == 4:
        return ".".join(str(b) for b in raw[::-1])
    words = [raw[i:i + 4][::-1] for i in range(0, 16, 4)]  # /proc/net/tcp6: four little-endian words
    import ipaddress

    ip = ipaddress.IPv6Address(b"".join(words))
    return str(ip.ipv4_mapped) if ip.ipv4_mapped else str(ip)


def listening_sockets(pids: list[int]) -> list[tuple[int, str, int]]:
    """(pid, address, port) of every TCP socket in LISTEN state held by `pids`, from /proc."""
    owner = {inode: pid for pid in pids for inode in _socket_inodes(pid)}
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            local, state, inode = parts[1], parts[3], parts[9]
            if state != "0A" or inode not in owner:  # 0A = LISTEN
                continue
            addr, port = local.rsplit(":", 1)
            found.append((owner[inode], _hex_ip(addr), int(port, 16)))
    return sorted(set(found))


def is_loopback(address: str) -> bool:
    import ipaddress

    return ipaddress.ip_address(address).is_loopback


def main(argv: list[str] | None = None) -> int:
    """`python -m videopolicy.ray_auth token PATH`: make a token file (0600) for a cluster, e.g. the one
    cluster.yaml mounts on every node."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("action", choices=["token"])
    ap.add_argument("path")
    args = ap.parse_args(argv)
    print(ensure_token(Path(args.path).expanduser()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
