"""The binder's few HTML pages: plain, escaped, no scripts, nothing from a request echoed
except values it has checked (provider names from the registry)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from html import escape

from starlette.responses import HTMLResponse

from binder.broker import Connection

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f6f7f9;
color:#1d232b}main{max-width:42rem;margin:4rem auto;background:#fff;border-radius:12px;
padding:2rem 2.5rem;box-shadow:0 1px 3px rgba(0,0,0,.08)}h1{font-size:1.4rem;margin-top:0}
p{line-height:1.5}.muted{color:#5b6573;font-size:.9rem}table{width:100%;border-collapse:collapse}
td,th{text-align:left;padding:.6rem .4rem;border-bottom:1px solid #e6e8eb;vertical-align:top}
button{background:#b42318;color:#fff;border:0;border-radius:6px;padding:.4rem .8rem;
cursor:pointer}.ok{color:#067647}.warn{color:#b54708}code{font-size:.85rem}
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
    title = f"{provider} is connected"
    body = (
        f"<h1 class=ok>{escape(title)}</h1><p>You can close this tab and go back to the agent, "
        "which can now act for you with the access you approved.</p>"
        '<p class=muted><a href="/oauth2/connections">Manage connections</a></p>'
    )
    return page(title, body)


def connections_page(connections: Sequence[Connection], notice: str | None = None) -> HTMLResponse:
    rows = []
    for c in connections:
        expires = (
            "does not expire"
            if c.expires_at is None
            else time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(c.expires_at))
        )
        status_class = "ok" if c.status == "active" else "warn"
        rows.append(
            "<tr>"
            f"<td><strong>{escape(c.provider)}</strong></td>"
            f"<td><code>{escape(' '.join(c.scopes))}</code></td>"
            f"<td class={status_class}>{escape(c.status.replace('_', ' '))}<br>"
            f"<span class=muted>{escape(expires)}</span></td>"
            f'<td><form method=post action="/oauth2/connections/{escape(c.provider)}/disconnect">'
            f'<button type=submit aria-label="Disconnect {escape(c.provider)}">Disconnect</button>'
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
