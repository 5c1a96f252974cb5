"""Security audit events: one JSON log line each, with a fixed vocabulary of fields.

Only the fields named here can reach an audit line, so a token, code, verifier or secret
cannot be logged by accident through this path: values are identifiers, hashes and outcomes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

_logger = logging.getLogger("binder.audit")

EVENTS = frozenset(
    {
        "session_created",
        "binding_rejected",
        "state_rejected",
        "authorization_failed",
        "connection_created",
        "token_issued",
        "token_refreshed",
        "refresh_failed",
        "refresh_discarded",
        "connection_deleted",
        "vault_unavailable",
        "request_rejected",
        "action_proposed",
        "action_approved",
        "action_denied",
        "action_executed",
        "action_refused",
    }
)


def audit(
    event: str,
    *,
    outcome: str,
    request_id: str | None = None,
    user_hash: str | None = None,
    provider: str | None = None,
    scopes: Sequence[str] | None = None,
    session_id_hash: str | None = None,
    reason: str | None = None,
    revocation: Mapping[str, str] | None = None,
    action_id: str | None = None,
    turn_id: str | None = None,
    tool: str | None = None,
    arguments_sha256: str | None = None,
    upstream_status: int | None = None,
) -> None:
    """Write one audit line. `reason` is a short code, never free text from a request;
    `revocation` maps a token kind to the outcome of revoking it upstream (fixed codes).
    An action is named by its id, tool, turn id (checked printable ASCII) and arguments hash:
    no parameter can carry an argument value."""
    if event not in EVENTS:
        raise ValueError(f"unknown audit event {event}")
    fields: dict[str, object] = {"audit": event, "outcome": outcome}
    for key, value in (
        ("request_id", request_id),
        ("user_hash", user_hash),
        ("provider", provider),
        ("scopes", list(scopes) if scopes is not None else None),
        ("session", session_id_hash),
        ("reason", reason),
        ("revocation", dict(revocation) if revocation is not None else None),
        ("action_id", action_id),
        ("turn_id", turn_id),
        ("tool", tool),
        ("arguments_sha256", arguments_sha256),
        ("upstream_status", upstream_status),
    ):
        if value is not None:
            fields[key] = value
    _logger.info(event, extra={"fields": fields})
