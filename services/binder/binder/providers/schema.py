"""The schema of a provider entry and its one parser, on the standard library only.

A provider entry is one object of the binder's PROVIDERS list. The binder builds its registry
from `parse_entries`, and the CDK app runs `parse_entry` on every entry it renders into the
binder's task definition, so a configuration that synthesizes is one the binder starts with:
there is one copy of the rules, here and in the kind modules. This module imports nothing
outside the standard library because the CDK app's environment has none of the binder's
dependencies, and it never touches the network (an oidc entry is parsed, its issuer is not
fetched).

Every entry has the common fields (`COMMON_FIELDS`); each kind declares its own fields once,
in its module's `KIND` (a `ProviderKind`), with the rules below. Errors name the provider and
the field and never echo a value, so they are safe to log and to print at synth.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from binder.providers.spec import ProviderSpec

MAX_SCOPES: Final = 50
MAX_SCOPE_LENGTH: Final = 256
MAX_DISPLAY_NAME: Final = 64

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
# Printable characters that still render as nothing (variation selectors, Hangul fillers, ...):
# the Default_Ignorable_Code_Point ranges of svc_common/invisible.py (copied, because the CDK
# app imports this module with the standard library only; a test keeps the two equal), which
# str.isprintable lets through. A display name is shown on consent pages, so it must look like
# what it is.
_IGNORABLE: Final = (
    (0x034F, 0x034F),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)

# Fields every entry may have, whatever its kind.
COMMON_FIELDS: Final = (
    "name",
    "kind",
    "client_id",
    "secret_arn",
    "display_name",
    "allowed_scopes",
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


class ProviderDiscoveryError(ProviderConfigError):
    """Discovery failed or returned a document the binder refuses to trust."""


def config_error(provider: str, field_name: str, problem: str) -> ProviderConfigError:
    return ProviderConfigError(
        f"provider {provider!r}: {field_name} {problem}", field=field_name, problem=problem
    )


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


def display_name_problem(value: object) -> str | None:
    """What is wrong with a display name, or None: 1-64 printable characters, no control,
    format or invisible characters, no surrounding spaces."""
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_DISPLAY_NAME:
        return f"must be 1-{MAX_DISPLAY_NAME} characters"
    if value != value.strip() or not value.isprintable():
        return "must be printable, without control or format characters or surrounding spaces"
    if any(low <= ord(c) <= high for c in value for low, high in _IGNORABLE):
        return "must not contain invisible characters"
    return None


def check_display_name(provider: str, value: object) -> str | None:
    if value is None:
        return None
    problem = display_name_problem(value)
    if problem is not None:
        raise config_error(provider, "display_name", problem)
    return str(value)


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


def check_issuer(
    provider: str,
    issuer: object,
    *,
    allow_insecure_loopback: bool,
    field_name: str = "issuer",
) -> str:
    url = check_url(provider, field_name, issuer, allow_insecure_loopback=allow_insecure_loopback)
    if urlsplit(url).query:
        # OIDC Discovery 1.0 section 3: the issuer has no query or fragment component.
        raise config_error(provider, field_name, "must not contain a query")
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


# --- a kind's own fields ----------------------------------------------------------------------

# (provider name, value, allow_insecure_loopback) -> the normalised value; raises
# ProviderConfigError naming the field. Never called with None (null means absent).
Check = Callable[[str, object, bool], object]


@dataclass(frozen=True, kw_only=True)
class Field:
    """One field a kind takes beyond `COMMON_FIELDS`.

    `agent_only` fields are read by the agent, never by the binder: the deployment's
    configuration may carry them (checked by the same rules), the PROVIDERS entry leaves them
    out, and the binder refuses them, so they cannot shadow what the binder finds itself.
    `is_url` marks the values the CDK app checks for example hosts before a deploy.
    """

    name: str
    check: Check
    required: bool = False
    agent_only: bool = False
    is_url: bool = False


def url_field(name: str, *, required: bool = False, agent_only: bool = False) -> Field:
    """An absolute https URL (http on loopback for the local stack only)."""

    def check(provider: str, value: object, loopback: bool) -> str:
        return check_url(provider, name, value, allow_insecure_loopback=loopback)

    return Field(name=name, check=check, required=required, agent_only=agent_only, is_url=True)


def issuer_field() -> Field:
    """`issuer`: an https URL without query, compared exactly with what the provider says."""

    def check(provider: str, value: object, loopback: bool) -> str:
        return check_issuer(provider, value, allow_insecure_loopback=loopback)

    return Field(name="issuer", check=check, required=True, is_url=True)


def flag_field(name: str) -> Field:
    """true or false (JSON booleans only: "yes" or 1 is a mistake, not a yes)."""

    def check(provider: str, value: object, loopback: bool) -> bool:
        if not isinstance(value, bool):
            raise config_error(provider, name, "must be true or false")
        return value

    return Field(name=name, check=check)


def scopes_field(name: str = "scopes") -> Field:
    """A list of scopes, deduplicated in order."""

    def check(provider: str, value: object, loopback: bool) -> tuple[str, ...]:
        return check_scope_list(provider, name, value)

    return Field(name=name, check=check)


# --- a kind ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class BuildContext:
    """What a kind's builder gets beside the entry.

    `document` is the discovery document of a kind that declares `discovery_url` (fetched by
    binder.providers.discovery, never at synth); None for every other kind.
    """

    allow_insecure_loopback: bool = False
    document: Mapping[str, Any] | None = None


@dataclass(frozen=True, kw_only=True)
class ResolveContext:
    """What a kind that resolves itself (`ProviderKind.resolve`) gets on first use.

    Typed loosely: this module stays on the standard library, and the binder fills it in.
    `http` is the binder's httpx2.AsyncClient; `public_base_url` its public origin;
    `registrations` the store of dynamically registered clients (None: not available).
    """

    http: Any
    allow_insecure_loopback: bool = False
    public_base_url: str = ""
    registrations: Any = None


@dataclass(frozen=True, kw_only=True)
class ProviderKind:
    """One kind of provider, declared once by its module as `KIND` and found by the registry.

    `display_name` is what people see ("GitHub"); None for a generic kind, whose entries take
    their display name from the entry (`display_name`, else the entry's name). `fields` are the
    kind's fields beyond `COMMON_FIELDS`, checked in order. `build` turns a parsed entry into
    the binder's `ProviderSpec`, quirks included; it runs at the binder's start (and, for the
    CDK app, at synth), so it must not use the network. A kind that learns its endpoints from
    the provider declares `discovery_url`: the registry fetches that document on first use and
    hands it to `build`. A kind whose discovery is more than one document (mcp: a protected
    resource, its authorization server, a client registration) declares `resolve` as well,
    which the registry calls instead; `discovery_url` then names where discovery starts.
    `client_id_required` False lets an entry leave the client id out (the kind registers one).
    `check_entry` applies the kind's rules across fields to a parsed entry (ProviderConfigError).
    """

    name: str
    display_name: str | None
    build: Callable[[ProviderEntry, BuildContext], ProviderSpec]
    fields: tuple[Field, ...] = ()
    discovery_url: Callable[[ProviderEntry], str] | None = None
    resolve: Callable[[ProviderEntry, ResolveContext], Awaitable[ProviderSpec]] | None = None
    client_id_required: bool = True
    check_entry: Callable[[ProviderEntry], None] | None = None

    def __post_init__(self) -> None:
        check_name(self.name, where=f"provider kind {self.name!r}")
        if self.display_name is not None and display_name_problem(self.display_name):
            raise ValueError(f"provider kind {self.name!r}: display_name is not displayable")
        names = [f.name for f in self.fields]
        clash = set(names) & set(COMMON_FIELDS)
        if clash or len(set(names)) != len(names):
            raise ValueError(f"provider kind {self.name!r}: field names must be new and distinct")
        if self.resolve is not None and self.discovery_url is None:
            raise ValueError(f"provider kind {self.name!r}: resolve needs discovery_url")

    @property
    def field_names(self) -> frozenset[str]:
        """The fields of the kind's PROVIDERS entry (without the agent's)."""
        return frozenset(COMMON_FIELDS) | {f.name for f in self.fields if not f.agent_only}

    def display_name_for(self, entry: ProviderEntry) -> str:
        return entry.display_name or self.display_name or entry.name

    def spec(self, entry: ProviderEntry, context: BuildContext | None = None) -> ProviderSpec:
        """The entry's spec, with its display name; refuses a builder that names another
        provider or kind (a copy-paste slip in a new kind module)."""
        spec = self.build(entry, context or BuildContext())
        if (spec.name, spec.kind) != (entry.name, self.name):
            raise config_error(entry.name, "kind", f"builder of {self.name!r} built another kind")
        return replace(spec, display_name=self.display_name_for(entry))


def _kind_fields(kind: str) -> tuple[Field, ...]:
    from binder.providers.registry import KINDS  # imported at call time: see parse_entry

    return KINDS[kind].fields


# --- the entry ------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ProviderEntry:
    """One provider entry as `parse_entry` accepted it: types checked, values normalised.

    `options` holds the kind's own fields that are set. `allowed_scopes` None means no
    allow-list (any well-formed scope); an empty tuple means nothing beyond the kind's default
    scopes. It never means "anything". `client_id` is "" only for a kind that registers its
    own client (`ProviderKind.client_id_required` False) when the entry sets none.
    """

    name: str
    kind: str
    client_id: str
    secret_arn: str | None = None
    display_name: str | None = None
    allowed_scopes: tuple[str, ...] | None = None
    options: Mapping[str, object] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))

    def text(self, name: str) -> str | None:
        """A string field of the kind, or None when it is not set."""
        value = self.options.get(name)
        return value if isinstance(value, str) else None

    def required_text(self, name: str) -> str:
        """A field the kind requires (parse_entry saw to it; this narrows the type)."""
        value = self.text(name)
        if value is None:
            raise config_error(self.name, name, "is required")
        return value

    def scope_list(self, name: str = "scopes") -> tuple[str, ...]:
        value = self.options.get(name)
        return tuple(str(s) for s in value) if isinstance(value, tuple) else ()

    def urls(self) -> tuple[str, ...]:
        """Every URL the entry sets, the agent's included."""
        return tuple(
            str(self.options[f.name])
            for f in _kind_fields(self.kind)
            if f.is_url and f.name in self.options
        )

    def for_binder(self) -> ProviderEntry:
        """This entry without the fields only the agent reads: what the binder parses."""
        agent_only = {f.name for f in _kind_fields(self.kind) if f.agent_only}
        kept = {k: v for k, v in self.options.items() if k not in agent_only}
        return replace(self, options=kept)

    def to_json(self) -> dict[str, object]:
        """This entry as a PROVIDERS object, which `parse_entry` reads back to `for_binder()`.

        Unset fields are left out; an empty allow-list is kept as `[]`, since leaving it out
        would turn "nothing beyond the defaults" into "no allow-list".
        """
        entry = self.for_binder()
        rendered: dict[str, object] = {"name": entry.name, "kind": entry.kind}
        if entry.client_id:
            rendered["client_id"] = entry.client_id
        if entry.secret_arn is not None:
            rendered["secret_arn"] = entry.secret_arn
        if entry.display_name is not None:
            rendered["display_name"] = entry.display_name
        for key, value in entry.options.items():
            rendered[key] = list(value) if isinstance(value, tuple) else value
        if entry.allowed_scopes is not None:
            rendered["allowed_scopes"] = list(entry.allowed_scopes)
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
    # The registry collects the kind modules, which import this module: look them up at call
    # time rather than at import.
    from binder.providers.registry import ALL_FIELDS, KINDS

    name = check_name(entry.get("name"), where)
    kind_name = entry.get("kind")
    if not isinstance(kind_name, str) or kind_name not in KINDS:
        raise config_error(name, "kind", f"must be one of {', '.join(KINDS)}")
    kind = KINDS[kind_name]
    if kind.display_name is None and name in KINDS and KINDS[name].display_name is not None:
        # The agent's built-in tools are named after the built-in kinds (github_whoami, ...):
        # a generic entry named like one would collide with them at the agent's start.
        raise config_error(
            name, "name", f"is a built-in kind's name; a {kind_name} entry needs another one"
        )
    fields = [f for f in kind.fields if agent_fields or not f.agent_only]
    accepted = frozenset(COMMON_FIELDS) | {f.name for f in fields}
    for key, value in entry.items():
        if key in accepted or value is None:
            continue
        if key in ALL_FIELDS:
            raise config_error(name, key, f"is not used by kind {kind_name!r}")
        # Refuse typos ("tennant") instead of silently ignoring them. repr() of a key is safe:
        # keys are names, not secrets.
        raise config_error(name, repr(str(key)[:40]), "is not a known field")
    raw_client_id = entry.get("client_id")
    if raw_client_id is None and not kind.client_id_required:
        client_id = ""
    else:
        client_id = check_client_id(name, raw_client_id)
    secret_arn = check_secret_arn(name, entry.get("secret_arn"))
    if secret_arn is not None and not client_id:
        # A client secret belongs to a client id; without one the kind registers a client,
        # whose secret (if any) it stores itself.
        raise config_error(name, "secret_arn", "is only allowed with client_id")
    display_name = check_display_name(name, entry.get("display_name"))
    allowed = entry.get("allowed_scopes")
    allowed_scopes = None if allowed is None else check_scope_list(name, "allowed_scopes", allowed)
    options: dict[str, object] = {}
    for kind_field in fields:
        value = entry.get(kind_field.name)
        if value is None:
            if kind_field.required:
                raise config_error(name, kind_field.name, "is required")
            continue
        options[kind_field.name] = kind_field.check(name, value, allow_insecure_loopback)
    parsed = ProviderEntry(
        name=name,
        kind=kind_name,
        client_id=client_id,
        secret_arn=secret_arn,
        display_name=display_name,
        allowed_scopes=allowed_scopes,
        options=options,
    )
    if kind.check_entry is not None:
        kind.check_entry(parsed)
    return parsed


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
