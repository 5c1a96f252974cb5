"""docs/extending.md's "Add an MCP server", followed word for word in a copy of the project.

The recipe's fenced blocks carry a title: the `cdk.json` block is an object merged into the
context's `providers`; the two others are what synth renders for the binder (`PROVIDERS`) and
the agent (`AGENT_MCP_SERVERS`). The test writes the first into a copy and proves, in
subprocesses of the copy, that the CDK configuration accepts the entries with the standard
library only and renders exactly the other two blocks, that the binder's registry and the
agent's settings parse them, and that a binder started with them lists both servers and
publishes their callbacks in its client metadata document. Nothing touches the network.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.settings import parse_mcp_servers
from binder.providers.registry import ProviderRegistry

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "extending.md"
BLOCK = re.compile(r'^```(\w+) title="([^"]+)"\n(.*?)^```', re.S | re.M)
PROVIDERS_BLOCK = "cdk.json: context.providers"
RENDERED_PROVIDERS = "binder PROVIDERS"
RENDERED_SERVERS = "agent AGENT_MCP_SERVERS"
# The ARN the recipe shows for crm-tools' credentials secret (at synth, a CDK reference).
CRM_SECRET = "arn:aws:secretsmanager:us-east-1:111111111111:secret:crm-tools-AbCdEf"
COPIED = ("services", "stacks", "constructs", "devstack", "tests", "app.py", "cdk.json")
IGNORED = shutil.ignore_patterns("__pycache__", ".pytest_cache", ".mypy_cache", "node_modules")


def recipe() -> dict[str, str]:
    """The titled fenced blocks of the "Add an MCP server" section, by title."""
    section = DOC.read_text(encoding="utf-8").split("## Add an MCP server", 1)[1]
    section = section.split("\n## ", 1)[0]
    return {title: body for _, title, body in BLOCK.findall(section)}


def run(copy: Path, *args: str, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*args], cwd=copy, capture_output=True, text=True, check=False, timeout=timeout
    )


@pytest.fixture(scope="module")
def followed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the project with the recipe's cdk.json block merged in."""
    copy = tmp_path_factory.mktemp("mcp-recipe")
    for top in COPIED:
        source = ROOT / top
        if source.is_dir():
            shutil.copytree(source, copy / top, ignore=IGNORED, symlinks=True)
        else:
            shutil.copy2(source, copy / top)
    shutil.copy2(ROOT / "pyproject.toml", copy / "pyproject.toml")
    entries: dict[str, Any] = json.loads(recipe()[PROVIDERS_BLOCK])
    cdk = json.loads((copy / "cdk.json").read_text())
    assert not set(entries) & set(cdk["context"]["providers"]), "the recipe adds new names"
    cdk["context"]["providers"].update(entries)
    (copy / "cdk.json").write_text(json.dumps(cdk, indent=2) + "\n")
    return copy


def test_the_recipe_is_one_configuration_entry_per_server() -> None:
    blocks = recipe()
    assert set(blocks) == {PROVIDERS_BLOCK, RENDERED_PROVIDERS, RENDERED_SERVERS}
    entries = json.loads(blocks[PROVIDERS_BLOCK])
    assert list(entries) == ["team-notes", "crm-tools"]
    assert {e["kind"] for e in entries.values()} == {"mcp"}
    # One server registers its own client (no id, no secret), one was registered beforehand.
    assert "client_id" not in entries["team-notes"]
    assert "client_id" in entries["crm-tools"]
    # A pre-registered client is pinned to the authorization server it belongs to.
    assert entries["crm-tools"]["authorization_server"].startswith("https://")


RENDER = f"""
import json, sys
sys.path[:0] = ['.', 'services/binder']
from stacks.config import AppConfig
context = json.load(open('cdk.json'))['context']
config = AppConfig.from_context(context.get)
mcp = [p for p in config.providers if p.kind == 'mcp' and p.name != 'atlassian-mcp']
print(json.dumps({{
    'providers': [p.binder_entry({CRM_SECRET!r}) for p in mcp],
    'servers': [s for s in config.agent_mcp_servers if s['name'] != 'atlassian-mcp'],
    'credentials': [p.name for p in mcp if p.has_credentials],
    'example_values': list(config.example_values()),
}}))
"""


def test_the_configuration_renders_exactly_the_recipes_blocks(followed: Path) -> None:
    """As the CDK app reads it: from cdk.json, with the standard library only (-S)."""
    result = run(followed, sys.executable, "-S", "-c", RENDER, timeout=60)
    assert result.returncode == 0, result.stderr
    rendered = json.loads(result.stdout)
    blocks = recipe()
    assert rendered["providers"] == json.loads(blocks[RENDERED_PROVIDERS])
    assert rendered["servers"] == json.loads(blocks[RENDERED_SERVERS])
    # Only the pre-registered client gets a credentials secret for the operator to fill.
    assert rendered["credentials"] == ["crm-tools"]
    # The recipe's hosts are examples: a deploy of them is refused, naming both.
    assert "providers.team-notes (endpoints)" in rendered["example_values"]
    assert "providers.crm-tools (endpoints)" in rendered["example_values"]


def test_the_binder_and_the_agent_parse_what_synth_renders() -> None:
    blocks = recipe()
    registry = ProviderRegistry.from_json(blocks[RENDERED_PROVIDERS])
    assert registry.names() == ("team-notes", "crm-tools")
    assert registry.display_name("team-notes") == "Team notes"
    servers = parse_mcp_servers(blocks[RENDERED_SERVERS], allow_http=False)
    assert [(s.name, s.url, s.scopes) for s in servers] == [
        ("team-notes", "https://notes.example.com/mcp", ("notes:read", "notes:write")),
        ("crm-tools", "https://crm.example.com/mcp", ()),
    ]


BINDER = f"""
import json, sys
sys.path[:0] = ['.', 'services/common', 'services/binder']
from devstack import moto_fixes
moto_fixes.apply()
import boto3
from moto import mock_aws
from stacks.config import AppConfig
from tests.binder.conftest import INTERNAL, PUBLIC, REGION, Cognito, running_binder

context = json.load(open('cdk.json'))['context']
with mock_aws():
    key = boto3.client('kms', region_name=REGION).create_key()['KeyMetadata']['Arn']
    boto3.client('dynamodb', region_name=REGION).create_table(
        TableName='sessions',
        AttributeDefinitions=[{{'AttributeName': 'pk', 'AttributeType': 'S'}}],
        KeySchema=[{{'AttributeName': 'pk', 'KeyType': 'HASH'}}],
        BillingMode='PAY_PER_REQUEST',
    )
    arn = {CRM_SECRET!r}
    rendered = [p.binder_entry(arn) for p in AppConfig.from_context(context.get).providers]
    cognito = Cognito()
    with running_binder({{'key_arn': key, 'secret_arn': arn}}, cognito,
                        PROVIDERS=json.dumps(rendered)) as binder:
        listed = binder.client.get(
            f'{{INTERNAL}}/internal/providers',
            headers={{'authorization': f'Bearer {{cognito.token("alice")}}'}},
        )
        print(json.dumps({{'listed': [listed.status_code, listed.json()]}}))
"""


def test_a_binder_started_with_the_entries_lists_both_servers(followed: Path) -> None:
    result = run(followed, sys.executable, "-c", BINDER)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    status, body = answer["listed"]
    assert status == 200
    listed = body["providers"]
    assert {"name": "team-notes", "kind": "mcp", "display_name": "Team notes"} in listed
    assert {"name": "crm-tools", "kind": "mcp", "display_name": "crm-tools"} in listed
    # (Each entry's client metadata document exists only once the entry resolved to it, which
    # needs its server: tests/binder/providers/test_mcp.py, against a local one.)
