"""Binder benchmarks (issue 3), all in one run on loopback:

- hot path: POST /internal/tokens with a cached token, under uvicorn, against a bare Starlette
  JSON route served the same way; the figure is the ratio of requests per second (target at
  least 0.6), with p50/p99 latencies; AWS calls during the hot run are counted by a proxy in
  front of moto server (target: zero);
- cold path: the AWS calls of one cache miss (target: exactly one GetSecretValue);
- resident memory of the binder process afterwards (target: under 150 MB).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil
from loadgen import build_request, run_load

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devstack import aws, procs, services  # noqa: E402

PASSWORDS = {"alice": "Alice-bench-Passw0rd!", "bob": "Bob-bench-Passw0rd!"}
MIN_RATIO = 0.6
MAX_RSS_MB = 150


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def _store_token(local: aws.LocalAws, token: str) -> None:
    claims = _claims(token)
    user_hash = hashlib.sha256(f"{claims['iss']}|{claims['sub']}".encode()).hexdigest()
    record = {
        "provider": "github",
        "access_token": "gho_bench_" + user_hash[:16],
        "token_type": "bearer",
        "refresh_token": None,
        "expires_at": None,
        "scopes": ["repo"],
        "obtained_at": int(time.time()),
        "status": "active",
    }
    aws.client("secretsmanager", local.endpoint).create_secret(
        Name=f"agent-token-vault/github/{user_hash}",
        KmsKeyId=local.key_arn,
        SecretString=json.dumps(record),
    )


def _counts(proxy: str, reset: bool = False) -> dict[str, int]:
    url = f"{proxy}/_proxy/{'reset' if reset else 'counts'}"
    request = urllib.request.Request(url, method="POST" if reset else "GET")  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
        return dict(json.loads(response.read()))


def run(seconds: float = 4.0, connections: int = 32, rounds: int = 3) -> dict[str, Any]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(ROOT / "services" / "common"), str(ROOT / "services" / "binder"), str(ROOT)]
        ),
    }
    children: list[procs.Child] = []
    with tempfile.TemporaryDirectory(prefix="bench-binder-") as tmp:
        logs = Path(tmp)
        try:
            moto_port, proxy_port = procs.free_port(), procs.free_port()
            moto = procs.start(
                "moto",
                [
                    sys.executable,
                    "-m",
                    "devstack.moto_server",
                    "-H",
                    "127.0.0.1",
                    "-p",
                    str(moto_port),
                ],
                env=env,
                log_dir=logs,
            )
            children.append(moto)
            moto_url = f"http://127.0.0.1:{moto_port}"
            procs.wait_http(moto, f"{moto_url}/moto-api/")
            proxy = procs.start(
                "proxy",
                [
                    sys.executable,
                    "-m",
                    "devstack.aws_proxy",
                    "--port",
                    str(proxy_port),
                    "--upstream",
                    moto_url,
                ],
                env=env,
                log_dir=logs,
                cwd=ROOT,
            )
            children.append(proxy)
            proxy_url = f"http://127.0.0.1:{proxy_port}"
            procs.wait_http(proxy, f"{proxy_url}/_proxy/counts")

            local = aws.bootstrap(
                moto_url, users=PASSWORDS, providers={"github": ("Iv1.bench", "bench-secret")}
            )
            alice = aws.sign_in(local, "alice", PASSWORDS["alice"])
            bob = aws.sign_in(local, "bob", PASSWORDS["bob"])
            _store_token(local, alice)
            _store_token(local, bob)

            public, internal, bare_port = procs.free_port(), procs.free_port(), procs.free_port()
            binder_env = services.binder_env(
                local,
                [
                    {
                        "name": "github",
                        "kind": "github",
                        "client_id": "Iv1.bench",
                        "secret_arn": local.provider_secrets["github"],
                    }
                ],
                public_port=public,
                internal_port=internal,
                aws_endpoint=proxy_url,  # AWS calls counted by the proxy
            )
            binder = procs.start(
                "binder", [sys.executable, "-m", "binder"], env=binder_env, log_dir=logs, cwd=ROOT
            )
            children.append(binder)
            bare = procs.start(
                "bare",
                [sys.executable, str(ROOT / "bench" / "bare_app.py"), str(bare_port)],
                env=env,
                log_dir=logs,
            )
            children.append(bare)
            procs.wait_http(binder, f"http://127.0.0.1:{internal}/healthz")
            procs.wait_http(bare, f"http://127.0.0.1:{bare_port}/bench")

            body = json.dumps({"provider": "github", "scopes": ["repo"]}).encode()
            json_headers = {"Content-Type": "application/json"}
            binder_request = build_request(
                "POST",
                internal,
                "/internal/tokens",
                body,
                {**json_headers, "Authorization": f"Bearer {alice}"},
            )
            # The same request bytes (Authorization header included) for the baseline, so the
            # ratio measures the binder's work, not the parsing of a longer request.
            bare_request = build_request(
                "POST",
                bare_port,
                "/bench",
                body,
                {**json_headers, "Authorization": f"Bearer {alice}"},
            )

            async def measure() -> tuple[list[Any], list[Any]]:
                await run_load(internal, binder_request, connections=4, seconds=1.0)  # warm
                await run_load(bare_port, bare_request, connections=4, seconds=1.0)
                _counts(proxy_url, reset=True)
                bares, binders = [], []
                for _ in range(rounds):
                    bares.append(
                        await run_load(
                            bare_port, bare_request, connections=connections, seconds=seconds
                        )
                    )
                    binders.append(
                        await run_load(
                            internal, binder_request, connections=connections, seconds=seconds
                        )
                    )
                return bares, binders

            bares, binders = asyncio.run(measure())
            hot_calls = sum(_counts(proxy_url).values())
            _counts(proxy_url, reset=True)
            cold = asyncio.run(
                run_load(
                    internal,
                    build_request(
                        "POST",
                        internal,
                        "/internal/tokens",
                        body,
                        {**json_headers, "Authorization": f"Bearer {bob}"},
                    ),
                    connections=1,
                    seconds=5,
                    max_requests=1,
                )
            )
            cold_calls = _counts(proxy_url)
            rss_mb = psutil.Process(binder.process.pid).memory_info().rss / 1024**2
        finally:
            for child in reversed(children):
                child.stop()

    # Rounds alternate bare/binder; the median round of each side is compared.
    best_bare = sorted(bares, key=lambda r: r.rps)[len(bares) // 2]
    best_binder = sorted(binders, key=lambda r: r.rps)[len(binders) // 2]
    statuses = {s for r in binders for s in r.statuses}
    ratio = best_binder.rps / best_bare.rps
    result = {
        "name": "binder",
        "description": "binder hot path vs. bare Starlette JSON route; cold path; memory",
        "connections": connections,
        "seconds_per_run": seconds,
        "rounds": rounds,
        "bare": best_bare.summary(),
        "hot_path": best_binder.summary(),
        "hot_path_statuses": sorted(statuses),
        "ratio": round(ratio, 3),
        "ratio_target": MIN_RATIO,
        "aws_calls_during_hot_path": hot_calls,
        "cold_path_status": sorted(cold.statuses),
        "cold_path_aws_calls": cold_calls,
        "rss_mb": round(rss_mb, 1),
        "rss_target_mb": MAX_RSS_MB,
    }
    result["pass"] = (
        ratio >= MIN_RATIO
        and statuses == {200}
        and hot_calls == 0
        and cold_calls == {"secretsmanager.GetSecretValue": 1}
        and rss_mb < MAX_RSS_MB
    )
    return result


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
