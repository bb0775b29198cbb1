"""The shared process and file helpers (videopolicy.util), with real processes, sockets and locks."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from videopolicy.util import cmdline, file_lock, free_port, pid_alive, port_is_free, write_atomic


def test_free_port_is_bindable_on_loopback_and_port_is_free_sees_a_listener():
    port = free_port()
    assert port_is_free(port)
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        assert not port_is_free(port)
    assert not port_is_free(-1)


def test_pid_alive_counts_an_unreaped_child_as_gone():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        # Popen returns once exec has begun; the kernel fills /proc/<pid>/cmdline a moment later
        for _ in range(200):
            if "time.sleep(30)" in cmdline(child.pid):
                break
            time.sleep(0.01)
        assert pid_alive(child.pid) and "time.sleep(30)" in cmdline(child.pid)
        child.kill()
        deadline = time.monotonic() + 10
        while pid_alive(child.pid) and time.monotonic() < deadline:  # a zombie until waited for
            time.sleep(0.05)
        assert not pid_alive(child.pid)
    finally:
        child.kill()
        child.wait()
    assert not pid_alive(child.pid) and cmdline(child.pid) == ""


def test_file_lock_excludes_another_process(tmp_path):
    lock = tmp_path / "sub" / "x.lock"
    probe = ("import fcntl, sys; f = open(sys.argv[1], 'a')\n"
             "try:\n    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB); print('got')\n"
             "except BlockingIOError:\n    print('busy')")
    with file_lock(lock):
        held = subprocess.run([sys.executable, "-c", probe, str(lock)], capture_output=True, text=True).stdout
    free = subprocess.run([sys.executable, "-c", probe, str(lock)], capture_output=True, text=True).stdout
    assert (held.strip(), free.strip()) == ("busy", "got")


def test_write_atomic_replaces_whole_files_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "a.json"
    assert write_atomic(path, '{"x": 1}') == path and path.read_text() == '{"x": 1}'
    write_atomic(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    with pytest.raises(TypeError):
        write_atomic(path, 3)  # type: ignore[arg-type]
    assert path.read_bytes() == b"\x00\x01" and [p.name for p in tmp_path.iterdir()] == ["a.json"]
