"""`make dev`'s supervisor: loopback only, clean stop on Ctrl-C, restart without clean-up,
a dying child named and the rest stopped, a busy port named."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from devstack import procs

ROOT = Path(__file__).resolve().parents[2]


def _start(port: int, logs: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "devstack", "--port", str(port), "--logs", str(logs)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ},
    )


class Output:
    """Reads a child's stdout in the background (the banner comes after the edge is up)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self.thread.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.lines.append(line)

    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, needle: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text():
            if time.monotonic() > deadline:
                pytest.fail(f"never printed {needle!r}:\n{self.text()}")
            time.sleep(0.1)


def _up(port: int, process: subprocess.Popen[str], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"exited early: {process.stdout.read() if process.stdout else ''}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_edge/healthz", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    pytest.fail("did not come up")


def _listening(pids: list[int]) -> list[tuple[str, int]]:
    addresses = []
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.pid in pids and conn.laddr:
            ip, port = conn.laddr[0], conn.laddr[1]
            addresses.append((str(ip), int(port)))
    return addresses


def test_ctrl_c_stops_everything_and_a_second_start_works(tmp_path: Path) -> None:
    port = procs.free_port()
    first = _start(port, tmp_path)
    first_output = Output(first)
    first_output.wait_for("Stop: Ctrl-C")
    _up(port, first)
    children = psutil.Process(first.pid).children(recursive=True)
    names = {c.pid for c in children}
    listening = _listening([c.pid for c in children])
    assert listening, "the stack listens somewhere"
    assert all(ip == "127.0.0.1" for ip, _ in listening), listening
    first.send_signal(signal.SIGINT)
    first.wait(timeout=60)
    first_output.thread.join(10)
    output = first_output.text()
    assert first.returncode == 0
    assert "open http://127.0.0.1:" in output
    assert "alice" in output
    time.sleep(0.5)
    assert [
        p
        for p in names
        if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
    ] == []

    second = _start(port, tmp_path)
    second_output = Output(second)
    try:
        second_output.wait_for("Stop: Ctrl-C")
        agent = next(
            c
            for c in psutil.Process(second.pid).children(recursive=True)
            if c.cmdline()[1:] == ["-m", "agent"]  # not devstack.notes_server's client id
        )
        others = [
            c for c in psutil.Process(second.pid).children(recursive=True) if c.pid != agent.pid
        ]
        agent.kill()
        second.wait(timeout=60)
        second_output.thread.join(10)
        output = second_output.text()
    finally:
        if second.poll() is None:
            second.kill()
    assert second.returncode == 1
    assert "agent exited" in output
    time.sleep(0.5)
    assert [c.pid for c in others if c.is_running() and c.status() != psutil.STATUS_ZOMBIE] == []


def test_a_busy_port_is_named(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        process = _start(port, tmp_path)
        output, _ = process.communicate(timeout=60)
    assert process.returncode != 0
    assert f"port {port} (edge) is already in use" in output
    assert "Traceback" not in output
