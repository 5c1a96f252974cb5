"""Authorization sessions, one-time OAuth states and refresh leases in one DynamoDB table.

Items (partition key `pk`, expiry `expires_at` in epoch seconds, deleted by DynamoDB's TTL and
also checked here because TTL deletion is not immediate):

- `session#{id}`: who asked (user hash), for which provider and scopes, where to return, and
  the status `pending -> authorizing -> completed | failed`; every transition is a conditional
  write, so two requests can never both move one session forward.
- `state#{sha256(state)}`: the one-time OAuth `state` (stored hashed) with its PKCE verifier and
  nonce; the callback consumes it with a conditional delete, so a state works exactly once.
- `opensessions#{user_hash}`: how many sessions the user opened in the current window (a
  bound on open sessions per user).
- `lease#{user_hash}#{provider}`: which binder task may refresh that token right now; the
  holder renews it while its provider call runs, so a slow provider cannot outlast it.
- `action#{id}` and `openactions#{user_hash}`: approval-bound actions, written by
  `binder/actions.py` through `SessionStore.call` (see there).

State is never kept in a process, so a flow started on one binder task completes on another.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
from botocore.exceptions import BotoCoreError, ClientError

PENDING = "pending"
AUTHORIZING = "authorizing"
COMPLETED = "completed"
FAILED = "failed"


class SessionStoreUnavailable(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(f"session store unavailable ({code})")
        self.code = code


class WindowFull(Exception):
    """A per-user counter (`count_in_window`) reached its limit for the current window."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("window full")
        self.retry_after = retry_after


class TooManySessions(WindowFull):
    """The user already opened the most authorization sessions allowed in the window."""


class TransitionRefused(Exception):
    """The session was not in the state the transition requires (raced, expired or foreign)."""


@dataclass(frozen=True, kw_only=True)
class AuthSession:
    session_id: str
    user_hash: str
    provider: str
    scopes: tuple[str, ...]
    return_url: str | None
    reason: str
    status: str
    created_at: int
    expires_at: int
    # sha256 of the newest state issued for this session: only its callback may complete it.
    state_hash: str | None = None

    def expired(self, now: float) -> bool:
        return now >= self.expires_at


@dataclass(frozen=True, kw_only=True)
class PendingState:
    session_id: str
    code_verifier: str
    nonce: str | None
    expires_at: int


def hash_secret(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class SessionStore:
    def __init__(
        self,
        *,
        client: Any,
        table: str,
        ttl_seconds: int = 600,
        max_sessions_per_user: int = 20,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._table = table
        self._ttl = ttl_seconds
        self._max_sessions = max_sessions_per_user
        self._clock = clock
        self.aws_calls = 0

    async def create(
        self,
        *,
        user_hash: str,
        provider: str,
        scopes: tuple[str, ...],
        return_url: str | None,
        reason: str,
    ) -> AuthSession:
        await self._count_session(user_hash)
        now = int(self._clock())
        session = AuthSession(
            session_id=secrets.token_urlsafe(24),
            user_hash=user_hash,
            provider=provider,
            scopes=scopes,
            return_url=return_url,
            reason=reason,
            status=PENDING,
            created_at=now,
            expires_at=now + self._ttl,
        )
        item: dict[str, Any] = {
            "pk": {"S": f"session#{session.session_id}"},
            "user_hash": {"S": user_hash},
            "provider": {"S": provider},
            "scopes": {"L": [{"S": s} for s in scopes]},
            "reason": {"S": reason},
            "status": {"S": PENDING},
            "created_at": {"N": str(now)},
            "expires_at": {"N": str(session.expires_at)},
        }
        if return_url:
            item["return_url"] = {"S": return_url}
        try:
            await self._call(
                "put_item",
                TableName=self._table,
                Item=item,
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ConditionFailed:
            # The id is 192 random bits: the only item it can meet is this very put, applied
            # by an attempt whose answer was lost and retried by botocore.
            stored = await self.get(session.session_id)
            if stored is None or (stored.user_hash, stored.created_at) != (user_hash, now):
                raise SessionStoreUnavailable("ConditionalCheckFailed") from None
        return session

    async def _count_session(self, user_hash: str) -> None:
        """Count one more session against the user's window, or raise TooManySessions.

        Sessions live `ttl` seconds and a user may open at most `max_sessions_per_user` per
        window of that length, so at any moment one user holds at most twice that many (two
        windows overlap): a signed-in user, or an agent acting for one, cannot fill the table.
        """
        try:
            await self.count_in_window(
                f"opensessions#{user_hash}", limit=self._max_sessions, window=self._ttl
            )
        except WindowFull as exc:
            raise TooManySessions(exc.retry_after) from None

    async def count_in_window(self, counter: str, *, limit: int, window: int) -> None:
        """Count one more item against the counter `counter` (its `pk`), or raise WindowFull.

        At most `limit` per window of `window` seconds; the window starts with the first item.
        One conditional write per counted item."""
        key = {"pk": {"S": counter}}
        for _ in range(2):
            now = int(self._clock())
            try:
                await self._call(
                    "update_item",
                    TableName=self._table,
                    Key=key,
                    UpdateExpression="SET n = n + :one",
                    ConditionExpression="window_ends > :now AND n < :max",
                    ExpressionAttributeValues={
                        ":one": {"N": "1"},
                        ":now": {"N": str(now)},
                        ":max": {"N": str(limit)},
                    },
                )
                return
            except ConditionFailed:
                pass
            try:
                await self._call(
                    "put_item",
                    TableName=self._table,
                    Item={
                        **key,
                        "n": {"N": "1"},
                        "window_ends": {"N": str(now + window)},
                        "expires_at": {"N": str(now + window)},
                    },
                    ConditionExpression="attribute_not_exists(pk) OR window_ends <= :now",
                    ExpressionAttributeValues={":now": {"N": str(now)}},
                )
                return
            except ConditionFailed:
                pass  # a live, full window; or another request just opened one: look again
        item = (
            await self._call("get_item", TableName=self._table, Key=key, ConsistentRead=True)
        ).get("Item") or {}
        ends = int(item.get("window_ends", {}).get("N", "0"))
        raise WindowFull(retry_after=max(1, ends - int(self._clock())))

    async def get(self, session_id: str) -> AuthSession | None:
        response = await self._call(
            "get_item",
            TableName=self._table,
            Key={"pk": {"S": f"session#{session_id}"}},
            ConsistentRead=True,
        )
        item = response.get("Item")
        if not item:
            return None
        return AuthSession(
            session_id=session_id,
            user_hash=item["user_hash"]["S"],
            provider=item["provider"]["S"],
            scopes=tuple(s["S"] for s in item.get("scopes", {}).get("L", [])),
            return_url=item.get("return_url", {}).get("S"),
            reason=item.get("reason", {}).get("S", "no_connection"),
            status=item["status"]["S"],
            created_at=int(item["created_at"]["N"]),
            expires_at=int(item["expires_at"]["N"]),
            state_hash=item.get("state_hash", {}).get("S"),
        )

    async def begin_authorization(
        self,
        session: AuthSession,
        *,
        user_hash: str,
        state: str,
        code_verifier: str,
        nonce: str | None,
    ) -> None:
        """pending -> authorizing for its own user only, and record the one-time state.

        Also authorizing -> authorizing with a new state, for the same user: a user whose first
        open got no answer (a 503, a lost response) can open the link again, and only the newest
        state's callback completes the session. Both writes accept meeting themselves, so
        botocore's retry of an applied transaction succeeds instead of killing the link.
        """
        now = int(self._clock())
        state_hash = hash_secret(state)
        state_item: dict[str, Any] = {
            "pk": {"S": f"state#{state_hash}"},
            "session_id": {"S": session.session_id},
            "code_verifier": {"S": code_verifier},
            "expires_at": {"N": str(session.expires_at)},
        }
        if nonce:
            state_item["nonce"] = {"S": nonce}
        try:
            await self._call(
                "transact_write_items",
                TransactItems=[
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": {"pk": {"S": f"session#{session.session_id}"}},
                            "UpdateExpression": "SET #s = :authorizing, state_hash = :state",
                            "ConditionExpression": (
                                "#s IN (:pending, :authorizing) AND user_hash = :user "
                                "AND expires_at > :now"
                            ),
                            "ExpressionAttributeNames": {"#s": "status"},
                            "ExpressionAttributeValues": {
                                ":authorizing": {"S": AUTHORIZING},
                                ":pending": {"S": PENDING},
                                ":user": {"S": user_hash},
                                ":now": {"N": str(now)},
                                ":state": {"S": state_hash},
                            },
                        }
                    },
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": state_item,
                            # 256 random bits: only this transaction's earlier attempt can
                            # have written the same state.
                            "ConditionExpression": "attribute_not_exists(pk) OR session_id = :sid",
                            "ExpressionAttributeValues": {":sid": {"S": session.session_id}},
                        }
                    },
                ],
            )
        except ConditionFailed:
            raise TransitionRefused from None

    async def consume_state(self, state: str) -> PendingState | None:
        """Delete the state item and return it; None if unknown, used before or expired."""
        try:
            response = await self._call(
                "delete_item",
                TableName=self._table,
                Key={"pk": {"S": f"state#{hash_secret(state)}"}},
                ConditionExpression="attribute_exists(pk)",
                ReturnValues="ALL_OLD",
            )
        except ConditionFailed:
            return None
        item = response.get("Attributes") or {}
        if not item or int(item["expires_at"]["N"]) <= self._clock():
            return None
        return PendingState(
            session_id=item["session_id"]["S"],
            code_verifier=item["code_verifier"]["S"],
            nonce=item.get("nonce", {}).get("S"),
            expires_at=int(item["expires_at"]["N"]),
        )

    async def transition(self, session_id: str, *, to: str, allowed_from: tuple[str, ...]) -> None:
        values: dict[str, Any] = {":to": {"S": to}}
        names = []
        for i, status in enumerate(allowed_from):
            values[f":f{i}"] = {"S": status}
            names.append(f":f{i}")
        try:
            await self._call(
                "update_item",
                TableName=self._table,
                Key={"pk": {"S": f"session#{session_id}"}},
                UpdateExpression="SET #s = :to",
                ConditionExpression=f"attribute_exists(pk) AND #s IN ({', '.join(names)})",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues=values,
            )
        except ConditionFailed:
            raise TransitionRefused from None

    async def fail(self, session_id: str) -> bool:
        """Kill a session whatever its progress (a forwarded link is dead for everyone).

        False if the store could not be reached: the caller still refuses the request (and
        audits it); the session then lives until it expires, still bound to its user."""
        try:
            await self.transition(session_id, to=FAILED, allowed_from=(PENDING, AUTHORIZING))
        except TransitionRefused:
            pass
        except SessionStoreUnavailable:
            return False
        return True

    async def acquire_lease(self, key: str, *, owner: str, seconds: float) -> bool:
        """Take the lease if no one holds it or it ran out. Lease times are in milliseconds
        (`until_ms`): whole seconds would make a short lease anything from 0 to 1 s long;
        `expires_at` (seconds, rounded up) is only for DynamoDB's TTL."""
        now_ms = int(self._clock() * 1000)
        until_ms = now_ms + int(seconds * 1000)
        try:
            await self._call(
                "put_item",
                TableName=self._table,
                Item={
                    "pk": {"S": f"lease#{key}"},
                    "owner": {"S": owner},
                    "until_ms": {"N": str(until_ms)},
                    "expires_at": {"N": str(until_ms // 1000 + 1)},
                },
                # Ours already: botocore retried a put whose answer was lost (one task refreshes
                # a key at a time: the in-process lock). The last clause: a lease written by a
                # binder from before `until_ms` (a rolling deploy) runs out at its
                # `expires_at`, not when TTL gets to it.
                ConditionExpression=(
                    "attribute_not_exists(pk) OR until_ms <= :now OR #o = :owner "
                    "OR (attribute_not_exists(until_ms) AND expires_at <= :now_s)"
                ),
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={
                    ":now": {"N": str(now_ms)},
                    ":now_s": {"N": str(now_ms // 1000)},
                    ":owner": {"S": owner},
                },
            )
        except ConditionFailed:
            return False
        return True

    async def renew_lease(self, key: str, *, owner: str, seconds: float) -> bool:
        """Extend a lease this owner still holds; False if it ran out and another took it."""
        until_ms = int(self._clock() * 1000) + int(seconds * 1000)
        try:
            await self._call(
                "update_item",
                TableName=self._table,
                Key={"pk": {"S": f"lease#{key}"}},
                UpdateExpression="SET until_ms = :until, expires_at = :ttl",
                ConditionExpression="#o = :owner",
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={
                    ":owner": {"S": owner},
                    ":until": {"N": str(until_ms)},
                    ":ttl": {"N": str(until_ms // 1000 + 1)},
                },
            )
        except ConditionFailed:
            return False
        return True

    async def release_lease(self, key: str, *, owner: str) -> None:
        # Refused: it expired and another task holds it now, so it is not ours to delete.
        with contextlib.suppress(ConditionFailed):
            await self._call(
                "delete_item",
                TableName=self._table,
                Key={"pk": {"S": f"lease#{key}"}},
                ConditionExpression="#o = :owner",
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={":owner": {"S": owner}},
            )

    async def call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        """One DynamoDB operation on this table's client, for other stores of the same table
        (`binder/actions.py`): a failed condition raises ConditionFailed, an AWS failure
        SessionStoreUnavailable. Only the operations this module calls are granted."""
        return await self._call(operation, **kwargs)

    async def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        self.aws_calls += 1
        method = getattr(self._client, operation)
        try:
            result: dict[str, Any] = await anyio.to_thread.run_sync(lambda: method(**kwargs))
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", "Unknown"))
            if code == "ConditionalCheckFailedException":
                raise ConditionFailed from None
            if code == "TransactionCanceledException":
                # Refused only when a condition failed; a conflict with another transaction
                # or throttling is an outage to retry, not a used session.
                reasons = exc.response.get("CancellationReasons") or []
                if any(r.get("Code") == "ConditionalCheckFailed" for r in reasons):
                    raise ConditionFailed from None
                if not reasons:
                    raise ConditionFailed from None
                raise SessionStoreUnavailable("TransactionConflict") from None
            raise SessionStoreUnavailable(code) from None
        except BotoCoreError as exc:
            raise SessionStoreUnavailable(type(exc).__name__) from None
        return result


class ConditionFailed(Exception):
    """A conditional write found the item in another state (for `call`'s users too)."""
