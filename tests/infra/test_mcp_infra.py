"""What MCP servers need of the infrastructure, read from the synthesized templates.

cdk.json's example has one MCP server without a client id (`atlassian-mcp`): the binder
registers its own client at the server's authorization server (its client metadata document,
else dynamic registration) and keeps a dynamic registration in the vault as
`{vault_prefix}/_mcp-client/{sha256(issuer, newline, provider)}`
(services/binder/binder/registrations.py). These tests check that the existing grants cover
exactly that, that no credentials secret nobody could fill is created, that the agent and the
binder get the entry in the form each one parses, and that both can reach an MCP server and
its authorization server over HTTPS.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from typing import Any

from agent.settings import parse_mcp_servers
from binder.providers.registry import ProviderRegistry
from binder.providers.schema import parse_entries
from binder.vault import TAG_PROVIDER, TAG_USER_HASH
from stacks.config import AppConfig
from tests.infra.assembly import Synthesized
from tests.infra.conftest import example_context

ACCOUNT = example_context()["account"]
REGION = example_context()["region"]
PREFIX = "agent-token-vault"
# The key's ARN as the identity stack's own template refers to it.
VAULT_KEY = {"Fn::GetAtt": ["VaultKey", "Arn"]}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _binder_statements(synth: Synthesized) -> list[dict[str, Any]]:
    roles = {r for r in synth.resources("AWS::IAM::Role") if r.startswith("BinderTaskRole")}
    assert len(roles) == 1
    statements: list[dict[str, Any]] = []
    for type_ in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy"):
        for policy in synth.resources(type_).values():
            if {r.get("Ref") for r in policy["Properties"].get("Roles", [])} & roles:
                statements += policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def _condition_holds(operator: str, values: dict[str, Any], context: dict[str, Any]) -> bool:
    """The three condition operators the binder's policy uses; any other fails the test."""
    for key, expected in values.items():
        actual = context.get(key)
        if operator == "StringEquals":
            if actual is None or actual not in _as_list(expected):
                return False
        elif operator == "Null":
            if (actual is None) != (str(expected).lower() == "true"):
                return False
        elif operator == "ForAllValues:StringEquals":
            if not set(_as_list(actual or [])) <= set(_as_list(expected)):
                return False
        else:
            raise AssertionError(f"unexpected condition operator {operator}")
    return True


def _allowed(
    statements: list[dict[str, Any]], action: str, resource: Any, context: dict[str, Any]
) -> bool:
    """IAM's answer for one request of the binder's role (identity policy only): some Allow
    matches and no Deny does. Resources are ARNs (wildcards) or the template's references."""

    def matches(statement: dict[str, Any]) -> bool:
        if not any(fnmatch.fnmatchcase(action, a) for a in _as_list(statement["Action"])):
            return False
        if not any(
            r == resource
            or (
                isinstance(r, str)
                and isinstance(resource, str)
                and fnmatch.fnmatchcase(resource, r)
            )
            for r in _as_list(statement["Resource"])
        ):
            return False
        conditions = statement.get("Condition", {})
        return all(_condition_holds(op, vals, context) for op, vals in conditions.items())

    applicable = [s for s in statements if matches(s)]
    return any(s["Effect"] == "Allow" for s in applicable) and not any(
        s["Effect"] == "Deny" for s in applicable
    )


def _registration_secret_arn(issuer: str, provider: str = "atlassian-mcp") -> str:
    digest = hashlib.sha256(f"{issuer}\n{provider}".encode()).hexdigest()
    return f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{PREFIX}/_mcp-client/{digest}-AbCdEf"


def test_the_binder_can_keep_a_dynamic_registration_with_its_existing_grants(
    synth: Synthesized,
) -> None:
    """Create (conditional, under the vault key, with the vault's two tags), read,
    compare-and-swap and delete the registration secret, and use the key through Secrets
    Manager."""
    statements = _binder_statements(synth)
    secret = _registration_secret_arn("https://auth.atlassian.com")
    tags = [TAG_PROVIDER, TAG_USER_HASH]
    create = {"secretsmanager:KmsKeyArn": VAULT_KEY, "aws:TagKeys": tags}
    assert _allowed(statements, "secretsmanager:CreateSecret", secret, create)
    assert _allowed(statements, "secretsmanager:TagResource", secret, create)
    for action in (
        "secretsmanager:GetSecretValue",
        "secretsmanager:PutSecretValue",
        "secretsmanager:UpdateSecretVersionStage",
        "secretsmanager:DeleteSecret",  # a failed registration's claim is deleted
    ):
        assert _allowed(statements, action, secret, {}), action
    via = {"kms:ViaService": f"secretsmanager.{REGION}.amazonaws.com"}
    for action in ("kms:GenerateDataKey", "kms:Decrypt"):
        assert _allowed(statements, action, VAULT_KEY, via), action


def test_the_registration_grant_is_no_wider_than_the_vault(synth: Synthesized) -> None:
    """The same grants refuse what the registration does not need: another key, a replica,
    another tag key, a secret outside the prefix, the key outside Secrets Manager."""
    statements = _binder_statements(synth)
    secret = _registration_secret_arn("https://auth.atlassian.com")
    tags = [TAG_PROVIDER, TAG_USER_HASH]
    other_key = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/00000000-0000-4000-8000-000000000000"
    assert not _allowed(
        statements,
        "secretsmanager:CreateSecret",
        secret,
        {"secretsmanager:KmsKeyArn": other_key, "aws:TagKeys": tags},
    )
    assert not _allowed(
        statements,
        "secretsmanager:CreateSecret",
        secret,
        {
            "secretsmanager:KmsKeyArn": VAULT_KEY,
            "aws:TagKeys": tags,
            "secretsmanager:AddReplicaRegions": ["eu-west-1"],
        },
    )
    assert not _allowed(
        statements, "secretsmanager:TagResource", secret, {"aws:TagKeys": ["owner"]}
    )
    outside = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:_mcp-client/abc-AbCdEf"
    assert not _allowed(statements, "secretsmanager:GetSecretValue", outside, {})
    assert not _allowed(statements, "secretsmanager:ListSecrets", secret, {})
    assert not _allowed(
        statements, "kms:Decrypt", VAULT_KEY, {"kms:ViaService": f"s3.{REGION}.amazonaws.com"}
    )


def test_an_mcp_server_without_client_id_gets_no_credentials_secret(synth: Synthesized) -> None:
    identity = synth.stack("Identity")["Resources"]
    secrets = {lid for lid, r in identity.items() if r["Type"] == "AWS::SecretsManager::Secret"}
    assert secrets == {"ProviderSecretGithub", "ProviderSecretGoogle", "ProviderSecretMicrosoft"}


def _environment(synth: Synthesized, service: str) -> dict[str, str]:
    task = next(
        td["Properties"]["ContainerDefinitions"][0]
        for lid, td in synth.resources("AWS::ECS::TaskDefinition").items()
        if lid.startswith(service)
    )
    return {e["Name"]: e["Value"] for e in task["Environment"] if isinstance(e["Value"], str)}


def _providers_json(synth: Synthesized) -> list[dict[str, Any]]:
    task = next(
        td["Properties"]["ContainerDefinitions"][0]
        for lid, td in synth.resources("AWS::ECS::TaskDefinition").items()
        if lid.startswith("Binder")
    )
    (value,) = [e["Value"] for e in task["Environment"] if e["Name"] == "PROVIDERS"]
    # The secret ARNs are cross-stack references: Fn::Join of text and imports.
    parts = value["Fn::Join"][1]
    text = "".join(
        p if isinstance(p, str) else f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:x-AbCdEf"
        for p in parts
    )
    entries: list[dict[str, Any]] = json.loads(text)
    return entries


def test_a_declared_public_client_gets_no_secret_and_reaches_the_binder_as_public() -> None:
    """A server that gave the operator a client id without a secret: no secret nobody could
    fill is created, and the binder reads the entry as a public client (PKCE only)."""
    entry = {
        "kind": "mcp",
        "url": "https://mcp.example.com/mcp",
        "client_id": "pre",
        "authorization_server": "https://auth.example.com",
    }
    context = {**example_context(), "providers": {"crm-tools": {**entry, "public_client": True}}}
    (public,) = AppConfig.from_context(context.get).providers
    assert not public.has_credentials
    rendered = public.binder_entry("arn:aws:secretsmanager:us-east-1:1:secret:x-AbCdEf")
    assert "secret_arn" not in rendered
    assert rendered["public_client"] is True
    (parsed,) = parse_entries(json.dumps([rendered]))
    assert (parsed.client_id, parsed.secret_arn) == ("pre", None)
    context["providers"] = {"crm-tools": entry}
    (confidential,) = AppConfig.from_context(context.get).providers
    assert confidential.has_credentials


def test_the_binder_gets_the_mcp_entry_without_a_secret_and_parses_it(
    synth: Synthesized,
) -> None:
    entries = _providers_json(synth)
    (mcp,) = [e for e in entries if e["kind"] == "mcp"]
    assert mcp == {"name": "atlassian-mcp", "kind": "mcp", "url": "https://mcp.example.com/mcp"}
    assert all("secret_arn" in e for e in entries if e is not mcp)
    assert "atlassian-mcp" in ProviderRegistry.from_json(json.dumps(entries)).names()


def test_the_agent_gets_every_mcp_provider_as_an_mcp_server(synth: Synthesized) -> None:
    env = _environment(synth, "Agent")
    servers = parse_mcp_servers(env["AGENT_MCP_SERVERS"], allow_http=False)
    assert [(s.name, s.url, s.scopes) for s in servers] == [
        ("atlassian-mcp", "https://mcp.example.com/mcp", ())
    ]
    # The user's Cognito token reaches the binder only; the agent holds no MCP credential.
    assert not any("SECRET" in name or "TOKEN" in name for name in env)


def test_both_services_reach_mcp_servers_over_https_only(synth: Synthesized) -> None:
    """The binder (discovery, registration, token requests) and the agent (tools/list and
    tools/call) reach MCP servers and their authorization servers on 443 through the NAT
    gateways; nothing else leaves the VPC. An MCP server on another port is unreachable."""
    groups = synth.resources("AWS::EC2::SecurityGroup", "Services")
    for prefix in ("Agent", "Binder"):
        (group,) = [g for lid, g in groups.items() if lid.startswith(f"{prefix}SecurityGroup")]
        internet = [
            rule
            for rule in group["Properties"]["SecurityGroupEgress"]
            if rule.get("CidrIp") == "0.0.0.0/0"
        ]
        assert [(r["IpProtocol"], r["FromPort"], r["ToPort"]) for r in internet] == [
            ("tcp", 443, 443)
        ], prefix
