"""The OAuth 2.0 client side of the binder, on authlib's httpx2 client.

Each operation uses a fresh authlib client (authlib keeps the last token on the client object;
nothing of one user's must ever sit where another user's request could reach it). Provider
failures become `ProviderError` with a short, safe code; responses are never echoed.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2
from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError

from binder.id_tokens import ID_TOKEN_ALGORITHMS as ID_TOKEN_ALGORITHMS
from binder.id_tokens import IdTokenError, IdTokenValidator
from binder.providers.spec import PUBLIC_CLIENT, ProviderSpec

# Revocation outcomes, per token, for the audit line of a disconnect.
CONFIRMED = "confirmed"  # the provider said the token is revoked
REFUSED = "refused"  # the provider answered, but not with success
UNREACHABLE = "unreachable"  # no answer: timeout, connection error
UNSUPPORTED = "unsupported"  # the provider offers no way to revoke this kind of token
NOT_ATTEMPTED = "not_attempted"  # the client secret it needs could not be read
OUTCOMES = (CONFIRMED, REFUSED, UNREACHABLE, UNSUPPORTED, NOT_ATTEMPTED)


def revocation_needs_client_secret(spec: ProviderSpec) -> bool:
    """Slack's token is its own credential; the other styles authenticate the client (a
    public client, auth method "none", has no secret to read)."""
    if spec.token_endpoint_auth_method == PUBLIC_CLIENT:
        return False
    return spec.revocation_style in ("rfc7009", "github")


def revocable(spec: ProviderSpec) -> tuple[str, ...]:
    """Token kinds the provider's revocation style can revoke."""
    if spec.revocation_endpoint is None:
        return ()
    if spec.revocation_style == "rfc7009":
        return ("refresh_token", "access_token")
    if spec.revocation_style in ("github", "slack"):
        return ("access_token",)
    return ()


class ProviderError(Exception):
    """kind: "invalid_grant" (re-authorization needed), "unavailable" (retry later) or
    "rejected" (the provider refused the request for another reason)."""

    def __init__(self, kind: str, code: str) -> None:
        super().__init__(f"provider {kind}: {code}")
        self.kind = kind
        self.code = code


@dataclass(frozen=True, kw_only=True)
class TokenGrant:
    access_token: str = field(repr=False)
    token_type: str
    refresh_token: str | None = field(repr=False)
    expires_at: int | None
    scopes: tuple[str, ...] | None
    id_token: str | None = field(repr=False)


def new_state() -> str:
    """256 bits from the OS CSPRNG (the issue asks for at least 128)."""
    return secrets.token_urlsafe(32)


def new_code_verifier() -> str:
    """RFC 7636: 43-128 characters of [A-Za-z0-9-._~]; 64 bytes of entropy, base64url."""
    return base64.urlsafe_b64encode(secrets.token_bytes(48)).rstrip(b"=").decode()


class OAuthClient:
    def __init__(
        self,
        *,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        self._timeout = timeout
        self._clock = clock
        self._transport = transport  # tests inject the fake provider here
        self._id_tokens = IdTokenValidator(timeout=timeout, clock=clock)

    def _client(self, spec: ProviderSpec, *, client_secret: str, redirect_uri: str | None) -> Any:
        client = AsyncOAuth2Client(
            client_id=spec.client_id,
            client_secret=client_secret,
            token_endpoint_auth_method=spec.token_endpoint_auth_method,
            revocation_endpoint_auth_method=spec.token_endpoint_auth_method,
            redirect_uri=redirect_uri,
            code_challenge_method="S256" if spec.supports_pkce else None,
            timeout=self._timeout,
            follow_redirects=False,
            transport=self._transport,
        )
        if spec.token_response_path:
            hook = _lift_nested_token(spec.token_response_path)
            client.register_compliance_hook("access_token_response", hook)
            client.register_compliance_hook("refresh_token_response", hook)
        return client

    def authorization_url(
        self,
        spec: ProviderSpec,
        *,
        redirect_uri: str,
        state: str,
        code_verifier: str,
        nonce: str | None,
        scopes: tuple[str, ...],
    ) -> str:
        client = self._client(spec, client_secret="", redirect_uri=redirect_uri)
        params: dict[str, str] = dict(spec.extra_authorize_params)
        params[spec.scope_param] = spec.scope_separator.join(scopes)
        if nonce:
            params["nonce"] = nonce
        if spec.resource:
            params["resource"] = spec.resource
        url, _ = client.create_authorization_url(
            spec.authorization_endpoint,
            state=state,
            code_verifier=code_verifier if spec.supports_pkce else None,
            **params,
        )
        return str(url)

    async def exchange_code(
        self,
        spec: ProviderSpec,
        *,
        client_secret: str,
        redirect_uri: str,
        code: str,
        code_verifier: str,
    ) -> TokenGrant:
        async with self._client(spec, client_secret=client_secret, redirect_uri=redirect_uri) as c:
            extra = {"code_verifier": code_verifier} if spec.supports_pkce else {}
            if spec.resource:
                extra["resource"] = spec.resource
            token = await self._guard(
                c.fetch_token(
                    spec.token_endpoint, code=code, grant_type="authorization_code", **extra
                )
            )
        return self._grant(spec, token)

    async def refresh(
        self, spec: ProviderSpec, *, client_secret: str, refresh_token: str
    ) -> TokenGrant:
        async with self._client(spec, client_secret=client_secret, redirect_uri=None) as c:
            extra = {"resource": spec.resource} if spec.resource else {}
            token = await self._guard(
                c.refresh_token(spec.token_endpoint, refresh_token=refresh_token, **extra)
            )
        # When the provider sends no new refresh token, authlib puts the old one back into the
        # response, which is exactly the rule: a missing refresh token keeps the old one.
        return self._grant(spec, token)

    async def revoke_tokens(
        self,
        spec: ProviderSpec,
        *,
        client_secret: str | None,
        access_token: str | None,
        refresh_token: str | None,
    ) -> dict[str, str]:
        """Revoke what the provider lets us revoke; per token kind, one of `OUTCOMES`.

        Best effort and never raises: a disconnect deletes the vault entry whatever happens
        here. The refresh token goes first (revoking it ends the grant at RFC 7009 providers),
        then the access token, since RFC 7009 only says SHOULD for the grant's access tokens.
        `client_secret` None means it could not be read: styles that authenticate the client
        are then not attempted.
        """
        outcomes: dict[str, str] = {}
        for hint, token in (("refresh_token", refresh_token), ("access_token", access_token)):
            if not token:
                continue
            if hint not in revocable(spec):
                outcomes[hint] = UNSUPPORTED
            elif client_secret is None and revocation_needs_client_secret(spec):
                outcomes[hint] = NOT_ATTEMPTED
            else:
                outcomes[hint] = await self.revoke(
                    spec, client_secret=client_secret or "", token=token, hint=hint
                )
        return outcomes

    async def revoke(self, spec: ProviderSpec, *, client_secret: str, token: str, hint: str) -> str:
        """One revocation request in the provider's style; its outcome, never an exception.

        - rfc7009: POST token + token_type_hint with client authentication; HTTP 200 is
          success (RFC 7009 section 2.2, also for a token already invalid).
        - github: DELETE /applications/{client_id}/token with basic auth and the token in a
          JSON body; 204 is success, 404/422 a refusal.
        - slack: POST auth.revoke with the token as its own bearer credential; Slack answers
          HTTP 200 for refusals too, so only `{"ok": true, "revoked": true}` counts.
        """
        if hint not in revocable(spec) or spec.revocation_endpoint is None:
            return UNSUPPORTED
        endpoint = spec.revocation_endpoint
        try:
            with anyio.fail_after(self._timeout):
                if spec.revocation_style == "rfc7009":
                    async with self._client(
                        spec, client_secret=client_secret, redirect_uri=None
                    ) as c:
                        response = await c.revoke_token(endpoint, token=token, token_type_hint=hint)
                    return CONFIRMED if response.status_code == 200 else REFUSED
                async with httpx2.AsyncClient(
                    timeout=self._timeout, follow_redirects=False, transport=self._transport
                ) as http:
                    if spec.revocation_style == "github":
                        response = await http.request(
                            "DELETE",
                            endpoint,
                            json={"access_token": token},
                            auth=(spec.client_id, client_secret),
                            headers={
                                "Accept": "application/vnd.github+json",
                                "X-GitHub-Api-Version": "2022-11-28",
                            },
                        )
                        return CONFIRMED if response.status_code == 204 else REFUSED
                    response = await http.post(
                        endpoint,
                        headers={
                            "Authorization": f"Bearer {token}",
                            "Content-Type": "application/x-www-form-urlencoded",
                        },
                        content=b"",
                    )
                    if response.status_code != 200:
                        return REFUSED
                    try:
                        body = response.json()
                    except ValueError:
                        return REFUSED
                    confirmed = (
                        isinstance(body, dict)
                        and body.get("ok") is True
                        and body.get("revoked") is True
                    )
                    return CONFIRMED if confirmed else REFUSED
        except Exception:
            # Timeouts, connection errors, a provider answering garbage, a bug in a client
            # library: best effort means nothing here may block or fail a disconnect.
            return UNREACHABLE

    async def validate_id_token(
        self,
        spec: ProviderSpec,
        id_token: str,
        *,
        nonce: str | None,
        http: httpx2.AsyncClient,
        access_token: str | None = None,
    ) -> dict[str, Any]:
        """The claims of an OIDC ID token checked as OIDC Core 3.1.3.7 asks (see id_tokens).

        `access_token` is the access token of the same token response: an `at_hash` in the ID
        token must match it. The broker always passes it; None (unit tests of other claims)
        skips only the at_hash check.
        """
        try:
            return await self._id_tokens.validate(
                spec, id_token, nonce=nonce, access_token=access_token, http=http
            )
        except IdTokenError as exc:
            raise ProviderError(exc.kind, exc.code) from None

    async def _guard(self, call: Any) -> Mapping[str, Any]:
        """The token endpoint's answer, or ProviderError. The whole call is bounded by the
        timeout (httpx2's applies per connect, read and write, so a provider dripping bytes
        could otherwise hold a refresh far longer)."""
        try:
            with anyio.fail_after(self._timeout):
                token: Mapping[str, Any] = await call
        except TimeoutError:
            raise ProviderError("unavailable", "timeout") from None
        except OAuthError as exc:
            code = str(exc.error or "error")
            if code == "invalid_grant":
                raise ProviderError("invalid_grant", code) from None
            if code in ("temporarily_unavailable", "server_error", "slow_down"):
                raise ProviderError("unavailable", code) from None
            raise ProviderError("rejected", _safe(code)) from None
        except httpx2.HTTPStatusError as exc:
            status = exc.response.status_code
            kind = "unavailable" if status >= 500 or status == 429 else "rejected"
            raise ProviderError(kind, f"http_{status}") from None
        except httpx2.HTTPError as exc:
            raise ProviderError("unavailable", type(exc).__name__) from None
        except ValueError:
            raise ProviderError("rejected", "malformed_response") from None
        if not isinstance(token.get("access_token"), str) or not token["access_token"]:
            raise ProviderError("rejected", "no_access_token")
        return token

    def _grant(self, spec: ProviderSpec, token: Mapping[str, Any]) -> TokenGrant:
        now = int(self._clock())
        expires_at: int | None
        lifetime = _seconds(token.get("expires_in"))
        if lifetime is not None:
            expires_at = now + lifetime
        elif not spec.tokens_expire:
            expires_at = None
        else:
            # No lifetime sent (RFC 6749 makes it optional): assume a short one rather than
            # "never", so the token is refreshed, or consent asked again, instead of failing.
            expires_at = now + (spec.default_expires_in or ASSUMED_LIFETIME_SECONDS)
        scope = token.get("scope")
        scopes: tuple[str, ...] | None = None
        if isinstance(scope, str) and scope.strip():
            separator = "," if "," in scope and " " not in scope else " "
            scopes = tuple(s for s in scope.split(separator) if s)
        refresh = token.get("refresh_token")
        id_token = token.get("id_token")
        return TokenGrant(
            access_token=str(token["access_token"]),
            token_type=str(token.get("token_type") or "Bearer"),
            refresh_token=refresh if isinstance(refresh, str) and refresh else None,
            expires_at=expires_at,
            scopes=scopes,
            id_token=id_token if isinstance(id_token, str) else None,
        )


ASSUMED_LIFETIME_SECONDS = 3600


def _seconds(value: Any) -> int | None:
    """`expires_in` as whole seconds: providers send 3600, "3600" or 3600.0."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    if seconds != seconds or seconds in (float("inf"), float("-inf")) or seconds < 0:
        return None
    return int(seconds)


def _safe(code: str) -> str:
    """Provider error codes are ASCII words; anything else is not echoed."""
    return code if code.replace("_", "").isalnum() and len(code) <= 64 else "error"


def _lift_nested_token(path: str) -> Callable[[httpx2.Response], httpx2.Response]:
    """Slack-style responses nest the user token (`authed_user`) and report errors as
    `{"ok": false, "error": ...}` with HTTP 200; reshape them into RFC 6749 form."""

    def hook(response: httpx2.Response) -> httpx2.Response:
        try:
            body = response.json()
        except ValueError:
            return response
        if not isinstance(body, dict):
            return response
        if body.get("ok") is False:
            reshaped: dict[str, Any] = {"error": str(body.get("error", "error"))}
        else:
            nested = body.get(path)
            reshaped = dict(nested) if isinstance(nested, dict) else dict(body)
        return httpx2.Response(
            status_code=response.status_code,
            json=reshaped,
            request=response.request,
        )

    return hook
