"""Dynamically registered OAuth clients (RFC 7591), one per (authorization server, provider),
kept in Secrets Manager under the vault prefix so every binder task and every restart reuses it.

One client per provider, with only that provider's callback, not one per issuer for every
callback: a client valid for two providers' callbacks lets one provider's authorization server
have another's code delivered to its callback (mix-up; binder.providers.mcp says how).

Secret name `{prefix}/_mcp-client/{sha256(issuer + "\n" + provider)}` ("_" is not allowed in
provider names, so no user's token secret can share it), created under the vault CMK with the
vault's two tag keys (`oauth-provider` = the provider, `user-hash` = "client"), which the
binder role's existing CreateSecret/TagResource grants allow. The stored value names its
issuer and provider, both checked on every read.

Registering twice would leave orphan clients at the authorization server, so the first user
claims the registration with a conditional CreateSecret (it fails if the secret exists),
registers, and compare-and-swaps the client in; the others wait for it. A claim older than
`claim_seconds` (its holder died) is taken over with the same compare-and-swap; a failed
registration deletes its claim (or, if that fails, marks it stale), so failures leave no secret
behind: a server that names a new authorization server at each discovery gets no new secret
from a failed registration, and one from a successful one only as often as a binder task
discovers it (once per task: success is kept for the process). One secret per (issuer,
provider), not one per provider overwritten: tasks that see different issuers each keep their
own client, and a failed registration at a new issuer never destroys a working one.
In-process callers share one attempt per (issuer, provider).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from binder.providers.spec import PUBLIC_CLIENT
from binder.vault import TAG_PROVIDER, TAG_USER_HASH, Vault

REGISTERED = "registered"
REGISTERING = "registering"


class RegistrationUnavailable(Exception):
    """The registration could not be read, made or waited for; `code` is safe to log."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True, kw_only=True)
class RegisteredClient:
    """What the authorization server issued. `client_secret` None: a public client."""

    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    token_endpoint_auth_method: str = PUBLIC_CLIENT
    redirect_uris: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class StoredClient:
    """A registration as the binder uses it: `secret_name` is where the broker reads the
    client secret (`{"client_secret": ...}`), None for a public client."""

    client_id: str
    secret_name: str | None
    token_endpoint_auth_method: str
    redirect_uris: tuple[str, ...]


Register = Callable[[], Awaitable[RegisteredClient]]


class ClientRegistrations:
    def __init__(
        self,
        *,
        vault: Vault,
        claim_seconds: float = 30.0,
        wait_seconds: float = 15.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._vault = vault
        self._claim_seconds = claim_seconds
        self._wait_seconds = wait_seconds
        self._clock = clock
        self._owner = secrets.token_hex(8)
        self._locks: dict[str, anyio.Lock] = {}

    def secret_name(self, issuer: str, provider: str) -> str:
        digest = hashlib.sha256(f"{issuer}\n{provider}".encode()).hexdigest()
        return self._vault.named(f"_mcp-client/{digest}")

    async def get_or_register(
        self, *, provider: str, issuer: str, redirect_uri: str, register: Register
    ) -> StoredClient:
        """The (issuer, provider) stored client if it has `redirect_uri`, else one `register()`
        made (by this caller, or by whoever claimed it first); RegistrationUnavailable
        otherwise."""
        lock = self._locks.setdefault(f"{issuer}\n{provider}", anyio.Lock())
        async with lock:
            return await self._get_or_register(provider, issuer, redirect_uri, register)

    async def _get_or_register(
        self, provider: str, issuer: str, redirect_uri: str, register: Register
    ) -> StoredClient:
        name = self.secret_name(issuer, provider)
        deadline = self._clock() + self._wait_seconds
        delay = 0.05
        while True:
            current = await self._read(name)
            if current is None:
                version = await self._call(
                    self._vault.create_secret(
                        name,
                        self._claim(issuer, provider),
                        description="OAuth client the binder registered at an MCP "
                        "authorization server (RFC 7591)",
                        tags={TAG_PROVIDER: provider, TAG_USER_HASH: "client"},
                    )
                )
                if version is not None:
                    return await self._register(name, version, issuer, provider, register)
            else:
                data, version = current
                stored = _stored(name, data, issuer, provider)
                if stored is not None and redirect_uri in stored.redirect_uris:
                    return stored
                stale = data.get("status") == REGISTERING and (
                    float(data.get("claimed_at", 0)) + self._claim_seconds < self._clock()
                )
                if stored is not None or stale:
                    # A registration without this callback (PUBLIC_BASE_URL changed), or a claim
                    # whose holder is gone: take it over, if no one else did first.
                    won = await self._call(
                        self._vault.swap_secret(
                            name, self._claim(issuer, provider), expected=version
                        )
                    )
                    if won is not None:
                        return await self._register(name, won, issuer, provider, register)
            if self._clock() > deadline:
                raise RegistrationUnavailable("registration_busy")
            await anyio.sleep(delay)
            delay = min(delay * 2, 0.5)

    async def _register(
        self, name: str, claim_version: str, issuer: str, provider: str, register: Register
    ) -> StoredClient:
        try:
            client = await register()
        except BaseException:
            # Remove the claim (nothing is left behind), then let the error through.
            with anyio.CancelScope(shield=True):
                # Best effort: a claim left behind goes stale on its own.
                with contextlib.suppress(Exception):
                    await self._release(name, claim_version, issuer, provider)
            raise
        value = {
            "status": REGISTERED,
            "issuer": issuer,
            "provider": provider,
            "client_id": client.client_id,
            "token_endpoint_auth_method": client.token_endpoint_auth_method,
            "redirect_uris": list(client.redirect_uris),
            "registered_at": int(self._clock()),
        }
        if client.client_secret:
            value["client_secret"] = client.client_secret
        stored = await self._call(
            self._vault.swap_secret(name, json.dumps(value), expected=claim_version)
        )
        if stored is None:
            # Our claim was taken over while the server answered (we were too slow): the
            # other registration is the one kept.
            raise RegistrationUnavailable("registration_superseded")
        result = _stored(name, value, issuer, provider)
        assert result is not None  # noqa: S101 - built just above
        return result

    async def _release(self, name: str, claim_version: str, issuer: str, provider: str) -> None:
        """Delete our failed claim if it is still the current version (a slow holder's claim
        may have been taken over meanwhile: then it is the new holder's), else nothing. If the
        delete is refused, mark the claim stale so that anyone may take it over at once."""
        current = await self._read(name)
        if current is None or current[1] != claim_version:
            return
        try:
            await self._vault.delete_named(name)
        except Exception:
            stale = {"status": REGISTERING, "issuer": issuer, "provider": provider, "claimed_at": 0}
            await self._vault.swap_secret(name, json.dumps(stale), expected=claim_version)

    def _claim(self, issuer: str, provider: str) -> str:
        return json.dumps(
            {
                "status": REGISTERING,
                "issuer": issuer,
                "provider": provider,
                "owner": self._owner,
                "claimed_at": self._clock(),
            }
        )

    async def _read(self, name: str) -> tuple[dict[str, Any], str] | None:
        found = await self._call(self._vault.read_secret(name))
        if found is None:
            return None
        value, version = found
        try:
            data = json.loads(value)
        except ValueError:
            data = {}
        return (data if isinstance(data, dict) else {}), version

    @staticmethod
    async def _call(call: Awaitable[Any]) -> Any:
        from binder.vault import VaultUnavailable

        try:
            return await call
        except VaultUnavailable as exc:
            raise RegistrationUnavailable(f"vault_{exc.code}"[:60]) from None


def _stored(name: str, data: dict[str, Any], issuer: str, provider: str) -> StoredClient | None:
    """The registration in `data`, if it is a finished one for `issuer` and `provider`."""
    if data.get("status") != REGISTERED or (data.get("issuer"), data.get("provider")) != (
        issuer,
        provider,
    ):
        return None
    client_id = data.get("client_id")
    method = data.get("token_endpoint_auth_method")
    uris = data.get("redirect_uris")
    if not isinstance(client_id, str) or not isinstance(method, str) or not isinstance(uris, list):
        return None
    has_secret = isinstance(data.get("client_secret"), str)
    return StoredClient(
        client_id=client_id,
        secret_name=name if has_secret else None,
        token_endpoint_auth_method=method if has_secret else PUBLIC_CLIENT,
        redirect_uris=tuple(str(u) for u in uris),
    )
