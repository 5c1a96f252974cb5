"""A small keep-alive HTTP/1.1 load generator for loopback benchmarks.

Raw asyncio streams, requests prepared once, responses parsed just enough (status line,
Content-Length, body): the client costs far less CPU than the server it measures, and it costs
the same for every server measured in one run, which is what a ratio needs. Bounded in count
and in time; it only connects to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class LoadResult:
    requests: int
    errors: int
    statuses: dict[int, int]
    seconds: float
    latencies_ms: list[float]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        index = min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))
        return ordered[index]

    def summary(self) -> dict[str, float | int]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "rps": round(self.rps, 1),
            "p50_ms": round(self.percentile(50), 2),
            "p99_ms": round(self.percentile(99), 2),
            "mean_ms": round(statistics.fmean(self.latencies_ms), 2) if self.latencies_ms else 0,
        }


def build_request(
    method: str, port: int, path: str, body: bytes = b"", headers: Mapping[str, str] | None = None
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: keep-alive"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _worker(
    port: int,
    request: bytes,
    deadline: float,
    budget: list[int],
    latencies: list[float],
    statuses: dict[int, int],
    errors: list[int],
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while budget[0] > 0 and time.perf_counter() < deadline:
            budget[0] -= 1
            start = time.perf_counter()
            writer.write(request)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:].strip())
            if length:
                await reader.readexactly(length)
            latencies.append((time.perf_counter() - start) * 1000)
            statuses[status] = statuses.get(status, 0) + 1
    except (OSError, asyncio.IncompleteReadError, ValueError):
        errors[0] += 1
    finally:
        writer.close()


async def run_load(
    port: int,
    request: bytes,
    *,
    connections: int = 32,
    seconds: float = 5.0,
    max_requests: int = 200_000,
) -> LoadResult:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = [0]
    budget = [max_requests]
    start = time.perf_counter()
    deadline = start + seconds
    await asyncio.gather(
        *(
            _worker(port, request, deadline, budget, latencies, statuses, errors)
            for _ in range(connections)
        )
    )
    elapsed = time.perf_counter() - start
    return LoadResult(
        requests=len(latencies),
        errors=errors[0],
        statuses=statuses,
        seconds=elapsed,
        latencies_ms=latencies,
    )
