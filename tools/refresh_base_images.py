"""Refresh (or check) the digest pins of the services' base images on Amazon ECR Public.

Usage: python tools/refresh_base_images.py [--check] [--registry URL] [--timeout SECONDS]

Every `FROM public.ecr.aws/<repository>:<tag>@sha256:<digest>` line of services/*/Dockerfile
is looked up on the registry (OCI distribution API: an anonymous pull token, then the manifest
of <tag>). The answer must be a multi-architecture image index (OCI index or Docker manifest
list) that offers linux/arm64 and linux/amd64: the services run on Graviton and developers may
build on amd64, so a single-architecture digest would pin one of them to the wrong image.

Without --check the digests are rewritten in place, and only once every lookup has succeeded:
either every Dockerfile is updated or none is. With --check nothing is written; the exit
status is 0 when every pin is current and 1 when one is stale. Any failure (network, registry
answer, malformed manifest) prints one line and exits 2.

The registry base URL is https://public.ecr.aws unless --registry or BASE_IMAGE_REGISTRY says
otherwise (the tests point it at a fake registry on 127.0.0.1).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REGISTRY = "https://public.ecr.aws"
REGISTRY_ENV = "BASE_IMAGE_REGISTRY"
SERVICE = "public.ecr.aws"
DEFAULT_TIMEOUT = 20.0
MAX_BODY = 4 * 1024 * 1024  # an image index is a few KiB; refuse anything absurd
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
REQUIRED_PLATFORMS = (("linux", "arm64"), ("linux", "amd64"))

# FROM [--platform=...] public.ecr.aws/<repository>:<tag>@sha256:<digest> [AS name]
FROM_LINE = re.compile(
    r"^(?P<head>[ \t]*FROM[ \t]+(?:--platform=\S+[ \t]+)?)"
    r"public\.ecr\.aws/(?P<repo>[a-z0-9]+(?:[._/-][a-z0-9]+)*)"
    r":(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})"
    r"@sha256:(?P<digest>[0-9a-f]{64})(?=[ \t]|$)",
    re.IGNORECASE | re.MULTILINE,
)
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


class RefreshError(Exception):
    """A failure worth one line to the operator (no stack trace)."""


@dataclass(frozen=True)
class Pin:
    dockerfile: Path
    repo: str
    tag: str
    digest: str  # sha256:<hex>
    start: int  # span of the hex digits in the file's text
    end: int

    @property
    def image(self) -> str:
        return f"{SERVICE}/{self.repo}:{self.tag}"


def find_pins(dockerfiles: Iterable[Path]) -> list[Pin]:
    pins = []
    for path in dockerfiles:
        text = path.read_text(encoding="utf-8")
        for match in FROM_LINE.finditer(text):
            pins.append(
                Pin(
                    dockerfile=path,
                    repo=match["repo"],
                    tag=match["tag"],
                    digest=f"sha256:{match['digest']}",
                    start=match.start("digest"),
                    end=match.end("digest"),
                )
            )
    return pins


class Registry:
    """The few OCI distribution API calls this tool needs, each bounded by a timeout."""

    def __init__(self, base_url: str, timeout: float) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        loopback = parsed.hostname in ("127.0.0.1", "::1", "localhost")
        if parsed.scheme != "https" and not (parsed.scheme == "http" and loopback):
            raise RefreshError(
                f"registry URL must be https:// (or http:// on loopback): {base_url}"
            )
        self.base = base_url.rstrip("/")
        self.timeout = timeout

    def _get(self, url: str, headers: dict[str, str], what: str) -> tuple[bytes, Any]:
        request = urllib.request.Request(url, headers=headers, method="GET")  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                body = response.read(MAX_BODY + 1)
                if len(body) > MAX_BODY:
                    raise RefreshError(f"{what}: answer larger than {MAX_BODY} bytes")
                return body, response.headers
        except urllib.error.HTTPError as error:
            raise RefreshError(f"{what}: registry answered HTTP {error.code}") from None
        except urllib.error.URLError as error:
            raise RefreshError(f"{what}: cannot reach {self.base}: {error.reason}") from None
        except TimeoutError:
            raise RefreshError(f"{what}: no answer from {self.base} in {self.timeout:g}s") from None
        except OSError as error:
            raise RefreshError(f"{what}: {error}") from None

    def token(self, repo: str) -> str:
        query = urllib.parse.urlencode({"scope": f"repository:{repo}:pull", "service": SERVICE})
        body, _ = self._get(f"{self.base}/token/?{query}", {}, f"pull token for {repo}")
        try:
            token = json.loads(body)["token"]
        except (ValueError, KeyError, TypeError):
            raise RefreshError(f"pull token for {repo}: answer has no token") from None
        if not isinstance(token, str) or not token:
            raise RefreshError(f"pull token for {repo}: answer has no token")
        return token

    def index_digest(self, repo: str, tag: str) -> str:
        """The digest of <repo>:<tag>, which must be an index offering every required platform."""
        image = f"{SERVICE}/{repo}:{tag}"
        headers = {
            "Authorization": f"Bearer {self.token(repo)}",
            "Accept": ", ".join(INDEX_TYPES),
        }
        url = f"{self.base}/v2/{repo}/manifests/{urllib.parse.quote(tag)}"
        body, response_headers = self._get(url, headers, image)
        computed = "sha256:" + hashlib.sha256(body).hexdigest()
        announced = response_headers.get("Docker-Content-Digest")
        if announced is not None and announced != computed:
            raise RefreshError(
                f"{image}: Docker-Content-Digest {announced} does not match the manifest's"
                f" own digest {computed}"
            )
        try:
            manifest = json.loads(body)
        except ValueError:
            raise RefreshError(f"{image}: the manifest is not JSON") from None
        if not isinstance(manifest, dict):
            raise RefreshError(f"{image}: the manifest is not a JSON object")
        media_type = manifest.get("mediaType") or (
            response_headers.get("Content-Type", "").split(";")[0].strip()
        )
        if media_type not in INDEX_TYPES or not isinstance(manifest.get("manifests"), list):
            raise RefreshError(
                f"{image}: not a multi-architecture index (media type {media_type or 'unknown'});"
                " refusing to pin a single-architecture image"
            )
        offered = {
            (str(entry["platform"].get("os")), str(entry["platform"].get("architecture")))
            for entry in manifest["manifests"]
            if isinstance(entry, dict) and isinstance(entry.get("platform"), dict)
        }
        missing = [
            f"{os_}/{arch}" for os_, arch in REQUIRED_PLATFORMS if (os_, arch) not in offered
        ]
        if missing:
            raise RefreshError(f"{image}: the index offers no {', '.join(missing)}")
        return computed


def dockerfiles(root: Path) -> list[Path]:
    return sorted((root / "services").glob("*/Dockerfile"))


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def refresh(root: Path, registry: Registry, *, check: bool, out: TextIO | None = None) -> int:
    """Look every pin up, then report (check) or rewrite every stale digest. Returns the exit."""
    out = out or sys.stdout
    files = dockerfiles(root)
    pins = find_pins(files)
    if not pins:
        raise RefreshError(
            f"no FROM {SERVICE}/<repository>:<tag>@sha256:<digest> line in"
            f" {_rel(root / 'services', root)}/*/Dockerfile"
        )
    current: dict[tuple[str, str], str] = {}
    for pin in pins:  # every lookup first: a failure here leaves every file untouched
        key = (pin.repo, pin.tag)
        if key not in current:
            current[key] = registry.index_digest(pin.repo, pin.tag)
    stale = [pin for pin in pins if current[(pin.repo, pin.tag)] != pin.digest]
    for pin in pins:
        new = current[(pin.repo, pin.tag)]
        state = "current" if new == pin.digest else f"stale, registry has {new}"
        print(f"{_rel(pin.dockerfile, root)}: {pin.image}@{pin.digest} {state}", file=out)
    if check:
        return 1 if stale else 0
    _rewrite(stale, current)
    if stale:
        print(f"updated {len({pin.dockerfile for pin in stale})} Dockerfile(s)", file=out)
    return 0


def _rewrite(stale: Sequence[Pin], current: dict[tuple[str, str], str]) -> None:
    """Write every changed Dockerfile through a temporary file, then move them all in place."""
    by_file: dict[Path, list[Pin]] = {}
    for pin in stale:
        by_file.setdefault(pin.dockerfile, []).append(pin)
    staged: list[tuple[Path, Path]] = []
    try:
        for path, file_pins in by_file.items():
            text = path.read_text(encoding="utf-8")
            for pin in sorted(file_pins, key=lambda p: p.start, reverse=True):
                new_hex = current[(pin.repo, pin.tag)].removeprefix("sha256:")
                text = text[: pin.start] + new_hex + text[pin.end :]
            temporary = path.with_name(f".{path.name}.refresh")
            temporary.write_text(text, encoding="utf-8")
            staged.append((temporary, path))
        for temporary, path in staged:
            os.replace(temporary, path)
    except OSError as error:
        raise RefreshError(f"cannot write the Dockerfiles: {error}") from None
    finally:
        for temporary, _ in staged:
            temporary.unlink(missing_ok=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="refresh_base_images.py",
        description="Refresh the sha256 pins of the services' ECR Public base images.",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="only report whether every pin is current (exit 1 if one is stale)",
    )
    parser.add_argument(
        "--registry",
        default=os.environ.get(REGISTRY_ENV, DEFAULT_REGISTRY),
        help=f"registry base URL (default: ${REGISTRY_ENV} or {DEFAULT_REGISTRY})",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds per registry request (default: {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.timeout <= 0:
            raise RefreshError("--timeout must be positive")
        return refresh(args.root, Registry(args.registry, args.timeout), check=args.check)
    except RefreshError as error:
        print(f"refresh_base_images: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
