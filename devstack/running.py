"""The local stack started exactly as `make dev` starts it (`python -m devstack`), on loopback
ports chosen by the caller, for the tests and benchmarks that drive it over HTTP."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import httpx2

from devstack import procs

ROOT = Path(__file__).resolve().parent.parent


class StackDidNotStart(RuntimeError):
    """`python -m devstack` exited early or did not answer in time; the message says which."""


@dataclass
class RunningStack:
    process: subprocess.Popen[str]
    # Base URL per port flag of `python -m devstack` ("port" is the edge's).
    urls: dict[str, str]
    logs: Path

    @property
    def edge(self) -> str:
        return self.urls["port"]

    def stop(self, timeout: float = 60) -> int | None:
        """Stop as Ctrl-C does (every child flushes its log); kill if it does not stop."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode


def start(
    port_flags: Iterable[str], logs: Path, *, timeout: float = 90, mcp: bool = True
) -> RunningStack:
    """Start the stack with a free loopback port for each flag (`port`, `moto-port`, ...);
    `mcp=False` leaves out the local MCP server and its authorization server (`mcp-port`,
    `mcp-auth-port`), as `make dev --no-mcp` does."""
    ports = {name: procs.free_port() for name in ("port", *port_flags)}
    process = subprocess.Popen(  # noqa: S603 - the project's own module, no shell
        [
            sys.executable,
            "-m",
            "devstack",
            *[arg for name, port in ports.items() for arg in (f"--{name}", str(port))],
            "--logs",
            str(logs),
            "--mcp" if mcp else "--no-mcp",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    running = RunningStack(
        process=process,
        urls={name: f"http://{procs.LOOPBACK}:{port}" for name, port in ports.items()},
        logs=logs,
    )
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            raise StackDidNotStart(f"make dev exited early: {output}")
        try:
            httpx2.get(f"{running.edge}/_edge/healthz", timeout=2, trust_env=False)
            return running
        except httpx2.HTTPError:
            if time.monotonic() > deadline:
                running.stop()
                raise StackDidNotStart(f"the local stack did not come up in {timeout} s") from None
            time.sleep(0.1)
