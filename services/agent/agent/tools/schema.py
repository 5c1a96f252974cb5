"""Tool arguments: the small JSON Schema validator and the registration check that keeps the two
in step.

``validate_arguments`` enforces exactly this subset: an object with ``properties``,
``required`` and ``additionalProperties: false``; properties of type string (``minLength``,
``maxLength``, ``pattern``), integer (``minimum``, ``maximum``) or boolean, each with optional
``enum`` and ``default``; ``title``, ``description`` and (on a property) ``examples`` are
annotations. ``check_input_schema`` refuses any schema that uses anything else (``format``,
``uniqueItems``, ``patternProperties``, ``oneOf``, ``$ref``, ``if``...): a keyword the
validator ignored would be a constraint the model is shown and nobody enforces, so a tool that
uses one is refused when it registers (at import, see registry.ToolFamily), never trusted at
call time. ``ENFORCED_KEYWORDS`` is that set, and the tests prove each is enforced.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final

from agent.text import has_lone_surrogate
from agent.tools.base import ToolError

__all__ = [
    "ENFORCED_KEYWORDS",
    "check_input_schema",
    "check_title_and_body",
    "invalid",
    "validate_arguments",
]

CONTROL_RE: Final = re.compile(r"[\x00-\x1f\x7f]")
_BODY_CONTROL_RE: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # keeps \t \n \r


def invalid(message: str) -> ToolError:
    return ToolError("invalid_arguments", message)


def check_title_and_body(args: Mapping[str, Any]) -> None:
    """A one-line, non-blank title and a body without control characters (newlines and tabs
    are fine): what an issue or a note may hold."""
    if not args["title"].strip():
        raise invalid('"title" must not be blank')
    if CONTROL_RE.search(args["title"]):
        raise invalid('"title" must be a single line without control characters')
    if _BODY_CONTROL_RE.search(args["body"]):
        raise invalid('"body" must not contain control characters')


def _label(name: str) -> str:
    """An argument name as quoted in an error message (bounded: names come from the model)."""
    return json.dumps(name[:64])


def limit_argument(items: str, *, maximum: int, default: int) -> dict[str, Any]:
    """The ``limit`` property of a listing tool: how many `items`, 1 to `maximum`."""
    return {
        "type": "integer",
        "minimum": 1,
        "maximum": maximum,
        "default": default,
        "description": f"How many {items} to return (1-{maximum}, default {default}).",
    }


_ECMA_GROUPS = ("(?:", "(?=", "(?!", "(?<=", "(?<!")


def _pattern_problem(pattern: str) -> str | None:
    """Why `pattern` would not mean in Python what it means to the model (ECMA-262), or None.

    Python differs where a schema author would not look: ``$`` also matches before a final
    newline, ``\\d``/``\\w``/``\\s``/``\\b`` match non-ASCII text, and ``(?P<..>)``, inline flags,
    ``\\A``/``\\Z`` exist only in Python. So a pattern may end with ``$`` (made exact below) but
    hold no other ``$``, and its only ``(?`` groups are the ECMA ones (``_ECMA_GROUPS``).
    """
    in_class = False
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            if pattern[index + 1 : index + 2] in {"A", "Z", "z", "G"}:
                return "uses a Python-only anchor"
            index += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "$" and index != len(pattern) - 1:
            return "has a '$' before its end (it would match before a newline)"
        elif pattern.startswith("(?", index) and not pattern.startswith(_ECMA_GROUPS, index):
            return "uses Python-only group syntax"
        index += 1
    return None


def _python_pattern(pattern: str) -> re.Pattern[str]:
    """An ECMA-262 pattern for Python: ASCII classes, and a final ``$`` that is the end."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern, re.ASCII)


def _check_value(name: str, schema: Mapping[str, Any], value: object) -> object:
    kind = schema.get("type")
    label = _label(name)
    if kind == "string":
        if not isinstance(value, str):
            raise invalid(f"{label} must be a string")
        if has_lone_surrogate(value):
            # Not text: no provider could be sent it (UTF-8 cannot encode it).
            raise invalid(f"{label} must be valid Unicode text")
        min_length = schema.get("minLength")
        max_length = schema.get("maxLength")
        if min_length is not None and len(value) < min_length:
            raise invalid(
                f"{label} must not be empty"
                if min_length == 1
                else f"{label} must be at least {min_length} characters long"
            )
        if max_length is not None and len(value) > max_length:
            raise invalid(f"{label} must be at most {max_length} characters long")
        pattern = schema.get("pattern")
        if pattern is not None and _python_pattern(pattern).search(value) is None:
            raise invalid(f"{label} has the wrong format")
    elif kind == "integer":
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)  # JSON Schema: 10.0 is an integer
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid(f"{label} must be an integer")
        minimum = schema.get("minimum")
        maximum = schema.get("maximum")
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            low = "" if minimum is None else f" at least {minimum}"
            high = "" if maximum is None else f" at most {maximum}"
            joiner = " and" if low and high else ""
            raise invalid(f"{label} must be{low}{joiner}{high}")
    elif kind == "boolean":
        if not isinstance(value, bool):
            raise invalid(f"{label} must be true or false")
    elif kind is not None:
        raise ValueError(f"unsupported schema type {kind!r} for {name!r}")
    enum = schema.get("enum")
    if enum is not None and not any(
        type(value) is type(option) and value == option for option in enum
    ):
        choices = ", ".join(json.dumps(option) for option in enum)
        raise invalid(f"{label} must be one of {choices}")
    return value


def validate_arguments(schema: Mapping[str, Any], arguments: object) -> dict[str, Any]:
    """Checked arguments with defaults filled in; raises ToolError("invalid_arguments", ...).

    ``null`` for an optional argument counts as "not given" (models often send it).
    """
    if schema.get("type") != "object":
        raise ValueError("a tool's input schema must have type 'object'")
    if not isinstance(arguments, Mapping):
        raise invalid("the arguments must be a JSON object")
    properties: Mapping[str, Mapping[str, Any]] = schema.get("properties", {})
    required: Sequence[str] = schema.get("required", ())
    closed = schema.get("additionalProperties", True) is False
    result: dict[str, Any] = {}
    for name, value in arguments.items():
        if not isinstance(name, str):
            raise invalid("argument names must be strings")
        spec = properties.get(name)
        if spec is None:
            if closed:
                raise invalid(f"unknown argument {_label(name)}")
            result[name] = value
            continue
        if value is None and name not in required:
            continue
        result[name] = _check_value(name, spec, value)
    for name in required:
        if name not in result:
            raise invalid(f"missing required argument {_label(name)}")
    for name, spec in properties.items():
        if name not in result and "default" in spec:
            result[name] = spec["default"]
    return result


# The schema subset ``validate_arguments`` enforces, keyword by keyword. Annotations (title and
# description anywhere, examples on a property) never constrain a value, so ignoring them
# accepts exactly what a full validator would: they are allowed. Examples must validate all
# the same, since the model learns from them; ``default`` is no annotation here (the validator
# fills it in), so it must validate too. Anything else, ``$comment`` included, is refused: the
# list stays the validator's, not JSON Schema's.
_ANNOTATIONS: Final = frozenset({"title", "description"})
_OBJECT_KEYWORDS: Final = frozenset(
    {"type", "properties", "required", "additionalProperties", *_ANNOTATIONS}
)
_TYPE_KEYWORDS: Final[Mapping[str, frozenset[str]]] = MappingProxyType(
    {
        "string": frozenset({"minLength", "maxLength", "pattern"}),
        "integer": frozenset({"minimum", "maximum"}),
        "boolean": frozenset(),
    }
)
_PROPERTY_KEYWORDS: Final = frozenset({"type", "enum", "default", "examples", *_ANNOTATIONS})
_ANY_PROPERTY_KEYWORD: Final = _PROPERTY_KEYWORDS.union(*_TYPE_KEYWORDS.values())
# Every keyword a tool's input schema may use, at any level: the validator's, not JSON Schema's.
ENFORCED_KEYWORDS: Final = _OBJECT_KEYWORDS | _ANY_PROPERTY_KEYWORD


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _bound(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_property(name: str, prop: object) -> None:
    """Raise ValueError (without the tool's name) unless `prop` is in the enforced subset."""
    where = f"property {name[:64]!r}"
    if not isinstance(prop, Mapping):
        raise ValueError(f"{where} must be a schema object")
    for keyword in prop:
        if keyword not in _ANY_PROPERTY_KEYWORD:
            raise ValueError(
                f"{where} uses {str(keyword)[:64]!r}, which the validator does not enforce"
            )
    kind = prop.get("type")
    if kind is None:
        raise ValueError(f"{where} has no 'type': the validator would accept any value")
    if not isinstance(kind, str) or kind not in _TYPE_KEYWORDS:
        supported = ", ".join(_TYPE_KEYWORDS)
        raise ValueError(f"{where} has 'type' {kind!r}; the validator supports {supported}")
    for keyword in prop:
        if keyword not in _PROPERTY_KEYWORDS and keyword not in _TYPE_KEYWORDS[kind]:
            raise ValueError(f"{where} uses {keyword!r}, which does not apply to type {kind!r}")
    for keyword in _ANNOTATIONS & set(prop):
        if not isinstance(prop[keyword], str):
            raise ValueError(f"{where}: {keyword!r} must be a string")
    for low, high, valid in (
        ("minLength", "maxLength", _count),
        ("minimum", "maximum", _bound),
    ):
        for keyword in (low, high):
            if keyword in prop and not valid(prop[keyword]):
                raise ValueError(f"{where}: {keyword!r} is not a valid bound")
        if low in prop and high in prop and prop[low] > prop[high]:
            raise ValueError(f"{where}: {low!r} is greater than {high!r}")
    if "pattern" in prop:
        if not isinstance(prop["pattern"], str):
            raise ValueError(f"{where}: 'pattern' must be a string")
        problem = _pattern_problem(prop["pattern"])
        if problem is not None:
            raise ValueError(f"{where}: 'pattern' {problem}")
        try:
            _python_pattern(prop["pattern"])
        except re.error:
            raise ValueError(f"{where}: 'pattern' is not a valid regular expression") from None
    unconstrained = {key: value for key, value in prop.items() if key != "enum"}
    if "enum" in prop:
        options = prop["enum"]
        if not isinstance(options, list) or not options:
            raise ValueError(f"{where}: 'enum' must be a non-empty list")
        for option in options:
            _check_example(name, "enum", unconstrained, option)
    if "default" in prop:
        _check_example(name, "default", prop, prop["default"])
    if "examples" in prop:
        if not isinstance(prop["examples"], list):
            raise ValueError(f"{where}: 'examples' must be a list")
        for example in prop["examples"]:
            _check_example(name, "examples", prop, example)


def _check_example(name: str, keyword: str, prop: Mapping[str, Any], value: object) -> None:
    """`value` must pass the property's own check unchanged (10.0 is no integer default)."""
    where = f"property {name[:64]!r}"
    try:
        checked = _check_value(name, prop, value)
    except ToolError as exc:
        raise ValueError(f"{where}: {keyword!r} value does not validate ({exc.message})") from None
    if type(checked) is not type(value):
        raise ValueError(f"{where}: {keyword!r} value is not of the property's type")


def check_input_schema(tool: str, schema: object) -> None:
    """Raise ValueError naming the tool and the keyword unless ``validate_arguments`` enforces
    every keyword of ``schema``.

    The model is shown the schema, so a keyword it relies on (``format``, ``anyOf``, ``items``,
    a property without ``type``...) that the validator skipped would let any value through:
    such a tool is refused when registered, not trusted at call time.
    """
    try:
        _check_object_schema(schema)
    except ValueError as exc:
        raise ValueError(f"tool {tool!r}: input schema: {exc}") from None


def _check_object_schema(schema: object) -> None:
    if not isinstance(schema, Mapping):
        raise ValueError("must be a schema object")
    for keyword in schema:
        if keyword not in _OBJECT_KEYWORDS:
            raise ValueError(f"uses {str(keyword)[:64]!r}, which the validator does not enforce")
    if schema.get("type") != "object":
        raise ValueError("'type' must be 'object'")
    if schema.get("additionalProperties") is not False:
        raise ValueError(
            "'additionalProperties' must be false: undeclared arguments would pass unchecked"
        )
    for keyword in _ANNOTATIONS & set(schema):
        if not isinstance(schema[keyword], str):
            raise ValueError(f"{keyword!r} must be a string")
    properties = schema.get("properties", {})
    if not isinstance(properties, Mapping):
        raise ValueError("'properties' must be an object")
    for name, prop in properties.items():
        if not isinstance(name, str):
            raise ValueError("property names must be strings")
        _check_property(name, prop)
    required = schema.get("required", [])
    if not isinstance(required, list | tuple) or not all(isinstance(n, str) for n in required):
        raise ValueError("'required' must be a list of property names")
    if len(set(required)) != len(required):
        raise ValueError("'required' names a property twice")
    for name in required:
        if name not in properties:
            raise ValueError(f"'required' names {name[:64]!r}, which is not a property")
