"""Tests for the provider entry schema (binder.provider_schema), which the CDK app runs too."""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import Any

import pytest

from binder import provider_schema
from binder.provider_schema import (
    ALL_FIELDS,
    KIND_SCHEMAS,
    KINDS,
    ProviderConfigError,
    parse_entries,
    parse_entry,
)

ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:binder/providers/github-AbCdEf"
ENTRIES: list[dict[str, Any]] = [
    {"name": "github", "kind": "github", "client_id": "gh", "secret_arn": ARN},
    {"name": "gh", "kind": "github", "client_id": "gh", "allowed_scopes": []},
    {"name": "m365", "kind": "microsoft", "client_id": "ms", "tenant": "Organizations"},
    {"name": "sfdc", "kind": "salesforce", "client_id": "sf", "tenant": "acme.my.salesforce.com"},
    {
        "name": "corp",
        "kind": "oidc",
        "client_id": "c",
        "issuer": "https://sso.example.com",
        "scopes": ["profile", "profile"],
        "allowed_scopes": ["email"],
    },
    {
        "name": "crm",
        "kind": "oauth2",
        "client_id": "c",
        "authorization_endpoint": "https://crm.example.com/a",
        "token_endpoint": "https://crm.example.com/t",
        "revocation_endpoint": "https://crm.example.com/r",
        "userinfo_endpoint": "https://crm.example.com/me",
        "scopes": ["read"],
    },
]


def test_every_kind_has_a_schema() -> None:
    assert set(KIND_SCHEMAS) == set(KINDS)
    assert all(schema.kind == kind for kind, schema in KIND_SCHEMAS.items())
    assert {"name", "kind", "client_id", "secret_arn", "allowed_scopes"} <= ALL_FIELDS


@pytest.mark.parametrize("raw", ENTRIES, ids=lambda e: str(e["name"]))
def test_an_entry_reads_back_from_its_rendering(raw: dict[str, Any]) -> None:
    entry = parse_entry(raw)
    assert parse_entry(entry.to_json()) == entry


def test_rendering_keeps_an_empty_allow_list_and_leaves_unset_fields_out() -> None:
    raw = {"name": "gh", "kind": "github", "client_id": "c", "allowed_scopes": []}
    entry = parse_entry(raw)
    assert entry.allowed_scopes == ()
    assert entry.to_json() == raw
    assert parse_entry({"name": "gh", "kind": "github", "client_id": "c"}).allowed_scopes is None


def test_values_are_normalised() -> None:
    ms = parse_entry({"name": "m", "kind": "microsoft", "client_id": "c", "tenant": " Common "})
    assert ms.tenant == "common"
    sf = parse_entry(
        {"name": "s", "kind": "salesforce", "client_id": "c", "tenant": "ACME.my.salesforce.com"}
    )
    assert sf.tenant == "acme.my.salesforce.com"
    assert parse_entry(ENTRIES[4]).scopes == ("profile",)


def test_agent_only_fields_need_the_flag_and_are_not_rendered() -> None:
    raw = {**ENTRIES[4], "userinfo_endpoint": "https://sso.example.com/userinfo"}
    with pytest.raises(ProviderConfigError, match="userinfo_endpoint is not used by kind 'oidc'"):
        parse_entry(raw)
    entry = parse_entry(raw, agent_fields=True)
    assert entry.userinfo_endpoint == "https://sso.example.com/userinfo"
    assert "userinfo_endpoint" not in entry.to_json()
    assert parse_entry(entry.to_json()) == entry.for_binder()
    with pytest.raises(ProviderConfigError, match="userinfo_endpoint must be an https URL"):
        parse_entry({**raw, "userinfo_endpoint": "http://sso.example.com/u"}, agent_fields=True)


def test_errors_carry_the_field_and_problem_without_the_value() -> None:
    with pytest.raises(ProviderConfigError) as excinfo:
        parse_entry({"name": "gh", "kind": "github", "client_id": "has space"})
    assert excinfo.value.field == "client_id"
    assert excinfo.value.problem is not None
    assert "has space" not in str(excinfo.value)
    with pytest.raises(ProviderConfigError) as excinfo:
        parse_entry({"name": "Bad", "kind": "github", "client_id": "c"}, where="PROVIDERS[3]")
    assert str(excinfo.value).startswith("PROVIDERS[3]: name must be")
    assert excinfo.value.field == "name"


def test_parse_entries_refuses_duplicate_names() -> None:
    text = (
        '[{"name": "a", "kind": "github", "client_id": "c"},'
        ' {"name": "a", "kind": "slack", "client_id": "d"}]'
    )
    with pytest.raises(ProviderConfigError, match="provider 'a': name is configured more than"):
        parse_entries(text)


def test_the_schema_imports_the_standard_library_only() -> None:
    """The CDK app runs this module without the binder's dependencies installed."""
    tree = ast.parse(Path(provider_schema.__file__).read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported - {"__future__"} <= sys.stdlib_module_names
