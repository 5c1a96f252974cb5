"""One table of provider entries, good and bad, for both validators (tests/binder/providers/
test_entries.py): the CDK config (`AppConfig.from_context`, a `providers` context entry) and the
binder's registry (`ProviderRegistry.from_json`, the entry as synth renders it). Add a row here
when a kind gains a field.
"""

from __future__ import annotations

from typing import Any

ARN = "arn:aws:secretsmanager:us-east-1:111111111111:secret:provider-AbCdEf"
GUID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OIDC = {"kind": "oidc", "client_id": "c", "issuer": "https://sso.example.com"}
OAUTH2 = {
    "kind": "oauth2",
    "client_id": "c",
    "authorization_endpoint": "https://crm.example.com/authorize",
    "token_endpoint": "https://crm.example.com/token",
}
MCP = {
    "kind": "mcp",
    "client_id": "c",
    "url": "https://mcp.example.com/mcp",
    "authorization_server": "https://auth.example.com",
}


def gh(**fields: Any) -> dict[str, Any]:
    return {"client_id": "Iv1.abc", **fields}


# (provider name, its context entry, whether both sides accept it)
CASES: list[tuple[str, dict[str, Any], bool]] = [
    # names
    ("ab-", {"kind": "github", **gh()}, False),
    ("-ab", {"kind": "github", **gh()}, False),
    ("a", {"kind": "github", **gh()}, True),
    ("gh-2", {"kind": "github", **gh()}, True),
    ("9gh", {"kind": "github", **gh()}, True),
    ("a" * 32, {"kind": "github", **gh()}, True),
    ("a" * 33, {"kind": "github", **gh()}, False),
    ("Gh", {"kind": "github", **gh()}, False),
    ("g_h", {"kind": "github", **gh()}, False),
    ("g.h", {"kind": "github", **gh()}, False),
    # a generic entry may not take a built-in kind's name (the agent's tools are named after them)
    ("github", dict(OIDC), False),
    ("slack", dict(OAUTH2), False),
    ("github-sso", dict(OIDC), True),
    # client IDs
    ("github", {}, False),
    ("github", {"client_id": ""}, False),
    ("github", {"client_id": "has space"}, False),
    ("github", {"client_id": 7}, False),
    ("github", {"client_id": "x" * 257}, False),
    ("github", {"client_id": "abc!#$~"}, True),
    # Microsoft tenants
    ("microsoft", gh(tenant="contoso.com"), False),
    ("microsoft", gh(tenant="contoso.onmicrosoft.com"), False),
    ("microsoft", gh(tenant="organizations"), True),
    ("microsoft", gh(tenant="common"), True),
    ("microsoft", gh(tenant="consumers"), True),
    ("microsoft", gh(tenant=GUID), True),
    ("microsoft", gh(tenant=GUID.upper()), True),
    ("microsoft", gh(tenant="72f988bf"), False),
    ("microsoft", gh(tenant=""), False),
    ("microsoft", gh(tenant=5), False),
    ("microsoft", gh(tenant=None), True),
    # Salesforce tenants
    ("salesforce", gh(tenant="acme.sandbox.my.salesforce.com"), True),
    ("salesforce", gh(tenant="acme--uat.sandbox.my.salesforce.com"), True),
    ("salesforce", gh(tenant="acme.my.salesforce.com"), True),
    ("salesforce", gh(tenant="ACME.my.salesforce.com"), True),
    ("salesforce", gh(tenant="login"), True),
    ("salesforce", gh(tenant="test"), True),
    ("salesforce", gh(tenant="evil.com"), False),
    ("salesforce", gh(tenant="acme.my.salesforce.com.evil.com"), False),
    ("salesforce", gh(tenant="login.salesforce.com"), False),
    # scopes and allow-lists
    ("corp", {**OIDC, "scopes": ["a,b"]}, False),
    ("github", gh(allowed_scopes=["a,b"]), False),
    ("corp", {**OIDC, "scopes": ["a b"]}, False),
    ("corp", {**OIDC, "scopes": ['a"b']}, False),
    ("corp", {**OIDC, "scopes": ["a\\b"]}, False),
    ("corp", {**OIDC, "scopes": [""]}, False),
    ("corp", {**OIDC, "scopes": ["naïve"]}, False),
    ("corp", {**OIDC, "scopes": "profile"}, False),
    ("corp", {**OIDC, "scopes": ["x" * 256]}, True),
    ("corp", {**OIDC, "scopes": ["x" * 257]}, False),
    ("corp", {**OIDC, "scopes": ["profile", "email", "read:org"]}, True),
    ("github", gh(allowed_scopes=[f"s{i}" for i in range(50)]), True),
    ("github", gh(allowed_scopes=[f"s{i}" for i in range(51)]), False),
    ("github", gh(allowed_scopes=[]), True),
    ("github", gh(allowed_scopes=["repo", "read:user"]), True),
    ("github", gh(allowed_scopes="repo"), False),
    ("github", gh(scopes=["repo"]), False),
    # display names (any kind)
    ("github", gh(display_name="GitHub Enterprise"), True),
    ("corp", {**OIDC, "display_name": "Corp SSO"}, True),
    ("crm", {**OAUTH2, "display_name": "Zoë's CRM"}, True),
    ("github", gh(display_name="x" * 64), True),
    ("github", gh(display_name="x" * 65), False),
    ("github", gh(display_name=""), False),
    ("github", gh(display_name=" GitHub"), False),
    ("github", gh(display_name="Git\u202eHub"), False),
    ("github", gh(display_name="Git\u200bHub"), False),
    ("github", gh(display_name="Git\nHub"), False),
    ("github", gh(display_name="Git\ufe0fHub"), False),
    ("github", gh(display_name=["GitHub"]), False),
    # every named kind, bare
    ("google", gh(), True),
    ("atlassian", gh(), True),
    ("slack", gh(), True),
    ("jira", {"kind": "atlassian", **gh()}, True),
    # unknown keys and wrong kinds
    ("github", gh(scope="repo"), False),
    ("microsoft", gh(tennant="common"), False),
    ("myspace", gh(), False),
    ("gitlab", {"kind": "gitlab", **gh()}, False),
    ("corp", {**OIDC, "kind": "OIDC"}, False),
    ("corp", {**OIDC, "kind": 5}, False),
    ("gh-enterprise", {"kind": "github", **gh()}, True),
    # fields on kinds that do not take them
    ("github", gh(tenant="common"), False),
    ("github", gh(token_endpoint="https://github.com/t"), False),
    ("microsoft", gh(issuer="https://login.microsoftonline.com/common/v2.0"), False),
    ("corp", {**OIDC, "authorization_endpoint": "https://sso.example.com/a"}, False),
    ("corp", {**OIDC, "tenant": "common"}, False),
    ("crm", {**OAUTH2, "issuer": "https://crm.example.com"}, False),
    ("github", gh(tenant=None, scopes=None), True),
    # an oidc userinfo_endpoint is for the agent: accepted, checked, not sent to the binder
    ("corp", {**OIDC, "userinfo_endpoint": "https://sso.example.com/userinfo"}, True),
    # issuers
    ("corp", OIDC, True),
    ("corp", {**OIDC, "issuer": "https://sso.example.com/realms/corp/"}, True),
    ("corp", {**OIDC, "issuer": "http://sso.example.com"}, False),
    ("corp", {**OIDC, "issuer": "http://127.0.0.1:9400"}, False),
    ("corp", {**OIDC, "issuer": "https://sso.example.com?tenant=a"}, False),
    ("corp", {**OIDC, "issuer": "https://sso.example.com#x"}, False),
    ("corp", {**OIDC, "issuer": "https://u:p@sso.example.com"}, False),
    ("corp", {**OIDC, "issuer": "sso.example.com"}, False),
    ("corp", {k: v for k, v in OIDC.items() if k != "issuer"}, False),
    # explicit endpoints
    ("crm", OAUTH2, True),
    (
        "crm",
        {
            **OAUTH2,
            "revocation_endpoint": "https://crm.example.com/revoke",
            "userinfo_endpoint": "https://crm.example.com/me",
            "scopes": ["read"],
        },
        True,
    ),
    ("crm", {k: v for k, v in OAUTH2.items() if k != "token_endpoint"}, False),
    ("crm", {**OAUTH2, "token_endpoint": "http://crm.example.com/token"}, False),
    ("crm", {**OAUTH2, "token_endpoint": "https://crm.example.com:99999/token"}, False),
    ("crm", {**OAUTH2, "revocation_endpoint": "https://crm.example.com/r#x"}, False),
    # MCP servers; without client_id, synth creates no credentials secret and renders no ARN
    ("tools", MCP, True),
    ("tools", {k: v for k, v in MCP.items() if k != "client_id"}, True),
    ("tools", {"kind": "mcp", "url": "https://mcp.example.com/mcp", "scopes": ["read"]}, True),
    ("tools", {"kind": "mcp", "url": "https://mcp.example.com/mcp", "client_id": ""}, False),
    ("tools", {**MCP, "scopes": ["files:read"], "display_name": "Team tools"}, True),
    ("tools", {**MCP, "url": "https://mcp.example.com"}, True),
    ("tools", {**MCP, "url": "http://mcp.example.com/mcp"}, False),
    ("tools", {**MCP, "url": "http://127.0.0.1:9000/mcp"}, False),
    ("tools", {**MCP, "url": "https://mcp.example.com/mcp#x"}, False),
    ("tools", {**MCP, "url": "https://u:p@mcp.example.com/mcp"}, False),
    ("tools", {k: v for k, v in MCP.items() if k != "url"}, False),
    ("tools", {**MCP, "issuer": "https://auth.example.com"}, False),
    ("tools", {**MCP, "token_endpoint": "https://auth.example.com/token"}, False),
    ("tools", {**MCP, "scopes": ["a b"]}, False),
    ("tools", {**MCP, "kind": "MCP"}, False),
    # a pre-registered public client (no secret: synth creates none and renders no ARN)
    ("tools", {**MCP, "public_client": True}, True),
    ("tools", {**MCP, "public_client": False}, True),
    ("tools", {**MCP, "public_client": "yes"}, False),
    ("tools", {**MCP, "public_client": 1}, False),
    ("tools", {"kind": "mcp", "url": "https://mcp.example.com/mcp", "public_client": True}, False),
    ("crm", {**OAUTH2, "public_client": True}, False),
    # the authorization server a pre-registered client belongs to: required with client_id
    ("tools", {k: v for k, v in MCP.items() if k != "authorization_server"}, False),
    ("tools", {**MCP, "authorization_server": "https://auth.example.com/tenant/"}, True),
    ("tools", {**MCP, "authorization_server": "http://auth.example.com"}, False),
    ("tools", {**MCP, "authorization_server": "https://auth.example.com?t=a"}, False),
    ("tools", {**MCP, "authorization_server": "https://auth.example.com#x"}, False),
    ("tools", {**MCP, "authorization_server": "auth.example.com"}, False),
    ("tools", {**MCP, "authorization_server": 5}, False),
    (
        "tools",
        {
            "kind": "mcp",
            "url": "https://mcp.example.com/mcp",
            "authorization_server": "https://a.example.com",
        },
        True,
    ),
    ("corp", {**OIDC, "authorization_server": "https://sso.example.com"}, False),
    # mcp names without "--" (the agent's tool names <server>__<tool> would be ambiguous)
    ("team--notes", {**MCP}, False),
    ("team-notes", {**MCP}, True),
    ("a--b", {"kind": "github", **gh()}, True),
]
