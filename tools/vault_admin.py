"""Operator command for the token vault: list, revoke and delete users' stored OAuth tokens.

    python tools/vault_admin.py list --prefix agent-token-vault [--provider github] [--user-hash H]
    python tools/vault_admin.py revoke --prefix agent-token-vault (--user-hash H | --provider NAME
        | --all) [--providers-json FILE] [--dry-run] [--yes]
    python tools/vault_admin.py user-hash --issuer ISS --sub SUB

Vault secrets are the binder's: one per (user, provider), named `{prefix}/{provider}/{user_hash}`,
tagged `oauth-provider` and `user-hash` (services/binder/binder/vault.py). `list` reads only
metadata (ListSecrets), never a secret value. `revoke` optionally revokes each token at its
provider with the binder's own provider registry and OAuth client (best effort, reported per
secret), then deletes the secret at once (`ForceDeleteWithoutRecovery`), as the binder's
disconnect does. Nothing this command prints contains a token or a client secret.

AWS access uses boto3's normal credential chain and honours `AWS_ENDPOINT_URL` (moto server for
the local stack). Exit codes: 0 done, 1 a deletion failed or the operator did not confirm,
2 bad arguments or configuration, or AWS refused the listing.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parent.parent
# The binder's own code does the upstream revocation: same endpoints, quirks and styles.
for _path in (ROOT / "services" / "common", ROOT / "services" / "binder"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import anyio  # noqa: E402
import boto3  # noqa: E402
import httpx2  # noqa: E402
from botocore.exceptions import BotoCoreError, ClientError  # noqa: E402

from binder.oauth import CONFIRMED, OAuthClient  # noqa: E402
from binder.providers.registry import ProviderRegistry  # noqa: E402
from binder.providers.schema import ProviderConfigError  # noqa: E402
from binder.providers.spec import ProviderSpec  # noqa: E402
from binder.vault import ACTIVE, TokenRecord  # noqa: E402
from svc_common.identity import VerifiedUser  # noqa: E402
from svc_common.jsonlog import quiet_third_party  # noqa: E402

PROVIDER_TAG = "oauth-provider"
USER_HASH_TAG = "user-hash"
# Same rules as the CDK context key `vault_prefix` and the binder's provider names.
_PREFIX_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_+=.@-]{0,39}")
_PROVIDER_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?")
_HASH_RE = re.compile(r"[0-9a-f]{64}")
_NOT_FOUND = "ResourceNotFoundException"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class AdminError(Exception):
    """A problem the operator must fix; the message is safe to print (no secret values)."""


@dataclass(frozen=True, kw_only=True)
class VaultSecret:
    """One vault secret's metadata (ListSecrets); never its value."""

    name: str
    arn: str
    provider: str | None
    user_hash: str | None
    last_changed: datetime | None


@dataclass(frozen=True, kw_only=True)
class Outcome:
    secret: VaultSecret
    revoked: bool
    revocation: str  # what happened upstream, for the operator
    deleted: bool
    deletion: str


@dataclass(frozen=True, kw_only=True)
class Summary:
    matched: int
    revoked: int
    deleted: int
    failed: int


# -- helpers ---------------------------------------------------------------------------------


def user_hash(issuer: str, subject: str) -> str:
    """The binder's user hash: SHA-256 of `iss|sub` (svc_common.identity.VerifiedUser)."""
    user = VerifiedUser(
        issuer=issuer.rstrip("/"),  # both services strip it from COGNITO_ISSUER
        subject=subject,
        client_id="",
        username=None,
        scopes=(),
        expires_at=0,
    )
    return user.user_hash


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "Unknown"))


def _aws_problem(exc: Exception) -> str:
    """A short, safe description of an AWS failure: the error code or exception type."""
    if isinstance(exc, ClientError):
        return _error_code(exc)
    return type(exc).__name__


def make_client(region: str | None) -> Any:
    """A Secrets Manager client from boto3's credential chain (AWS_ENDPOINT_URL honoured)."""
    return boto3.client("secretsmanager", region_name=region)


# -- listing ---------------------------------------------------------------------------------


def find_secrets(
    client: Any,
    *,
    prefix: str,
    provider: str | None = None,
    user_hash: str | None = None,
    page_size: int = 100,
) -> list[VaultSecret]:
    """Vault secrets under `{prefix}/`, optionally of one provider and/or one user.

    Secrets Manager's filters are prefix matches, so every result is checked again exactly:
    the name must start with `{prefix}/` and the tags must equal what was asked for.
    """
    filters: list[dict[str, Any]] = [{"Key": "name", "Values": [f"{prefix}/"]}]
    if user_hash is not None:
        filters += [
            {"Key": "tag-key", "Values": [USER_HASH_TAG]},
            {"Key": "tag-value", "Values": [user_hash]},
        ]
    elif provider is not None:
        filters += [
            {"Key": "tag-key", "Values": [PROVIDER_TAG]},
            {"Key": "tag-value", "Values": [provider]},
        ]
    found: list[VaultSecret] = []
    request: dict[str, Any] = {"Filters": filters, "MaxResults": page_size}
    while True:
        page = client.list_secrets(**request)
        for entry in page.get("SecretList", []):
            secret = _vault_secret(entry)
            if not secret.name.startswith(f"{prefix}/"):
                continue
            if provider is not None and secret.provider != provider:
                continue
            if user_hash is not None and secret.user_hash != user_hash:
                continue
            found.append(secret)
        token = page.get("NextToken")
        if not token:
            break
        request["NextToken"] = token
    return sorted(found, key=lambda s: s.name)


def _vault_secret(entry: dict[str, Any]) -> VaultSecret:
    tags = {t.get("Key"): t.get("Value") for t in entry.get("Tags", [])}
    changed = entry.get("LastChangedDate") or entry.get("CreatedDate")
    return VaultSecret(
        name=str(entry["Name"]),
        arn=str(entry["ARN"]),
        provider=tags.get(PROVIDER_TAG),
        user_hash=tags.get(USER_HASH_TAG),
        last_changed=changed if isinstance(changed, datetime) else None,
    )


def _describe(secret: VaultSecret) -> str:
    changed = secret.last_changed.isoformat(timespec="seconds") if secret.last_changed else "-"
    return (
        f"{secret.name}  provider={secret.provider or '-'}  "
        f"user-hash={secret.user_hash or '-'}  last-changed={changed}"
    )


# -- upstream revocation ---------------------------------------------------------------------


def load_registry(path: Path, *, allow_insecure_loopback: bool = False) -> ProviderRegistry:
    """The binder's PROVIDERS JSON from a file, parsed by the binder's own registry."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AdminError(f"--providers-json: cannot read {path} ({exc.strerror})") from None
    try:
        return ProviderRegistry.from_json(text, allow_insecure_loopback=allow_insecure_loopback)
    except ProviderConfigError as exc:
        # The registry's messages name the provider and field, never a value.
        raise AdminError(f"--providers-json: {exc}") from None


class UpstreamRevoker:
    """Revokes a vault secret's token at its provider, as the binder's disconnect does.

    Best effort: every failure becomes a short reason for the operator, never an exception,
    and never includes a token or a client secret. `transport` is passed to the OAuth client
    and to the HTTP client used for OIDC discovery (tests inject an httpx2.MockTransport).
    """

    def __init__(
        self,
        *,
        registry: ProviderRegistry,
        client: Any,
        transport: httpx2.AsyncBaseTransport | None = None,
        timeout: float = 10.0,
    ) -> None:
        self._registry = registry
        self._client = client
        self._transport = transport
        self._timeout = timeout
        self._oauth = OAuthClient(timeout=timeout, transport=transport)
        self._client_secrets: dict[str, str] = {}

    def http_client(self) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(
            transport=self._transport, timeout=self._timeout, follow_redirects=False
        )

    async def revoke(self, secret: VaultSecret, http: httpx2.AsyncClient) -> tuple[bool, str]:
        """(revoked, what happened)."""
        provider = secret.provider or _provider_from_name(secret.name)
        if provider is None or provider not in self._registry:
            return False, "not revoked upstream: provider not in the providers JSON"
        try:
            spec = await self._registry.get(provider, http)
        except ProviderConfigError as exc:
            return False, f"not revoked upstream: {exc}"
        except Exception as exc:
            return False, f"not revoked upstream: provider lookup failed ({type(exc).__name__})"
        if spec.revocation_style == "none" or not spec.revocation_endpoint:
            return False, f"not revoked upstream: {provider} has no revocation endpoint"
        try:
            value = self._client.get_secret_value(SecretId=secret.arn, VersionStage="AWSCURRENT")[
                "SecretString"
            ]
        except (ClientError, BotoCoreError) as exc:
            return False, f"not revoked upstream: cannot read the record ({_aws_problem(exc)})"
        try:
            record = TokenRecord.from_json(value)
        except (KeyError, TypeError, ValueError):
            return False, "not revoked upstream: the secret is not a token record"
        if record.status != ACTIVE:
            return False, f"not revoked upstream: connection is {record.status} (no live token)"
        try:
            client_secret = self._client_secret(spec)
        except AdminError as exc:
            return False, f"not revoked upstream: {exc}"
        outcomes = await self._oauth.revoke_tokens(
            spec,
            client_secret=client_secret,
            access_token=record.access_token,
            refresh_token=record.refresh_token,
        )
        confirmed = [hint for hint, outcome in outcomes.items() if outcome == CONFIRMED]
        detail = ", ".join(f"{hint} {outcome}" for hint, outcome in outcomes.items())
        if confirmed:
            return True, f"revoked upstream ({detail})"
        return False, f"not revoked upstream ({detail or 'no token'})"

    def _client_secret(self, spec: ProviderSpec) -> str:
        cached = self._client_secrets.get(spec.name)
        if cached is not None:
            return cached
        if not spec.secret_arn:
            raise AdminError(f"no secret_arn for {spec.name} in the providers JSON")
        try:
            value = self._client.get_secret_value(SecretId=spec.secret_arn)["SecretString"]
            secret = str(json.loads(value)["client_secret"])
        except (ClientError, BotoCoreError) as exc:
            raise AdminError(
                f"cannot read the {spec.name} client secret ({_aws_problem(exc)})"
            ) from None
        except (KeyError, TypeError, ValueError):
            raise AdminError(
                f"the {spec.name} client secret is not JSON with a client_secret"
            ) from None
        self._client_secrets[spec.name] = secret
        return secret


def _provider_from_name(name: str) -> str | None:
    parts = name.split("/")
    return parts[1] if len(parts) == 3 and _PROVIDER_RE.fullmatch(parts[1]) else None


# -- revoke and delete -----------------------------------------------------------------------


def delete_secret(client: Any, secret: VaultSecret) -> tuple[bool, str]:
    """Delete at once (no recovery window), as the binder does; (deleted, what happened)."""
    try:
        client.delete_secret(SecretId=secret.arn, ForceDeleteWithoutRecovery=True)
    except ClientError as exc:
        if _error_code(exc) == _NOT_FOUND:
            return True, "already deleted"
        return False, f"delete FAILED ({_error_code(exc)})"
    except BotoCoreError as exc:
        return False, f"delete FAILED ({type(exc).__name__})"
    return True, "deleted"


async def revoke_and_delete(
    client: Any,
    secrets: Sequence[VaultSecret],
    *,
    revoker: UpstreamRevoker | None,
    report: Callable[[Outcome], None] = lambda _: None,
) -> Summary:
    """For each secret: upstream revocation if a revoker is given (best effort), then delete.

    A failed revocation never stops the deletion: the stored token is removed either way.
    """
    revoked = deleted = failed = 0
    http = revoker.http_client() if revoker is not None else None
    try:
        for secret in secrets:
            if revoker is not None and http is not None:
                was_revoked, revocation = await revoker.revoke(secret, http)
            else:
                was_revoked, revocation = False, "no upstream revocation (no --providers-json)"
            was_deleted, deletion = delete_secret(client, secret)
            revoked += was_revoked
            deleted += was_deleted
            failed += not was_deleted
            report(
                Outcome(
                    secret=secret,
                    revoked=was_revoked,
                    revocation=revocation,
                    deleted=was_deleted,
                    deletion=deletion,
                )
            )
    finally:
        if http is not None:
            await http.aclose()
    return Summary(matched=len(secrets), revoked=revoked, deleted=deleted, failed=failed)


# -- commands --------------------------------------------------------------------------------


def _cmd_list(args: argparse.Namespace, client: Any, out: TextIO) -> int:
    secrets = find_secrets(
        client, prefix=args.prefix, provider=args.provider, user_hash=args.user_hash
    )
    if not secrets:
        print("no vault secrets match", file=out)
        return EXIT_OK
    for secret in secrets:
        print(_describe(secret), file=out)
    print(f"{len(secrets)} vault secret(s)", file=out)
    return EXIT_OK


def _cmd_revoke(
    args: argparse.Namespace,
    client: Any,
    out: TextIO,
    stdin: TextIO,
    transport: httpx2.AsyncBaseTransport | None,
) -> int:
    registry = (
        load_registry(args.providers_json, allow_insecure_loopback=args.allow_insecure_loopback)
        if args.providers_json is not None
        else None
    )
    secrets = find_secrets(
        client, prefix=args.prefix, provider=args.provider, user_hash=args.user_hash
    )
    if not secrets:
        print("no vault secrets match: nothing to revoke", file=out)
        return EXIT_OK
    print(f"{len(secrets)} vault secret(s) match:", file=out)
    for secret in secrets:
        print(f"  {_describe(secret)}", file=out)

    if args.dry_run:
        for secret in secrets:
            provider = secret.provider or _provider_from_name(secret.name)
            if registry is None:
                upstream = "no upstream revocation (no --providers-json)"
            elif provider is not None and provider in registry:
                upstream = f"would try upstream revocation at {provider}"
            else:
                upstream = "no upstream revocation (provider not in the providers JSON)"
            print(f"{secret.name}: {upstream}; would delete", file=out)
        print("dry run: nothing was revoked or deleted", file=out)
        return EXIT_OK

    if not args.yes:
        print(
            f"Type {len(secrets)} (the number of secrets) to revoke and delete them: ",
            end="",
            file=out,
            flush=True,
        )
        answer = stdin.readline().strip()
        if not stdin.isatty():
            print(file=out)  # the answer was not echoed: end the prompt's line
        if answer != str(len(secrets)):
            print("not confirmed: nothing was revoked or deleted", file=out)
            return EXIT_FAILED

    revoker = (
        UpstreamRevoker(registry=registry, client=client, transport=transport)
        if registry is not None
        else None
    )

    def report(outcome: Outcome) -> None:
        print(f"{outcome.secret.name}: {outcome.revocation}; {outcome.deletion}", file=out)

    summary = anyio.run(lambda: revoke_and_delete(client, secrets, revoker=revoker, report=report))
    print(
        f"summary: matched {summary.matched}, revoked upstream {summary.revoked}, "
        f"deleted {summary.deleted}, failed {summary.failed}",
        file=out,
    )
    if summary.deleted:
        print(
            "note: binder tasks may serve a cached copy for up to TOKEN_CACHE_SECONDS "
            "(60 s by default)",
            file=out,
        )
    return EXIT_FAILED if summary.failed else EXIT_OK


def _cmd_user_hash(args: argparse.Namespace, out: TextIO) -> int:
    print(user_hash(args.issuer, args.sub), file=out)
    return EXIT_OK


# -- argument parsing ------------------------------------------------------------------------


def _prefix(value: str) -> str:
    if not _PREFIX_RE.fullmatch(value):
        raise argparse.ArgumentTypeError(
            "expected the vault prefix (1-40 characters of letters, digits and _+=.@-, no '/')"
        )
    return value


def _provider(value: str) -> str:
    if not _PROVIDER_RE.fullmatch(value):
        raise argparse.ArgumentTypeError(
            "expected a provider name (lower-case letters, digits and inner hyphens)"
        )
    return value


def _hash(value: str) -> str:
    if not _HASH_RE.fullmatch(value):
        raise argparse.ArgumentTypeError(
            "expected a user hash: 64 lower-case hex digits (see the user-hash subcommand)"
        )
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python tools/vault_admin.py",
        description="List, revoke and delete users' tokens in the token vault.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def aws_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--prefix",
            required=True,
            type=_prefix,
            help="the vault prefix (CDK context vault_prefix; default agent-token-vault)",
        )
        sub.add_argument("--region", help="AWS region (default: boto3's, e.g. AWS_REGION)")

    listing = commands.add_parser("list", help="list vault secrets (metadata only, never values)")
    aws_options(listing)
    listing.add_argument("--provider", type=_provider, help="only this provider's secrets")
    listing.add_argument("--user-hash", type=_hash, help="only this user's secrets")

    revoke = commands.add_parser(
        "revoke", help="revoke upstream (optional) and delete matching vault secrets"
    )
    aws_options(revoke)
    which = revoke.add_mutually_exclusive_group(required=True)
    which.add_argument("--user-hash", type=_hash, help="every secret of this user")
    which.add_argument("--provider", type=_provider, help="every secret of this provider")
    which.add_argument("--all", action="store_true", help="every secret under the prefix")
    revoke.add_argument(
        "--providers-json",
        type=Path,
        help="file holding the binder's PROVIDERS JSON: revoke each token at its provider first",
    )
    revoke.add_argument(
        "--dry-run", action="store_true", help="only list what would happen; change nothing"
    )
    revoke.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    revoke.add_argument(
        "--allow-insecure-loopback",
        action="store_true",
        help="local stack only: accept http:// provider endpoints on 127.0.0.1/localhost",
    )

    hashing = commands.add_parser(
        "user-hash", help="print the user hash of a Cognito user: sha256(iss|sub)"
    )
    hashing.add_argument(
        "--issuer",
        required=True,
        help="the user pool's issuer, https://cognito-idp.<region>.amazonaws.com/<pool id>",
    )
    hashing.add_argument("--sub", required=True, help="the user's sub attribute")
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    client: Any = None,
    transport: httpx2.AsyncBaseTransport | None = None,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run one command. `client`, `transport` and the streams are for tests."""
    args = build_parser().parse_args(argv)
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    quiet_third_party()  # botocore and httpx2 never log request or response bodies here
    if args.command == "user-hash":
        return _cmd_user_hash(args, out)
    try:
        aws = client if client is not None else make_client(args.region)
        if args.command == "list":
            return _cmd_list(args, aws, out)
        return _cmd_revoke(args, aws, out, stdin or sys.stdin, transport)
    except AdminError as exc:
        print(f"error: {exc}", file=err)
    except ClientError as exc:
        operation = getattr(exc, "operation_name", "the AWS call")
        print(f"error: AWS refused {operation} ({_error_code(exc)})", file=err)
    except BotoCoreError as exc:
        # NoRegionError, NoCredentialsError, EndpointConnectionError: no secret values in these.
        print(f"error: {exc}", file=err)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
