"""The shared JSON body parser: every bad body is a `BodyError` naming the problem."""

from __future__ import annotations

import pytest

from svc_common.jsonbody import MAX_DEPTH, BodyError, depth, is_json, parse_object


def test_a_json_object_parses() -> None:
    assert parse_object(b'{"provider": "github", "scopes": ["repo"]}') == {
        "provider": "github",
        "scopes": ["repo"],
    }


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"[" * 1000 + b"]" * 1000, "nested"),  # past Python's recursion limit: RecursionError
        (b'{"a":' * 5000 + b"1" + b"}" * 5000, "nested"),
        (b'{"a":' + b"[" * 100 + b"]" * 100 + b"}", "nested"),  # parses, but too deep
        (b"{", "malformed JSON"),
        (b"", "malformed JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b'{"a": NaN}', "malformed JSON"),
        (b'{"a": -Infinity}', "malformed JSON"),
        (b"[]", "expected a JSON object"),
        (b'"text"', "expected a JSON object"),
        (b"null", "expected a JSON object"),
    ],
)
def test_bad_bodies_are_body_errors(raw: bytes, message: str) -> None:
    with pytest.raises(BodyError) as caught:
        parse_object(raw)
    assert message in caught.value.message
    assert caught.value.field == "body"


def test_depth_is_counted_without_recursion() -> None:
    assert depth(1) == 0
    assert depth({}) == 1
    assert depth({"a": [{"b": 1}]}) == 3
    value: object = 1
    for _ in range(50_000):  # far deeper than Python could recurse
        value = [value]
    assert depth(value) > MAX_DEPTH


def test_exactly_max_depth_is_accepted() -> None:
    raw = b'{"a":' + b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1) + b"}"
    assert depth(parse_object(raw)) == MAX_DEPTH


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("application/json", True),
        ("application/json; charset=utf-8", True),
        ("Application/JSON", True),
        ("text/plain", False),
        ("application/jsonp", False),
        (None, False),
    ],
)
def test_is_json(header: str | None, expected: bool) -> None:
    assert is_json(header) is expected
