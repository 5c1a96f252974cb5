"""Every command and context key the operator docs show exists.

- `make <target>` in code in docs/*.md is a target of the Makefile;
- `python tools/vault_admin.py <subcommand> [--option ...]` is a subcommand of its argparse
  parser, with options that subcommand accepts;
- every bare identifier in inline code in docs/deployment.md and docs/operations.md is a
  context key `stacks/config.py` reads (top level, or a field of a `providers` entry), or one
  of the other names the project defines (tools, audit events, provider kinds, scopes the
  tools use, ...), so a misspelt or invented context key fails here;
- every JSON object in those two docs is a valid context fragment;
- the stacks, logical IDs, resource types and task-definition families the AWS CLI commands
  name exist in the synthesized app.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.tools.registry import default_tools
from app import DEPLOY_CONTEXT_KEYS
from binder.audit import EVENTS
from binder.providers.registry import BUILTIN_KINDS, GENERIC_KINDS, build_spec
from stacks.config import COGNITO_RESERVED_WORDS, PROVIDER_FIELDS, AppConfig
from stacks.identity_stack import _pascal
from tests.infra.assembly import Synthesized
from tests.infra.conftest import example_context
from tools import vault_admin

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted((ROOT / "docs").glob("*.md"))
CONFIG_DOCS = [ROOT / "docs" / "deployment.md", ROOT / "docs" / "operations.md"]
# Fenced blocks, also indented ones inside list items.
FENCE = re.compile(r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```", re.S | re.M)
JSON_FENCE = re.compile(r"^[ \t]*```json\n(.*?)^[ \t]*```", re.S | re.M)

# Names in inline code of the config docs that are neither context keys nor derived from code
# below: each is defined somewhere the test cannot import cheaply, and is listed with where.
OTHER_NAMES = {
    "python",  # a command
    "python3",  # the Makefile's default PYTHON
    "iss",  # RFC 9207 parameter / JWT claim
    "common",  # Microsoft tenant values (binder.providers.microsoft.TENANTS)
    "login",  # Salesforce tenant values (binder.providers.salesforce.TENANTS)
    "test",
    "jwks_uri",  # OIDC discovery document field (binder.providers.oidc)
    "user_hash",  # audit field (binder audit.audit)
    "invalid_client",  # OAuth error code (RFC 6749 5.2)
    "exchange_",  # prefix of authorization_failed reasons (binder broker)
}


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _code(text: str) -> Iterator[str]:
    """Fenced blocks (continuation lines joined) and inline code spans."""
    for block in FENCE.findall(text):
        yield from block.replace("\\\n", " ").splitlines()
    yield from re.findall(r"`([^`\n]+)`", FENCE.sub("", text))


def _inline(text: str) -> list[str]:
    return re.findall(r"`([^`\n]+)`", FENCE.sub("", text))


# -- make targets ---------------------------------------------------------------------------


def _make_targets() -> set[str]:
    makefile = _read(ROOT / "Makefile")
    return set(re.findall(r"^([a-z][a-z0-9_-]*)\s*:(?!=)", makefile, re.M))


def test_every_make_target_in_the_docs_exists() -> None:
    targets = _make_targets()
    named = {
        (doc.name, target)
        for doc in DOCS
        for line in _code(_read(doc))
        for target in re.findall(r"(?:^|[\s;&|(])make\s+([a-z][a-z0-9_-]*)", line)
    }
    assert {t for _, t in named} >= {"bootstrap", "synth", "deploy"}
    assert not {(doc, t) for doc, t in named if t not in targets}


# -- tools/vault_admin.py -------------------------------------------------------------------


def _subcommands() -> dict[str, set[str]]:
    parser = vault_admin.build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {
        name: {option for action in sub._actions for option in action.option_strings}
        for name, sub in commands.choices.items()
    }


def _vault_admin_commands() -> list[tuple[str, str, list[str]]]:
    found = []
    for doc in DOCS:
        for line in _code(_read(doc)):
            for match in re.finditer(r"python tools/vault_admin\.py\s+(\S+)([^|;&)`]*)", line):
                options = re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", match.group(2))
                found.append((doc.name, match.group(1), options))
    return found


def test_every_vault_admin_command_in_the_docs_exists() -> None:
    commands = _subcommands()
    shown = _vault_admin_commands()
    assert {name for _, name, _ in shown} == set(commands)  # the docs show every subcommand
    for doc, name, options in shown:
        assert name in commands, f"{doc}: no subcommand {name}"
        unknown = set(options) - commands[name]
        assert not unknown, f"{doc}: {name} has no option {sorted(unknown)}"


# -- context keys ---------------------------------------------------------------------------


def _keys_read_by_the_app() -> tuple[set[str], set[str]]:
    """(top-level context keys AppConfig.from_context reads, fields a providers entry takes)."""
    context = example_context()
    read: set[str] = set()

    def get(key: str) -> Any:
        read.add(key)
        return context.get(key)

    AppConfig.from_context(get)
    # The binder's kinds declare a provider entry's fields (binder.providers).
    return read, set(PROVIDER_FIELDS)


def _other_known_names() -> set[str]:
    """Names defined by the code that the docs legitimately put in inline code."""
    userinfo = {"google": "https://u.example/userinfo", "microsoft": "https://u.example/userinfo"}
    tools = default_tools(oidc_userinfo=userinfo)
    refresh_scopes = {
        scope
        for kind in BUILTIN_KINDS
        if (scope := build_spec(kind, name=kind, client_id="x").refresh_scope) is not None
    }
    return (
        {tool.spec.name for tool in tools}
        | {scope for tool in tools for scope in tool.spec.scopes}
        | refresh_scopes
        | set(EVENTS)
        | {"tool_call"}
        | set(BUILTIN_KINDS)
        | set(GENERIC_KINDS)
        | set(_subcommands())
        | OTHER_NAMES
        | set(DEPLOY_CONTEXT_KEYS)
        | set(COGNITO_RESERVED_WORDS)
    )


@pytest.mark.parametrize("doc", CONFIG_DOCS, ids=lambda p: p.name)
def test_every_context_key_in_the_config_docs_is_read_by_the_app(doc: Path) -> None:
    top, fields = _keys_read_by_the_app()
    others = _other_known_names()
    names = {span for span in _inline(_read(doc)) if re.fullmatch(r"[a-z][a-z0-9_]*", span)}
    assert names & top, "the doc names no context key at all: is the check still working?"
    unknown = names - top - fields - others
    assert not unknown, f"{doc.name}: not context keys the app reads: {sorted(unknown)}"


def _json_objects(doc: Path) -> list[dict[str, Any]]:
    blocks = JSON_FENCE.findall(_read(doc))
    return [obj for obj in map(json.loads, blocks) if isinstance(obj, dict)]


@pytest.mark.parametrize("doc", CONFIG_DOCS, ids=lambda p: p.name)
def test_json_context_examples_in_the_config_docs_are_valid(doc: Path) -> None:
    top, _ = _keys_read_by_the_app()
    objects = _json_objects(doc)
    assert objects, f"{doc.name} has no JSON context example: is the check still working?"
    for obj in objects:
        assert set(obj) <= top, f"{doc.name}: unknown context keys {sorted(set(obj) - top)}"
        # A complete example (it names the account) stands alone; a fragment is merged into
        # the checked-in example context.
        context = obj if "account" in obj else {**example_context(), **obj}
        AppConfig.from_context(context.get)  # raises ConfigError naming the key


def test_deployment_doc_lists_every_key_that_must_be_real() -> None:
    readme = _read(ROOT / "README.md")
    table = readme.split("## Configuration (CDK context)", 1)[1].split("\n## ", 1)[0]
    real = {
        key
        for line in table.splitlines()
        if line.startswith("| `") and "**real" in line
        for key in re.findall(r"`([a-z_]+)`", line.split("|")[1])
    }
    must = _read(ROOT / "docs" / "deployment.md").split("## Configure", 1)[1]
    must = must.split("Review the others", 1)[0]
    assert real <= set(_inline(must))


# -- AWS CLI commands against the synthesized app -------------------------------------------


def _aws_commands() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for line in _code(_read(doc)):
            if "aws " in line:
                found.append((doc.name, line))
    return found


def _provider_names_in_docs() -> set[str]:
    names = set(BUILTIN_KINDS)
    for doc in CONFIG_DOCS:
        for obj in _json_objects(doc):
            names |= set(obj.get("providers", {}))
    return names


def test_aws_cli_commands_name_resources_the_app_creates(synth: Synthesized) -> None:
    stacks = synth.templates
    provider_secrets = {f"ProviderSecret{_pascal(n)}" for n in _provider_names_in_docs()}
    for name, entry in example_context()["providers"].items():
        if "client_id" not in entry:  # an mcp server that registers its own client
            assert f"ProviderSecret{_pascal(name)}" not in synth.stack("Identity")["Resources"]
            continue
        assert f"ProviderSecret{_pascal(name)}" in synth.stack("Identity")["Resources"]
    families = [
        str(r["Properties"].get("Family"))
        for template in stacks.values()
        for r in template["Resources"].values()
        if r["Type"] == "AWS::ECS::TaskDefinition"
    ]
    checked = 0  # every command below checks at least one name
    for doc, line in _aws_commands():
        for prefix in re.findall(r"--family-prefix\s+(\S+)", line):
            assert any(f.startswith(prefix) for f in families), f"{doc}: family {prefix}"
            checked += 1
        stack_names = re.findall(r"--stack-name\s+([\w-]+)", line)
        if not stack_names:
            continue
        (stack,) = stack_names
        assert stack in stacks, f"{doc}: no stack {stack}"
        resources: dict[str, Any] = stacks[stack]["Resources"]
        for logical_id in re.findall(r"--logical-resource-id\s+(\w+)", line):
            if logical_id.startswith("ProviderSecret"):
                assert logical_id in provider_secrets, f"{doc}: {logical_id}"
            else:
                assert logical_id in resources, f"{doc}: {logical_id} not in {stack}"
            checked += 1
        prefixes = re.findall(r"starts_with\(LogicalResourceId, '(\w+)'\)", line)
        types = re.findall(r"ResourceType=='([\w:]+)'", line)
        if prefixes or types:
            matching = [
                lid
                for lid, r in resources.items()
                if all(lid.startswith(p) for p in prefixes) and all(r["Type"] == t for t in types)
            ]
            assert len(matching) == 1, f"{doc}: {prefixes} {types} match {matching} in {stack}"
            checked += 1
    assert checked >= 11
