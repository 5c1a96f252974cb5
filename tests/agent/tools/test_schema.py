"""The argument validator and the registration check that refuses what it does not enforce."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx2
import pytest

from agent.tools.base import ToolError, ToolSpec
from agent.tools.github import GithubWhoami
from agent.tools.registry import ToolFamily, ToolRegistry
from agent.tools.schema import ENFORCED_KEYWORDS, check_input_schema, validate_arguments


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class SchemaTool:
    """A tool that is only a schema: what registration checks."""

    def __init__(self, schema: Mapping[str, Any], name: str = "probe_tool") -> None:
        self.spec = ToolSpec(
            name=name,
            description="A probe.",
            input_schema=schema,
            provider="github",
            scopes=("repo",),
        )

    def validate(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        return validate_arguments(self.spec.input_schema, arguments)

    async def run(
        self, arguments: Mapping[str, Any], *, token: str, http: httpx2.AsyncClient
    ) -> dict[str, Any]:
        return {}

    def describe(self, arguments: Mapping[str, Any]) -> str:
        return "probe"


def closed(**properties: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "additionalProperties": False}


@pytest.mark.parametrize(
    ("schema", "keyword"),
    [
        # keywords the validator does not enforce, on a property
        (closed(q={"type": "string", "format": "uri"}), "'format'"),
        (closed(q={"anyOf": [{"type": "string"}, {"type": "integer"}]}), "'anyOf'"),
        (closed(q={"type": "string", "oneOf": [{"maxLength": 3}]}), "'oneOf'"),
        (closed(q={"type": "string", "allOf": [{"maxLength": 3}]}), "'allOf'"),
        (closed(q={"type": "string", "not": {"enum": ["root"]}}), "'not'"),
        (closed(q={"$ref": "#/$defs/q"}), "'$ref'"),
        (closed(q={"type": "string", "const": "x"}), "'const'"),
        (closed(q={"type": "integer", "multipleOf": 2}), "'multipleOf'"),
        (closed(q={"type": "integer", "exclusiveMinimum": 0}), "'exclusiveMinimum'"),
        (closed(q={"type": "string", "$comment": "x"}), "'$comment'"),
        (closed(q={"type": "string", "x-vendor": 1}), "'x-vendor'"),
        # a keyword of another type: the validator only applies a type's own
        (closed(q={"type": "integer", "maxLength": 3}), "'maxLength'"),
        (closed(q={"type": "boolean", "pattern": "^t"}), "'pattern'"),
        # types the validator does not check, or no type at all
        (closed(q={"description": "anything"}), "'type'"),
        (closed(q={"type": "array", "items": {"type": "string"}}), "'items'"),
        (closed(q={"type": "array"}), "'type'"),
        (closed(q={"type": "object", "properties": {"a": {"type": "string"}}}), "'properties'"),
        (closed(q={"type": "object"}), "'type'"),
        (closed(q={"type": "number"}), "'type'"),
        (closed(q={"type": "null"}), "'type'"),
        (closed(q={"type": ["string", "null"]}), "'type'"),
        (closed(q="string"), "schema object"),
        # the object itself
        ({**closed(), "patternProperties": {"^x": {"type": "string"}}}, "'patternProperties'"),
        ({**closed(), "anyOf": [{"required": ["a"]}]}, "'anyOf'"),
        ({**closed(), "$defs": {}}, "'$defs'"),
        ({**closed(), "minProperties": 1}, "'minProperties'"),
        ({**closed(), "propertyNames": {"maxLength": 3}}, "'propertyNames'"),
        ({**closed(), "dependentRequired": {}}, "'dependentRequired'"),
        ({**closed(), "$schema": "https://json-schema.org/draft/2020-12/schema"}, "'$schema'"),
        ({"type": "object", "properties": {}}, "'additionalProperties'"),
        ({**closed(), "additionalProperties": True}, "'additionalProperties'"),
        ({**closed(), "additionalProperties": {"type": "string"}}, "'additionalProperties'"),
        ({**closed(), "type": "array"}, "'type'"),
        ({**closed(), "properties": [{"q": {"type": "string"}}]}, "'properties'"),
        ({**closed(q={"type": "string"}), "required": ["q", "r"]}, "'required'"),
        ({**closed(q={"type": "string"}), "required": "q"}, "'required'"),
        ({**closed(q={"type": "string"}), "required": ["q", "q"]}, "'required'"),
        # defaults, enums, examples and bounds that cannot hold
        (closed(q={"type": "integer", "minimum": 1, "default": 0}), "'default'"),
        (closed(q={"type": "integer", "default": 10.0}), "'default'"),
        (closed(q={"type": "integer", "default": True}), "'default'"),
        (closed(q={"type": "string", "pattern": "^a$", "default": "b"}), "'default'"),
        (closed(q={"type": "string", "enum": ["a"], "default": "b"}), "'default'"),
        (closed(q={"type": "string", "default": "\ud800"}), "'default'"),
        (closed(q={"type": "boolean", "default": "true"}), "'default'"),
        (closed(q={"type": "integer", "enum": ["1"]}), "'enum'"),
        (closed(q={"type": "integer", "enum": [True]}), "'enum'"),
        (closed(q={"type": "string", "maxLength": 2, "enum": ["abc"]}), "'enum'"),
        (closed(q={"type": "string", "enum": []}), "'enum'"),
        (closed(q={"type": "integer", "maximum": 5, "examples": [6]}), "'examples'"),
        (closed(q={"type": "string", "examples": "x"}), "'examples'"),
        (closed(q={"type": "string", "minLength": -1}), "'minLength'"),
        (closed(q={"type": "string", "maxLength": True}), "'maxLength'"),
        (closed(q={"type": "string", "minLength": 3, "maxLength": 2}), "'minLength'"),
        (closed(q={"type": "integer", "minimum": float("nan")}), "'minimum'"),
        (closed(q={"type": "integer", "maximum": "10"}), "'maximum'"),
        (closed(q={"type": "string", "pattern": "("}), "'pattern'"),
        (closed(q={"type": "string", "pattern": "^(a|b)$|^c$"}), "'pattern'"),
        (closed(q={"type": "string", "pattern": "^(?P<x>a)$"}), "'pattern'"),
        (closed(q={"type": "string", "pattern": "(?i)^a$"}), "'pattern'"),
        (closed(q={"type": "string", "pattern": "^a\\Z"}), "'pattern'"),
        (closed(q={"type": "string", "description": 3}), "'description'"),
    ],
)
def test_a_schema_the_validator_does_not_enforce_is_refused_at_registration(
    schema: dict[str, Any], keyword: str
) -> None:
    """Fail closed: before, each of these registered and the unenforced part let any value
    through (or, for an unknown type, raised ValueError at call time: a 500)."""
    with pytest.raises(ValueError, match="probe_tool") as caught:
        ToolRegistry([GithubWhoami(), SchemaTool(schema)])
    assert keyword in str(caught.value)


def test_annotations_and_enforced_keywords_register_and_are_enforced() -> None:
    schema = {
        "type": "object",
        "title": "Search",
        "description": "Search arguments.",
        "properties": {
            "query": {
                "type": "string",
                "title": "Query",
                "description": "What to look for.",
                "minLength": 1,
                "maxLength": 50,
                "pattern": "^[a-z ]+$",
                "examples": ["open bugs"],
            },
            "limit": {"type": "integer", "minimum": 1, "maximum": 5, "default": 3},
            "mine": {"type": "boolean", "default": False},
            "order": {"type": "string", "enum": ["new", "old"], "default": "new"},
        },
        "required": ["query"],
        "additionalProperties": False,
    }
    registry = ToolRegistry([SchemaTool(schema)])
    tool = registry.get("probe_tool")
    assert tool.validate({"query": "open bugs"}) == {
        "query": "open bugs",
        "limit": 3,
        "mine": False,
        "order": "new",
    }
    with pytest.raises(ToolError, match="wrong format"):
        tool.validate({"query": "DROP"})


def test_the_invisible_character_rule_spares_typed_emoji_only() -> None:
    from agent.text import format_characters

    assert format_characters("I \u2764\ufe0f it \U0001f44d") == []  # presentation selector
    assert format_characters("x\ufe0f") == ["U+FE0F"]  # after a letter it hides nothing
    assert format_characters("\U0001f600\ufe00\ufe0f") == ["U+FE00", "U+FE0F"]
    assert format_characters("a\nb\tc") == []
    assert format_characters("a\rb") == ["U+000D"]


@pytest.mark.parametrize(
    ("schema", "keyword"),
    [
        (closed(q={"type": "string", "format": "email"}), "'format'"),
        (closed(q={"type": "array", "uniqueItems": True}), "'uniqueItems'"),
        ({**closed(), "patternProperties": {"^x": {"type": "string"}}}, "'patternProperties'"),
        (closed(q={"oneOf": [{"type": "string"}]}), "'oneOf'"),
        (closed(q={"$ref": "#/$defs/q"}), "'$ref'"),
        ({**closed(), "if": {"required": ["q"]}, "then": {}}, "'if'"),
    ],
    ids=["format", "uniqueItems", "patternProperties", "oneOf", "$ref", "if"],
)
def test_a_family_with_an_unenforced_keyword_is_refused_when_it_is_declared(
    schema: dict[str, Any], keyword: str
) -> None:
    """At import, not at call time: declaring the family builds and checks its tools."""
    with pytest.raises(ValueError, match="tool family 'probe'") as caught:
        ToolFamily(name="probe", build=lambda context: [SchemaTool(schema)])
    message = str(caught.value)
    assert "probe_tool" in message
    assert keyword in message
    assert "does not enforce" in message or "does not apply" in message


# One schema per enforced keyword, and a value that breaks only that keyword: the validator
# must refuse it, or the keyword would be one the model is shown and nobody enforces.
_VIOLATIONS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "type": (closed(q={"type": "integer"}), {"q": "1"}),
    "properties": (closed(q={"type": "boolean"}), {"q": "yes"}),
    "required": ({**closed(q={"type": "string"}), "required": ["q"]}, {}),
    "additionalProperties": (closed(q={"type": "string"}), {"q": "x", "r": "y"}),
    "minLength": (closed(q={"type": "string", "minLength": 2}), {"q": "a"}),
    "maxLength": (closed(q={"type": "string", "maxLength": 2}), {"q": "abc"}),
    "pattern": (closed(q={"type": "string", "pattern": "^[a-z]+$"}), {"q": "A1"}),
    "minimum": (closed(q={"type": "integer", "minimum": 1}), {"q": 0}),
    "maximum": (closed(q={"type": "integer", "maximum": 1}), {"q": 2}),
    "enum": (closed(q={"type": "string", "enum": ["a", "b"]}), {"q": "c"}),
}
# Keywords that constrain nothing: annotations, and values the validator fills in or shows.
_NOT_CONSTRAINTS = {"title", "description", "examples", "default"}


def test_the_enforced_keyword_set_is_exactly_what_the_validator_checks() -> None:
    assert set(_VIOLATIONS) | _NOT_CONSTRAINTS == set(ENFORCED_KEYWORDS)
    for keyword, (schema, arguments) in _VIOLATIONS.items():
        check_input_schema("probe_tool", schema)  # the schema itself registers
        with pytest.raises(ToolError) as caught:
            validate_arguments(schema, arguments)
        assert caught.value.kind == "invalid_arguments", keyword


def test_default_is_filled_in_and_examples_must_validate() -> None:
    schema = closed(q={"type": "integer", "minimum": 1, "default": 5, "examples": [2]})
    check_input_schema("probe_tool", schema)
    assert validate_arguments(schema, {}) == {"q": 5}


def test_a_pattern_means_what_it_means_to_the_model() -> None:
    """ECMA-262, not Python: `\\d` is ASCII digits and a final `$` does not match before a
    newline (before, Arabic-Indic digits and "a\\n" passed)."""
    tool = SchemaTool(
        closed(
            n={"type": "string", "pattern": "^\\d{3}$"}, m={"type": "string", "pattern": "^[ab]$"}
        )
    )
    ToolRegistry([tool])
    schema = tool.spec.input_schema
    assert validate_arguments(schema, {"n": "123", "m": "a"}) == {"n": "123", "m": "a"}
    for bad in ({"n": "\u0661\u0662\u0663", "m": "a"}, {"n": "123", "m": "a\n"}):
        with pytest.raises(ToolError):
            validate_arguments(schema, bad)
