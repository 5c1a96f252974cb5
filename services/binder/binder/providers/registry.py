"""The provider kinds, found by module, and the registry of configured providers.

Every module of this package that is not infrastructure (`INFRASTRUCTURE`, or a name starting
with "_") is a kind module: it declares `KIND = ProviderKind(...)` and is imported here, so
adding a kind is one new module, its test and one configuration entry, with no list to edit.
Two modules declaring the same kind, or a kind module without `KIND`, fail this import.

`ProviderRegistry` holds the providers of one binder process, built once at start from the
PROVIDERS environment variable (a JSON list, no secrets in it: client secrets live in Secrets
Manager and only their ARNs appear here). A kind that discovers its endpoints resolves on first
use, once (a failed discovery is remembered for `DISCOVERY_FAILURE_SECONDS`); the others
resolve at start. Standard library only at import (the CDK app imports
this module at synth); the network code (`binder.providers.discovery`) is imported on the
first discovery.
"""

from __future__ import annotations

import importlib
import pkgutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from binder.providers.schema import (
    COMMON_FIELDS,
    BuildContext,
    ProviderConfigError,
    ProviderDiscoveryError,
    ProviderEntry,
    ProviderKind,
    ResolveContext,
    config_error,
    parse_entries,
    parse_entry,
)
from binder.providers.spec import ProviderSpec

if TYPE_CHECKING:
    import anyio
    import httpx2

# How long a failed discovery is answered from memory: an unauthenticated caller (the public
# client metadata route) or a burst of users cannot make the binder fetch from a broken or
# hanging server more than once per window.
DISCOVERY_FAILURE_SECONDS: Final = 30.0
# Modules of this package that are not kinds.
INFRASTRUCTURE: Final = frozenset({"discovery", "mcp_discovery", "registry", "schema", "spec"})


def collect_kinds(package: str, path: Iterable[str]) -> dict[str, ProviderKind]:
    """Import every kind module of `package` (at `path`) and return its kinds by name: the
    named kinds first, by display name, then the generic ones, by name."""
    found: dict[str, tuple[ProviderKind, str]] = {}
    for module in sorted(pkgutil.iter_modules(list(path)), key=lambda m: m.name):
        if module.name in INFRASTRUCTURE or module.name.startswith("_"):
            continue
        qualified = f"{package}.{module.name}"
        kind = getattr(importlib.import_module(qualified), "KIND", None)
        if not isinstance(kind, ProviderKind):
            raise ImportError(f"{qualified} is a provider kind module without a KIND")
        if kind.name in found:
            raise ImportError(
                f"provider kind {kind.name!r} is declared by both {found[kind.name][1]} and "
                f"{qualified}"
            )
        found[kind.name] = (kind, qualified)
    kinds = sorted(
        (k for k, _ in found.values()),
        key=lambda k: (k.display_name is None, (k.display_name or k.name).casefold()),
    )
    return {k.name: k for k in kinds}


KINDS: Final[Mapping[str, ProviderKind]] = MappingProxyType(
    collect_kinds(__name__.rpartition(".")[0], [str(Path(__file__).parent)])
)
# Kinds with a name of their own ("GitHub"), whose entries may be named after the kind.
BUILTIN_KINDS: Final = tuple(k.name for k in KINDS.values() if k.display_name is not None)
# Kinds configured from the entry alone (oidc, oauth2).
GENERIC_KINDS: Final = tuple(k.name for k in KINDS.values() if k.display_name is None)
ALL_FIELDS: Final = frozenset(COMMON_FIELDS).union(
    *({f.name for f in k.fields} for k in KINDS.values())
)


def build_spec(kind: str, *, allow_insecure_loopback: bool = False, **fields: Any) -> ProviderSpec:
    """The spec of one PROVIDERS entry of `kind` with `fields`, through the one parser: for
    tools and tests. A kind that discovers its endpoints is refused (see ProviderRegistry.get)."""
    entry = parse_entry({**fields, "kind": kind}, allow_insecure_loopback=allow_insecure_loopback)
    found = KINDS[entry.kind]
    if found.discovery_url is not None:
        raise config_error(entry.name, "kind", f"{kind!r} is discovered on first use")
    return found.spec(entry, BuildContext(allow_insecure_loopback=allow_insecure_loopback))


@dataclass(frozen=True)
class PendingProvider:
    """An entry whose kind discovers its endpoints, not fetched yet."""

    entry: ProviderEntry

    @property
    def name(self) -> str:
        return self.entry.name


@dataclass(frozen=True, kw_only=True)
class ProviderListing:
    """What anyone may know about a configured provider: no client id, ARN or URL."""

    name: str
    kind: str
    display_name: str


class ProviderRegistry:
    """The configured providers by name, in configured order. Discovery on first use, once."""

    def __init__(
        self,
        providers: Sequence[ProviderSpec | PendingProvider] = (),
        *,
        allow_insecure_loopback: bool = False,
        public_base_url: str = "",
        registrations: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._public_base_url = public_base_url.rstrip("/")
        self._registrations = registrations
        self._clock = clock
        # name -> (when it failed, the error), for DISCOVERY_FAILURE_SECONDS
        self._failures: dict[str, tuple[float, ProviderConfigError]] = {}
        self._listings: dict[str, ProviderListing] = {}
        self._resolved: dict[str, ProviderSpec] = {}
        self._pending: dict[str, PendingProvider] = {}
        self._locks: dict[str, anyio.Lock] = {}
        self._allow_insecure_loopback = allow_insecure_loopback
        for item in providers:
            if item.name in self:
                raise config_error(item.name, "name", "is configured more than once")
            if isinstance(item, ProviderSpec):
                self._resolved[item.name] = item
                kind, display_name = item.kind, item.display_name
            else:
                self._pending[item.name] = item
                kind = item.entry.kind
                display_name = KINDS[kind].display_name_for(item.entry)
            self._listings[item.name] = ProviderListing(
                name=item.name, kind=kind, display_name=display_name
            )

    @classmethod
    def from_json(
        cls,
        text: str,
        *,
        allow_insecure_loopback: bool = False,
        public_base_url: str = "",
        registrations: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> ProviderRegistry:
        """Parse the PROVIDERS variable. Kinds that discover resolve on first get; others now.

        `public_base_url` and `registrations` (binder.registrations.ClientRegistrations) are
        what kinds that register their own client need (mcp)."""
        entries = parse_entries(text, allow_insecure_loopback=allow_insecure_loopback)
        context = BuildContext(allow_insecure_loopback=allow_insecure_loopback)
        items: list[ProviderSpec | PendingProvider] = []
        for entry in entries:
            kind = KINDS[entry.kind]
            pending = kind.discovery_url is not None
            items.append(PendingProvider(entry) if pending else kind.spec(entry, context))
        return cls(
            items,
            allow_insecure_loopback=allow_insecure_loopback,
            public_base_url=public_base_url,
            registrations=registrations,
            clock=clock,
        )

    def names(self) -> tuple[str, ...]:
        return tuple(self._listings)

    def listings(self) -> tuple[ProviderListing, ...]:
        """Every provider's name, kind and display name, in configured order."""
        return tuple(self._listings.values())

    def display_name(self, name: str) -> str:
        """The provider's display name; the name itself for one not configured (any more)."""
        listing = self._listings.get(name)
        return name if listing is None else listing.display_name

    def kind_of(self, name: str) -> str | None:
        """The provider's kind; None for a name not configured."""
        listing = self._listings.get(name)
        return None if listing is None else listing.kind

    def __contains__(self, name: object) -> bool:
        return name in self._listings

    async def get(self, name: str, http: httpx2.AsyncClient) -> ProviderSpec:
        """The provider's spec; KeyError for an unknown name.

        The first call for a discovering kind fetches its document; concurrent first calls
        share one fetch (per-name lock). A failed discovery (ProviderConfigError) is raised
        again, without a fetch, to every caller for DISCOVERY_FAILURE_SECONDS (those queued on
        the lock included); the first call after that tries again.
        """
        spec = self._resolved.get(name)
        if spec is not None:
            return spec
        if name not in self._pending:
            raise KeyError(name)
        # Imported here, not at the top: the CDK app imports this module without anyio/httpx2.
        import anyio

        from binder.providers.discovery import resolve

        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = anyio.Lock()
        self._raise_recent_failure(name)
        async with lock:
            spec = self._resolved.get(name)
            if spec is not None:
                return spec
            self._raise_recent_failure(name)
            context = ResolveContext(
                http=http,
                allow_insecure_loopback=self._allow_insecure_loopback,
                public_base_url=self._public_base_url,
                registrations=self._registrations,
            )
            try:
                spec = await resolve(self._pending[name].entry, context)
            except ProviderConfigError as exc:
                self._failures[name] = (self._clock(), exc)
                raise
            except Exception as exc:
                # Any other failure (a document that breaks a parser, a bug) is remembered the
                # same way, or callers could repeat it at will; its text is not (it may quote
                # a value).
                failure = ProviderDiscoveryError(
                    f"provider {name!r}: discovery failed ({type(exc).__name__})"
                )
                self._failures[name] = (self._clock(), failure)
                raise failure from None
            self._failures.pop(name, None)
            self._resolved[name] = spec
            return spec

    def _raise_recent_failure(self, name: str) -> None:
        failed = self._failures.get(name)
        if failed is None:
            return
        when, exc = failed
        if self._clock() - when >= DISCOVERY_FAILURE_SECONDS:
            del self._failures[name]
            return
        # A copy, so the stored error does not collect every caller's traceback.
        raise type(exc)(str(exc), field=exc.field, problem=exc.problem)
