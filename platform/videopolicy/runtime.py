"""Process-level setup shared by every job: Ray connection, auth mode and headless-GL environment.

Two traps measured on this project's machines (Ray 2.60):
- a token-auth mismatch between a head and a driver makes every Ray Data pipeline hang forever with
  no error, so RAY_AUTH_MODE is set explicitly in every process we start, including workers;
- plain `ray.init()` does not attach to a head started with a custom --temp-dir, so a job joins the
  cluster named by RAY_ADDRESS (set by `ray job submit`) and otherwise starts its own local one.

A local cluster started here is loopback-only with token auth, like the local head (ray_auth.py).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from videopolicy.config import PlatformConfig, RayConfig
from videopolicy.ray_auth import MODE_VAR, SINGLE_NODE, TOKEN_PATH_VAR, TOKEN_VAR, ensure_token, token_file
from videopolicy.util import local_num_cpus

log = logging.getLogger(__name__)


def worker_env(cfg: PlatformConfig) -> dict[str, str]:
    """Environment variables every Ray task/actor of ours gets (runtime_env env_vars)."""
    gl = cfg.demos.render.gl
    env = {
        MODE_VAR: os.environ.get(MODE_VAR, cfg.ray.auth_mode),
        "MUJOCO_GL": gl,
        "PYOPENGL_PLATFORM": gl,
        # one simulator per core: BLAS/OpenMP threads inside a worker only fight each other
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    # the rest of this process's Ray security settings (never the raw token: runtime envs are shown
    # in the dashboard; workers inherit RAY_AUTH_TOKEN from their raylet when the head had it)
    for key in (TOKEN_PATH_VAR, *SINGLE_NODE):
        if os.environ.get(key):
            env[key] = os.environ[key]
    return env


def init_ray(cfg: RayConfig, store: str | Path | None = None) -> None:
    """Connect to RAY_ADDRESS / cfg.address, or start a local cluster. Idempotent.

    A local cluster binds 127.0.0.1 only and uses token auth with `<store>/ray/auth_token` (default
    store: the config's default). Settings already in the environment (RAY_AUTH_MODE, a token) win:
    this process and what it started before must agree with the cluster.
    """
    import ray

    if ray.is_initialized():
        os.environ.setdefault(MODE_VAR, cfg.auth_mode)
        return
    address = os.environ.get("RAY_ADDRESS") or (None if cfg.address in ("auto", "local") else cfg.address)
    if address:
        os.environ.setdefault(MODE_VAR, cfg.auth_mode)
        if _is_loopback_address(address):  # a head of ours on this machine (jobs inherit this already)
            _single_node_mode()
        log.info("joining Ray cluster at %s", address)
        ray.init(address=address, logging_level=logging.WARNING)
        return
    _single_node_mode()
    os.environ.setdefault(MODE_VAR, cfg.auth_mode)
    if os.environ[MODE_VAR] == "token" and not os.environ.get(TOKEN_VAR):
        path = os.environ.get(TOKEN_PATH_VAR) or token_file(store or PlatformConfig().store)
        os.environ[TOKEN_PATH_VAR] = str(ensure_token(path))
    _refresh_ray_config()
    num_cpus = local_num_cpus(cfg.num_cpus)  # oversubscribed, as the local head's (util.local_num_cpus)
    log.info("starting a local Ray cluster of %d logical CPUs (127.0.0.1 only, auth %s)", num_cpus, os.environ[MODE_VAR])
    ray.init(include_dashboard=False, logging_level=logging.WARNING, num_cpus=num_cpus,
             runtime_env={"worker_process_setup_hook": quiet_without_dashboard})


#: Ray Train's PlacementGroupCleaner asks the State API (served by the dashboard) every second whether the
#: controller lives, and warns each time when there is no dashboard: ~1 line/s, 90% of a study's log.
NO_DASHBOARD_NOISE = "ray.train.v2._internal.execution.controller.placement_group_cleaner"


def quiet_without_dashboard() -> None:
    """worker_process_setup_hook of a cluster started without the dashboard. The cleaner's job (remove a
    placement group when the controller dies) is moot there: the cluster ends with its driver."""
    logging.getLogger(NO_DASHBOARD_NOISE).setLevel(logging.ERROR)


def _is_loopback_address(address: str) -> bool:
    """'127.0.0.1:6379', 'localhost:6379', 'ray://127.0.0.1:10001' -> True; a LAN or cluster address -> False.
    Ray's multi-node mode rewrites a loopback address to the LAN one, where our heads do not listen."""
    host = address.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    return host in ("localhost", "127.0.0.1", "::1") or host.startswith("127.")


def _single_node_mode() -> None:
    """Ray's single-node mode (ray_auth.SINGLE_NODE) for this process and the cluster it starts. Ray reads
    the variable when `ray` is first imported, which may have happened already: read it again."""
    for key, value in SINGLE_NODE.items():
        os.environ.setdefault(key, value)
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = ray_constants.env_bool(ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR,
                                                              not ray_constants.IS_WINDOWS_OR_OSX)


def _refresh_ray_config() -> None:
    """Ray reads RAY_AUTH_MODE once per process and caches it; re-read it after we set it (as Ray does
    itself when it turns token auth on), or this driver and its new cluster could disagree."""
    try:
        from ray._raylet import Config

        Config.initialize("")
    except (ImportError, AttributeError):  # pragma: no cover - other Ray versions
        pass
