"""Text checks: lone surrogates (which UTF-8 cannot encode) and invisible format characters.

`json.loads` turns an escaped surrogate half ("\\ud800") into a lone surrogate code point; a
matched pair becomes one ordinary character, so any surrogate left in a string is unpaired.
RFC 7493 (I-JSON) forbids such strings, and every encoder that writes UTF-8 raises on them:
Starlette's JSON response, httpx2's JSON request body. Input that holds one is refused; text
from elsewhere (a model, a provider's API) gets U+FFFD instead, as a browser's TextEncoder does.
"""

from __future__ import annotations

import re
from typing import Final

from svc_common.invisible import hidden_characters, is_hidden

_LONE_SURROGATE: Final = re.compile("[\ud800-\udfff]")
REPLACEMENT: Final = "\ufffd"
# The pending-action markers earlier versions put in replies. They mean nothing now; they are
# still removed from history, model text and untrusted tool text so that stale ones neither
# confuse the model nor look like something to a reader.
_MARKER: Final = re.compile(r"\[\[pending-action:([A-Za-z0-9_-]{1,4000})\]\]")


def strip_markers(text: str) -> str:
    """Remove marker-like text (stale pending-action markers mean nothing any more).

    Repeated until nothing changes (a nested `[[pending-[[pending-action:x]]action:y]]` leaves
    no marker behind), then any leftover fragment is defused."""
    previous = None
    while previous != text:
        previous, text = text, _MARKER.sub("", text)
    return text.replace("[[pending-action", "[[pending action").strip()


def clean_untrusted(text: str, limit: int) -> str:
    """Text from a third party (an MCP server's tool description, result or error) as the
    model and the user may see it: invisible characters (svc_common/invisible.py) removed,
    markers defused, at most ``limit`` UTF-8 bytes (cut at a character boundary, with an
    ellipsis), valid Unicode."""
    kept: list[str] = []
    previous = ""
    for char in text:
        if not is_hidden(char, previous):
            kept.append(char)
        previous = char
    cleaned = strip_markers("".join(kept))
    encoded = cleaned.encode("utf-8", errors="replace")
    if len(encoded) <= limit:
        return cleaned
    return encoded[: max(limit - 3, 0)].decode("utf-8", errors="ignore") + "\u2026"


def has_lone_surrogate(text: str) -> bool:
    """Whether `text` holds a code point UTF-8 cannot encode."""
    return _LONE_SURROGATE.search(text) is not None


def replace_lone_surrogates(text: str) -> str:
    """`text` with every lone surrogate replaced by U+FFFD (unchanged, and cheap, otherwise)."""
    return _LONE_SURROGATE.sub(REPLACEMENT, text) if has_lone_surrogate(text) else text


def format_characters(text: str) -> list[str]:
    """The invisible characters in `text` (svc_common/invisible.py: format characters such as
    bidi controls and zero-width characters, variation selectors, fillers, controls other than
    newline and tab), as "U+XXXX", in order of appearance, each once.

    They are invisible, and some reorder or hide the text around them or carry data: a title
    that reads one way on screen can say another thing to the provider.
    """
    return hidden_characters(text)


def redact(text: str, secret: str) -> str:
    """``text`` with every occurrence of ``secret`` replaced (defence in depth; a secret too
    short to be a token is left alone rather than shredding the text)."""
    return text.replace(secret, "[redacted]") if len(secret) >= 8 else text
