"""Shared fixtures. One real local Ray cluster per test session (starting one costs ~8 s).

The cluster gets 4 logical CPUs on the 2-core CI box: Ray Data next to other Ray work starves and
hangs with only a warning when CPUs are exactly booked (measured); oversubscription avoids it.
"""

import os

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # explicit in every process, see runtime.py
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# The session cluster binds 127.0.0.1 only, like every cluster the platform starts (ray_auth.py); set
# before Ray is imported, and inherited by every driver a test starts, so they all agree on the node IP.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def ray_cluster():
    import ray

    from videopolicy.runtime import quiet_without_dashboard

    if not ray.is_initialized():
        ray.init(num_cpus=4, include_dashboard=False, logging_level="WARNING",
                 runtime_env={"worker_process_setup_hook": quiet_without_dashboard,
                              "env_vars": {"RAY_AUTH_MODE": os.environ["RAY_AUTH_MODE"],
                                           "MUJOCO_GL": os.environ["MUJOCO_GL"],
                                           "PYOPENGL_PLATFORM": os.environ["PYOPENGL_PLATFORM"]}})
    yield ray
    ray.shutdown()
