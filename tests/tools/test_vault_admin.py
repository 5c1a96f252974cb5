"""tools/vault_admin.py against moto: listing, revocation, deletion, and no token in any output.

Vault secrets are shaped exactly as the binder writes them (services/binder/binder/vault.py):
name `{prefix}/{provider}/{user_hash}`, tags `oauth-provider` and `user-hash`, a JSON
TokenRecord as the value. Upstream revocation runs through the binder's own OAuth client with
an httpx2.MockTransport standing in for the providers.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import boto3
import httpx2
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from binder.vault import REAUTHORIZATION_REQUIRED, TokenRecord
from svc_common.identity import VerifiedUser
from tools import vault_admin

REGION = "us-east-1"
PREFIX = "agent-token-vault"
ISSUER = f"https://cognito-idp.{REGION}.amazonaws.com/{REGION}_TESTPOOL"
ALICE = hashlib.sha256(f"{ISSUER}|alice-sub".encode()).hexdigest()
BOB = hashlib.sha256(f"{ISSUER}|bob-sub".encode()).hexdigest()
USERS = (ALICE, BOB)
PROVIDERS = ("acme", "github")
ACME_CLIENT_SECRET = "acme-client-secret-VALUE-never-printed"
GITHUB_CLIENT_SECRET = "github-client-secret-VALUE-never-printed"
REVOKE_URL = "https://idp.acme.test/oauth/revoke"
GITHUB_CLIENT_ID = "Iv1.0000000000000000"


def access_token(user: str, provider: str) -> str:
    return f"ACCESS-{provider}-{user[:12]}-secret-token-value"


def refresh_token(user: str, provider: str) -> str:
    return f"REFRESH-{provider}-{user[:12]}-secret-token-value"


ALL_TOKENS = [f(u, p) for u in USERS for p in PROVIDERS for f in (access_token, refresh_token)]


@dataclass
class Vault:
    client: Any
    providers_json: Path
    provider_secret_arns: dict[str, str] = field(default_factory=dict)

    def names(self) -> set[str]:
        found: set[str] = set()
        for page in self.client.get_paginator("list_secrets").paginate():
            found.update(s["Name"] for s in page["SecretList"])
        return {n for n in found if n.startswith(f"{PREFIX}/")}


def put_record(client: Any, user: str, provider: str, *, status: str = "active") -> None:
    record = TokenRecord(
        provider=provider,
        access_token=access_token(user, provider) if status == "active" else "",
        token_type="Bearer",
        refresh_token=refresh_token(user, provider) if status == "active" else None,
        expires_at=2_000_000_000,
        scopes=("read",),
        obtained_at=1_700_000_000,
        status=status,
    )
    client.create_secret(
        Name=f"{PREFIX}/{provider}/{user}",
        SecretString=record.to_json(),
        Description=f"OAuth tokens of one user for {provider} (token vault)",
        Tags=[
            {"Key": "oauth-provider", "Value": provider},
            {"Key": "user-hash", "Value": user},
        ],
    )


@pytest.fixture
def vault(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Vault]:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        client = boto3.client("secretsmanager", region_name=REGION)
        arns = {}
        for provider, client_id, secret in (
            ("acme", "acme-client", ACME_CLIENT_SECRET),
            ("github", GITHUB_CLIENT_ID, GITHUB_CLIENT_SECRET),
        ):
            # The CDK app's provider secrets carry the oauth-provider tag too.
            arns[provider] = client.create_secret(
                Name=f"ProviderSecret{provider.capitalize()}-AbCdEf",
                SecretString=json.dumps({"client_id": client_id, "client_secret": secret}),
                Tags=[{"Key": "oauth-provider", "Value": provider}],
            )["ARN"]
        for user in USERS:
            for provider in PROVIDERS:
                put_record(client, user, provider)
        # Same shape under another prefix: never matched.
        client.create_secret(
            Name=f"other-vault/github/{ALICE}",
            SecretString="{}",
            Tags=[
                {"Key": "oauth-provider", "Value": "github"},
                {"Key": "user-hash", "Value": ALICE},
            ],
        )
        providers = [
            {
                "name": "acme",
                "kind": "oauth2",
                "client_id": "acme-client",
                "secret_arn": arns["acme"],
                "authorization_endpoint": "https://idp.acme.test/oauth/authorize",
                "token_endpoint": "https://idp.acme.test/oauth/token",
                "revocation_endpoint": REVOKE_URL,
            },
            {
                "name": "github",
                "kind": "github",
                "client_id": GITHUB_CLIENT_ID,
                "secret_arn": arns["github"],
            },
        ]
        path = tmp_path / "providers.json"
        path.write_text(json.dumps(providers))
        yield Vault(client=client, providers_json=path, provider_secret_arns=arns)


class Providers:
    """The providers' revocation endpoints: acme accepts, GitHub fails with a 500."""

    def __init__(self, *, github_status: int = 500) -> None:
        self.requests: list[httpx2.Request] = []
        self.github_status = github_status

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        if str(request.url) == REVOKE_URL and request.method == "POST":
            return httpx2.Response(200)
        if request.url.host == "api.github.com" and request.method == "DELETE":
            return httpx2.Response(self.github_status, json={"message": "Server Error"})
        return httpx2.Response(404)

    def transport(self) -> httpx2.MockTransport:
        return httpx2.MockTransport(self.handle)


def run(
    argv: list[str], *, stdin: str = "", transport: httpx2.AsyncBaseTransport | None = None
) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    code = vault_admin.main(
        argv, transport=transport, stdin=io.StringIO(stdin), stdout=out, stderr=err
    )
    text = out.getvalue() + err.getvalue()
    assert_no_secret_values(text)
    return code, text


def assert_no_secret_values(text: str) -> None:
    for value in (*ALL_TOKENS, ACME_CLIENT_SECRET, GITHUB_CLIENT_SECRET):
        assert value not in text
    assert "Traceback" not in text


def vault_name(provider: str, user: str) -> str:
    return f"{PREFIX}/{provider}/{user}"


ALL_NAMES = {vault_name(p, u) for p in PROVIDERS for u in USERS}


# -- list ------------------------------------------------------------------------------------


def test_list_shows_every_vault_secret_under_the_prefix_and_nothing_else(vault: Vault) -> None:
    code, out = run(["list", "--prefix", PREFIX, "--region", REGION])
    assert code == 0
    lines = [line for line in out.splitlines() if line.startswith(f"{PREFIX}/")]
    assert {line.split()[0] for line in lines} == ALL_NAMES
    assert "other-vault" not in out
    assert "ProviderSecret" not in out
    assert f"provider=acme  user-hash={ALICE}  last-changed=" in out
    assert "4 vault secret(s)" in out


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--provider", "github"], {vault_name("github", ALICE), vault_name("github", BOB)}),
        (["--user-hash", BOB], {vault_name("acme", BOB), vault_name("github", BOB)}),
        (["--provider", "acme", "--user-hash", ALICE], {vault_name("acme", ALICE)}),
        (["--provider", "slack"], set()),
    ],
)
def test_list_filters_by_provider_and_user(
    vault: Vault, options: list[str], expected: set[str]
) -> None:
    code, out = run(["list", "--prefix", PREFIX, *options])
    assert code == 0
    listed = {line.split()[0] for line in out.splitlines() if line.startswith(f"{PREFIX}/")}
    assert listed == expected
    if not expected:
        assert "no vault secrets match" in out


def test_listing_follows_pagination(vault: Vault) -> None:
    found = vault_admin.find_secrets(vault.client, prefix=PREFIX, page_size=1)
    assert {s.name for s in found} == ALL_NAMES
    assert {s.user_hash for s in found} == set(USERS)


def test_list_never_reads_a_secret_value(vault: Vault) -> None:
    class NoValues:
        def __getattr__(self, name: str) -> Any:
            if name in ("get_secret_value", "batch_get_secret_value"):
                raise AssertionError("list must not read secret values")
            return getattr(vault.client, name)

    out = io.StringIO()
    assert vault_admin.main(["list", "--prefix", PREFIX], client=NoValues(), stdout=out) == 0
    assert_no_secret_values(out.getvalue())


# -- revoke ----------------------------------------------------------------------------------


def test_revoke_by_user_hash_deletes_exactly_that_users_secrets(vault: Vault) -> None:
    code, out = run(["revoke", "--prefix", PREFIX, "--user-hash", ALICE, "--yes"])
    assert code == 0
    assert vault.names() == {vault_name("acme", BOB), vault_name("github", BOB)}
    assert "summary: matched 2, revoked upstream 0, deleted 2, failed 0" in out
    assert "no upstream revocation (no --providers-json)" in out
    # The look-alike under another prefix is untouched.
    vault.client.describe_secret(SecretId=f"other-vault/github/{ALICE}")


def test_revoke_by_provider_deletes_every_users_secret_of_that_provider(vault: Vault) -> None:
    code, out = run(["revoke", "--prefix", PREFIX, "--provider", "acme", "--yes"])
    assert code == 0
    assert vault.names() == {vault_name("github", ALICE), vault_name("github", BOB)}
    assert "deleted 2, failed 0" in out
    # Provider client secrets (tagged oauth-provider too) are never touched.
    for arn in vault.provider_secret_arns.values():
        vault.client.describe_secret(SecretId=arn)


def test_revoke_all_deletes_every_vault_secret_under_the_prefix(vault: Vault) -> None:
    code, out = run(["revoke", "--prefix", PREFIX, "--all"], stdin="4\n")
    assert code == 0
    assert vault.names() == set()
    assert "Type 4" in out
    assert "matched 4, revoked upstream 0, deleted 4, failed 0" in out


def test_dry_run_deletes_and_revokes_nothing(vault: Vault) -> None:
    providers = Providers()
    code, out = run(
        [
            "revoke",
            "--prefix",
            PREFIX,
            "--all",
            "--dry-run",
            "--providers-json",
            str(vault.providers_json),
        ],
        transport=providers.transport(),
    )
    assert code == 0
    assert vault.names() == ALL_NAMES
    assert providers.requests == []
    assert (
        f"{vault_name('acme', ALICE)}: would try upstream revocation at acme; would delete" in out
    )
    assert "dry run: nothing was revoked or deleted" in out


@pytest.mark.parametrize("answer", ["", "1\n", "yes\n", "all\n"])
def test_without_confirmation_nothing_is_deleted(vault: Vault, answer: str) -> None:
    providers = Providers()
    code, out = run(
        [
            "revoke",
            "--prefix",
            PREFIX,
            "--user-hash",
            ALICE,
            "--providers-json",
            str(vault.providers_json),
        ],
        stdin=answer,
        transport=providers.transport(),
    )
    assert code == 1
    assert "Type 2 (the number of secrets)" in out
    assert "not confirmed: nothing was revoked or deleted" in out
    assert vault.names() == ALL_NAMES
    assert providers.requests == []


def test_upstream_revocation_uses_the_binders_client_and_a_failure_still_deletes(
    vault: Vault,
) -> None:
    providers = Providers(github_status=500)
    code, out = run(
        [
            "revoke",
            "--prefix",
            PREFIX,
            "--user-hash",
            ALICE,
            "--providers-json",
            str(vault.providers_json),
        ],
        stdin="2\n",
        transport=providers.transport(),
    )
    assert code == 0  # revocation is best effort; every deletion succeeded
    assert vault.names() == {vault_name("acme", BOB), vault_name("github", BOB)}
    assert (
        f"{vault_name('acme', ALICE)}: revoked upstream (refresh_token confirmed, "
        "access_token confirmed); deleted"
    ) in out
    assert (
        f"{vault_name('github', ALICE)}: not revoked upstream (refresh_token unsupported, "
        "access_token refused); deleted"
    ) in out
    assert "summary: matched 2, revoked upstream 1, deleted 2, failed 0" in out

    # RFC 7009: the refresh token first, then the access token, client_secret_basic.
    acme = [r for r in providers.requests if str(r.url) == REVOKE_URL]
    forms = [parse_qs(r.content.decode()) for r in acme]
    assert [(f["token"], f["token_type_hint"]) for f in forms] == [
        ([refresh_token(ALICE, "acme")], ["refresh_token"]),
        ([access_token(ALICE, "acme")], ["access_token"]),
    ]
    assert all(r.headers["authorization"].startswith("Basic ") for r in acme)

    # GitHub's own style: DELETE /applications/{client_id}/token with the access token only
    # (the endpoint revokes OAuth access tokens; a refresh token is not one).
    github = [r for r in providers.requests if r.url.host == "api.github.com"]
    assert [r.url.path for r in github] == [f"/applications/{GITHUB_CLIENT_ID}/token"]
    assert [json.loads(r.content)["access_token"] for r in github] == [
        access_token(ALICE, "github"),
    ]


def test_a_connection_that_needs_reauthorization_is_deleted_without_a_revocation_call(
    vault: Vault,
) -> None:
    vault.client.delete_secret(SecretId=vault_name("acme", BOB), ForceDeleteWithoutRecovery=True)
    put_record(vault.client, BOB, "acme", status=REAUTHORIZATION_REQUIRED)
    providers = Providers()
    code, out = run(
        [
            "revoke",
            "--prefix",
            PREFIX,
            "--provider",
            "acme",
            "--providers-json",
            str(vault.providers_json),
            "--yes",
        ],
        transport=providers.transport(),
    )
    assert code == 0
    assert "connection is reauthorization_required (no live token); deleted" in out
    assert "revoked upstream (refresh_token confirmed, access_token confirmed); deleted" in out
    assert vault.names() == {vault_name("github", ALICE), vault_name("github", BOB)}


def test_a_provider_missing_from_the_providers_json_is_reported_and_still_deleted(
    vault: Vault, tmp_path: Path
) -> None:
    only_acme = [e for e in json.loads(vault.providers_json.read_text()) if e["name"] == "acme"]
    path = tmp_path / "acme-only.json"
    path.write_text(json.dumps(only_acme))
    code, out = run(
        ["revoke", "--prefix", PREFIX, "--provider", "github", "--providers-json", str(path)],
        stdin="2\n",
        transport=Providers().transport(),
    )
    assert code == 0
    assert out.count("not revoked upstream: provider not in the providers JSON; deleted") == 2
    assert vault.names() == {vault_name("acme", ALICE), vault_name("acme", BOB)}


def test_a_failed_deletion_is_reported_and_exits_non_zero(vault: Vault) -> None:
    class RefusesOneDelete:
        def __getattr__(self, name: str) -> Any:
            return getattr(vault.client, name)

        def delete_secret(self, **kwargs: Any) -> Any:
            if kwargs["SecretId"].split(":secret:")[1].startswith(vault_name("github", ALICE)):
                raise ClientError(
                    {"Error": {"Code": "AccessDeniedException", "Message": "denied"}},
                    "DeleteSecret",
                )
            return vault.client.delete_secret(**kwargs)

    out = io.StringIO()
    code = vault_admin.main(
        ["revoke", "--prefix", PREFIX, "--user-hash", ALICE, "--yes"],
        client=RefusesOneDelete(),
        stdout=out,
    )
    assert code == 1
    text = out.getvalue()
    assert f"{vault_name('github', ALICE)}: " in text
    assert "delete FAILED (AccessDeniedException)" in text
    assert "summary: matched 2, revoked upstream 0, deleted 1, failed 1" in text
    assert vault.names() == ALL_NAMES - {vault_name("acme", ALICE)}


def test_nothing_matching_is_not_an_error(vault: Vault) -> None:
    code, out = run(["revoke", "--prefix", PREFIX, "--provider", "slack"])
    assert code == 0
    assert "no vault secrets match: nothing to revoke" in out


# -- errors and helpers ----------------------------------------------------------------------


def test_a_bad_providers_json_is_a_clear_error(vault: Vault, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"name": "acme", "kind": "oauth2", "client_id": "x"}]))
    code, out = run(["revoke", "--prefix", PREFIX, "--all", "--providers-json", str(bad)])
    assert code == 2
    assert out.startswith("error: --providers-json: provider 'acme'")
    code, out = run(
        ["revoke", "--prefix", PREFIX, "--all", "--providers-json", str(tmp_path / "nope")]
    )
    assert code == 2
    assert "error: --providers-json: cannot read" in out
    assert vault.names() == ALL_NAMES


def test_no_region_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    code, out = run(["list", "--prefix", PREFIX])
    assert code == 2
    assert out.startswith("error: ")
    assert "region" in out


def test_aws_refusal_of_the_listing_is_a_clear_error(vault: Vault) -> None:
    class Refuses:
        def list_secrets(self, **kwargs: Any) -> Any:
            raise ClientError(
                {"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "ListSecrets"
            )

    err = io.StringIO()
    code = vault_admin.main(["list", "--prefix", PREFIX], client=Refuses(), stderr=err)
    assert code == 2
    assert err.getvalue() == "error: AWS refused ListSecrets (AccessDeniedException)\n"


def test_the_client_honours_aws_endpoint_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5999")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    client = vault_admin.make_client("eu-west-1")
    assert client.meta.endpoint_url == "http://127.0.0.1:5999"
    assert client.meta.region_name == "eu-west-1"


@pytest.mark.parametrize(
    "argv",
    [
        ["revoke", "--prefix", PREFIX],  # which secrets?
        ["revoke", "--prefix", PREFIX, "--all", "--provider", "github"],
        ["revoke", "--prefix", PREFIX, "--user-hash", "not-a-hash"],
        ["list", "--prefix", "has/slash"],
        ["list"],
    ],
)
def test_bad_arguments_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        vault_admin.main(argv)
    assert exit_info.value.code == 2


def test_user_hash_matches_the_services(capsys: pytest.CaptureFixture[str]) -> None:
    user = VerifiedUser(
        issuer=ISSUER, subject="alice-sub", client_id="c", username=None, scopes=(), expires_at=0
    )
    assert vault_admin.main(["user-hash", "--issuer", ISSUER, "--sub", "alice-sub"]) == 0
    assert capsys.readouterr().out == f"{user.user_hash}\n"
    assert user.user_hash == ALICE
    # A trailing slash on the issuer is stripped, as both services strip COGNITO_ISSUER's.
    assert vault_admin.user_hash(ISSUER + "/", "alice-sub") == ALICE
