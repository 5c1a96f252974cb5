"""The agent's HTTP surface: authentication, input validation, the page and its headers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.testclient import TestClient

from agent.app import build_services, create_app
from agent.settings import Settings

ISSUER = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_TEST"
KEY = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig"})


def _token(sub: str = "alice", **claims: Any) -> str:
    now = int(time.time())
    payload = {
        "iss": ISSUER,
        "sub": sub,
        "client_id": "c1",
        "token_use": "access",
        "exp": now + 3600,
        "iat": now,
        **claims,
    }
    return jwt.encode({"alg": "RS256", "kid": "k1"}, payload, KEY)


def _routes(request: httpx2.Request) -> httpx2.Response:
    if request.url.path.endswith("/jwks.json"):
        return httpx2.Response(200, json={"keys": [KEY.as_dict(private=False)]})
    if request.url.path == "/internal/tokens":
        return httpx2.Response(
            403,
            json={
                "error": "consent_required",
                "reason": "no_connection",
                "authorization_url": "https://agents.example.com/oauth2/authorize/s1",
                "session_id": "s1",
                "expires_at": 1900000000,
            },
        )
    return httpx2.Response(404)


@pytest.fixture
def client() -> Iterator[TestClient]:
    settings = Settings.from_env(
        {
            "COGNITO_ISSUER": ISSUER,
            "COGNITO_CLIENT_IDS": "c1",
            "BINDER_INTERNAL_URL": "http://binder:8081",
            "AGENT_MODEL": "offline",
            "AGENT_PROVIDERS": "github",
        }
    )
    services = build_services(settings, transport=httpx2.MockTransport(_routes))
    with TestClient(create_app(settings, services=services)) as test_client:
        yield test_client


def _chat(client: TestClient, body: Any, path: str = "/api/chat", **headers: str) -> Any:
    return client.post(path, json=body, headers={"authorization": f"Bearer {_token()}", **headers})


def test_missing_or_invalid_token_is_401(client: TestClient) -> None:
    assert client.post("/api/chat", json={"message": "hi"}).status_code == 401
    forged = client.post(
        "/api/chat",
        json={"message": "hi"},
        headers={"authorization": f"Bearer {_token(token_use='id')}"},
    )
    assert forged.status_code == 401
    assert forged.json()["error"] == "invalid_token"


def test_browser_route_takes_the_alb_header(client: TestClient) -> None:
    response = client.post(
        "/app/chat",
        json={"message": "list my repositories"},
        headers={"x-amzn-oidc-accesstoken": _token()},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["authorization_required"][0]["provider"] == "github"
    assert body["model"] == "offline planner (not a language model)"
    assert set(body) == {
        "reply",
        "model",
        "tool_calls",
        "authorization_required",
        "pending_confirmation",
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"message": ""}, "message"),
        ({"message": "x" * 4001}, "message"),
        ({"message": "hi", "history": "no"}, "history"),
        ({"message": "hi", "history": [{"role": "tool", "text": "x"}]}, "history[0].role"),
        (
            {"message": "hi", "history": [{"role": "user", "text": "x", "toolResult": {}}]},
            "history[0]",
        ),
        ({"message": "hi", "history": [{"role": "user", "text": 1}]}, "history[0].text"),
        ({"message": "hi", "history": [{"role": "user", "text": "x"}] * 41}, "history"),
        ({"message": "hi", "extra": True}, "extra"),
        (["not", "an", "object"], "body"),
    ],
)
def test_bad_input_is_400_with_the_field_named(client: TestClient, body: Any, field: str) -> None:
    response = _chat(client, body)
    assert response.status_code == 400
    assert response.json()["field"] == field


def test_malformed_json_and_wrong_type_and_oversized(client: TestClient) -> None:
    auth = {"authorization": f"Bearer {_token()}"}
    bad = client.post(
        "/api/chat", content=b"{", headers={**auth, "content-type": "application/json"}
    )
    assert bad.status_code == 400
    assert (
        client.post(
            "/api/chat",
            content=b"message=hi",
            headers={**auth, "content-type": "application/x-www-form-urlencoded"},
        ).status_code
        == 415
    )
    big = client.post(
        "/api/chat",
        content=b"{" + b" " * 70000 + b"}",
        headers={**auth, "content-type": "application/json"},
    )
    assert big.status_code == 413


def test_chat_page_is_served_with_a_strict_policy(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert "/app/static/chat.js" in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert client.get("/app/static/chat.js").status_code == 200
    assert client.get("/app/static/../app.py").status_code == 404
