"""The binder's few HTML pages: plain, escaped, no scripts, nothing from a request echoed
except values it has checked (provider names and display names from the registry) and, on the
approval page, the action's own stored fields, each shown whole with its invisible characters
made visible."""

from __future__ import annotations

import json
import time
import unicodedata
from collections.abc import Callable, Sequence
from html import escape
from typing import Any

from starlette.responses import HTMLResponse

from binder.actions import APPROVED, DENIED, DONE, EXECUTING, EXPIRED, PENDING, SUCCEEDED, Action
from binder.broker import Connection
from svc_common.invisible import is_hidden

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f6f7f9;
color:#1d232b}main{max-width:42rem;margin:4rem auto;background:#fff;border-radius:12px;
padding:2rem 2.5rem;box-shadow:0 1px 3px rgba(0,0,0,.08)}h1{font-size:1.4rem;margin-top:0}
p{line-height:1.5}.muted{color:#5b6573;font-size:.9rem}table{width:100%;border-collapse:collapse}
td,th{text-align:left;padding:.6rem .4rem;border-bottom:1px solid #e6e8eb;vertical-align:top}
button{background:#b42318;color:#fff;border:0;border-radius:6px;padding:.4rem .8rem;
cursor:pointer}.ok{color:#067647}.warn{color:#b54708}code{font-size:.85rem}
.wide{max-width:60rem}th.name{width:11rem;word-break:break-all}
pre.arg{max-height:24rem;overflow:auto;white-space:pre-wrap;overflow-wrap:anywhere;margin:0;
background:#f6f7f9;border:1px solid #e6e8eb;border-radius:6px;padding:.6rem;font-size:.85rem}
code.arg{white-space:pre-wrap;overflow-wrap:anywhere;background:#f6f7f9;padding:0 .2rem}
.fmt{background:#fee4e2;color:#b42318;border:1px solid #b42318;border-radius:3px;
padding:0 .15rem;font-family:monospace;font-weight:600}
.flag{background:#fffaeb;border:1px solid #b54708;border-radius:8px;padding:.7rem 1rem}
.decide{margin:1rem 0}.decide form{display:inline-block;margin:0 .6rem 0 0}
button.approve{background:#067647}button.deny{background:#b42318}
.kind{display:block;color:#5b6573;font-size:.8rem}
"""

# Page texts by flow error code: what happened and what the user can do.
MESSAGES: dict[str, tuple[str, str]] = {
    "foreign_session": (
        "This link belongs to someone else",
        "The authorization link was created for another user. It has been disabled for "
        "everyone, and nothing was connected. Ask the agent again to get a link of your own.",
    ),
    "foreign_callback": (
        "This sign-in was started by someone else",
        "The provider's answer belongs to an authorization another user started. It was "
        "refused, and nothing was stored.",
    ),
    "expired_session": (
        "This link has expired",
        "Authorization links work for a few minutes only. Ask the agent again for a new one.",
    ),
    "used_session": (
        "This link was already used",
        "Each authorization link works once. Ask the agent again if you still need to connect.",
    ),
    "unknown_session": (
        "Unknown authorization link",
        "This link does not match any authorization request. Ask the agent again.",
    ),
    "bad_state": (
        "This answer does not match a request you started",
        "The provider's answer is missing its state, or the state is unknown, expired or "
        "already used. Nothing was stored. Start again from the agent.",
    ),
    "provider_mismatch": (
        "Unexpected provider",
        "The answer came back for a different provider than the one you were connecting. "
        "It was refused, and nothing was stored.",
    ),
    "issuer_mismatch": (
        "Unexpected provider",
        "The answer names a different issuer than the provider you were connecting. It was "
        "refused, and nothing was stored.",
    ),
    "issuer_missing": (
        "Incomplete answer from the provider",
        "The provider's answer lacks its issuer, which this provider always sends. It was "
        "refused, and nothing was stored.",
    ),
    "missing_code": (
        "Incomplete answer from the provider",
        "The provider's answer carries no authorization code. Nothing was stored.",
    ),
    "unknown_provider": ("Unknown provider", "This provider is not configured here."),
    "bad_scopes": (
        "Access that cannot be requested",
        "This request asks for access the operator does not allow for this provider. Nothing "
        "was connected.",
    ),
    "unauthenticated": (
        "Sign-in required",
        "You need to be signed in to continue. Reload the page to sign in again.",
    ),
    "cross_site": (
        "Request refused",
        "This form must be sent from the connections page itself. Nothing was changed.",
    ),
    "superseded_state": (
        "This answer belongs to an earlier attempt",
        "The authorization link was opened again after this attempt began, and only the newest "
        "attempt can finish. Nothing was stored. Finish in the tab you opened last, or open the "
        "link again.",
    ),
    "unavailable_flow": (
        "Temporarily unavailable",
        "The provider, or a service this step depends on, did not answer. Nothing was stored. "
        "In a minute, open the authorization link from the agent again: it still works.",
    ),
    "unknown_action": (
        "Unknown action",
        "This link does not match any action waiting for you. Ask the agent again.",
    ),
    "foreign_action": (
        "This action belongs to someone else",
        "The approval link was created for another user. The action has been cancelled for "
        "everyone, and nothing was run.",
    ),
    "bearer_on_approval_route": (
        "Approvals come from your browser only",
        "This page accepts only your signed-in browser session, never a request that carries "
        "an access token of its own, so a program holding your token cannot approve for you. "
        "Nothing was changed. Open the link in your browser.",
    ),
    "cross_site_action": (
        "Request refused",
        "Approve or deny from the approval page itself. Nothing was changed.",
    ),
    "action_denied": (
        "This action was denied",
        "It can no longer be approved or run. Ask the agent again if you still want it done.",
    ),
    "action_expired": (
        "This action has expired",
        "An action must be approved and run within a few minutes of being proposed. Nothing "
        "was run. Ask the agent again if you still want it done.",
    ),
    "action_already_executed": (
        "This action has already run",
        "It was approved and the agent has started it, so it can no longer be denied.",
    ),
    "unavailable": (
        "Temporarily unavailable",
        "A service this page depends on is not answering. Nothing was changed. Try again in "
        "a minute.",
    ),
}


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    html = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>"
    )
    return HTMLResponse(html, status_code=status)


def error_page(code: str, status: int) -> HTMLResponse:
    if code.startswith("provider_error:"):
        detail = code.split(":", 1)[1]
        title = "The provider did not grant access"
        text = (
            f"The provider answered <code>{escape(detail)}</code>. Nothing was connected. You "
            "can start again from the agent."
        )
        return page(title, f"<h1>{escape(title)}</h1><p>{text}</p>", status)
    if code.startswith("exchange_"):
        title = "The provider refused the authorization"
        text = (
            "Exchanging the authorization code with the provider failed "
            f"(<code>{escape(code[len('exchange_') :])}</code>). Nothing was stored. Start "
            "again from the agent."
        )
        return page(title, f"<h1>{escape(title)}</h1><p>{text}</p>", status)
    title, text = MESSAGES.get(code, ("Request refused", "Nothing was changed."))
    return page(title, f"<h1>{escape(title)}</h1><p>{escape(text)}</p>", status)


def success_page(provider: str) -> HTMLResponse:
    """`provider` is the display name."""
    title = f"{provider} is connected"
    body = (
        f"<h1 class=ok>{escape(title)}</h1><p>You can close this tab and go back to the agent, "
        "which can now act for you with the access you approved.</p>"
        '<p class=muted><a href="/oauth2/connections">Manage connections</a></p>'
    )
    return page(title, body)


def connections_page(
    connections: Sequence[Connection],
    notice: str | None = None,
    *,
    names: Callable[[str], str] = str,
) -> HTMLResponse:
    """`names` maps a provider's name to its display name (the registry's)."""
    rows = []
    for c in connections:
        shown = names(c.provider)
        expires = (
            "does not expire"
            if c.expires_at is None
            else time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(c.expires_at))
        )
        status_class = "ok" if c.status == "active" else "warn"
        rows.append(
            "<tr>"
            f"<td><strong>{escape(shown)}</strong>"
            + (f"<span class=kind>{escape(c.provider)}</span>" if shown != c.provider else "")
            + "</td>"
            f"<td><code>{escape(' '.join(c.scopes))}</code></td>"
            f"<td class={status_class}>{escape(c.status.replace('_', ' '))}<br>"
            f"<span class=muted>{escape(expires)}</span></td>"
            f'<td><form method=post action="/oauth2/connections/{escape(c.provider)}/disconnect">'
            f'<button type=submit aria-label="Disconnect {escape(shown)}">Disconnect</button>'
            "</form></td></tr>"
        )
    table = (
        "<table><thead><tr><th>Provider</th><th>Access</th><th>Status</th><th></th></tr>"
        f"</thead><tbody>{''.join(rows)}</tbody></table>"
        if rows
        else "<p>No connected accounts. The agent will ask you to connect one when it needs to.</p>"
    )
    note = f"<p class=ok>{escape(notice)}</p>" if notice else ""
    body = (
        f"<h1>Connected accounts</h1>{note}{table}"
        "<p class=muted>Disconnecting revokes the access at the provider where it supports "
        "revocation, and deletes the stored tokens.</p>"
    )
    return page("Connected accounts", body)


# -- approval page -------------------------------------------------------------------------------

# Argument names that say where an action lands; shown first, and as the page's "target".
TARGET_NAMES = (
    "repo",
    "repository",
    "owner",
    "org",
    "organization",
    "project",
    "calendar",
    "calendar_id",
    "to",
    "cc",
    "bcc",
    "recipient",
    "recipients",
    "channel",
    "channel_id",
    "team",
    "site",
    "space",
    "board",
    "folder",
    "path",
    "url",
)


def visible(text: str) -> tuple[str, int]:
    """HTML for `text`, complete and escaped, with every hidden character (svc_common/invisible.py:
    format and control characters, variation selectors, fillers ...) replaced by
    a highlighted escape such as `\\u202e`; and how many there were."""
    parts: list[str] = []
    run_start = 0
    hidden = 0
    for i, char in enumerate(text):
        if not is_hidden(char, text[i - 1] if i else ""):
            continue
        hidden += 1
        parts.append(escape(text[run_start:i]))
        point = ord(char)
        code = f"\\u{point:04x}" if point <= 0xFFFF else f"\\U{point:08x}"
        name = unicodedata.name(char, "unnamed character")
        parts.append(f'<span class=fmt title="{escape(name)}">{code}</span>')
        run_start = i + 1
    parts.append(escape(text[run_start:]))
    return "".join(parts), hidden


def _argument_value(value: Any) -> tuple[str, int]:
    """A value as a labelled block: text verbatim, anything else as indented JSON."""
    if isinstance(value, str):
        body, hidden = visible(value)
        kind = f"text, {len(value)} characters"
        block = "pre" if "\n" in value or len(value) > 80 else "code"
    else:
        text = json.dumps(value, ensure_ascii=False, indent=2)
        body, hidden = visible(text)
        kind = {bool: "true or false", int: "number", float: "number", list: "list"}.get(
            type(value), "null" if value is None else "object"
        )
        block = "pre" if "\n" in text or len(text) > 80 else "code"
    return f"<{block} class=arg>{body}</{block}><span class=kind>{kind}</span>", hidden


def _utc(epoch: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def _status_note(action: Action, status: str) -> str:
    if status == PENDING:
        return "<p>The agent asks to do this for you. Nothing runs unless you approve it.</p>"
    if status == APPROVED:
        return (
            "<p class=ok><strong>Approved.</strong> The agent may now run it once, with "
            "exactly these arguments. You can still deny it until it starts.</p>"
        )
    if status == EXECUTING:
        return "<p class=ok><strong>Approved and running.</strong> It runs once.</p>"
    if status == DONE and action.outcome is not None:
        outcome = action.outcome
        upstream = (
            f" (the provider answered HTTP {outcome.upstream_status})"
            if outcome.upstream_status is not None
            else ""
        )
        word = "succeeded" if outcome.status == SUCCEEDED else "failed"
        summary, _ = visible(outcome.summary)
        return (
            f"<p class={'ok' if outcome.status == SUCCEEDED else 'warn'}><strong>Done: it "
            f"{word}{escape(upstream)}.</strong></p><pre class=arg>{summary}</pre>"
        )
    if status == DENIED:
        return "<p class=warn><strong>Denied.</strong> The agent cannot run it.</p>"
    if status == EXPIRED:
        return (
            "<p class=warn><strong>Expired.</strong> It was not approved and run in time, and "
            "can no longer run. Ask the agent again if you still want it done.</p>"
        )
    return f"<p>{escape(status)}</p>"


def action_page(
    action: Action, status: str, *, http_status: int = 200, provider_name: str | None = None
) -> HTMLResponse:
    """Every field of the action, every argument whole; Approve and Deny while it can change.
    `provider_name` is the provider's display name (its name when not given)."""
    provider = provider_name or action.provider
    arguments = action.arguments
    names = [n for n in TARGET_NAMES if n in arguments]
    names += [n for n in arguments if n not in names]
    hidden = 0
    rows = []
    for name in names:
        key, hidden_key = visible(name)
        value, hidden_value = _argument_value(arguments[name])
        hidden += hidden_key + hidden_value
        rows.append(f"<tr><th class=name>{key}</th><td>{value}</td></tr>")
    targets = []
    for name in (n for n in TARGET_NAMES if n in arguments):
        value, _ = _argument_value(arguments[name])
        targets.append(f"<div><strong>{escape(name)}</strong>: {value}</div>")
    flag = (
        f"<p class=flag role=alert><strong>Warning: the arguments contain {hidden} invisible "
        "formatting or control character(s)</strong>, such as bidirectional-text controls or "
        "zero-width characters, which can make text read differently from what it is. Each "
        "is shown below as a highlighted escape like <span class=fmt>\\u202e</span>. Deny "
        "unless you expect them.</p>"
        if hidden
        else ""
    )
    decide = ""
    base = f"/oauth2/actions/{escape(action.action_id)}"
    if status == PENDING:
        decide = (
            "<div class=decide>"
            f'<form method=post action="{base}/approve"><button type=submit class=approve>'
            "Approve</button></form>"
            f'<form method=post action="{base}/deny"><button type=submit class=deny>'
            "Deny</button></form></div>"
        )
    elif status == APPROVED:
        decide = (
            f'<div class=decide><form method=post action="{base}/deny"><button type=submit '
            "class=deny>Deny after all</button></form></div>"
        )
    table = f"<table><tbody>{''.join(rows)}</tbody></table>" if rows else "<p>No arguments.</p>"
    title = f"Approve {action.tool} on {provider}?"
    body = (
        f"<h1>{escape(title)}</h1>{flag}{_status_note(action, status)}"
        "<table><tbody>"
        f"<tr><th class=name>Action</th><td><code>{escape(action.tool)}</code></td></tr>"
        f"<tr><th class=name>Provider</th><td>{escape(provider)}"
        + (
            f"<span class=kind>{escape(action.provider)}</span>"
            if provider != action.provider
            else ""
        )
        + "</td></tr>"
        "<tr><th class=name>Target</th><td>"
        f"{''.join(targets) or '<span class=muted>none named in the arguments</span>'}</td></tr>"
        "</tbody></table>"
        f"<h2>Arguments, complete</h2>{table}{decide}"
        "<p class=muted>"
        f"Arguments SHA-256 (RFC 8785 canonical JSON): <code>{escape(action.arguments_sha256)}"
        f"</code><br>Expires: {escape(_utc(action.deadline))}<br>"
        f"Chat turn: <code>{escape(action.turn_id)}</code></p>"
    )
    html = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main class=wide>{body}</main></body></html>"
    )
    return HTMLResponse(html, status_code=http_status)
