"""The environment of a binder or agent process on loopback: one definition for the local
stack, the integration tests and the benchmarks (services/*/README.md list the variables)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from devstack import aws, procs

ROOT = Path(__file__).resolve().parent.parent
VAULT_PREFIX = "agent-token-vault"


def pythonpath(service: str) -> str:
    return os.pathsep.join(str(ROOT / "services" / d) for d in ("common", service))


def binder_env(
    local: aws.LocalAws,
    providers: Sequence[Mapping[str, object]],
    *,
    public_port: int,
    internal_port: int,
    base_url: str | None = None,
    aws_endpoint: str | None = None,
    **overrides: str,
) -> dict[str, str]:
    """A binder against moto: `base_url` is where browsers reach /oauth2/* (the binder's own
    public port unless an edge stands in front); `aws_endpoint` defaults to moto itself."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": pythonpath("binder"),
        "BIND_HOST": procs.LOOPBACK,
        "PUBLIC_PORT": str(public_port),
        "INTERNAL_PORT": str(internal_port),
        "PUBLIC_BASE_URL": base_url or f"http://{procs.LOOPBACK}:{public_port}",
        "ALLOW_INSECURE_LOOPBACK": "true",
        "COGNITO_ISSUER": local.issuer,
        "COGNITO_CLIENT_IDS": local.client_id,
        "COGNITO_JWKS_URL": local.jwks_url,
        "VAULT_PREFIX": VAULT_PREFIX,
        "VAULT_KMS_KEY_ARN": local.key_arn,
        "SESSION_TABLE_NAME": local.table,
        "PROVIDERS": json.dumps(list(providers)),
        "AWS_REGION": aws.REGION,
        "AWS_ENDPOINT_URL": aws_endpoint or local.endpoint,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "LOG_LEVEL": "INFO",
        **overrides,
    }


def agent_env(
    *,
    issuer: str,
    client_id: str,
    jwks_url: str,
    port: int,
    binder_url: str,
    userinfo: Mapping[str, str],
    providers: Sequence[str] = (),
    **overrides: str,
) -> dict[str, str]:
    """An agent with the offline planner, offering the whoami tool of each `userinfo` provider
    and the tools of each of `providers` (AGENT_PROVIDERS lists both)."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": pythonpath("agent"),
        "BIND_HOST": procs.LOOPBACK,
        "PORT": str(port),
        "ALLOW_INSECURE_LOOPBACK": "true",
        "COGNITO_ISSUER": issuer,
        "COGNITO_CLIENT_IDS": client_id,
        "COGNITO_JWKS_URL": jwks_url,
        "BINDER_INTERNAL_URL": binder_url,
        "AGENT_MODEL": "offline",
        "AGENT_PROVIDERS": ",".join(dict.fromkeys([*userinfo, *providers])),
        "OIDC_USERINFO": json.dumps(dict(userinfo)),
        "LOG_LEVEL": "INFO",
        **overrides,
    }
