"""The token vault: one Secrets Manager secret per (user, provider), under the vault CMK.

Secret name: `{prefix}/{provider}/{user_hash}` (a SHA-256 of the user key: no identifier in a
resource name). Value: a JSON `TokenRecord`. A small in-memory cache makes a hot token request
cost no AWS call; entries live at most `cache_ttl` seconds and never past the token's expiry,
and every write through this process replaces its entry. Other binder tasks may hold an older
entry until it expires, which is why a refresh always re-reads the secret first.

Every write is a compare-and-swap on the secret's version, so a writer that lost a race (a
refresh whose lease ran out, a refresh racing a disconnect or a reconnect) can never overwrite a
newer record or re-create a deleted one. Secrets Manager has no conditional PutSecretValue, but
UpdateSecretVersionStage with RemoveFromVersionId fails unless the label is still on that
version: the new value is written under a private staging label, then `AWSCURRENT` is moved to
it from the version the writer read. Written by hand: no library offers this.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import anyio
from botocore.exceptions import BotoCoreError, ClientError

ACTIVE = "active"
REAUTHORIZATION_REQUIRED = "reauthorization_required"
CURRENT = "AWSCURRENT"
# The label a new version carries until AWSCURRENT moves to it (or a faster writer wins).
PENDING = "BINDER_PENDING"
_NOT_FOUND = "ResourceNotFoundException"
_EXISTS = "ResourceExistsException"
# What Secrets Manager answers when a version or label is not where the caller said, or the
# secret is being deleted: the swap lost, it did not fail.
_LOST_SWAP = frozenset({"InvalidParameterException", "InvalidRequestException", _NOT_FOUND})
_WRITE_ATTEMPTS = 3
# The only tags the binder sets on a vault secret; the broker role's TagResource grant is
# conditioned on exactly these keys (constructs/token_vault.py).
TAG_PROVIDER = "oauth-provider"
TAG_USER_HASH = "user-hash"

_log = logging.getLogger("binder.vault")


class VaultUnavailable(Exception):
    """Secrets Manager or KMS refused or failed after retries. `code` is AWS's error code."""

    def __init__(self, code: str) -> None:
        super().__init__(f"token vault unavailable ({code})")
        self.code = code


@dataclass(frozen=True, kw_only=True)
class TokenRecord:
    provider: str
    access_token: str = field(repr=False)
    token_type: str
    refresh_token: str | None = field(default=None, repr=False)
    expires_at: int | None
    scopes: tuple[str, ...]
    obtained_at: int
    status: str = ACTIVE
    # The authorization server and RFC 8707 resource the tokens were issued by and for (mcp
    # providers); None for providers without a resource. A token is only handed out for the
    # resource it was issued for (Broker.token).
    issuer: str | None = None
    resource: str | None = None
    # The Secrets Manager version this record was read from or written as; not serialized.
    version: str | None = field(default=None, compare=False)

    def to_json(self) -> str:
        data: dict[str, Any] = {
            "provider": self.provider,
            "access_token": self.access_token,
            "token_type": self.token_type,
            "refresh_token": self.refresh_token,
            "expires_at": self.expires_at,
            "scopes": list(self.scopes),
            "obtained_at": self.obtained_at,
            "status": self.status,
        }
        if self.resource is not None:
            data["issuer"] = self.issuer
            data["resource"] = self.resource
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> TokenRecord:
        data = json.loads(text)
        return cls(
            provider=str(data["provider"]),
            access_token=str(data["access_token"]),
            token_type=str(data.get("token_type") or "Bearer"),
            refresh_token=data.get("refresh_token"),
            expires_at=int(data["expires_at"]) if data.get("expires_at") is not None else None,
            scopes=tuple(str(s) for s in data.get("scopes", ())),
            obtained_at=int(data.get("obtained_at", 0)),
            status=str(data.get("status", ACTIVE)),
            issuer=_optional_str(data.get("issuer")),
            resource=_optional_str(data.get("resource")),
        )

    def covers(self, scopes: tuple[str, ...]) -> bool:
        return set(scopes) <= set(self.scopes)

    def fresh(self, now: float, skew: int) -> bool:
        """Usable without a refresh: no expiry, or more than `skew` seconds left."""
        return self.expires_at is None or self.expires_at - now > skew

    def usable(self, now: float) -> bool:
        return self.status == ACTIVE and (self.expires_at is None or self.expires_at > now)

    def with_status(self, status: str) -> TokenRecord:
        return replace(self, status=status)


class Vault:
    """Reads and writes `TokenRecord`s; boto3 calls run in worker threads."""

    def __init__(
        self,
        *,
        client: Any,
        prefix: str,
        kms_key_id: str,
        cache_ttl: int = 60,
        cache_max_entries: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._kms_key_id = kms_key_id
        self._cache_ttl = cache_ttl
        self._cache_max = cache_max_entries
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, TokenRecord]] = OrderedDict()
        self.aws_calls = 0  # counted for the benchmarks and tests

    def secret_name(self, user_hash: str, provider: str) -> str:
        return f"{self._prefix}/{provider}/{user_hash}"

    async def get(
        self, user_hash: str, provider: str, *, cached: bool = True
    ) -> TokenRecord | None:
        name = self.secret_name(user_hash, provider)
        if cached:
            hit = self._cache.get(name)
            if hit is not None and hit[0] > self._clock():
                self._cache.move_to_end(name)
                return hit[1]
        response = await self._current(name)
        if response is None:
            self._cache.pop(name, None)
            return None
        try:
            record = TokenRecord.from_json(response["SecretString"])
        except (KeyError, TypeError, ValueError):
            # Not a record this code wrote: treat the connection as absent (consent writes a
            # good one over it) rather than failing every request of this user.
            _log.warning(
                "unreadable vault record treated as absent",
                extra={"fields": {"provider": provider, "user_hash": user_hash}},
            )
            return None
        record = replace(record, version=str(response["VersionId"]))
        self._remember(name, record)
        return record

    async def put(self, user_hash: str, provider: str, record: TokenRecord) -> TokenRecord:
        """Store a new connection: the last writer wins. Creates the secret on first use.

        A concurrent writer makes the swap lose; the write is then retried on top of the
        other writer's version, a few times. Nothing is half-written on error.
        """
        name = self.secret_name(user_hash, provider)
        value = record.to_json()
        for _ in range(_WRITE_ATTEMPTS):
            current = await self._current(name)
            if current is None:
                version = await self._create(name, provider, user_hash, value)
                if version is None:
                    continue  # another task created it first: write on top of theirs
            else:
                version = await self._swap(name, value, expected=str(current["VersionId"]))
                if version is None:
                    continue
            stored = replace(record, version=version)
            self._remember(name, stored)
            return stored
        self._cache.pop(name, None)
        raise VaultUnavailable("WriteConflict")

    async def replace(
        self, user_hash: str, provider: str, record: TokenRecord, *, expected_version: str
    ) -> TokenRecord | None:
        """Write `record` only if the stored version is still `expected_version`.

        None if another writer got there first or the connection was deleted: the caller
        must not assume its record is stored. Never creates the secret.
        """
        name = self.secret_name(user_hash, provider)
        version = await self._swap(name, record.to_json(), expected=expected_version)
        if version is None:
            self._cache.pop(name, None)
            return None
        stored = replace(record, version=version)
        self._remember(name, stored)
        return stored

    async def delete(self, user_hash: str, provider: str) -> bool:
        """Delete at once (no recovery window), so the user can connect again right away."""
        name = self.secret_name(user_hash, provider)
        self._cache.pop(name, None)
        return await self.delete_named(name)

    # -- other secrets under the vault prefix (binder.registrations) ----------------------------

    def named(self, suffix: str) -> str:
        """The name of a secret under the vault prefix that is not a user's tokens. `suffix`
        starts with a segment no provider name can have ("_..."), so it never collides."""
        return f"{self._prefix}/{suffix}"

    async def read_secret(self, name: str) -> tuple[str, str] | None:
        """The current value and version of the secret `name`; None if there is none."""
        response = await self._current(name)
        if response is None:
            return None
        return str(response["SecretString"]), str(response["VersionId"])

    async def create_secret(
        self, name: str, value: str, *, description: str, tags: dict[str, str]
    ) -> str | None:
        """Create `name` under the vault CMK; its version, or None if it exists already (the
        conditional write concurrent creators race on). `tags` must use the vault's keys."""
        return await self._create_named(name, value, description=description, tags=tags)

    async def swap_secret(self, name: str, value: str, *, expected: str) -> str | None:
        """Compare-and-swap: write `value` if `expected` is still current; else None."""
        return await self._swap(name, value, expected=expected)

    async def delete_named(self, name: str) -> bool:
        """Delete the secret `name` at once (no recovery window, so the name is free again);
        False if it was gone already."""
        try:
            await self._call("delete_secret", SecretId=name, ForceDeleteWithoutRecovery=True)
        except ClientError as exc:
            if _code(exc) == _NOT_FOUND:
                return False
            raise VaultUnavailable(_code(exc)) from None
        return True

    async def _current(self, name: str) -> dict[str, Any] | None:
        """The AWSCURRENT version (asked for by label: moto's default can lag behind)."""
        try:
            return await self._call("get_secret_value", SecretId=name, VersionStage=CURRENT)
        except ClientError as exc:
            if _code(exc) == _NOT_FOUND:
                return None
            raise VaultUnavailable(_code(exc)) from None

    async def _create(self, name: str, provider: str, user_hash: str, value: str) -> str | None:
        return await self._create_named(
            name,
            value,
            description=f"OAuth tokens of one user for {provider} (token vault)",
            tags={TAG_PROVIDER: provider, TAG_USER_HASH: user_hash},
        )

    async def _create_named(
        self, name: str, value: str, *, description: str, tags: dict[str, str]
    ) -> str | None:
        if set(tags) - {TAG_PROVIDER, TAG_USER_HASH}:
            raise ValueError("vault secrets carry only the vault's tag keys")
        version = str(uuid.uuid4())
        try:
            await self._call(
                "create_secret",
                Name=name,
                ClientRequestToken=version,
                KmsKeyId=self._kms_key_id,
                SecretString=value,
                Description=description,
                Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
            )
        except ClientError as exc:
            if _code(exc) == _EXISTS:
                return None
            raise VaultUnavailable(_code(exc)) from None
        return version

    async def _swap(self, name: str, value: str, *, expected: str) -> str | None:
        """Write `value` as a new version and make it current if `expected` still is.

        The new version id if it became current; None if the secret is gone or another
        version became current first (then the written version keeps only the pending
        label and is never read).
        """
        version = str(uuid.uuid4())
        try:
            await self._call(
                "put_secret_value",
                SecretId=name,
                ClientRequestToken=version,
                SecretString=value,
                VersionStages=[PENDING],
            )
        except ClientError as exc:
            if _code(exc) in _LOST_SWAP:
                return None
            raise VaultUnavailable(_code(exc)) from None
        try:
            await self._call(
                "update_secret_version_stage",
                SecretId=name,
                VersionStage=CURRENT,
                MoveToVersionId=version,
                RemoveFromVersionId=expected,
            )
        except ClientError as exc:
            if _code(exc) not in _LOST_SWAP:
                raise VaultUnavailable(_code(exc)) from None
            # Lost, or won on a first attempt whose answer was lost and retried by botocore:
            # the current version says which. A refusal while `expected` is still current is
            # not a lost race but a failure.
            current = await self._current(name)
            if current is None:
                return None
            if current["VersionId"] == version:
                return version
            if current["VersionId"] == expected:
                raise VaultUnavailable(_code(exc)) from None
            return None
        return version

    def forget(self, user_hash: str, provider: str) -> None:
        self._cache.pop(self.secret_name(user_hash, provider), None)

    def _remember(self, name: str, record: TokenRecord) -> None:
        if self._cache_ttl <= 0:
            return
        until = self._clock() + self._cache_ttl
        if record.expires_at is not None:
            until = min(until, record.expires_at)
        self._cache[name] = (until, record)
        self._cache.move_to_end(name)
        while len(self._cache) > self._cache_max:
            self._cache.popitem(last=False)

    async def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        self.aws_calls += 1
        method = getattr(self._client, operation)
        try:
            result: dict[str, Any] = await anyio.to_thread.run_sync(lambda: method(**kwargs))
        except BotoCoreError as exc:
            # Connection errors and timeouts that survived botocore's retries.
            raise VaultUnavailable(type(exc).__name__) from None
        return result


def _optional_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "Unknown"))
