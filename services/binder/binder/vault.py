"""The token vault: one Secrets Manager secret per (user, provider), under the vault CMK.

Secret name: `{prefix}/{provider}/{user_hash}` (a SHA-256 of the user key: no identifier in a
resource name). Value: a JSON `TokenRecord`. A small in-memory cache makes a hot token request
cost no AWS call; entries live at most `cache_ttl` seconds and never past the token's expiry,
and every write through this process replaces its entry. Other binder tasks may hold an older
entry until it expires, which is why a refresh always re-reads the secret first.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import anyio
from botocore.exceptions import BotoCoreError, ClientError

ACTIVE = "active"
REAUTHORIZATION_REQUIRED = "reauthorization_required"
_NOT_FOUND = "ResourceNotFoundException"
_EXISTS = "ResourceExistsException"


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

    def to_json(self) -> str:
        return json.dumps(
            {
                "provider": self.provider,
                "access_token": self.access_token,
                "token_type": self.token_type,
                "refresh_token": self.refresh_token,
                "expires_at": self.expires_at,
                "scopes": list(self.scopes),
                "obtained_at": self.obtained_at,
                "status": self.status,
            },
            separators=(",", ":"),
        )

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
        try:
            response = await self._call("get_secret_value", SecretId=name)
        except ClientError as exc:
            if _code(exc) == _NOT_FOUND:
                self._cache.pop(name, None)
                return None
            raise VaultUnavailable(_code(exc)) from None
        record = TokenRecord.from_json(response["SecretString"])
        self._remember(name, record)
        return record

    async def put(self, user_hash: str, provider: str, record: TokenRecord) -> None:
        """Write the record (creating the secret on first use); nothing half-written on error."""
        name = self.secret_name(user_hash, provider)
        value = record.to_json()
        try:
            await self._call("put_secret_value", SecretId=name, SecretString=value)
        except ClientError as exc:
            if _code(exc) != _NOT_FOUND:
                self._cache.pop(name, None)
                raise VaultUnavailable(_code(exc)) from None
            try:
                await self._call(
                    "create_secret",
                    Name=name,
                    KmsKeyId=self._kms_key_id,
                    SecretString=value,
                    Description=f"OAuth tokens of one user for {provider} (token vault)",
                    Tags=[
                        {"Key": "oauth-provider", "Value": provider},
                        {"Key": "user-hash", "Value": user_hash},
                    ],
                )
            except ClientError as create_exc:
                if _code(create_exc) != _EXISTS:
                    raise VaultUnavailable(_code(create_exc)) from None
                # Another task created it first: ours is the newer value.
                try:
                    await self._call("put_secret_value", SecretId=name, SecretString=value)
                except ClientError as put_exc:
                    raise VaultUnavailable(_code(put_exc)) from None
        self._remember(name, record)

    async def delete(self, user_hash: str, provider: str) -> bool:
        """Delete at once (no recovery window), so the user can connect again right away."""
        name = self.secret_name(user_hash, provider)
        self._cache.pop(name, None)
        try:
            await self._call("delete_secret", SecretId=name, ForceDeleteWithoutRecovery=True)
        except ClientError as exc:
            if _code(exc) == _NOT_FOUND:
                return False
            raise VaultUnavailable(_code(exc)) from None
        return True

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


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "Unknown"))
