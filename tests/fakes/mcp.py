"""A fake MCP resource server and its authorization server, for the binder's mcp kind tests.

`FakeMcpServer` answers its MCP endpoint with 401 and a `WWW-Authenticate` challenge naming its
Protected Resource Metadata (RFC 9728) unless the bearer token was issued for it, and serves
that metadata at the well-known URL. `FakeAuthServer` is strict where the binder could get it
wrong: RFC 8414 metadata, RFC 7591 registration, Client ID Metadata Documents (fetched through
`cimd_transport`, e.g. an ASGI transport to the binder itself), PKCE S256 only, the RFC 8707
`resource` on the authorization and every token request, RFC 9207 `iss` on the callback, and
rotating refresh tokens. Both run in-process through `httpx2.ASGITransport(app=...)`.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    challenge: str
    resource: str
    scope: str


@dataclass
class FakeAuthServer:
    """An OAuth 2.1 authorization server for MCP servers. Switches are plain attributes."""

    issuer: str
    # Client ids registered out of band: id -> secret (None: public client).
    preregistered: dict[str, str | None] = field(default_factory=dict)
    cimd: bool = False
    dcr: bool = True
    s256: bool = True
    iss_parameter: bool = True
    # What the metadata says its issuer is (None: the truth) and what `iss` the callback gets.
    metadata_issuer: str | None = None
    callback_iss: str | None = None
    auth_methods: tuple[str, ...] = ("none", "client_secret_basic")
    cimd_transport: httpx2.AsyncBaseTransport | None = None
    # Metadata fields replaced as they are (a hostile server's endpoints).
    overrides: dict[str, Any] = field(default_factory=dict)
    # What happened: registration bodies, /authorize and /token parameters, issued tokens.
    registrations: list[dict[str, Any]] = field(default_factory=list)
    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    cimd_fetches: int = 0
    revocations: int = 0
    # access token -> resource it was issued for
    access_tokens: dict[str, str] = field(default_factory=dict)
    _clients: dict[str, dict[str, Any]] = field(default_factory=dict)
    _codes: dict[str, Grant] = field(default_factory=dict)
    _refresh: dict[str, Grant] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "issuer": self.metadata_issuer or self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "revocation_endpoint": f"{self.issuer}/revoke",
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"] if self.s256 else ["plain"],
            "token_endpoint_auth_methods_supported": list(self.auth_methods),
            "authorization_response_iss_parameter_supported": self.iss_parameter,
            "client_id_metadata_document_supported": self.cimd,
        }
        if self.dcr:
            doc["registration_endpoint"] = f"{self.issuer}/register"
        return doc | self.overrides

    def app(self) -> Starlette:
        async def metadata(request: Request) -> Response:
            return JSONResponse(self.metadata())

        async def register(request: Request) -> Response:
            body = await request.json()
            self.registrations.append(body)
            client_id = f"dcr-{secrets.token_hex(6)}"
            method = body.get("token_endpoint_auth_method", "client_secret_basic")
            client: dict[str, Any] = {
                "client_id": client_id,
                "redirect_uris": body.get("redirect_uris", []),
                "token_endpoint_auth_method": method,
            }
            if method != "none":
                client["client_secret"] = secrets.token_urlsafe(24)
            self._clients[client_id] = client
            return JSONResponse(client, status_code=201)

        async def client_for(client_id: str) -> dict[str, Any] | None:
            if client_id in self.preregistered:
                secret = self.preregistered[client_id]
                return {"client_id": client_id, "client_secret": secret, "redirect_uris": None}
            if client_id in self._clients:
                return self._clients[client_id]
            if self.cimd and client_id.startswith("https://"):
                self.cimd_fetches += 1
                async with httpx2.AsyncClient(transport=self.cimd_transport) as http:
                    response = await http.get(client_id)
                if response.status_code != 200:
                    return None
                doc = response.json()
                if doc.get("client_id") != client_id:
                    return None
                return {**doc, "client_secret": None}
            return None

        async def authorize(request: Request) -> Response:
            params = dict(request.query_params)
            self.authorize_requests.append(params)
            client = await client_for(params.get("client_id", ""))
            redirect_uri = params.get("redirect_uri", "")
            if client is None or (
                client["redirect_uris"] is not None and redirect_uri not in client["redirect_uris"]
            ):
                return JSONResponse({"error": "invalid_client"}, status_code=400)
            if params.get("code_challenge_method") != "S256" or not params.get("code_challenge"):
                return JSONResponse({"error": "invalid_request"}, status_code=400)
            if not params.get("resource"):
                return JSONResponse({"error": "invalid_target"}, status_code=400)
            code = secrets.token_urlsafe(16)
            self._codes[code] = Grant(
                client_id=params["client_id"],
                redirect_uri=redirect_uri,
                challenge=params["code_challenge"],
                resource=params["resource"],
                scope=params.get("scope", ""),
            )
            answer = {"code": code, "state": params.get("state", "")}
            if self.iss_parameter:
                answer["iss"] = self.callback_iss or self.issuer
            return RedirectResponse(f"{redirect_uri}?{urlencode(answer)}", status_code=302)

        def authenticated(form: dict[str, str], request: Request, grant: Grant) -> bool:
            client_id, secret = form.get("client_id"), form.get("client_secret")
            header = request.headers.get("authorization", "")
            if header.startswith("Basic "):
                client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
            if client_id != grant.client_id:
                return False
            expected = self.preregistered.get(client_id)
            if client_id in self._clients:
                expected = self._clients[client_id].get("client_secret")
            return expected is None or secret == expected

        def issue(grant: Grant) -> dict[str, Any]:
            access = f"at-{secrets.token_hex(8)}"
            refresh = f"rt-{secrets.token_hex(8)}"
            self.access_tokens[access] = grant.resource
            self._refresh[refresh] = grant
            return {
                "access_token": access,
                "token_type": "Bearer",
                "expires_in": 3600,
                "refresh_token": refresh,
                "scope": grant.scope,
            }

        async def token(request: Request) -> Response:
            form = {k: str(v) for k, v in (await request.form()).items()}
            self.token_requests.append(form)
            if form.get("grant_type") == "authorization_code":
                grant = self._codes.pop(form.get("code", ""), None)
                verifier = form.get("code_verifier", "")
                digest = hashlib.sha256(verifier.encode()).digest()
                challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
                if grant is None or challenge != grant.challenge:
                    return JSONResponse({"error": "invalid_grant"}, status_code=400)
                if form.get("redirect_uri") != grant.redirect_uri:
                    return JSONResponse({"error": "invalid_grant"}, status_code=400)
            elif form.get("grant_type") == "refresh_token":
                # Rotating refresh tokens: each is single-use.
                grant = self._refresh.pop(form.get("refresh_token", ""), None)
                if grant is None:
                    return JSONResponse({"error": "invalid_grant"}, status_code=400)
            else:
                return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
            if form.get("resource") != grant.resource:
                return JSONResponse({"error": "invalid_target"}, status_code=400)
            if not authenticated(form, request, grant):
                return JSONResponse({"error": "invalid_client"}, status_code=401)
            return JSONResponse(issue(grant), headers={"cache-control": "no-store"})

        async def revoke(request: Request) -> Response:
            self.revocations += 1
            return Response(status_code=200)

        return Starlette(
            routes=[
                Route("/.well-known/oauth-authorization-server", metadata),
                Route("/register", register, methods=["POST"]),
                Route("/authorize", authorize),
                Route("/token", token, methods=["POST"]),
                Route("/revoke", revoke, methods=["POST"]),
            ]
        )


@dataclass
class FakeMcpServer:
    """An MCP endpoint at `{origin}/mcp` protected by `auth`."""

    origin: str
    auth: FakeAuthServer
    # Send `resource_metadata` in the 401 challenge (else the client must use well-known URLs).
    challenge: bool = True
    # What the PRM says its resource is (None: the truth), and its authorization servers
    # (None: `auth`); where the challenge says the PRM is (None: the truth).
    prm_resource: str | None = None
    authorization_servers: list[str] | None = None
    prm_url: str | None = None
    scopes: tuple[str, ...] = ("mcp:tools",)
    # Bearer tokens presented at the endpoint, accepted or not; 401 challenges sent.
    presented: list[str] = field(default_factory=list)
    challenges: int = 0

    @property
    def url(self) -> str:
        return f"{self.origin}/mcp"

    def app(self) -> Starlette:
        prm_url = self.prm_url or f"{self.origin}/.well-known/oauth-protected-resource/mcp"

        async def endpoint(request: Request) -> Response:
            header = request.headers.get("authorization", "")
            token = header.removeprefix("Bearer ")
            if header:
                self.presented.append(token)
            if self.auth.access_tokens.get(token) == self.url:
                return JSONResponse({"jsonrpc": "2.0", "id": 0, "result": {}})
            self.challenges += 1
            challenge = "Bearer"
            if self.challenge:
                challenge += f' resource_metadata="{prm_url}", scope="{" ".join(self.scopes)}"'
            return JSONResponse(
                {"error": "unauthorized"}, status_code=401, headers={"www-authenticate": challenge}
            )

        async def prm(request: Request) -> Response:
            return JSONResponse(
                {
                    "resource": self.prm_resource or self.url,
                    "authorization_servers": self.authorization_servers or [self.auth.issuer],
                    "scopes_supported": list(self.scopes),
                }
            )

        return Starlette(
            routes=[
                Route("/mcp", endpoint, methods=["GET", "POST"]),
                Route("/.well-known/oauth-protected-resource/mcp", prm),
            ]
        )
