"""Any OpenID Connect provider, configured from its issuer's discovery document.

- OpenID Connect Discovery 1.0: https://openid.net/specs/openid-connect-discovery-1_0.html
  (the document's "issuer" must equal the configured issuer exactly, section 4.3: the mix-up
  defence for discovered providers; token_endpoint_auth_methods_supported defaults to
  client_secret_basic, section 3).
- RFC 8414 section 2 (https://www.rfc-editor.org/rfc/rfc8414#section-2): an absent
  code_challenge_methods_supported means "not advertised", not "unsupported".
- RFC 9207 (https://www.rfc-editor.org/rfc/rfc9207): `iss` on the authorization response is
  required when the document sets authorization_response_iss_parameter_supported.

Fields: `issuer` (required), `scopes` (extra default scopes), and `userinfo_endpoint`, which
is the agent's whoami tool's only: the binder takes its endpoints from the document. The
display name is the entry's `display_name`, else its name. The document is fetched by
binder.providers.discovery on first use; this module only decides what to trust in it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from binder.providers.schema import (
    BuildContext,
    ProviderConfigError,
    ProviderDiscoveryError,
    ProviderEntry,
    ProviderKind,
    check_url,
    issuer_field,
    scopes_field,
    url_field,
)
from binder.providers.spec import ProviderSpec, entry_fields


def discovery_url(entry: ProviderEntry) -> str:
    """OIDC Discovery 1.0 section 4: strip one trailing "/", append the well-known path."""
    return entry.required_text("issuer").removesuffix("/") + "/.well-known/openid-configuration"


def _strings(name: str, doc: Mapping[str, Any], key: str) -> list[str] | None:
    value = doc.get(key)
    if value is not None and (
        not isinstance(value, list) or not all(isinstance(v, str) for v in value)
    ):
        raise ProviderDiscoveryError(
            f"provider {name!r}: discovery field {key} must be a list of strings"
        )
    return value


def build(entry: ProviderEntry, context: BuildContext) -> ProviderSpec:
    name, issuer, doc = entry.name, entry.required_text("issuer"), context.document
    if doc is None:
        raise ProviderDiscoveryError(f"provider {name!r}: built without its discovery document")
    if doc.get("issuer") != issuer:
        raise ProviderDiscoveryError(
            f"provider {name!r}: discovery document's issuer does not equal the configured "
            "issuer (possible mix-up); refusing it"
        )

    def endpoint(key: str, *, required: bool = True) -> str | None:
        if not required and doc.get(key) is None:
            return None
        try:
            return check_url(
                name, key, doc.get(key), allow_insecure_loopback=context.allow_insecure_loopback
            )
        except ProviderConfigError as exc:
            raise ProviderDiscoveryError(f"{exc} (in the discovery document)") from None

    # Absent: sending PKCE anyway is the safer default (Microsoft Entra supports S256 and
    # omits the field; RFC 6749 section 3.1 has servers ignore unknown parameters). A list
    # that omits S256 is taken at its word.
    methods = _strings(name, doc, "code_challenge_methods_supported")
    auth_methods = _strings(name, doc, "token_endpoint_auth_methods_supported")
    if auth_methods is None or "client_secret_basic" in auth_methods:
        auth_method = "client_secret_basic"
    elif "client_secret_post" in auth_methods:
        auth_method = "client_secret_post"
    else:
        raise ProviderDiscoveryError(
            f"provider {name!r}: token endpoint supports neither client_secret_basic nor "
            "client_secret_post"
        )
    offline = "offline_access" in (_strings(name, doc, "scopes_supported") or [])
    defaults = ("openid", "offline_access") if offline else ("openid",)
    revocation = endpoint("revocation_endpoint", required=False)
    return ProviderSpec(
        **entry_fields(entry),
        authorization_endpoint=str(endpoint("authorization_endpoint")),
        token_endpoint=str(endpoint("token_endpoint")),
        jwks_uri=endpoint("jwks_uri"),
        revocation_endpoint=revocation,
        revocation_style="none" if revocation is None else "rfc7009",
        userinfo_endpoint=endpoint("userinfo_endpoint", required=False),
        issuer=issuer,
        is_oidc=True,
        returns_iss=doc.get("authorization_response_iss_parameter_supported") is True,
        supports_pkce=methods is None or "S256" in methods,
        default_scopes=tuple(dict.fromkeys((*defaults, *entry.scope_list()))),
        scope_separator=" ",
        scope_param="scope",
        extra_authorize_params={},
        token_endpoint_auth_method=auth_method,
        token_response_path=None,
        tokens_expire=True,
        default_expires_in=None,
        # Unknown for a generic provider: treat refresh tokens as single-use.
        rotates_refresh_tokens=True,
        refresh_scope=None,
    )


KIND = ProviderKind(
    name="oidc",
    display_name=None,
    fields=(issuer_field(), scopes_field(), url_field("userinfo_endpoint", agent_only=True)),
    build=build,
    discovery_url=discovery_url,
)
