"""Process-level setup shared by every job: Ray connection, auth mode and headless-GL environment.

Two traps measured on this project's machines (see ../shared/reference/ray-mlflow.md):
- a token-auth mismatch between a head and a driver makes every Ray Data pipeline hang forever with
  no error, so RAY_AUTH_MODE is set explicitly in every process we start, including workers;
- plain `ray.init()` does not attach to a head started with a custom --temp-dir, so a job joins the
  cluster named by RAY_ADDRESS (set by `ray job submit`) and otherwise starts its own local one.
"""

from __future__ import annotations

import logging
import os

from videopolicy.config import PlatformConfig, RayConfig

log = logging.getLogger(__name__)


def worker_env(cfg: PlatformConfig) -> dict[str, str]:
    """Environment variables every Ray task/actor of ours gets (runtime_env env_vars)."""
    gl = cfg.demos.render.gl
    env = {
        "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", cfg.ray.auth_mode),
        "MUJOCO_GL": gl,
        "PYOPENGL_PLATFORM": gl,
        # one simulator per core: BLAS/OpenMP threads inside a worker only fight each other
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    return env


def init_ray(cfg: RayConfig) -> None:
    """Connect to RAY_ADDRESS / cfg.address, or start a local cluster. Idempotent."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", cfg.auth_mode)
    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS") or (None if cfg.address in ("auto", "local") else cfg.address)
    if address:
        log.info("joining Ray cluster at %s", address)
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        kwargs = {"num_cpus": cfg.num_cpus} if cfg.num_cpus > 0 else {}
        log.info("starting a local Ray cluster %s", kwargs)
        ray.init(include_dashboard=False, logging_level=logging.WARNING, **kwargs)
