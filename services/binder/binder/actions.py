"""Approval-bound actions: a data-changing tool call that runs once, with exactly the arguments
the user approved in the browser, or not at all.

1. The agent proposes `{provider, tool, arguments, turn_id}` (`POST /internal/actions`): the
   binder stores the arguments' RFC 8785 canonical JSON and its SHA-256, status `pending`, for
   `ACTION_TTL_SECONDS`.
2. The user opens `/oauth2/actions/{id}` through the ALB and approves (`approved`) or denies
   (`denied`). A different signed-in user opening or posting it is refused, and the action is
   denied for everyone, as a forwarded consent link is.
3. The agent exchanges the approved action and the hash of the arguments it is about to send
   for the provider token (`POST /internal/actions/{id}/token`). The token is obtained first;
   then one conditional write moves `approved -> executing`, so of any number of concurrent or
   retried calls exactly one gets the token, and no token leaves without the transition.
4. The agent records the outcome (`POST /internal/actions/{id}/result`): `executing -> done`,
   once. A retried confirmation reads the stored outcome instead of running the call again.

Items in the session table (written through `SessionStore.call`, so the table's item-level
grant covers them):

- `action#{id}`: user hash, provider, tool, canonical arguments, their hash, turn id, status,
  `deadline` (the action's expiry, `expires_at` in the API) and `expires_at` (DynamoDB's TTL
  attribute) a day later, so a finished action's outcome stays readable for a day. Every
  transition is a conditional write on the status, the user and, before execution, the
  deadline. `expired` is never written: a `pending` or `approved` action past its deadline is
  expired when read, and no transition out of it can succeed.
- `openactions#{user_hash}`: how many actions the user proposed in the current window
  (`MAX_ACTIONS_PER_USER` per `ACTION_TTL_SECONDS`), as `opensessions#` bounds sessions.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, NoReturn

import rfc8785

from binder.audit import audit
from binder.broker import Broker, ConsentRequired, IssuedToken, Unavailable
from binder.providers.spec import ProviderSpec
from binder.sessions import ConditionFailed, SessionStore, SessionStoreUnavailable, WindowFull
from svc_common.identity import VerifiedUser

PENDING = "pending"
APPROVED = "approved"
EXECUTING = "executing"
DONE = "done"
DENIED = "denied"
EXPIRED = "expired"

SUCCEEDED = "succeeded"
FAILED = "failed"

# The canonical arguments, stored in one DynamoDB item (400 KB at most) and shown whole.
MAX_ARGUMENTS_BYTES = 64 * 1024
# A request body may escape every non-ASCII character of the arguments as `\uXXXX` (Python's
# json.dumps does), up to three times their UTF-8 size; the rest of a proposal is small.
MAX_PROPOSAL_BODY_BYTES = 3 * MAX_ARGUMENTS_BYTES + 16 * 1024
RETENTION_SECONDS = 86400
MAX_TURN_ID_CHARS = 128
MAX_SUMMARY_CHARS = 2000

ACTION_ID = re.compile(r"[A-Za-z0-9_-]{32,64}")
TOOL_NAME = re.compile(r"[a-z0-9_]{1,64}")
SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class ArgumentsError(ValueError):
    """The arguments cannot be stored; `status` 400 (not canonicalizable) or 413 (too large)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def canonical_arguments(arguments: object) -> bytes:
    """The RFC 8785 canonical JSON of a JSON object, or ArgumentsError saying why not.

    What RFC 8785 cannot represent is refused, not rounded: integers beyond 2**53, NaN and
    infinities, and strings holding lone surrogates (which `json.loads` lets through)."""
    if not isinstance(arguments, dict):
        raise ArgumentsError("arguments must be a JSON object")
    try:
        canonical = rfc8785.dumps(arguments)
    except (rfc8785.CanonicalizationError, UnicodeError, ValueError, TypeError):
        raise ArgumentsError(
            "arguments cannot be canonicalized (RFC 8785): integers beyond 2**53, "
            "NaN, infinities and lone surrogates are not allowed"
        ) from None
    if len(canonical) > MAX_ARGUMENTS_BYTES:
        raise ArgumentsError(
            f"arguments exceed {MAX_ARGUMENTS_BYTES} bytes in canonical form", status=413
        )
    return canonical


def arguments_sha256(canonical: bytes) -> str:
    return hashlib.sha256(canonical).hexdigest()


def checked_turn_id(value: object) -> str:
    if (
        not isinstance(value, str)
        or not 1 <= len(value) <= MAX_TURN_ID_CHARS
        or not (value.isascii() and value.isprintable())
    ):
        raise ValueError(f"turn_id must be 1 to {MAX_TURN_ID_CHARS} printable ASCII characters")
    return value


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """What the agent reported after running the action."""

    status: str  # SUCCEEDED or FAILED
    upstream_status: int | None
    summary: str
    recorded_at: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "upstream_status": self.upstream_status,
            "summary": self.summary,
            "recorded_at": self.recorded_at,
        }


def checked_outcome(body: Mapping[str, Any]) -> Outcome:
    """The outcome in a result body, or ValueError whose first word is the field at fault."""
    status = body.get("status")
    if status not in (SUCCEEDED, FAILED):
        raise ValueError("status must be 'succeeded' or 'failed'")
    upstream = body.get("upstream_status")
    if upstream is not None and (
        not isinstance(upstream, int) or isinstance(upstream, bool) or not 100 <= upstream <= 599
    ):
        raise ValueError("upstream_status must be an HTTP status (100-599) or null")
    summary = body.get("summary")
    if not isinstance(summary, str) or len(summary) > MAX_SUMMARY_CHARS:
        raise ValueError(f"summary must be a string of at most {MAX_SUMMARY_CHARS} characters")
    try:
        summary.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("summary must be a string without lone surrogates") from None
    return Outcome(status=status, upstream_status=upstream, summary=summary)


@dataclass(frozen=True, kw_only=True)
class Action:
    action_id: str
    user_hash: str
    provider: str
    tool: str
    arguments_json: str  # canonical
    arguments_sha256: str
    turn_id: str
    status: str  # as stored; `status_at` says what it is now
    created_at: int
    deadline: int
    outcome: Outcome | None = None

    def status_at(self, now: float) -> str:
        if self.status in (PENDING, APPROVED) and now >= self.deadline:
            return EXPIRED
        return self.status

    @property
    def arguments(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.arguments_json)
        return value


class TooManyActions(WindowFull):
    """The user already proposed the most actions allowed in the window."""


class ActionStore:
    """`action#` items in the session table; every write conditional."""

    def __init__(
        self,
        *,
        sessions: SessionStore,
        table: str,
        ttl_seconds: int = 600,
        max_per_user: int = 20,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sessions = sessions
        self._table = table
        self._ttl = ttl_seconds
        self._max = max_per_user
        self._clock = clock

    async def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        return await self._sessions.call(operation, **kwargs)

    @staticmethod
    def _key(action_id: str) -> dict[str, Any]:
        return {"pk": {"S": f"action#{action_id}"}}

    async def create(
        self,
        *,
        user_hash: str,
        provider: str,
        tool: str,
        canonical: bytes,
        turn_id: str,
    ) -> Action:
        try:
            await self._sessions.count_in_window(
                f"openactions#{user_hash}", limit=self._max, window=self._ttl
            )
        except WindowFull as exc:
            raise TooManyActions(exc.retry_after) from None
        now = int(self._clock())
        action = Action(
            action_id=secrets.token_urlsafe(32),
            user_hash=user_hash,
            provider=provider,
            tool=tool,
            arguments_json=canonical.decode("utf-8"),
            arguments_sha256=arguments_sha256(canonical),
            turn_id=turn_id,
            status=PENDING,
            created_at=now,
            deadline=now + self._ttl,
        )
        try:
            await self._call(
                "put_item",
                TableName=self._table,
                Item={
                    **self._key(action.action_id),
                    "user_hash": {"S": user_hash},
                    "provider": {"S": provider},
                    "tool": {"S": tool},
                    "arguments": {"S": action.arguments_json},
                    "arguments_sha256": {"S": action.arguments_sha256},
                    "turn_id": {"S": turn_id},
                    "status": {"S": PENDING},
                    "created_at": {"N": str(now)},
                    "deadline": {"N": str(action.deadline)},
                    "expires_at": {"N": str(action.deadline + RETENTION_SECONDS)},
                },
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ConditionFailed:
            # 256 random bits: only this put, applied once and retried by botocore, can be here.
            stored = await self.get(action.action_id)
            if stored is None or (stored.user_hash, stored.created_at) != (user_hash, now):
                raise SessionStoreUnavailable("ConditionalCheckFailed") from None
        return action

    async def get(self, action_id: str) -> Action | None:
        if not ACTION_ID.fullmatch(action_id):
            return None
        item = (
            await self._call(
                "get_item", TableName=self._table, Key=self._key(action_id), ConsistentRead=True
            )
        ).get("Item")
        if not item:
            return None
        outcome = None
        if "result_status" in item:
            upstream = item.get("result_upstream_status", {}).get("N")
            outcome = Outcome(
                status=item["result_status"]["S"],
                upstream_status=int(upstream) if upstream is not None else None,
                summary=item.get("result_summary", {}).get("S", ""),
                recorded_at=int(item.get("result_recorded_at", {}).get("N", "0")),
            )
        return Action(
            action_id=action_id,
            user_hash=item["user_hash"]["S"],
            provider=item["provider"]["S"],
            tool=item["tool"]["S"],
            arguments_json=item["arguments"]["S"],
            arguments_sha256=item["arguments_sha256"]["S"],
            turn_id=item["turn_id"]["S"],
            status=item["status"]["S"],
            created_at=int(item["created_at"]["N"]),
            deadline=int(item["deadline"]["N"]),
            outcome=outcome,
        )

    async def _update(
        self,
        action_id: str,
        *,
        sets: Mapping[str, dict[str, str]],
        condition: str,
        values: Mapping[str, dict[str, str]],
    ) -> bool:
        """SET each attribute in `sets` if `condition` holds; False if it did not."""
        names = {"#s": "status"}
        assignments = []
        all_values = dict(values)
        for i, (attribute, value) in enumerate(sets.items()):
            names[f"#a{i}"] = attribute
            all_values[f":a{i}"] = value
            assignments.append(f"#a{i} = :a{i}")
        try:
            await self._call(
                "update_item",
                TableName=self._table,
                Key=self._key(action_id),
                UpdateExpression="SET " + ", ".join(assignments),
                ConditionExpression=f"attribute_exists(pk) AND {condition}",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=all_values,
            )
        except ConditionFailed:
            return False
        return True

    async def approve(self, action_id: str, *, user_hash: str) -> bool:
        """pending -> approved, for its own user, before the deadline."""
        now = int(self._clock())
        return await self._update(
            action_id,
            sets={"status": {"S": APPROVED}, "approved_at": {"N": str(now)}},
            condition="#s = :pending AND user_hash = :user AND deadline > :now",
            values={
                ":pending": {"S": PENDING},
                ":user": {"S": user_hash},
                ":now": {"N": str(now)},
            },
        )

    async def deny(self, action_id: str, *, user_hash: str | None, reason: str) -> bool:
        """pending or approved -> denied before the deadline; `user_hash` None: whoever owns it
        (a binding check kills the action for everyone)."""
        now = int(self._clock())
        condition = "#s IN (:pending, :approved) AND deadline > :now"
        values = {
            ":pending": {"S": PENDING},
            ":approved": {"S": APPROVED},
            ":now": {"N": str(now)},
        }
        if user_hash is not None:
            condition += " AND user_hash = :user"
            values[":user"] = {"S": user_hash}
        return await self._update(
            action_id,
            sets={
                "status": {"S": DENIED},
                "denied_at": {"N": str(now)},
                "denied_reason": {"S": reason},
            },
            condition=condition,
            values=values,
        )

    async def start(self, action_id: str, *, user_hash: str, sha256: str) -> bool:
        """approved -> executing, for its own user, before the deadline, for these arguments.

        The write carries a random marker: when botocore retries a write that was applied but
        whose answer was lost, the re-read recognises it as this call's own."""
        now = int(self._clock())
        marker = secrets.token_hex(16)
        if await self._update(
            action_id,
            sets={
                "status": {"S": EXECUTING},
                "executing_at": {"N": str(now)},
                "execution": {"S": marker},
            },
            condition=(
                "#s = :approved AND user_hash = :user AND deadline > :now "
                "AND arguments_sha256 = :sha"
            ),
            values={
                ":approved": {"S": APPROVED},
                ":user": {"S": user_hash},
                ":now": {"N": str(now)},
                ":sha": {"S": sha256},
            },
        ):
            return True
        return await self._marked(action_id, "execution", marker)

    async def finish(self, action: Action, *, outcome: Outcome) -> Outcome | None:
        """executing -> done with the outcome, once; the stored outcome, or None if refused.

        The item is then kept for a day after the later of now and the deadline."""
        now = int(self._clock())
        marker = secrets.token_hex(16)
        keep_until = max(now, action.deadline) + RETENTION_SECONDS
        recorded = replace(outcome, recorded_at=now)
        sets: dict[str, dict[str, str]] = {
            "status": {"S": DONE},
            "result_status": {"S": outcome.status},
            "result_summary": {"S": outcome.summary},
            "result_recorded_at": {"N": str(now)},
            "recorded": {"S": marker},
            "expires_at": {"N": str(keep_until)},
        }
        if outcome.upstream_status is not None:
            sets["result_upstream_status"] = {"N": str(outcome.upstream_status)}
        if await self._update(
            action.action_id,
            sets=sets,
            condition="#s = :executing AND user_hash = :user",
            values={":executing": {"S": EXECUTING}, ":user": {"S": action.user_hash}},
        ):
            return recorded
        return recorded if await self._marked(action.action_id, "recorded", marker) else None

    async def _marked(self, action_id: str, attribute: str, marker: str) -> bool:
        item = (
            await self._call(
                "get_item", TableName=self._table, Key=self._key(action_id), ConsistentRead=True
            )
        ).get("Item") or {}
        return bool(item.get(attribute, {}).get("S") == marker)


class ActionNotFound(Exception):
    """Unknown, malformed, or another user's action (the same answer: no oracle)."""


class ForeignAction(Exception):
    """A browser user opened or posted another user's action; it was denied for everyone."""


class ActionRefused(Exception):
    """The action is not in a state that allows the step; `reason` is a short code."""

    def __init__(self, reason: str, action: Action) -> None:
        super().__init__(reason)
        self.reason = reason
        self.action = action


def _unavailable(exc: SessionStoreUnavailable) -> Unavailable:
    return Unavailable(exc.code)


class Actions:
    """The steps of an action's life, with their checks and audit lines; HTTP lives in app.py."""

    def __init__(
        self,
        *,
        store: ActionStore,
        broker: Broker,
        public_base_url: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._broker = broker
        self._base = public_base_url.rstrip("/")
        self._clock = clock

    def approval_url(self, action_id: str) -> str:
        return f"{self._base}/oauth2/actions/{action_id}"

    def now(self) -> float:
        return self._clock()

    # -- agent side (internal API) -------------------------------------------------------------

    async def propose(
        self,
        user: VerifiedUser,
        *,
        provider: str,
        tool: str,
        canonical: bytes,
        turn_id: str,
        request_id: str,
    ) -> Action:
        try:
            action = await self._store.create(
                user_hash=user.user_hash,
                provider=provider,
                tool=tool,
                canonical=canonical,
                turn_id=turn_id,
            )
        except TooManyActions as exc:
            audit(
                "request_rejected",
                outcome="refused",
                request_id=request_id,
                user_hash=user.user_hash,
                provider=provider,
                tool=tool,
                reason="too_many_actions",
            )
            raise Unavailable("too_many_actions", status=429, retry_after=exc.retry_after) from None
        except SessionStoreUnavailable as exc:
            raise _unavailable(exc) from None
        self._audit("action_proposed", action, request_id=request_id)
        return action

    async def for_user(self, user: VerifiedUser, action_id: str) -> Action:
        """The user's own action, else ActionNotFound."""
        try:
            action = await self._store.get(action_id)
        except SessionStoreUnavailable as exc:
            raise _unavailable(exc) from None
        if action is None or action.user_hash != user.user_hash:
            raise ActionNotFound
        return action

    async def execute(
        self,
        user: VerifiedUser,
        action_id: str,
        *,
        sha256: str,
        spec_for: Callable[[str], Awaitable[ProviderSpec]],
        scopes: tuple[str, ...],
        return_url: str | None,
        request_id: str,
    ) -> IssuedToken | ConsentRequired:
        """The provider token for an approved action, moving it to `executing`; consent
        required leaves it approved. ActionRefused for anything else."""
        action = await self.for_user(user, action_id)
        self._refuse_unless_runnable(action, sha256, request_id)
        spec = await spec_for(action.provider)
        result = await self._broker.token(
            user, spec, scopes, return_url=return_url, request_id=request_id
        )
        if isinstance(result, ConsentRequired):
            return result
        try:
            started = await self._store.start(action_id, user_hash=user.user_hash, sha256=sha256)
        except SessionStoreUnavailable as exc:
            raise _unavailable(exc) from None
        if not started:
            # Another call won the race (or the user denied, or the deadline passed meanwhile):
            # the token just obtained is not handed out.
            action = await self.for_user(user, action_id)
            self._refuse_unless_runnable(action, sha256, request_id)
            self._refuse(action, "already_executed", request_id)
        return result

    def _refuse_unless_runnable(self, action: Action, sha256: str, request_id: str) -> None:
        status = action.status_at(self.now())
        reasons = {
            PENDING: "not_approved",
            DENIED: "denied",
            EXPIRED: "expired",
            EXECUTING: "already_executed",
            DONE: "already_executed",
        }
        if status in reasons:
            self._refuse(action, reasons[status], request_id)
        if not secrets.compare_digest(action.arguments_sha256, sha256):
            self._refuse(action, "arguments_changed", request_id)

    async def record(
        self, user: VerifiedUser, action_id: str, outcome: Outcome, *, request_id: str
    ) -> Outcome:
        """executing -> done, once; ActionRefused `already_recorded` (with the stored outcome)
        for a second call, and for an action that is not executing its own reason."""
        action = await self.for_user(user, action_id)
        status = action.status_at(self.now())
        if status != EXECUTING:
            reason = {DONE: "already_recorded", DENIED: "denied", EXPIRED: "expired"}
            self._refuse(action, reason.get(status, "not_executing"), request_id)
        try:
            stored = await self._store.finish(action, outcome=outcome)
        except SessionStoreUnavailable as exc:
            raise _unavailable(exc) from None
        if stored is None:
            self._refuse(await self.for_user(user, action_id), "already_recorded", request_id)
        done = replace(action, status=DONE, outcome=stored)
        self._audit(
            "action_executed",
            done,
            request_id=request_id,
            outcome="ok" if outcome.status == SUCCEEDED else "error",
            upstream_status=outcome.upstream_status,
        )
        return stored

    # -- browser side (public routes, identity from the ALB only) ---------------------------------

    async def open(self, user: VerifiedUser, action_id: str, *, request_id: str) -> Action:
        """The action for its own user; the binding check kills it for anyone else."""
        try:
            action = await self._store.get(action_id)
        except SessionStoreUnavailable as exc:
            raise _unavailable(exc) from None
        if action is None:
            raise ActionNotFound
        if action.user_hash != user.user_hash:
            try:
                killed = await self._store.deny(
                    action_id, user_hash=None, reason="action_by_other_user"
                )
                reason = "action_by_other_user"
            except SessionStoreUnavailable:
                killed, reason = False, "action_by_other_user_unkilled"
            audit(
                "binding_rejected",
                outcome="refused",
                request_id=request_id,
                user_hash=user.user_hash,
                provider=action.provider,
                action_id=action.action_id,
                tool=action.tool,
                reason=reason,
            )
            if killed:
                self._audit(
                    "action_denied", action, request_id=request_id, reason="action_by_other_user"
                )
            raise ForeignAction
        return action

    async def approve(self, user: VerifiedUser, action_id: str, *, request_id: str) -> Action:
        action = await self.open(user, action_id, request_id=request_id)
        if action.status_at(self.now()) == PENDING:
            try:
                approved = await self._store.approve(action_id, user_hash=user.user_hash)
                if approved:
                    self._audit("action_approved", action, request_id=request_id)
                    return replace(action, status=APPROVED)
                action = await self.for_user(user, action_id)
            except SessionStoreUnavailable as exc:
                raise _unavailable(exc) from None
        status = action.status_at(self.now())
        if status in (APPROVED, EXECUTING, DONE):
            return action  # approved already (a second click, a retried POST)
        self._refuse(action, status, request_id)  # denied, expired

    async def deny(self, user: VerifiedUser, action_id: str, *, request_id: str) -> Action:
        """pending or approved (not yet running) -> denied."""
        action = await self.open(user, action_id, request_id=request_id)
        if action.status_at(self.now()) in (PENDING, APPROVED):
            try:
                denied = await self._store.deny(
                    action_id, user_hash=user.user_hash, reason="by_user"
                )
                if denied:
                    self._audit("action_denied", action, request_id=request_id, reason="by_user")
                    return replace(action, status=DENIED)
                action = await self.for_user(user, action_id)
            except SessionStoreUnavailable as exc:
                raise _unavailable(exc) from None
        status = action.status_at(self.now())
        if status == DENIED:
            return action
        running = status in (EXECUTING, DONE)
        self._refuse(action, "already_executed" if running else status, request_id)

    # -- audit -------------------------------------------------------------------------------------

    def _refuse(self, action: Action, reason: str, request_id: str) -> NoReturn:
        self._audit("action_refused", action, request_id=request_id, reason=reason)
        raise ActionRefused(reason, action)

    @staticmethod
    def _audit(
        event: str,
        action: Action,
        *,
        request_id: str,
        outcome: str | None = None,
        reason: str | None = None,
        upstream_status: int | None = None,
    ) -> None:
        """Identifiers and the hash only: never an argument value, a summary or a token."""
        audit(
            event,
            outcome=outcome or ("refused" if event == "action_refused" else "ok"),
            request_id=request_id,
            user_hash=action.user_hash,
            provider=action.provider,
            action_id=action.action_id,
            turn_id=action.turn_id,
            tool=action.tool,
            arguments_sha256=action.arguments_sha256,
            upstream_status=upstream_status,
            reason=reason,
        )
