"""A small keep-alive HTTP/1.1 load generator for loopback benchmarks.

Raw asyncio streams, requests prepared once, responses parsed just enough (status line,
Content-Length, body): the client costs far less CPU than the server it measures, and it costs
the same for every server measured in one run, which is what a ratio needs. Bounded in count
and in time (a response outstanding at the deadline gets RESPONSE_TIMEOUT_S more, then counts as
an error); it only connects to 127.0.0.1. A 503 with Retry-After is counted as degradation
(`degraded`), apart from errors, which are counted by exception type (`error_kinds`).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

# A response still outstanding at the run's deadline gets this long; past it the request
# counts as an error ("TimeoutError"), so a server that stops answering cannot hold a run open.
RESPONSE_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class LoadResult:
    requests: int
    errors: int
    statuses: dict[int, int]
    seconds: float
    latencies_ms: list[float]
    # 503 answers that carried Retry-After (load shed as documented), apart from errors
    degraded: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)

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
            "degraded_503": self.degraded,
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


@dataclass
class _Shared:
    deadline: float
    budget: int
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    degraded: int = 0


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bool, bool]:
    """One request and its response: (status, Retry-After present, server closes)."""
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    retry_after = closes = False
    for line in head.split(b"\r\n"):
        name = line.partition(b":")[0].strip().lower()
        if name == b"content-length":
            length = int(line.partition(b":")[2].strip())
        elif name == b"retry-after":
            retry_after = True
        elif name == b"connection" and b"close" in line.lower():
            closes = True
    if length:
        await reader.readexactly(length)
    return status, retry_after, closes


async def _worker(port: int, request: bytes, shared: _Shared) -> None:
    """Requests on one keep-alive connection; after an error or a closing answer the worker
    opens a new connection (one failed request must not quietly lower the concurrency)."""
    while shared.budget > 0 and time.perf_counter() < shared.deadline:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port), RESPONSE_TIMEOUT_S
            )
        except (OSError, TimeoutError) as exc:
            shared.budget -= 1
            shared.errors[type(exc).__name__] += 1
            await asyncio.sleep(0.05)
            continue
        try:
            while shared.budget > 0 and time.perf_counter() < shared.deadline:
                shared.budget -= 1
                start = time.perf_counter()
                status, retry_after, closes = await asyncio.wait_for(
                    _exchange(reader, writer, request),
                    max(0.0, shared.deadline - start) + RESPONSE_TIMEOUT_S,
                )
                shared.latencies.append((time.perf_counter() - start) * 1000)
                shared.statuses[status] = shared.statuses.get(status, 0) + 1
                if status == 503 and retry_after:
                    shared.degraded += 1
                if closes:
                    break
        except (OSError, asyncio.IncompleteReadError, ValueError, TimeoutError) as exc:
            shared.errors[type(exc).__name__] += 1
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
    start = time.perf_counter()
    shared = _Shared(deadline=start + seconds, budget=max_requests)
    await asyncio.gather(*(_worker(port, request, shared) for _ in range(connections)))
    elapsed = time.perf_counter() - start
    return LoadResult(
        requests=len(shared.latencies),
        errors=sum(shared.errors.values()),
        statuses=shared.statuses,
        seconds=elapsed,
        latencies_ms=shared.latencies,
        degraded=shared.degraded,
        error_kinds=dict(shared.errors),
    )
