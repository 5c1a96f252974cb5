"""The provider entry schema (binder.providers.schema), which the CDK app runs too."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from binder import providers
from binder.providers.registry import ALL_FIELDS, KINDS
from binder.providers.schema import (
    ProviderConfigError,
    parse_entries,
    parse_entry,
)
from tests.binder.providers.support import ARN

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = Path(providers.__file__).parent
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
        "display_name": "Corp SSO",
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
    assert all(kind.name == name for name, kind in KINDS.items())
    assert {
        "name",
        "kind",
        "client_id",
        "secret_arn",
        "display_name",
        "allowed_scopes",
    } <= ALL_FIELDS


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
    assert ms.text("tenant") == "common"
    sf = parse_entry(
        {"name": "s", "kind": "salesforce", "client_id": "c", "tenant": "ACME.my.salesforce.com"}
    )
    assert sf.text("tenant") == "acme.my.salesforce.com"
    assert parse_entry(ENTRIES[4]).scope_list() == ("profile",)


def test_agent_only_fields_need_the_flag_and_are_not_rendered() -> None:
    raw = {**ENTRIES[4], "userinfo_endpoint": "https://sso.example.com/userinfo"}
    with pytest.raises(ProviderConfigError, match="userinfo_endpoint is not used by kind 'oidc'"):
        parse_entry(raw)
    entry = parse_entry(raw, agent_fields=True)
    assert entry.text("userinfo_endpoint") == "https://sso.example.com/userinfo"
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


@pytest.mark.parametrize(
    "display_name",
    ["GitHub", "Jira (Atlassian)", "Zoë's CRM", "営業 CRM", "x" * 64, "Docs 📄"],
)
def test_a_display_name_is_kept_as_given(display_name: str) -> None:
    raw = {"name": "p", "kind": "github", "client_id": "c", "display_name": display_name}
    entry = parse_entry(raw)
    assert entry.display_name == display_name
    assert entry.to_json()["display_name"] == display_name


@pytest.mark.parametrize(
    "display_name",
    [
        "",
        "x" * 65,
        7,
        ["GitHub"],
        " GitHub",
        "GitHub ",
        "Git\nHub",
        "Git\tHub",
        "Git\u202eHub",  # right-to-left override (Cf)
        "Git\u200bHub",  # zero-width space (Cf)
        "Git\u00a0Hub",  # no-break space
        "Git\ufe0fHub",  # variation selector
        "Git\u3164Hub",  # Hangul filler
        "Git\ue000Hub",  # private use
        "GitHub\U000e0100",  # variation selector supplement (Mn, printable)
        "Git\ufff0Hub",  # unassigned, default ignorable
    ],
)
def test_a_display_name_must_look_like_what_it_is(display_name: object) -> None:
    raw = {"name": "p", "kind": "github", "client_id": "c", "display_name": display_name}
    with pytest.raises(ProviderConfigError, match=r"provider 'p': display_name") as excinfo:
        parse_entry(raw)
    assert excinfo.value.field == "display_name"
    if isinstance(display_name, str) and display_name.strip():
        assert display_name.strip() not in str(excinfo.value)


def test_display_names_hide_nothing_the_shared_invisible_rule_hides() -> None:
    """The copy of the ignorable ranges (the CDK app cannot import svc_common) is the rule's."""
    from binder.providers import schema
    from svc_common import invisible

    assert schema._IGNORABLE == invisible._IGNORABLE


# --- the CDK app's environment: the standard library only -------------------------------------


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, anywhere in it (function-level imports included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def _type_checking_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import):
                    found |= {alias.name for alias in inner.names}
                elif isinstance(inner, ast.ImportFrom) and inner.module:
                    found.add(inner.module)
    return found


# The modules that use the network; everything else in the package is standard library only.
NETWORK = frozenset({"binder.providers.discovery", "binder.providers.mcp_discovery"})
# Imports made inside functions the CDK app never calls (first use in the binder).
LAZY = {
    "registry.py": {"anyio", "binder.providers.discovery"},
    "mcp.py": {"binder.providers.mcp_discovery"},
}


@pytest.mark.parametrize(
    "module",
    sorted(p.name for p in PACKAGE.glob("*.py") if f"binder.providers.{p.stem}" not in NETWORK),
)
def test_the_package_but_discovery_imports_the_standard_library_only(module: str) -> None:
    """The CDK app imports these modules without the binder's dependencies. The registry
    imports discovery (and anyio) inside `get`, and the mcp kind its discovery inside
    `resolve`, which the CDK app never calls."""
    path = PACKAGE / module
    imported = _imports(path) - _type_checking_imports(path) - LAZY.get(module, set())
    outside = {
        name
        for name in imported
        if name != "__future__"
        and name.split(".")[0] not in sys.stdlib_module_names
        and not (name.startswith("binder.providers.") and name not in NETWORK)
    }
    assert not outside, f"{module} imports {sorted(outside)}"


def test_every_kind_parses_and_builds_without_site_packages() -> None:
    """In a clean interpreter (-S: no site-packages), the whole package but discovery imports,
    every kind is found, and a PROVIDERS list of every kind builds a registry."""
    code = """
import json, sys
sys.path[:0] = ['services/binder']
from binder.providers.registry import KINDS, ProviderRegistry
entries = []
for name, kind in KINDS.items():
    entry = {"name": name, "kind": name, "client_id": "c"}
    for field in kind.fields:
        # Optional URLs too (mcp's authorization_server is required with a client_id).
        if field.required or (field.is_url and not field.agent_only):
            entry[field.name] = "https://%s.example.com/%s" % (name, field.name)
    entries.append(entry)
registry = ProviderRegistry.from_json(json.dumps(entries))
assert registry.names() == tuple(KINDS), registry.names()
leaked = {"anyio", "httpx2", "authlib", "binder.providers.discovery",
          "binder.providers.mcp_discovery"} & set(sys.modules)
assert not leaked, leaked
"""
    result = subprocess.run(
        [sys.executable, "-S", "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
