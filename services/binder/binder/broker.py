"""What the binder does, independent of HTTP: issue, refresh, bind, store and revoke tokens.

The two binding checks live here: the browser user who opens an authorization link must be
the user the session was created for (first check, before any redirect to the provider), and
the browser user who comes back to the callback must be that same user (second check, before
the code is exchanged). A failed first check kills the session for everyone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Hashable, Mapping
from dataclasses import dataclass, replace
from typing import Any, NoReturn
from urllib.parse import urlsplit

import anyio
import httpx2
from botocore.exceptions import BotoCoreError, ClientError

from binder.audit import audit
from binder.oauth import (
    CONFIRMED,
    OAuthClient,
    ProviderError,
    TokenGrant,
    new_code_verifier,
    new_state,
    revocation_needs_client_secret,
)
from binder.providers.registry import ProviderRegistry
from binder.providers.schema import ProviderConfigError
from binder.providers.spec import PUBLIC_CLIENT, ProviderSpec, request_scopes
from binder.sessions import (
    AUTHORIZING,
    COMPLETED,
    PENDING,
    AuthSession,
    SessionStore,
    SessionStoreUnavailable,
    TooManySessions,
    TransitionRefused,
    hash_secret,
)
from binder.vault import ACTIVE, REAUTHORIZATION_REQUIRED, TokenRecord, Vault, VaultUnavailable
from svc_common.identity import VerifiedUser

_log = logging.getLogger("binder.broker")

MAX_RETURN_URL_LENGTH = 2048
_RETURN_URL_CHARS = re.compile(r"[\x21-\x5b\x5d-\x7e]+")


@dataclass(frozen=True, kw_only=True)
class IssuedToken:
    access_token: str
    token_type: str
    expires_at: int | None
    scopes: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class ConsentRequired:
    reason: str
    authorization_url: str
    session_id: str
    expires_at: int


class Unavailable(Exception):
    """A dependency failed; the caller should retry after `retry_after` seconds.

    status 503 for AWS and busy refreshes, 502 for a failing provider."""

    def __init__(self, code: str, *, status: int = 503, retry_after: int = 5) -> None:
        super().__init__(code)
        self.code = code
        self.status = status
        self.retry_after = retry_after


class FlowError(Exception):
    """A browser flow step refused; `code` selects the page, `status` the HTTP status."""

    def __init__(self, code: str, status: int) -> None:
        super().__init__(code)
        self.code = code
        self.status = status


@dataclass(frozen=True, kw_only=True)
class Disconnected:
    provider: str
    # "revoked_upstream" (every token confirmed revoked), "partly_revoked_upstream" or
    # "not_revoked_upstream" (refused, unreachable, unsupported, or nothing to revoke).
    revocation: str


def bound_to(record: TokenRecord, spec: ProviderSpec) -> bool:
    """Whether `record` may be used with `spec`: for a provider with an RFC 8707 resource, the
    record must have been issued for that resource by that authorization server."""
    if spec.resource is None:
        return True
    return (record.resource, record.issuer) == (spec.resource, spec.issuer)


def _revocation_summary(outcomes: Mapping[str, str]) -> str:
    confirmed = [o == CONFIRMED for o in outcomes.values()]
    if confirmed and all(confirmed):
        return "revoked_upstream"
    return "partly_revoked_upstream" if any(confirmed) else "not_revoked_upstream"


@dataclass(frozen=True, kw_only=True)
class Connection:
    provider: str
    scopes: tuple[str, ...]
    expires_at: int | None
    status: str
    connected_at: int


class KeyedLocks:
    """One lock per key, kept only while someone holds or waits for it.

    A plain dict of locks grew by one entry per (user, provider) ever refreshed, for the life
    of the process; here the last task to leave a key removes it, so the map holds only keys
    in use. One event loop runs all tasks, so the bookkeeping needs no lock of its own."""

    def __init__(self) -> None:
        self._locks: dict[Hashable, tuple[anyio.Lock, int]] = {}

    def __len__(self) -> int:
        return len(self._locks)

    @contextlib.asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (None, 0))
        lock = lock or anyio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            _, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class Broker:
    def __init__(
        self,
        *,
        registry: ProviderRegistry,
        vault: Vault,
        sessions: SessionStore,
        oauth: OAuthClient,
        secrets_client: Any,
        http: httpx2.AsyncClient,
        public_base_url: str,
        allowed_return_origins: tuple[str, ...],
        refresh_skew: int = 300,
        lease_seconds: int = 30,
        lease_wait_seconds: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._registry = registry
        self._vault = vault
        self._sessions = sessions
        self._oauth = oauth
        self._secrets = secrets_client
        self._http = http
        self._base = public_base_url.rstrip("/")
        self._origins = frozenset(allowed_return_origins)
        self._skew = refresh_skew
        self._lease_seconds = lease_seconds
        self._lease_wait = lease_wait_seconds
        self._clock = clock
        self._owner = secrets.token_hex(8)  # this process, for refresh leases
        self._refresh_locks = KeyedLocks()
        self._client_secrets: dict[str, tuple[float, str]] = {}
        self.upstream_refreshes = 0

    # -- the internal API ------------------------------------------------------------------

    async def provider(self, name: str) -> ProviderSpec:
        try:
            return await self._registry.get(name, self._http)
        except KeyError:
            raise
        except ProviderConfigError as exc:
            # Its message names the provider and the problem (no S256, an issuer that differs,
            # ...) and never a value or a response body: operators need it, callers get 502.
            _log.warning("provider discovery refused: %s", exc)
            raise Unavailable("provider_discovery", status=502) from None
        except Exception as exc:
            _log.warning("provider discovery failed for %s: %s", name, type(exc).__name__)
            raise Unavailable("provider_discovery", status=502) from None

    def checked_return_url(self, url: object) -> str:
        """`url` itself if it may be redirected to after consent, else ValueError saying why.

        The string checked is the string stored and later redirected to: urllib silently strips
        surrounding whitespace and drops tabs, CR and LF, so a URL carrying any of them (or
        anything else outside printable ASCII, or a backslash, which browsers read as "/") is
        refused rather than cleaned. The origin must equal an allow-listed one exactly.
        """
        if not isinstance(url, str):
            raise ValueError("return_url must be a string")
        if not url or len(url) > MAX_RETURN_URL_LENGTH:
            raise ValueError(f"return_url must be 1 to {MAX_RETURN_URL_LENGTH} characters")
        if _RETURN_URL_CHARS.fullmatch(url) is None:
            raise ValueError(
                "return_url must be printable ASCII without spaces or backslashes "
                "(percent-encode anything else)"
            )
        try:
            parts = urlsplit(url)
            host = parts.hostname
            _ = parts.port  # ValueError for a port out of range
        except ValueError:
            raise ValueError("return_url is not a valid URL") from None
        if parts.scheme not in ("https", "http") or not host or parts.username is not None:
            raise ValueError("return_url must be an absolute http(s) URL without credentials")
        if f"{parts.scheme}://{parts.netloc}" not in self._origins:
            raise ValueError("return_url origin not in the allow-list")
        return url

    def return_url_allowed(self, url: str | None) -> bool:
        if url is None:
            return True
        try:
            self.checked_return_url(url)
        except ValueError:
            return False
        return True

    async def token(
        self,
        user: VerifiedUser,
        spec: ProviderSpec,
        scopes: tuple[str, ...],
        *,
        return_url: str | None,
        request_id: str,
    ) -> IssuedToken | ConsentRequired:
        record = await self._read(user.user_hash, spec.name)
        if record is None:
            return await self._consent(user, spec, scopes, return_url, "no_connection", request_id)
        if record.status != ACTIVE:
            return await self._consent(
                user, spec, scopes, return_url, REAUTHORIZATION_REQUIRED, request_id
            )
        if not bound_to(record, spec):
            # The audience rule: a token is only ever used for the server it was issued for.
            # The provider now resolves to another resource or authorization server, so
            # neither this access token nor its refresh token may be sent anywhere: consent
            # again (which replaces the record).
            return await self._audience_mismatch(user, spec, scopes, return_url, request_id)
        if not record.covers(scopes):
            # Keep what was granted (within the operator's allow-list) and add what is asked.
            kept = [
                s for s in record.scopes if spec.allowed_scopes is None or s in spec.allowed_scopes
            ]
            wanted = tuple(dict.fromkeys((*kept, *scopes)))
            return await self._consent(
                user, spec, wanted, return_url, "insufficient_scope", request_id
            )
        now = self._clock()
        if not record.fresh(now, self._skew):
            refreshed = await self._refresh(user, spec, request_id)
            if refreshed is None:  # disconnected meanwhile
                return await self._consent(
                    user, spec, scopes, return_url, "no_connection", request_id
                )
            record = refreshed
            if not bound_to(record, spec):
                # Re-read under the refresh lock and found bound elsewhere (rewritten since the
                # first read): not refreshed, not handed out.
                return await self._audience_mismatch(user, spec, scopes, return_url, request_id)
            if record.status != ACTIVE:
                return await self._consent(
                    user, spec, scopes, return_url, REAUTHORIZATION_REQUIRED, request_id
                )
        audit(
            "token_issued",
            outcome="ok",
            request_id=request_id,
            user_hash=user.user_hash,
            provider=spec.name,
            scopes=scopes,
        )
        return IssuedToken(
            access_token=record.access_token,
            token_type=record.token_type,
            expires_at=record.expires_at,
            scopes=record.scopes,
        )

    async def connections(self, user: VerifiedUser) -> list[Connection]:
        found = []
        for name in self._registry.names():
            record = await self._read(user.user_hash, name)
            if record is not None:
                status = record.status
                if (
                    status == ACTIVE
                    and not record.usable(self._clock())
                    and not record.refresh_token
                ):
                    status = "expired"
                found.append(
                    Connection(
                        provider=name,
                        scopes=record.scopes,
                        expires_at=record.expires_at,
                        status=status,
                        connected_at=record.obtained_at,
                    )
                )
        return found

    async def disconnect(
        self, user: VerifiedUser, spec: ProviderSpec, *, request_id: str
    ) -> Disconnected | None:
        """Delete the connection, then revoke its tokens upstream; None if there was none.

        Deletion comes first and does not depend on the provider: a provider that is down,
        slow or refusing cannot keep a connection alive. A refresh racing this disconnect
        cannot bring it back, because every refresh write is conditional on the version it
        read (`Vault.replace`), and a deleted secret has no version.
        """
        record = await self._read(user.user_hash, spec.name, cached=False)
        if record is None:
            return None
        try:
            deleted = await self._vault.delete(user.user_hash, spec.name)
        except VaultUnavailable as exc:
            self._vault_down(exc, user, spec.name, request_id)
        if not deleted:
            return None  # another disconnect got there first; it revokes and audits
        # A token issued by another authorization server is never sent to this one, not even
        # to revoke it.
        revocable = record.status == ACTIVE and bound_to(record, spec)
        outcomes = await self._revoke_upstream(spec, record) if revocable else {}
        summary = _revocation_summary(outcomes)
        audit(
            "connection_deleted",
            outcome="ok",
            request_id=request_id,
            user_hash=user.user_hash,
            provider=spec.name,
            reason=summary,
            # "refresh"/"access", not the token_type_hint names: a line with
            # `"refresh_token": "..."` would look like a leaked token to any log scanner.
            revocation={kind.removesuffix("_token"): o for kind, o in outcomes.items()},
        )
        return Disconnected(provider=spec.name, revocation=summary)

    # -- the browser flow ------------------------------------------------------------------

    async def start_authorization(
        self, user: VerifiedUser, session_id: str, *, request_id: str
    ) -> str:
        """First binding check, then the provider's authorization URL."""
        session = await self._session(session_id)
        sid = hash_secret(session_id)
        if session.user_hash != user.user_hash:
            killed = await self._sessions.fail(session_id)
            audit(
                "binding_rejected",
                outcome="refused",
                request_id=request_id,
                user_hash=user.user_hash,
                provider=session.provider,
                session_id_hash=sid,
                reason="authorize_by_other_user" if killed else "authorize_by_other_user_unkilled",
            )
            raise FlowError("foreign_session", 403)
        if session.expired(self._clock()):
            raise FlowError("expired_session", 410)
        # Authorizing already: its own user opens the link again (the first answer never
        # reached the browser, or a second tab); a new state supersedes the old one.
        if session.status not in (PENDING, AUTHORIZING):
            raise FlowError("used_session", 409)
        try:
            spec = await self.provider(session.provider)
        except KeyError:
            raise FlowError("unknown_provider", 404) from None
        try:
            scopes = request_scopes(spec, session.scopes)
        except ValueError:
            await self._sessions.fail(session_id)
            raise FlowError("bad_scopes", 400) from None
        state = new_state()
        verifier = new_code_verifier()
        nonce = secrets.token_urlsafe(24) if spec.is_oidc else None
        try:
            await self._sessions.begin_authorization(
                session, user_hash=user.user_hash, state=state, code_verifier=verifier, nonce=nonce
            )
        except TransitionRefused:
            raise FlowError("used_session", 409) from None
        except SessionStoreUnavailable as exc:
            raise Unavailable(exc.code) from None
        return self._oauth.authorization_url(
            spec,
            redirect_uri=spec.callback_url(self._base),
            state=state,
            code_verifier=verifier,
            nonce=nonce,
            scopes=scopes,
        )

    async def complete_authorization(
        self,
        user: VerifiedUser,
        provider_name: str,
        params: Mapping[str, str],
        *,
        request_id: str,
    ) -> str | None:
        """Second binding check, code exchange, vault write; returns the return URL if any."""
        state = params.get("state", "")
        well_formed = bool(state) and len(state) <= 512
        try:
            pending = await self._sessions.consume_state(state) if well_formed else None
        except SessionStoreUnavailable as exc:
            raise Unavailable(exc.code) from None

        def state_rejected(reason: str, code: str, status: int, sid: str | None = None) -> NoReturn:
            audit(
                "state_rejected",
                outcome="refused",
                request_id=request_id,
                user_hash=user.user_hash,
                provider=provider_name,
                session_id_hash=sid,
                reason=reason,
            )
            raise FlowError(code, status)

        if pending is None:
            state_rejected("unknown_or_used" if well_formed else "missing_state", "bad_state", 400)
        session = await self._session(pending.session_id)
        sid = hash_secret(session.session_id)

        async def fail(code: str, status: int, event: str = "authorization_failed") -> FlowError:
            killed = await self._sessions.fail(session.session_id)
            audit(
                event,
                outcome="refused",
                request_id=request_id,
                user_hash=user.user_hash,
                provider=session.provider,
                session_id_hash=sid,
                reason=code if killed else f"{code}_unkilled",
            )
            return FlowError(code, status)

        if session.state_hash is not None and session.state_hash != hash_secret(state):
            # The user opened the link again since: only the newest state completes. Not a
            # failure of the session, whose newest state is still out there.
            state_rejected("superseded", "superseded_state", 409, sid)

        if session.user_hash != user.user_hash:
            raise await fail("foreign_callback", 403, "binding_rejected")
        if session.provider != provider_name:
            raise await fail("provider_mismatch", 400)
        if session.status != AUTHORIZING:
            raise await fail("used_session", 409)
        if session.expired(self._clock()):
            raise await fail("expired_session", 410)
        try:
            spec = await self.provider(session.provider)
        except KeyError:
            raise await fail("unknown_provider", 404) from None
        issuer = params.get("iss")
        if issuer is not None and not spec.issuer_matches(issuer):
            raise await fail("issuer_mismatch", 400)
        if issuer is None and spec.returns_iss:
            raise await fail("issuer_missing", 400)
        if "error" in params:
            code = params["error"] if params["error"].replace("_", "").isalnum() else "error"
            raise await fail(f"provider_error:{code[:40]}", 400)
        code_value = params.get("code", "")
        if not code_value or len(code_value) > 4096:
            raise await fail("missing_code", 400)

        secret = await self._client_secret(spec)
        try:
            grant = await self._oauth.exchange_code(
                spec,
                client_secret=secret,
                redirect_uri=spec.callback_url(self._base),
                code=code_value,
                code_verifier=pending.code_verifier,
            )
            if spec.is_oidc:
                if not grant.id_token:
                    raise ProviderError("rejected", "no_id_token")
                await self._oauth.validate_id_token(
                    spec,
                    grant.id_token,
                    nonce=pending.nonce,
                    access_token=grant.access_token,
                    http=self._http,
                )
        except ProviderError as exc:
            reason = f"exchange_{exc.code}"[:60]
            if exc.kind != "unavailable":
                raise await fail(reason, 400) from None
            # The provider (or its keys) did not answer: nothing is stored, and the session
            # stays open, so opening the authorization link again starts over.
            audit(
                "authorization_failed",
                outcome="error",
                request_id=request_id,
                user_hash=user.user_hash,
                provider=session.provider,
                session_id_hash=sid,
                reason=reason,
            )
            raise Unavailable(reason, retry_after=10) from None

        record = self._record(spec, grant, requested=session.scopes)
        try:
            await self._vault.put(user.user_hash, spec.name, record)
        except VaultUnavailable as exc:
            # Nothing stored; the session stays open for the link to be opened again.
            self._vault_down(exc, user, spec.name, request_id)
        # The tokens are stored; if this fails the session simply expires.
        with contextlib.suppress(TransitionRefused, SessionStoreUnavailable):
            await self._sessions.transition(
                session.session_id, to=COMPLETED, allowed_from=(AUTHORIZING,)
            )
        audit(
            "connection_created",
            outcome="ok",
            request_id=request_id,
            user_hash=user.user_hash,
            provider=spec.name,
            scopes=record.scopes,
            session_id_hash=sid,
        )
        return session.return_url if self.return_url_allowed(session.return_url) else None

    # -- internals -------------------------------------------------------------------------

    async def _session(self, session_id: str) -> AuthSession:
        if not session_id or len(session_id) > 128:
            raise FlowError("unknown_session", 404)
        try:
            session = await self._sessions.get(session_id)
        except SessionStoreUnavailable as exc:
            raise Unavailable(exc.code) from None
        if session is None:
            raise FlowError("unknown_session", 404)
        return session

    async def _audience_mismatch(
        self,
        user: VerifiedUser,
        spec: ProviderSpec,
        scopes: tuple[str, ...],
        return_url: str | None,
        request_id: str,
    ) -> ConsentRequired:
        """A stored token bound to another resource or authorization server: audited, never
        sent anywhere, and the user asked to consent again (which replaces the record)."""
        audit(
            "request_rejected",
            outcome="refused",
            request_id=request_id,
            user_hash=user.user_hash,
            provider=spec.name,
            reason="audience_mismatch",
        )
        return await self._consent(user, spec, scopes, return_url, "audience_mismatch", request_id)

    async def _consent(
        self,
        user: VerifiedUser,
        spec: ProviderSpec,
        scopes: tuple[str, ...],
        return_url: str | None,
        reason: str,
        request_id: str,
    ) -> ConsentRequired:
        try:
            session = await self._sessions.create(
                user_hash=user.user_hash,
                provider=spec.name,
                scopes=scopes,
                return_url=return_url,
                reason=reason,
            )
        except TooManySessions as exc:
            audit(
                "request_rejected",
                outcome="refused",
                request_id=request_id,
                user_hash=user.user_hash,
                provider=spec.name,
                reason="too_many_sessions",
            )
            raise Unavailable(
                "too_many_sessions", status=429, retry_after=exc.retry_after
            ) from None
        except (SessionStoreUnavailable, TransitionRefused) as exc:
            raise Unavailable(getattr(exc, "code", "session_store")) from None
        audit(
            "session_created",
            outcome="consent_required",
            request_id=request_id,
            user_hash=user.user_hash,
            provider=spec.name,
            scopes=scopes,
            session_id_hash=hash_secret(session.session_id),
            reason=reason,
        )
        return ConsentRequired(
            reason=reason,
            authorization_url=f"{self._base}/oauth2/authorize/{session.session_id}",
            session_id=session.session_id,
            expires_at=session.expires_at,
        )

    async def _read(
        self, user_hash: str, provider: str, *, cached: bool = True
    ) -> TokenRecord | None:
        try:
            return await self._vault.get(user_hash, provider, cached=cached)
        except VaultUnavailable as exc:
            audit(
                "vault_unavailable",
                outcome="error",
                user_hash=user_hash,
                provider=provider,
                reason=exc.code,
            )
            raise Unavailable(exc.code) from None

    def _vault_down(
        self, exc: VaultUnavailable, user: VerifiedUser, provider: str, request_id: str
    ) -> NoReturn:
        audit(
            "vault_unavailable",
            outcome="error",
            request_id=request_id,
            user_hash=user.user_hash,
            provider=provider,
            reason=exc.code,
        )
        raise Unavailable(exc.code) from None

    async def _refresh(
        self, user: VerifiedUser, spec: ProviderSpec, request_id: str
    ) -> TokenRecord | None:
        """One refresh per token at a time: in-process lock, then a DynamoDB lease; waiters
        re-read the vault instead of refreshing again (single-use refresh tokens survive).

        The lease is renewed for as long as the provider call and the vault write take, so a
        slow provider cannot let a second task spend the same refresh token; and the write is
        conditional on the version read, so a holder that lost its lease anyway (DynamoDB
        unreachable for a whole lease) cannot overwrite what the next holder stored.
        None: the connection no longer exists. A record re-read here that is not bound to
        `spec` (bound_to) is returned unrefreshed: its refresh token is never sent, and the
        caller asks for consent.
        """
        async with self._refresh_locks.hold((user.user_hash, spec.name)):
            current = await self._read(user.user_hash, spec.name)
            if current is None:
                return None
            if (
                not bound_to(current, spec)
                or current.status != ACTIVE
                or current.fresh(self._clock(), self._skew)
            ):
                return current
            if not current.refresh_token:
                return (
                    current
                    if current.usable(self._clock())
                    else current.with_status(REAUTHORIZATION_REQUIRED)
                )
            # Read the client secret before taking the lease, so the lease covers only the
            # provider call and the vault write.
            await self._client_secret(spec)
            lease_key = f"{user.user_hash}#{spec.name}"
            deadline = self._clock() + self._lease_wait
            delay = 0.05
            while True:
                try:
                    acquired = await self._sessions.acquire_lease(
                        lease_key, owner=self._owner, seconds=self._lease_seconds
                    )
                except SessionStoreUnavailable as exc:
                    raise Unavailable(exc.code) from None
                if acquired:
                    try:
                        async with self._renewing(lease_key):
                            return await self._refresh_holding_lease(user, spec, request_id)
                    finally:
                        # An unreleased lease expires on its own.
                        with contextlib.suppress(SessionStoreUnavailable):
                            await self._sessions.release_lease(lease_key, owner=self._owner)
                # Another task is refreshing: wait for its result in the vault.
                await anyio.sleep(delay)
                delay = min(delay * 2, 0.5)
                latest = await self._read(user.user_hash, spec.name, cached=False)
                if latest is None:
                    return None
                if (
                    not bound_to(latest, spec)
                    or latest.status != ACTIVE
                    or latest.fresh(self._clock(), self._skew)
                ):
                    return latest
                if self._clock() > deadline:
                    if latest.usable(self._clock()):
                        return latest
                    raise Unavailable("refresh_busy", retry_after=2)

    @contextlib.asynccontextmanager
    async def _renewing(self, lease_key: str) -> AsyncIterator[None]:
        """Keep the refresh lease alive while the body runs (renewed every third of it)."""

        async def renew() -> None:
            interval = max(self._lease_seconds / 3, 0.2)
            while True:
                await anyio.sleep(interval)
                try:
                    held = await self._sessions.renew_lease(
                        lease_key, owner=self._owner, seconds=self._lease_seconds
                    )
                except SessionStoreUnavailable:
                    continue  # try again; the conditional vault write still protects us
                if not held:
                    return  # taken over: the conditional vault write decides who wins

        try:
            async with anyio.create_task_group() as group:
                group.start_soon(renew)
                try:
                    yield
                finally:
                    group.cancel_scope.cancel()
        except BaseExceptionGroup as grouped:
            # anyio wraps the body's exception (Unavailable, FlowError) in a group; the renewer
            # itself never raises, so there is exactly one to hand back to the caller as is.
            if len(grouped.exceptions) == 1:
                raise grouped.exceptions[0] from None
            raise

    async def _refresh_holding_lease(
        self, user: VerifiedUser, spec: ProviderSpec, request_id: str
    ) -> TokenRecord | None:
        current = await self._read(user.user_hash, spec.name, cached=False)
        if current is None:
            return None
        if (
            not bound_to(current, spec)
            or current.status != ACTIVE
            or current.fresh(self._clock(), self._skew)
        ):
            return current
        if not current.refresh_token or current.version is None:
            usable = current.usable(self._clock())
            return current if usable else current.with_status(REAUTHORIZATION_REQUIRED)
        secret = await self._client_secret(spec)
        self.upstream_refreshes += 1
        try:
            grant = await self._oauth.refresh(
                spec, client_secret=secret, refresh_token=current.refresh_token
            )
        except ProviderError as exc:
            audit(
                "refresh_failed",
                outcome="error",
                request_id=request_id,
                user_hash=user.user_hash,
                provider=spec.name,
                reason=exc.code,
            )
            if exc.kind == "invalid_grant":
                dead = replace(
                    current, access_token="", refresh_token=None, status=REAUTHORIZATION_REQUIRED
                )
                stored = await self._replace(user, spec.name, dead, current.version, request_id)
                if stored is None:
                    # Another writer stored a newer record (the user reconnected, or another
                    # task refreshed after our lease ran out) or the user disconnected: keep it.
                    return await self._read(user.user_hash, spec.name, cached=False)
                return stored
            if current.usable(self._clock()):
                return current  # still valid for a while: serve it, refresh next time
            raise Unavailable(f"provider_{exc.code}"[:60], status=502, retry_after=10) from None
        updated = self._record(spec, grant, requested=current.scopes, previous=current)
        # If this fails, the provider may have rotated the refresh token we could not save; the
        # old one may now be dead, and the next refresh will ask the user to reconnect.
        stored = await self._replace(user, spec.name, updated, current.version, request_id)
        if stored is None:
            return await self._discard(user, spec, updated, request_id)
        audit(
            "token_refreshed",
            outcome="ok",
            request_id=request_id,
            user_hash=user.user_hash,
            provider=spec.name,
            scopes=updated.scopes,
        )
        return stored

    async def _replace(
        self,
        user: VerifiedUser,
        provider: str,
        record: TokenRecord,
        expected_version: str,
        request_id: str,
    ) -> TokenRecord | None:
        try:
            return await self._vault.replace(
                user.user_hash, provider, record, expected_version=expected_version
            )
        except VaultUnavailable as exc:
            self._vault_down(exc, user, provider, request_id)

    async def _discard(
        self, user: VerifiedUser, spec: ProviderSpec, fresh: TokenRecord, request_id: str
    ) -> TokenRecord | None:
        """Our refreshed tokens lost the write: someone stored a newer record, or the user
        disconnected while the provider answered. Serve the newer record; after a disconnect,
        revoke what we just obtained, since no one will ever use it."""
        latest = await self._read(user.user_hash, spec.name, cached=False)
        audit(
            "refresh_discarded",
            outcome="superseded" if latest is not None else "disconnected",
            request_id=request_id,
            user_hash=user.user_hash,
            provider=spec.name,
        )
        if latest is None:
            await self._revoke_upstream(spec, fresh)
        return latest

    async def _revoke_upstream(self, spec: ProviderSpec, record: TokenRecord) -> dict[str, str]:
        """Best effort, never raises: an unreadable client secret only skips the styles that
        need it (the outcome says `not_attempted`)."""
        secret: str | None = None
        if revocation_needs_client_secret(spec):
            with contextlib.suppress(Unavailable):
                secret = await self._client_secret(spec)
        return await self._oauth.revoke_tokens(
            spec,
            client_secret=secret,
            access_token=record.access_token,
            refresh_token=record.refresh_token,
        )

    def _record(
        self,
        spec: ProviderSpec,
        grant: TokenGrant,
        *,
        requested: tuple[str, ...],
        previous: TokenRecord | None = None,
    ) -> TokenRecord:
        if grant.scopes is not None:
            scopes = grant.scopes
        elif previous is not None:
            scopes = previous.scopes
        else:
            scopes = request_scopes(spec, requested)
        return TokenRecord(
            provider=spec.name,
            access_token=grant.access_token,
            token_type=grant.token_type,
            refresh_token=grant.refresh_token or (previous.refresh_token if previous else None),
            expires_at=grant.expires_at,
            scopes=tuple(scopes),
            obtained_at=int(self._clock()),
            status=ACTIVE,
            issuer=spec.issuer if spec.resource is not None else None,
            resource=spec.resource,
        )

    async def _client_secret(self, spec: ProviderSpec) -> str:
        """The provider's client secret from Secrets Manager, cached five minutes; "" for a
        public client (token endpoint auth method "none"), which has none."""
        if spec.token_endpoint_auth_method == PUBLIC_CLIENT:
            return ""
        cached = self._client_secrets.get(spec.name)
        if cached and cached[0] > self._clock():
            return cached[1]
        if not spec.secret_arn:
            raise Unavailable("client_secret_not_configured", status=503, retry_after=60)
        arn = spec.secret_arn

        def read() -> str:
            value = self._secrets.get_secret_value(SecretId=arn)["SecretString"]
            data = json.loads(value)
            return str(data["client_secret"])

        try:
            secret = await anyio.to_thread.run_sync(read)
        except (ClientError, BotoCoreError, KeyError, ValueError):
            raise Unavailable("client_secret_unavailable") from None
        self._client_secrets[spec.name] = (self._clock() + 300, secret)
        return secret
