"""The one typed configuration object of the CDK app, and its validation.

`app.py` is the only place that reads CDK context; it hands the raw values to
`AppConfig.from_context`, which returns a frozen, validated object or raises `ConfigError`
naming the context key and the expected form. Every key is documented in README.md.

A `providers` entry is checked by the binder's own parser (`binder.providers.schema` with the
kinds `binder.providers.registry` finds, standard library only; `app.py` puts services/binder on
the import path), on the entry exactly as it is rendered into the binder's task definition:
synth accepts what the binder starts with.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from binder.providers.registry import ALL_FIELDS, BUILTIN_KINDS, KINDS
from binder.providers.schema import ProviderConfigError, ProviderEntry, parse_entry

# Fields of a binder entry that the app fills in: the name is the entry's context key, the
# secret ARN is the identity stack's.
_APP_SET_FIELDS = frozenset({"name", "secret_arn"})
# Fields a `providers` entry of the context may carry.
PROVIDER_FIELDS = ALL_FIELDS - _APP_SET_FIELDS

LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)

_ACCOUNT = re.compile(r"^\d{12}$")
_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
_AZ = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d[a-z]$")
_DOMAIN = re.compile(r"^(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_CERT_ARN = re.compile(r"^arn:aws[a-z-]*:acm:([a-z0-9-]+):(\d{12}):certificate/[0-9a-f-]{36}$")
_HOSTED_ZONE_ID = re.compile(r"^Z[A-Z0-9]{1,31}$")
_COGNITO_PREFIX = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_VAULT_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_+=.@-]{0,39}$")
_STACK_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,39}$")
_MODEL_ID = re.compile(r"^[a-z0-9-]+\.[A-Za-z0-9.:_-]+$")
# Cross-region inference profiles are the model ID with a geography prefix, or `global.` for
# the profiles that route to every commercial region.
_PROFILE_PREFIX = re.compile(r"^(global|us|us-gov|eu|apac|jp|au|ca)\.")
# Cognito refuses a hosted-UI domain prefix that contains one of these words.
COGNITO_RESERVED_WORDS = ("aws", "amazon", "cognito")
# Context keys that existed once and must not silently do nothing now.
RETIRED_KEYS = {
    "bedrock_inference_regions": (
        "is no longer used: an inference profile's foundation model is granted in every region "
        "the profile routes to, bound to the profile (bedrock:InferenceProfileArn); remove the key"
    ),
}
# Values that only stand in for a real deployment's: documentation account IDs, reserved DNS
# names (RFC 2606, RFC 6761) and the all-zero IDs of cdk.json's examples.
_EXAMPLE_ACCOUNTS = frozenset({"111111111111", "000000000000", "123456789012"})
_RESERVED_DNS = re.compile(r"(^|\.)(example\.(com|net|org)|example|test|invalid)$", re.IGNORECASE)
_ZERO_RUN = re.compile(r"0{8}")

# GitHub's own rules: an owner (user or organization) is 1-39 letters, digits and single
# hyphens, not at either end; a repository name is 1-100 letters, digits, '.', '_' and '-'.
_GITHUB_REPOSITORY = re.compile(
    r"^(?P<owner>[A-Za-z0-9](?:-?[A-Za-z0-9]){0,38})/(?P<name>[A-Za-z0-9._-]{1,100})$"
)
# A GitHub environment name as it appears in the OIDC token's `sub` claim. GitHub allows more
# (spaces, most punctuation); these are the characters that survive every tool unquoted.
_GITHUB_ENVIRONMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
# CDK's bootstrap qualifier (`cdk bootstrap --qualifier`): up to 10 letters and digits.
_BOOTSTRAP_QUALIFIER = re.compile(r"^[A-Za-z0-9]{1,10}$")
GITHUB_OIDC_HOST = "token.actions.githubusercontent.com"
_OIDC_PROVIDER_ARN = re.compile(
    r"^arn:aws[a-z-]*:iam::(\d{12}):oidc-provider/" + re.escape(GITHUB_OIDC_HOST) + "$"
)
DEFAULT_BOOTSTRAP_QUALIFIER = "hnb659fds"
PIPELINE_FIELDS = frozenset(
    {"repository", "environment", "existing_oidc_provider_arn", "bootstrap_qualifier"}
)


# The repositories cdk.json and the docs show: trusting one that nobody here owns would hand
# its owner the deploy role, so a deployment refuses them (and nothing else).
EXAMPLE_REPOSITORIES = frozenset({"example-org/secure-agents-on-ecs", "acme-corp/secure-agents"})


class ConfigError(ValueError):
    """A context value is missing or malformed. The message names the key and the expected form."""


@dataclass(frozen=True, kw_only=True)
class ProviderConfig:
    """One third-party provider users may connect; its client secret lives in Secrets Manager.

    `entry` is the context entry as the binder's schema parsed it, with the fields only the
    agent reads (an oidc provider's `userinfo_endpoint`) and without a secret ARN, which the
    identity stack creates.
    """

    entry: ProviderEntry

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def kind(self) -> str:
        return self.entry.kind

    @property
    def client_id(self) -> str:
        return self.entry.client_id

    @property
    def userinfo_url(self) -> str | None:
        """Where the agent's generic whoami tool asks who the user is at this provider: the
        configured endpoint, else an OIDC kind's own (its spec needs no network to build)."""
        configured = self.entry.text("userinfo_endpoint")
        kind = KINDS[self.kind]
        if configured is not None or kind.discovery_url is not None:
            return configured
        spec = kind.spec(self.entry.for_binder())
        return spec.userinfo_endpoint if spec.is_oidc else None

    @property
    def has_credentials(self) -> bool:
        """Whether the identity stack creates a client credentials secret for this provider:
        every entry with a client id, except an mcp entry's declared `public_client` (PKCE
        only). An mcp entry may have no client id (its binder registers a client through the
        binder's metadata document or dynamic registration, and keeps what it gets in the
        vault), and then has no secret at all: a placeholder nobody may set would only make the
        binder refuse the entry ("secret_arn is only allowed with client_id")."""
        return bool(self.entry.client_id) and self.entry.options.get("public_client") is not True

    def binder_entry(self, secret_arn: str | None) -> dict[str, object]:
        """This provider as the binder's PROVIDERS entry (services/binder/README.md): with the
        credentials secret's ARN when the provider has one (`has_credentials`), without it
        otherwise, whatever `secret_arn` says."""
        if not self.has_credentials:
            return replace(self.entry, secret_arn=None).to_json()
        if secret_arn is None:
            raise ValueError(f"provider {self.name!r} has a client id and needs its secret ARN")
        return replace(self.entry, secret_arn=secret_arn).to_json()

    def mcp_server(self) -> dict[str, object] | None:
        """This provider as an entry of the agent's AGENT_MCP_SERVERS (services/agent/README.md,
        "Remote MCP servers"), or None when it is not an MCP server: the agent lists and calls
        its tools with the user's token for the binder provider of the same name."""
        if self.kind != "mcp":
            return None
        server: dict[str, object] = {"name": self.name, "url": self.entry.required_text("url")}
        scopes = self.entry.scope_list()
        if scopes:
            server["scopes"] = list(scopes)
        return server


@dataclass(frozen=True, kw_only=True)
class BedrockModel:
    """A model the agent may invoke: a foundation model or a cross-region inference profile."""

    model_id: str

    @property
    def is_inference_profile(self) -> bool:
        return bool(_PROFILE_PREFIX.match(self.model_id))

    @property
    def is_global_profile(self) -> bool:
        """A `global.` profile may route to any commercial region, and to the model ARN that
        names no region at all."""
        return self.model_id.startswith("global.")

    @property
    def foundation_model_id(self) -> str:
        return _PROFILE_PREFIX.sub("", self.model_id)


@dataclass(frozen=True, kw_only=True)
class PipelineConfig:
    """The GitHub repository whose workflows may deploy this app, and how (docs/pipeline.md).

    `repository` is `owner/name` exactly as GitHub spells it (IAM compares the token's `sub`
    claim case-sensitively); `environment` is the protected GitHub environment of the deploy
    job; `existing_oidc_provider_arn` is the account's GitHub OIDC provider when it already
    has one (an account holds one per URL), else the pipeline stack creates it;
    `bootstrap_qualifier` is the `cdk bootstrap --qualifier` whose roles the pipeline assumes.
    """

    repository: str
    environment: str = "production"
    existing_oidc_provider_arn: str | None = None
    bootstrap_qualifier: str = DEFAULT_BOOTSTRAP_QUALIFIER


@dataclass(frozen=True, kw_only=True)
class AppConfig:
    account: str
    region: str
    availability_zones: tuple[str, str]
    stack_prefix: str
    domain_name: str
    certificate_arn: str | None
    hosted_zone_id: str | None
    hosted_zone_name: str | None
    cognito_domain_prefix: str
    allowed_return_origins: tuple[str, ...]
    api_client_callback_urls: tuple[str, ...]
    providers: tuple[ProviderConfig, ...]
    bedrock_models: tuple[BedrockModel, ...]
    agent_desired_count: int
    binder_desired_count: int
    max_task_count: int
    nat_gateways: int
    vault_prefix: str
    log_retention_days: int
    access_log_lock_days: int
    waf_rate_limit: int
    alarm_email: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    pipeline: PipelineConfig | None = None

    @property
    def agent_mcp_servers(self) -> list[dict[str, object]]:
        """The agent's AGENT_MCP_SERVERS: every `kind: mcp` provider, in context order."""
        return [s for s in (p.mcp_server() for p in self.providers) if s is not None]

    @property
    def service_namespace(self) -> str:
        """The Cloud Map namespace of Service Connect: one per deployment, so two stack
        prefixes in one account and region do not collide."""
        return f"{self.stack_prefix.lower()}.internal"

    @property
    def callback_url(self) -> str:
        """The ALB's Cognito callback (authenticate-cognito handles this path itself)."""
        return f"https://{self.domain_name}/oauth2/idpresponse"

    def provider_callback_url(self, provider: str) -> str:
        """One callback per provider: the mix-up defence for providers that send no `iss`."""
        return f"https://{self.domain_name}/oauth2/callback/{provider}"

    @classmethod
    def from_context(cls, get: Callable[[str], Any]) -> AppConfig:
        """Build the config from a context getter (`app.node.try_get_context`)."""
        for key, why in RETIRED_KEYS.items():
            if get(key) is not None:
                raise ConfigError(f"context key '{key}' {why}")
        region = _required_str(get, "region", _REGION, "an AWS region such as us-east-1")
        account = _required_str(get, "account", _ACCOUNT, "a 12-digit AWS account ID")
        azs = get("availability_zones")
        if azs is None:
            zones: tuple[str, str] = (f"{region}a", f"{region}b")
        else:
            items = _str_list(azs, "availability_zones", "two availability zones of the region")
            if len(items) != 2 or len(set(items)) != 2:
                raise ConfigError(
                    "context key 'availability_zones': expected two distinct availability "
                    f'zones of {region}, e.g. ["{region}a", "{region}b"]'
                )
            for zone in items:
                if not _AZ.match(zone) or not zone.startswith(region):
                    raise ConfigError(
                        f"context key 'availability_zones': '{zone}' is not an availability "
                        f"zone of {region} (expected e.g. {region}a)"
                    )
            zones = (items[0], items[1])

        certificate_arn = _optional_str(get, "certificate_arn")
        hosted_zone_id = _optional_str(get, "hosted_zone_id")
        hosted_zone_name = _optional_str(get, "hosted_zone_name")
        if certificate_arn is not None:
            match = _CERT_ARN.match(certificate_arn)
            if not match:
                raise ConfigError(
                    "context key 'certificate_arn': expected "
                    "arn:aws:acm:<region>:<12-digit account>:certificate/<uuid>"
                )
            if match.group(1) != region:
                raise ConfigError(
                    f"context key 'certificate_arn': the certificate must be in the stack's "
                    f"region ({region}), not {match.group(1)}"
                )
        if (hosted_zone_id is None) != (hosted_zone_name is None):
            raise ConfigError(
                "context keys 'hosted_zone_id' and 'hosted_zone_name' go together: set both or "
                "neither"
            )
        if hosted_zone_id is not None and not _HOSTED_ZONE_ID.match(hosted_zone_id):
            raise ConfigError(
                "context key 'hosted_zone_id': expected a Route 53 hosted zone ID such as "
                "Z0123456789ABCDEFGHIJ"
            )
        if certificate_arn is None and hosted_zone_id is None:
            raise ConfigError(
                "set context key 'certificate_arn' (an ACM certificate for the domain) or "
                "'hosted_zone_id' + 'hosted_zone_name' (a DNS-validated certificate is created)"
            )
        domain = _required_str(get, "domain_name", _DOMAIN, "a DNS name such as agents.example.com")
        if hosted_zone_name is not None:
            zone_name = hosted_zone_name.rstrip(".").lower()
            if domain != zone_name and not domain.endswith("." + zone_name):
                raise ConfigError(
                    f"context key 'domain_name': {domain} is not inside hosted zone {zone_name}"
                )

        return cls(
            account=account,
            region=region,
            availability_zones=zones,
            stack_prefix=_optional_pattern(
                get, "stack_prefix", _STACK_PREFIX, "letters and digits, starting with a letter"
            )
            or "SecureAgents",
            domain_name=domain,
            certificate_arn=certificate_arn,
            hosted_zone_id=hosted_zone_id,
            hosted_zone_name=hosted_zone_name.rstrip(".").lower() if hosted_zone_name else None,
            cognito_domain_prefix=_cognito_prefix(get),
            allowed_return_origins=_origins(get("allowed_return_origins")),
            api_client_callback_urls=_callback_urls(get("api_client_callback_urls")),
            providers=_providers(get("providers"), account=account, region=region),
            bedrock_models=_models(get("bedrock_model_ids")),
            agent_desired_count=_int(get, "agent_desired_count", 2, 1, 20),
            binder_desired_count=_int(get, "binder_desired_count", 2, 1, 20),
            max_task_count=_int(get, "max_task_count", 6, 1, 100),
            nat_gateways=_int(get, "nat_gateways", 2, 1, 2),
            vault_prefix=_optional_pattern(
                get,
                "vault_prefix",
                _VAULT_PREFIX,
                "1-40 characters of letters, digits and _+=.@- (no slash)",
            )
            or "agent-token-vault",
            log_retention_days=_retention(get("log_retention_days")),
            access_log_lock_days=_int(
                get,
                "access_log_lock_days",
                min(90, _retention(get("log_retention_days"))),
                1,
                3653,
            ),
            waf_rate_limit=_int(get, "waf_rate_limit", 1000, 10, 2_000_000_000),
            alarm_email=_email(get("alarm_email")),
            tags=_tags(get("tags")),
            pipeline=_pipeline(get("pipeline"), account=account),
        )._checked()

    def example_values(self) -> tuple[str, ...]:
        """The context keys that still hold example values (cdk.json's, or the docs'): a
        deployment with any of them synthesizes but fails inside CloudFormation, or later."""
        keys: list[str] = []
        if self.account in _EXAMPLE_ACCOUNTS:
            keys.append("account")
        if self.certificate_arn and (
            any(f":{a}:" in self.certificate_arn for a in _EXAMPLE_ACCOUNTS)
            or _ZERO_RUN.search(self.certificate_arn.rsplit("/", 1)[-1].replace("-", ""))
        ):
            keys.append("certificate_arn")
        if _is_reserved_host(self.domain_name):
            keys.append("domain_name")
        if self.hosted_zone_name and _is_reserved_host(self.hosted_zone_name):
            keys.append("hosted_zone_name")
        if "example" in self.cognito_domain_prefix:
            keys.append("cognito_domain_prefix")
        if any(_is_reserved_host(urlsplit(o).hostname) for o in self.allowed_return_origins):
            keys.append("allowed_return_origins")
        if any(_is_reserved_host(urlsplit(u).hostname) for u in self.api_client_callback_urls):
            keys.append("api_client_callback_urls")
        for provider in self.providers:
            entry = provider.entry
            if "example" in entry.client_id.lower() or _ZERO_RUN.search(entry.client_id):
                keys.append(f"providers.{provider.name}.client_id")
            if any(_is_reserved_host(urlsplit(url).hostname) for url in entry.urls()):
                keys.append(f"providers.{provider.name} (endpoints)")
        if self.alarm_email and _is_reserved_host(self.alarm_email.rsplit("@", 1)[-1]):
            keys.append("alarm_email")
        if self.pipeline and self.pipeline.repository.lower() in EXAMPLE_REPOSITORIES:
            # Trusting a repository nobody here owns would hand its owner the deploy role.
            keys.append("pipeline.repository")
        return tuple(keys)

    def require_deployable(self) -> None:
        """Refuse to deploy example values, naming every key still to set in one message."""
        keys = self.example_values()
        if keys:
            raise ConfigError(
                "refusing to deploy: these context keys still hold example values, set them "
                "to your own in cdk.json (docs/deployment.md, Configure): " + ", ".join(keys)
            )

    def _checked(self) -> AppConfig:
        if self.access_log_lock_days > self.log_retention_days:
            raise ConfigError(
                "context key 'access_log_lock_days' must not exceed 'log_retention_days' (a "
                "log object cannot expire while it is locked)"
            )
        if self.max_task_count < max(self.agent_desired_count, self.binder_desired_count):
            raise ConfigError(
                "context key 'max_task_count' must be at least 'agent_desired_count' and "
                "'binder_desired_count'"
            )
        return self


def _required_str(get: Callable[[str], Any], key: str, pattern: re.Pattern[str], form: str) -> str:
    value = get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"context key '{key}' is required: expected {form}")
    value = value.strip()
    if not pattern.match(value):
        raise ConfigError(f"context key '{key}': expected {form}, got '{value}'")
    return value


def _optional_str(get: Callable[[str], Any], key: str) -> str | None:
    value = get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"context key '{key}': expected a string")
    return value.strip()


def _optional_pattern(
    get: Callable[[str], Any], key: str, pattern: re.Pattern[str], form: str
) -> str | None:
    value = _optional_str(get, key)
    if value is not None and not pattern.match(value):
        raise ConfigError(f"context key '{key}': expected {form}, got '{value}'")
    return value


def _int(get: Callable[[str], Any], key: str, default: int, low: int, high: int) -> int:
    value = get(key)
    if value is None:
        return default
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)  # `cdk -c key=3` passes strings
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"context key '{key}': expected an integer from {low} to {high}")
    return value


def _str_list(value: Any, key: str, form: str) -> list[str]:
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, Sequence) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"context key '{key}': expected a list of {form}")
    return list(value)


def _origins(value: Any) -> tuple[str, ...]:
    key = "allowed_return_origins"
    form = "https origins such as https://app.example.com (scheme and host, no path)"
    origins = [] if value is None else _str_list(value, key, form)
    for origin in origins:
        parts = urlsplit(origin)
        if (
            parts.scheme != "https"
            or not parts.hostname
            or parts.path not in ("",)
            or parts.query
            or parts.fragment
            or parts.username
            or parts.password
        ):
            raise ConfigError(f"context key '{key}': '{origin}' is not one of {form}")
    return tuple(origins)


def _callback_urls(value: Any) -> tuple[str, ...]:
    key = "api_client_callback_urls"
    form = "https URLs, or http://localhost URLs for command-line clients"
    urls = ["http://localhost:8765/callback"] if value is None else _str_list(value, key, form)
    if not urls:
        raise ConfigError(f"context key '{key}': expected at least one of {form}")
    for url in urls:
        parts = urlsplit(url)
        local = parts.scheme == "http" and parts.hostname in ("localhost", "127.0.0.1")
        if not (parts.scheme == "https" or local) or not parts.hostname or parts.fragment:
            raise ConfigError(f"context key '{key}': '{url}' is not one of {form}")
    return tuple(urls)


def _providers(value: Any, *, account: str, region: str) -> tuple[ProviderConfig, ...]:
    key = "providers"
    form = (
        '{"<name>": {"client_id": "..."}} where <name> is one of '
        + ", ".join(BUILTIN_KINDS)
        + ', or any name with "kind": "oidc" (plus "issuer") or "oauth2"'
    )
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise ConfigError(f"context key '{key}': expected {form}")
    providers = tuple(
        _provider(name, fields, where=f"context key '{key}.{name}'", account=account, region=region)
        for name, fields in value.items()
    )
    _check_agent_mcp_servers(providers)
    return providers


# The agent's own limits on AGENT_MCP_SERVERS (services/agent/agent/settings.py), stricter than
# the binder's on the same entries: an entry past them would pass synth and stop the agent.
AGENT_MAX_MCP_SERVERS = 16
AGENT_MAX_SCOPE_LENGTH = 128


def _check_agent_mcp_servers(providers: Sequence[ProviderConfig]) -> None:
    servers = [p for p in providers if p.kind == "mcp"]
    if len(servers) > AGENT_MAX_MCP_SERVERS:
        raise ConfigError(
            f"context key 'providers': at most {AGENT_MAX_MCP_SERVERS} entries of kind mcp "
            "(the agent's AGENT_MCP_SERVERS limit)"
        )
    for provider in servers:
        where = f"context key 'providers.{provider.name}'"
        if urlsplit(provider.entry.required_text("url")).query:
            raise ConfigError(
                f"{where}: url must not contain a query (the agent's AGENT_MCP_SERVERS refuses it)"
            )
        if any(len(scope) > AGENT_MAX_SCOPE_LENGTH for scope in provider.entry.scope_list()):
            raise ConfigError(
                f"{where}: scopes must be at most {AGENT_MAX_SCOPE_LENGTH} characters each for "
                "an mcp entry (the agent asks for them)"
            )


def _provider(name: Any, fields: Any, *, where: str, account: str, region: str) -> ProviderConfig:
    """One `providers` entry, through the binder's own parser twice: as the context states it,
    and as rendered into the binder's PROVIDERS, which must read back to the same entry."""
    if not isinstance(fields, Mapping):
        raise ConfigError(f'{where}: expected an object such as {{"client_id": "..."}}')
    app_set = sorted(_APP_SET_FIELDS & set(fields))
    if app_set:
        raise ConfigError(f"{where}: {', '.join(app_set)} is set by the app, not in the context")
    # At synth the real secret ARN is a CDK token; a well-formed ARN of the account and region
    # stands in for it (for a provider with a client id: the others get no secret).
    placeholder: str | None = (
        f"arn:aws:secretsmanager:{region}:{account}:secret:provider-{name}-AbCdEf"
    )
    try:
        provider = ProviderConfig(
            entry=parse_entry(
                {**fields, "name": name, "kind": fields.get("kind", name)}, agent_fields=True
            )
        )
        if not provider.has_credentials:
            placeholder = None
        rendered = parse_entry(provider.binder_entry(placeholder))
    except ProviderConfigError as exc:
        problem = f"{exc.field} {exc.problem}" if exc.field and exc.problem else str(exc)
        if exc.field == "kind" and "kind" not in fields:
            problem += '; any other name needs "kind": "oidc" or "oauth2"'
        raise ConfigError(f"{where}: {problem}") from None
    if rendered != replace(provider.entry, secret_arn=placeholder).for_binder():
        raise ConfigError(
            f"{where}: the binder would read this entry differently from the context "
            "(a bug in stacks/config.py: please report it)"
        )
    return provider


def _models(value: Any) -> tuple[BedrockModel, ...]:
    key = "bedrock_model_ids"
    form = (
        "Bedrock model IDs such as anthropic.claude-sonnet-4-20250514-v1:0, or inference "
        "profile IDs such as us.anthropic.claude-sonnet-4-20250514-v1:0 (the first is the default)"
    )
    ids = [] if value is None else _str_list(value, key, form)
    if not ids:
        raise ConfigError(f"context key '{key}' is required: expected {form}")
    for model_id in ids:
        if not _MODEL_ID.match(model_id) or "*" in model_id:
            raise ConfigError(f"context key '{key}': '{model_id}' is not one of {form}")
    return tuple(BedrockModel(model_id=m) for m in ids)


def _is_reserved_host(host: str | None) -> bool:
    return bool(host) and bool(_RESERVED_DNS.search(str(host).rstrip(".")))


def _cognito_prefix(get: Callable[[str], Any]) -> str:
    key = "cognito_domain_prefix"
    value = _required_str(
        get,
        key,
        _COGNITO_PREFIX,
        "lower-case letters, digits and hyphens, unique in the region (the hosted sign-in "
        "page is https://<prefix>.auth.<region>.amazoncognito.com)",
    )
    reserved = [word for word in COGNITO_RESERVED_WORDS if word in value]
    if reserved:
        raise ConfigError(
            f"context key '{key}': Cognito refuses a domain prefix that contains "
            + " or ".join(f"'{word}'" for word in reserved)
            + f" (got '{value}'); choose another"
        )
    return value


def _retention(value: Any) -> int:
    key = "log_retention_days"
    if value is None:
        return 365
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if value not in LOG_RETENTION_DAYS or isinstance(value, bool):
        raise ConfigError(
            f"context key '{key}': expected one of CloudWatch Logs' retention periods: "
            + ", ".join(str(d) for d in LOG_RETENTION_DAYS)
        )
    return int(value)


def _email(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", value):
        raise ConfigError("context key 'alarm_email': expected an email address")
    return value


def _pipeline(value: Any, *, account: str) -> PipelineConfig | None:
    """The optional `pipeline` key: absent (or null) means no pipeline stack."""
    form = (
        '{"repository": "<owner>/<repo>"} with optional "environment", '
        '"existing_oidc_provider_arn" and "bootstrap_qualifier"'
    )
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ConfigError(f"context key 'pipeline': expected {form}")
    unknown = sorted(str(k) for k in set(value) - PIPELINE_FIELDS)
    if unknown:
        raise ConfigError(f"context key 'pipeline': unknown field {', '.join(unknown)}; {form}")
    repository = _pipeline_field(
        value,
        "repository",
        _GITHUB_REPOSITORY,
        "<owner>/<repo> as GitHub spells it (owner: letters, digits and single hyphens; "
        "repo: letters, digits, '.', '_' and '-')",
    )
    if repository is None:
        raise ConfigError("context key 'pipeline.repository' is required: expected <owner>/<repo>")
    if repository.split("/", 1)[1] in (".", ".."):
        raise ConfigError(f"context key 'pipeline.repository': '{repository}' is not a repository")
    provider_arn = _pipeline_field(
        value,
        "existing_oidc_provider_arn",
        _OIDC_PROVIDER_ARN,
        f"arn:aws:iam::<account>:oidc-provider/{GITHUB_OIDC_HOST}",
    )
    match = _OIDC_PROVIDER_ARN.fullmatch(provider_arn or "")
    if match and match.group(1) != account:
        raise ConfigError(
            "context key 'pipeline.existing_oidc_provider_arn': the provider must be in the "
            f"stack's account ({account}), not {match.group(1)}"
        )
    environment = _pipeline_field(
        value,
        "environment",
        _GITHUB_ENVIRONMENT,
        "a GitHub environment name: 1-255 letters, digits, '.', '_' and '-', starting with a "
        "letter or digit",
    )
    qualifier = _pipeline_field(
        value,
        "bootstrap_qualifier",
        _BOOTSTRAP_QUALIFIER,
        "the qualifier given to cdk bootstrap: 1-10 letters and digits",
    )
    return PipelineConfig(
        repository=repository,
        environment=environment or "production",
        existing_oidc_provider_arn=provider_arn,
        bootstrap_qualifier=qualifier or DEFAULT_BOOTSTRAP_QUALIFIER,
    )


def _pipeline_field(
    value: Mapping[str, Any], name: str, pattern: re.Pattern[str], form: str
) -> str | None:
    item = value.get(name)
    if item is None:
        return None
    if not isinstance(item, str) or not pattern.fullmatch(item):
        shown = f"'{item}'" if isinstance(item, str) else f"a {type(item).__name__}"
        raise ConfigError(f"context key 'pipeline.{name}': expected {form}, got {shown}")
    return item


def _tags(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ConfigError("context key 'tags': expected an object of string keys and values")
    return dict(value)
