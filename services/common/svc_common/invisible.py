"""Characters a person cannot see in text, one rule for the approval page, the chat card's
server side and the agent's refusal of them in writes.

Hidden: Unicode categories Cf (bidi controls, zero-width characters, tags), Cc other than
newline and tab, Zl and Zp, Co (private use), Cn (unassigned) and Cs (surrogates); and every
Default_Ignorable_Code_Point (Unicode's DerivedCoreProperties: variation selectors, Hangul
fillers, U+034F and the rest), which render as nothing and can carry data: 256 variation
selectors hold a byte each behind one emoji. One exception: U+FE0F (emoji presentation)
directly after a symbol (category So), which is how emoji are typed and carries nothing.

Written by hand because the standard library's unicodedata has no Default_Ignorable_Code_Point
property; the ranges below are those of Unicode 15.1/16.0.
"""

from __future__ import annotations

import unicodedata
from typing import Final

HIDDEN_CATEGORIES: Final = frozenset({"Cf", "Cc", "Zl", "Zp", "Co", "Cn", "Cs"})
SHOWN_AS_IS: Final = frozenset("\n\t")
EMOJI_PRESENTATION: Final = "\ufe0f"
# Default_Ignorable_Code_Point ranges outside the categories above (inclusive).
_IGNORABLE: Final = (
    (0x034F, 0x034F),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)


def is_hidden(char: str, previous: str = "") -> bool:
    """Whether `char` (after `previous`, the character before it) is invisible text."""
    if char in SHOWN_AS_IS:
        return False
    if char == EMOJI_PRESENTATION and previous and unicodedata.category(previous) == "So":
        return False
    if unicodedata.category(char) in HIDDEN_CATEGORIES:
        return True
    point = ord(char)
    return any(low <= point <= high for low, high in _IGNORABLE)


def hidden_characters(text: str) -> list[str]:
    """The hidden characters of `text` as "U+XXXX", in order of appearance, each once."""
    seen: dict[str, None] = {}
    previous = ""
    for char in text:
        if is_hidden(char, previous):
            seen.setdefault(f"U+{ord(char):04X}", None)
        previous = char
    return list(seen)
