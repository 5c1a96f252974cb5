"""Helpers the provider tests share: constants, the hosts of a spec, a discovery document and
a fake issuer to serve it."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import urlsplit

import httpx2

from binder.providers.discovery import discover_oidc
from binder.providers.spec import ProviderSpec

ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:binder/providers/github-AbCdEf"
ISSUER = "https://sso.example.com/realms/corp"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OTHER_TENANT = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"


def hosts(spec: ProviderSpec) -> set[str]:
    """The hosts of every endpoint of `spec`, each checked to be https."""
    urls = [
        spec.authorization_endpoint,
        spec.token_endpoint,
        spec.revocation_endpoint,
        spec.userinfo_endpoint,
        spec.jwks_uri,
    ]
    found = set()
    for url in urls:
        if url is None:
            continue
        parts = urlsplit(url)
        assert parts.scheme == "https", url
        found.add(parts.hostname or "")
    return found


def providers_json(*entries: dict[str, Any]) -> str:
    return json.dumps(list(entries))


def discovery_doc(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "issuer": ISSUER,
        "authorization_endpoint": f"{ISSUER}/protocol/openid-connect/auth",
        "token_endpoint": f"{ISSUER}/protocol/openid-connect/token",
        "jwks_uri": f"{ISSUER}/protocol/openid-connect/certs",
        "userinfo_endpoint": f"{ISSUER}/protocol/openid-connect/userinfo",
        "revocation_endpoint": f"{ISSUER}/protocol/openid-connect/revoke",
        "scopes_supported": ["openid", "profile", "offline_access"],
        "code_challenge_methods_supported": ["plain", "S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        "authorization_response_iss_parameter_supported": True,
    }
    doc.update(overrides)
    return {k: v for k, v in doc.items() if v is not None}


Handler = (
    Callable[[httpx2.Request], httpx2.Response]
    | Callable[[httpx2.Request], Coroutine[None, None, httpx2.Response]]
)


def client(handler: Handler) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=httpx2.MockTransport(handler))


def serve(doc: Any, status: int = 200) -> tuple[Handler, list[str]]:
    """A handler answering every request with `doc`, and the URLs it was asked for."""
    seen: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(str(request.url))
        return httpx2.Response(status, json=doc)

    return handler, seen


async def discover(handler: Handler, **kwargs: Any) -> ProviderSpec:
    """An oidc provider "corp-sso" of ISSUER, discovered through `handler`."""
    async with client(handler) as http:
        args: dict[str, Any] = {
            "name": "corp-sso",
            "issuer": ISSUER,
            "client_id": "corp",
            "secret_arn": None,
        }
        args.update(kwargs)
        return await discover_oidc(http=http, **args)
