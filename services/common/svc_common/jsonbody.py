"""Parsing a request's JSON body into a checked object, for every JSON endpoint of both services.

One place decides what "bad JSON" is, so no endpoint can answer 500 to a body a client chose:
malformed text, a body that is not an object, or one nested deeper than any of our request
shapes needs. `json.loads` raises `RecursionError` (not a `ValueError`) for deeply nested input,
and a body just under Python's recursion limit would still be deep enough to make later code
recurse; the depth is therefore measured after parsing, without recursion, and bounded far
below the interpreter's limit. Written by hand: no JSON library bounds nesting depth.
"""

from __future__ import annotations

import json
from typing import Any

# Our request bodies are at most three levels deep ({"history": [{"role": ...}]}); JSON
# Schema-like tool arguments may add a few. Anything deeper is refused by name.
MAX_DEPTH = 32


class BodyError(ValueError):
    """The body is not an acceptable JSON object; `field` and `message` go into the 400."""

    def __init__(self, message: str, field: str = "body") -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def is_json(content_type: str | None) -> bool:
    """Whether a Content-Type header names application/json (parameters such as charset ok)."""
    return (content_type or "").split(";")[0].strip().lower() == "application/json"


def depth(value: Any, *, stop_above: int = MAX_DEPTH) -> int:
    """Nesting depth of a parsed JSON value (a scalar is 0, `[]` and `{}` are 1); iterative.

    The walk stops as soon as the depth passes `stop_above`: the answer is then only "more"."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            level += 1
            stack.extend((child, level) for child in item.values())
        elif isinstance(item, list):
            level += 1
            stack.extend((child, level) for child in item)
        else:
            continue
        if level > deepest:
            deepest = level
            if deepest > stop_above:
                break
    return deepest


def parse_object(raw: bytes, *, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """The body as a JSON object, or `BodyError` naming the problem (never another exception).

    Bytes that are not UTF-8, malformed JSON, a nesting deeper than `max_depth` (whether
    Python's parser gives up first or not), NaN/Infinity literals and a top-level value other
    than an object are all refused.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyError("the body is not UTF-8") from None
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise BodyError(f"JSON nested more than {max_depth} levels deep") from None
    except ValueError:
        raise BodyError("malformed JSON") from None
    # Depth first: whether 1,000 nested arrays parse depends on the Python version (3.13's C
    # parser accepts them), and the answer must not.
    if depth(value, stop_above=max_depth) > max_depth:
        raise BodyError(f"JSON nested more than {max_depth} levels deep")
    if not isinstance(value, dict):
        raise BodyError("expected a JSON object")
    return value


def _refuse_constant(name: str) -> Any:
    # NaN, Infinity and -Infinity are not JSON (RFC 8259); Python accepts them by default.
    raise ValueError(name)
