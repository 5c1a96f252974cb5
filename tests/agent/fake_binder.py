"""A fake of the binder's internal API for the agent's tests: tokens and approval-bound actions.

It keeps the contract the real binder keeps (services/binder, docs in the agent README):
- `POST /internal/tokens` answers a token, `consent_required` or 503 (by `mode`); the token is
  the provider's own from `provider_tokens` when given (an MCP server's, say), and providers in
  `consent_providers` answer `consent_required` whatever the mode, and providers in
  `failing_providers` the status given there;
- `POST /internal/actions` stores the arguments and the SHA-256 of their RFC 8785 canonical
  JSON, status `pending`; 404 for an unknown provider, 429 past `max_pending`;
- `GET /internal/actions/{id}`: 404 for an unknown action or another user's;
- `POST /internal/actions/{id}/token` `{arguments_sha256}`: the token once, moving `approved`
  to `executing` in the same step; otherwise 409 with `reason` (`not_approved`, `denied`,
  `expired`, `already_executed` with the stored result when done, `arguments_changed`);
- `POST /internal/actions/{id}/result`: once (a second is 409);
- `GET /internal/providers`: `{"providers": [{"name", "kind", "display_name"}]}` for
  `providers` (sorted; kind `mcp` for those in `mcp_providers`, else the name), or
  `providers_status` (e.g. 503) when that is not 200.
Approval and denial happen here through `approve` / `deny` (the browser's part, which the
agent cannot do: the real routes refuse any request with an Authorization header).
The user is the issuer and subject of the bearer token the agent forwards (as the real
binder keys users), so two tokens of one user minted in different seconds are one user.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

import httpx2
import rfc8785
from joserfc import jws
from joserfc.errors import JoseError


def _user_of(token: str) -> str:
    """`iss|sub` of the token (verified by the agent before it forwards it); else the token."""
    try:
        claims = json.loads(jws.extract_compact(token.encode()).payload)
    except (JoseError, ValueError):
        return token
    return f"{claims.get('iss')}|{claims.get('sub')}"


PROVIDER_TOKEN = "gho_secret_access_token_value"  # the provider token the fake hands out
APPROVAL_BASE = "https://agents.example.com/oauth2/actions"
_ACTION_PATH = re.compile(r"/internal/actions/(?P<id>[^/]+)(?P<rest>/token|/result)?")


def sha256_of(arguments: Any) -> str:
    return hashlib.sha256(rfc8785.dumps(arguments)).hexdigest()


@dataclass
class StoredAction:
    action_id: str
    user: str
    provider: str
    tool: str
    arguments: dict[str, Any]
    arguments_sha256: str
    turn_id: str
    expires_at: int
    status: str = "pending"
    result: dict[str, Any] | None = None
    token_grants: int = 0


@dataclass
class FakeBinder:
    providers: frozenset[str] = frozenset({"github", "notes"})
    mode: str = "token"  # token | consent | down
    # MCP servers are providers of kind "mcp" (the binder holds each user's token for them).
    mcp_providers: frozenset[str] = frozenset()
    provider_tokens: dict[str, str] = field(default_factory=dict)
    consent_providers: frozenset[str] = frozenset()
    # provider -> the status /internal/tokens answers for it, and the binder's `code` in the
    # body (None: no JSON body, as from a load balancer). A failed discovery is 502
    # provider_discovery.
    failing_providers: dict[str, tuple[int, str | None]] = field(default_factory=dict)
    providers_status: int = 200
    max_pending: int = 5
    ttl_seconds: int = 600
    actions: dict[str, StoredAction] = field(default_factory=dict)
    requests: list[httpx2.Request] = field(default_factory=list)
    token_requests: list[dict[str, Any]] = field(default_factory=list)
    action_token_bodies: list[dict[str, Any]] = field(default_factory=list)

    # ------------------------------------------------------------------ the browser's part

    def approve(self, action_id: str) -> None:
        action = self.actions[action_id]
        assert action.status == "pending"
        action.status = "approved"

    def deny(self, action_id: str) -> None:
        action = self.actions[action_id]
        assert action.status == "pending"
        action.status = "denied"

    def expire(self, action_id: str) -> None:
        self.actions[action_id].expires_at = int(time.time()) - 1

    def only(self) -> StoredAction:
        (action,) = self.actions.values()
        return action

    # ------------------------------------------------------------------ the internal API

    def transport(self, fallback: Any = None) -> httpx2.MockTransport:
        def handle(request: httpx2.Request) -> httpx2.Response:
            if request.url.path.startswith("/internal/"):
                self.requests.append(request)
                return self.handle(request)
            if fallback is None:
                return httpx2.Response(404)
            response: httpx2.Response = fallback(request)  # or an awaitable of one
            return response

        return httpx2.MockTransport(handle)

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        authorization = request.headers.get("authorization", "")
        assert authorization.startswith("Bearer ")
        user = _user_of(authorization.removeprefix("Bearer "))
        path = request.url.path
        if path == "/internal/providers" and request.method == "GET":
            return self._providers()
        if path == "/internal/tokens":
            body = json.loads(request.content)
            self.token_requests.append(body)
            return self._grant(body.get("provider"))
        if path == "/internal/actions" and request.method == "POST":
            return self._create(user, json.loads(request.content))
        match = _ACTION_PATH.fullmatch(path)
        if match is None:
            return httpx2.Response(404, json={"error": "not_found"})
        action = self.actions.get(match["id"])
        if action is None or action.user != user:
            return httpx2.Response(404, json={"error": "unknown_action"})
        self._expire_if_due(action)
        if match["rest"] is None and request.method == "GET":
            return httpx2.Response(200, json=self._view(action))
        if match["rest"] == "/token" and request.method == "POST":
            return self._token(action, json.loads(request.content))
        if match["rest"] == "/result" and request.method == "POST":
            return self._result(action, json.loads(request.content))
        return httpx2.Response(405, json={"error": "method_not_allowed"})

    def _providers(self) -> httpx2.Response:
        if self.providers_status != 200:
            return httpx2.Response(self.providers_status, json={"error": "unavailable"})
        display = {"github": "GitHub", "notes": "Notes"}
        return httpx2.Response(
            200,
            json={
                "providers": [
                    {
                        "name": name,
                        "kind": "mcp" if name in self.mcp_providers else name,
                        "display_name": display.get(name, name),
                    }
                    for name in sorted(self.providers)
                ]
            },
        )

    def _grant(self, provider: str | None = None) -> httpx2.Response:
        if self.mode == "consent" or provider in self.consent_providers:
            return httpx2.Response(
                403,
                json={
                    "error": "consent_required",
                    "reason": "no_connection",
                    "authorization_url": "https://agents.example.com/oauth2/authorize/s1",
                    "session_id": f"s-{provider}" if provider in self.consent_providers else "s1",
                    "expires_at": 1900000000,
                },
            )
        if self.mode == "down":
            return httpx2.Response(503, headers={"retry-after": "7"}, json={"error": "x"})
        if provider in self.failing_providers:
            status, code = self.failing_providers[provider]
            if code is None:
                return httpx2.Response(status, text="Bad Gateway")
            body = {"error": "temporarily_unavailable", "code": code, "retry_after": 7}
            return httpx2.Response(status, headers={"retry-after": "7"}, json=body)
        return httpx2.Response(
            200,
            json={
                "access_token": self.provider_tokens.get(provider or "", PROVIDER_TOKEN),
                "token_type": "Bearer",
                "expires_at": None,
                "scopes": ["repo"],
            },
        )

    def _create(self, user: str, body: dict[str, Any]) -> httpx2.Response:
        if set(body) != {"provider", "tool", "arguments", "turn_id"} or not isinstance(
            body["arguments"], dict
        ):
            return httpx2.Response(400, json={"error": "invalid_request", "field": "body"})
        if body["provider"] not in self.providers:
            return httpx2.Response(404, json={"error": "unknown_provider"})
        pending = [a for a in self.actions.values() if a.user == user and a.status == "pending"]
        if len(pending) >= self.max_pending:
            return httpx2.Response(429, headers={"retry-after": "60"}, json={"error": "x"})
        action_id = f"act{len(self.actions) + 1}"
        action = StoredAction(
            action_id=action_id,
            user=user,
            provider=body["provider"],
            tool=body["tool"],
            arguments=copy.deepcopy(body["arguments"]),
            arguments_sha256=sha256_of(body["arguments"]),
            turn_id=body["turn_id"],
            expires_at=int(time.time()) + self.ttl_seconds,
        )
        self.actions[action_id] = action
        return httpx2.Response(
            201,
            json={
                "action_id": action_id,
                "approval_url": f"{APPROVAL_BASE}/{action_id}",
                "arguments_sha256": action.arguments_sha256,
                "expires_at": action.expires_at,
            },
        )

    def _expire_if_due(self, action: StoredAction) -> None:
        if action.status in ("pending", "approved") and action.expires_at < time.time():
            action.status = "expired"

    def _view(self, action: StoredAction) -> dict[str, Any]:
        view = {
            "action_id": action.action_id,
            "status": action.status,
            "provider": action.provider,
            "tool": action.tool,
            "arguments": action.arguments,
            "arguments_sha256": action.arguments_sha256,
            "turn_id": action.turn_id,
            "expires_at": action.expires_at,
        }
        if action.result is not None:
            view["result"] = action.result
        return view

    def _token(self, action: StoredAction, body: dict[str, Any]) -> httpx2.Response:
        self.action_token_bodies.append(body)

        def refused(reason: str, **extra: Any) -> httpx2.Response:
            return httpx2.Response(409, json={"error": "action_refused", "reason": reason, **extra})

        if action.status == "pending":
            return refused("not_approved")
        if action.status in ("denied", "expired"):
            return refused(action.status)
        if action.status in ("executing", "done"):
            extra: dict[str, Any] = {"status": action.status}
            if action.result is not None:
                extra["result"] = action.result
            return refused("already_executed", **extra)
        if body.get("arguments_sha256") != action.arguments_sha256:
            return refused("arguments_changed")
        answer = self._grant(action.provider)
        if answer.status_code == 200:
            action.status = "executing"  # the same step that hands out the token: once
            action.token_grants += 1
        return answer

    def _result(self, action: StoredAction, body: dict[str, Any]) -> httpx2.Response:
        if action.status != "executing" or action.result is not None:
            return httpx2.Response(409, json={"error": "action_refused", "reason": "recorded"})
        assert body["status"] in ("succeeded", "failed")
        assert len(body["summary"]) <= 2000
        action.result = {
            "status": body["status"],
            "upstream_status": body["upstream_status"],
            "summary": body["summary"],
        }
        action.status = "done"
        return httpx2.Response(200, json={"action_id": action.action_id, **action.result})
