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

from svc_common.invisible import hidden_characters

_LONE_SURROGATE: Final = re.compile("[\ud800-\udfff]")
REPLACEMENT: Final = "\ufffd"


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
