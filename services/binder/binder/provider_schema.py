"""The schema of a provider entry and its one parser, on the standard library only.

A provider entry is one object of the binder's PROVIDERS list. The binder builds its registry
from `parse_entries`, and the CDK app runs `parse_entry` on every entry it renders into the
binder's task definition, so a configuration that synthesizes is one the binder starts with:
there is one copy of the rules, here. This module imports nothing outside the standard library
because the CDK app's environment has none of the binder's dependencies, and it never touches
the network (an oidc entry is parsed, its issuer is not fetched).

Each kind declares its fields once, in `KIND_SCHEMAS`; `binder.providers` turns a parsed entry
into the kind's endpoints and quirks. Errors name the provider and the field and never echo a
value, so they are safe to log and to print at synth.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Final
from urllib.parse import urlsplit

BUILTIN_KINDS: Final = ("github", "google", "microsoft", "salesforce", "atlassian", "slack")
GENERIC_KINDS: Final = ("oidc", "oauth2")
KINDS: Final = (*BUILTIN_KINDS, *GENERIC_KINDS)

MAX_SCOPES: Final = 50
MAX_SCOPE_LENGTH: Final = 256

# The name appears in the callback path, in vault secret names and in the agent's tool names,
# so it is kept to characters that need no escaping in any of them.
_NAME_RE: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?")
_CLIENT_ID_RE: Final = re.compile(r"[\x21-\x7e]{1,256}")
_SECRET_ARN_RE: Final = re.compile(
    r"arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]{1,512}"
)
# RFC 6749 section 3.3 scope-token (%x21 / %x23-5B / %x5D-7E), minus "," because Slack joins
# scopes with commas.
_SCOPE_RE: Final = re.compile(r"[\x21\x23-\x2b\x2d-\x5b\x5d-\x7e]+")
_LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "::1", "localhost"})
GUID_RE: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
MICROSOFT_TENANTS: Final = ("common", "organizations", "consumers")
SALESFORCE_TENANTS: Final = ("login", "test")
_SALESFORCE_MY_DOMAIN_RE: Final = re.compile(
    r"[a-z0-9](?:[a-z0-9-]{0,78}[a-z0-9])?(?:\.sandbox)?\.my\.salesforce\.com"
)


class ProviderConfigError(ValueError):
    """A provider entry breaks the schema; the message names the provider and field, never a value.

    `field` and `problem` let a caller with its own names for things (the CDK app's context
    keys) word the error its way.
    """

    def __init__(
        self, message: str, *, field: str | None = None, problem: str | None = None
    ) -> None:
        super().__init__(message)
        self.field = field
        self.problem = problem


def config_error(provider: str, field_name: str, problem: str) -> ProviderConfigError:
    return ProviderConfigError(
        f"provider {provider!r}: {field_name} {problem}", field=field_name, problem=problem
    )


# --- which fields each kind takes ---------------------------------------------------------

COMMON_FIELDS: Final = frozenset({"name", "kind", "client_id", "secret_arn", "allowed_scopes"})
ENDPOINT_FIELDS: Final = (
    "authorization_endpoint",
    "token_endpoint",
    "revocation_endpoint",
    "userinfo_endpoint",
)


@dataclass(frozen=True, kw_only=True)
class KindSchema:
    """The fields one kind takes beyond `COMMON_FIELDS`.

    `agent_only` fields are read by the agent, never by the binder: the deployment's
    configuration may carry them (checked by the same rules), the PROVIDERS entry leaves them
    out, and the binder refuses them, so they cannot shadow what the binder finds itself.
    """

    kind: str
    required: frozenset[str] = frozenset()
    optional: frozenset[str] = frozenset()
    agent_only: frozenset[str] = frozenset()

    @property
    def fields(self) -> frozenset[str]:
        """Every field of the kind's PROVIDERS entry."""
        return COMMON_FIELDS | self.required | self.optional


_TENANT: Final = frozenset({"tenant"})
KIND_SCHEMAS: Final[Mapping[str, KindSchema]] = {
    "github": KindSchema(kind="github"),
    "google": KindSchema(kind="google"),
    "microsoft": KindSchema(kind="microsoft", optional=_TENANT),
    "salesforce": KindSchema(kind="salesforce", optional=_TENANT),
    "atlassian": KindSchema(kind="atlassian"),
    "slack": KindSchema(kind="slack"),
    # The binder discovers an OIDC provider's endpoints from its issuer; a configured
    # userinfo_endpoint is for the agent's whoami tool only.
    "oidc": KindSchema(
        kind="oidc",
        required=frozenset({"issuer"}),
        optional=frozenset({"scopes"}),
        agent_only=frozenset({"userinfo_endpoint"}),
    ),
    "oauth2": KindSchema(
        kind="oauth2",
        required=frozenset({"authorization_endpoint", "token_endpoint"}),
        optional=frozenset({"revocation_endpoint", "userinfo_endpoint", "scopes"}),
    ),
}
ALL_FIELDS: Final = frozenset().union(*(s.fields | s.agent_only for s in KIND_SCHEMAS.values()))


# --- value rules ----------------------------------------------------------------------------


def check_name(name: object, where: str = "provider") -> str:
    if not isinstance(name, str) or _NAME_RE.fullmatch(name) is None:
        problem = (
            "must be 1-32 characters of a-z, 0-9 and '-', starting and ending with a letter or "
            "digit"
        )
        raise ProviderConfigError(f"{where}: name {problem}", field="name", problem=problem)
    return name


def check_client_id(provider: str, client_id: object) -> str:
    if not isinstance(client_id, str) or not client_id:
        raise config_error(provider, "client_id", "is required")
    if _CLIENT_ID_RE.fullmatch(client_id) is None:
        raise config_error(
            provider, "client_id", "must be 1-256 printable ASCII characters, no spaces"
        )
    return client_id


def check_secret_arn(provider: str, secret_arn: object) -> str | None:
    if secret_arn is None:
        return None
    if not isinstance(secret_arn, str) or _SECRET_ARN_RE.fullmatch(secret_arn) is None:
        raise config_error(provider, "secret_arn", "must be a Secrets Manager secret ARN")
    return secret_arn


def check_url(provider: str, field_name: str, url: object, *, allow_insecure_loopback: bool) -> str:
    """An absolute https URL; http only for the local stack's loopback mock provider."""
    if not isinstance(url, str) or not url:
        raise config_error(provider, field_name, "is required")
    if len(url) > 2048 or any(not "\x21" <= c <= "\x7e" for c in url):
        raise config_error(provider, field_name, "must be a printable ASCII URL without spaces")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # raises ValueError on a malformed port
    except ValueError:
        raise config_error(provider, field_name, "is not a valid URL") from None
    if not host:
        raise config_error(provider, field_name, "must be an absolute URL with a host")
    if parts.username is not None or parts.password is not None:
        raise config_error(provider, field_name, "must not contain credentials")
    if parts.fragment:
        raise config_error(provider, field_name, "must not contain a fragment")
    if parts.scheme == "https":
        return url
    if parts.scheme == "http" and allow_insecure_loopback and host in _LOOPBACK_HOSTS:
        return url
    if parts.scheme == "http" and allow_insecure_loopback:
        raise config_error(provider, field_name, "may use http only on 127.0.0.1, ::1 or localhost")
    raise config_error(provider, field_name, "must be an https URL")


def check_issuer(provider: str, issuer: object, *, allow_insecure_loopback: bool) -> str:
    url = check_url(provider, "issuer", issuer, allow_insecure_loopback=allow_insecure_loopback)
    if urlsplit(url).query:
        # OIDC Discovery 1.0 section 3: the issuer has no query or fragment component.
        raise config_error(provider, "issuer", "must not contain a query")
    return url


def scope_problem(scope: object) -> str | None:
    """What is wrong with one scope, or None; the scope is shown ASCII-escaped (safe to log)."""
    if not isinstance(scope, str):
        return "scopes must be strings"
    shown = f"{scope[:64]!a}"
    if not scope:
        return "scope must not be empty"
    if len(scope) > MAX_SCOPE_LENGTH:
        return f"scope {shown} is longer than {MAX_SCOPE_LENGTH} characters"
    if _SCOPE_RE.fullmatch(scope) is None:
        return f"scope {shown} must be printable ASCII without spaces, commas, quotes or '\\'"
    return None


def check_scope_list(provider: str, field_name: str, scopes: object) -> tuple[str, ...]:
    """A list of scopes, deduplicated in order."""
    if isinstance(scopes, str) or not isinstance(scopes, Sequence):
        raise config_error(provider, field_name, "must be a list of scope strings")
    if len(scopes) > MAX_SCOPES:
        raise config_error(provider, field_name, f"must list at most {MAX_SCOPES} scopes")
    for scope in scopes:
        problem = scope_problem(scope)
        if problem is not None:
            raise config_error(provider, field_name, f"is invalid: {problem}")
    return tuple(dict.fromkeys(scopes))


def microsoft_tenant(provider: str, tenant: object) -> str | None:
    """common, organizations, consumers or a tenant GUID, lower-cased; None when not set."""
    if tenant is None:
        return None
    value = tenant.strip().lower() if isinstance(tenant, str) else ""
    if value in MICROSOFT_TENANTS or GUID_RE.fullmatch(value):
        return value
    # A verified domain (contoso.com) also works as a path segment, but ID tokens carry the
    # tenant GUID, which cannot be derived from the domain offline: refuse rather than weaken
    # the issuer check.
    raise config_error(
        provider, "tenant", "must be common, organizations, consumers or a tenant ID (GUID)"
    )


def salesforce_tenant(provider: str, tenant: object) -> str | None:
    """login, test or a My Domain host (sandboxes included), lower-cased; None when not set."""
    if tenant is None:
        return None
    value = tenant.strip().lower() if isinstance(tenant, str) else ""
    if value in SALESFORCE_TENANTS or _SALESFORCE_MY_DOMAIN_RE.fullmatch(value):
        return value
    raise config_error(
        provider,
        "tenant",
        "must be login, test or a My Domain host (<name>.my.salesforce.com or "
        "<name>.sandbox.my.salesforce.com)",
    )


# --- the entry ------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ProviderEntry:
    """One provider entry as `parse_entry` accepted it: types checked, values normalised.

    `allowed_scopes` None means no allow-list (any well-formed scope); an empty tuple means
    nothing beyond the kind's default scopes. It never means "anything".
    """

    name: str
    kind: str
    client_id: str
    secret_arn: str | None = None
    tenant: str | None = None
    issuer: str | None = None
    authorization_endpoint: str | None = None
    token_endpoint: str | None = None
    revocation_endpoint: str | None = None
    userinfo_endpoint: str | None = None
    scopes: tuple[str, ...] = ()
    allowed_scopes: tuple[str, ...] | None = None

    def for_binder(self) -> ProviderEntry:
        """This entry without the fields only the agent reads: what the binder parses."""
        values = asdict(self)
        values.update(dict.fromkeys(KIND_SCHEMAS[self.kind].agent_only))
        return ProviderEntry(**values)

    def to_json(self) -> dict[str, object]:
        """This entry as a PROVIDERS object, which `parse_entry` reads back to `for_binder()`.

        Unset fields are left out; an empty allow-list is kept as `[]`, since leaving it out
        would turn "nothing beyond the defaults" into "no allow-list".
        """
        entry = self.for_binder()
        rendered: dict[str, object] = {
            "name": entry.name,
            "kind": entry.kind,
            "client_id": entry.client_id,
        }
        optional: dict[str, object] = {
            "secret_arn": entry.secret_arn,
            "tenant": entry.tenant,
            "issuer": entry.issuer,
            **{f: getattr(entry, f) for f in ENDPOINT_FIELDS},
            "scopes": list(entry.scopes) or None,
            "allowed_scopes": None if entry.allowed_scopes is None else list(entry.allowed_scopes),
        }
        rendered.update({k: v for k, v in optional.items() if v is not None})
        return rendered


def parse_entry(
    entry: Mapping[str, object],
    *,
    where: str = "provider",
    allow_insecure_loopback: bool = False,
    agent_fields: bool = False,
) -> ProviderEntry:
    """Check one entry against its kind's schema; raise ProviderConfigError on the first problem.

    A field set to null counts as absent. `agent_fields` admits the kind's `agent_only` fields
    (the CDK context carries them; PROVIDERS never does). `allow_insecure_loopback` admits http
    URLs on loopback, for the local stack only.
    """
    name = check_name(entry.get("name"), where)
    kind = entry.get("kind")
    if not isinstance(kind, str) or kind not in KIND_SCHEMAS:
        raise config_error(name, "kind", f"must be one of {', '.join(KINDS)}")
    schema = KIND_SCHEMAS[kind]
    accepted = schema.fields | (schema.agent_only if agent_fields else frozenset())
    for key, value in entry.items():
        if key in accepted or value is None:
            continue
        if key in ALL_FIELDS:
            raise config_error(name, key, f"is not used by kind {kind!r}")
        # Refuse typos ("tennant") instead of silently ignoring them. repr() of a key is safe:
        # keys are names, not secrets.
        raise config_error(name, repr(str(key)[:40]), "is not a known field")
    client_id = check_client_id(name, entry.get("client_id"))
    secret_arn = check_secret_arn(name, entry.get("secret_arn"))
    allowed = entry.get("allowed_scopes")
    allowed_scopes = None if allowed is None else check_scope_list(name, "allowed_scopes", allowed)
    # Fields a kind does not take were refused above, so for other kinds these stay None.
    tenant: str | None = None
    if kind == "microsoft":
        tenant = microsoft_tenant(name, entry.get("tenant"))
    elif kind == "salesforce":
        tenant = salesforce_tenant(name, entry.get("tenant"))
    loop = allow_insecure_loopback
    issuer: str | None = None
    if "issuer" in schema.required:
        issuer = check_issuer(name, entry.get("issuer"), allow_insecure_loopback=loop)
    endpoints: dict[str, str | None] = {}
    for field_name in ENDPOINT_FIELDS:
        url = entry.get(field_name)
        endpoints[field_name] = (
            check_url(name, field_name, url, allow_insecure_loopback=loop)
            if url is not None or field_name in schema.required
            else None
        )
    scopes = entry.get("scopes")
    return ProviderEntry(
        name=name,
        kind=kind,
        client_id=client_id,
        secret_arn=secret_arn,
        tenant=tenant,
        issuer=issuer,
        scopes=() if scopes is None else check_scope_list(name, "scopes", scopes),
        allowed_scopes=allowed_scopes,
        **endpoints,
    )


def parse_entries(text: str, *, allow_insecure_loopback: bool = False) -> tuple[ProviderEntry, ...]:
    """The PROVIDERS variable: a JSON list of entries with distinct names."""
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError):
        raise ProviderConfigError("PROVIDERS must be valid JSON") from None
    if not isinstance(raw, list):
        raise ProviderConfigError("PROVIDERS must be a JSON list of provider objects")
    entries: list[ProviderEntry] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        where = f"PROVIDERS[{index}]"
        if not isinstance(item, dict):
            raise ProviderConfigError(f"{where} must be a JSON object")
        entry = parse_entry(item, where=where, allow_insecure_loopback=allow_insecure_loopback)
        if entry.name in seen:
            raise config_error(entry.name, "name", "is configured more than once")
        seen.add(entry.name)
        entries.append(entry)
    return tuple(entries)
