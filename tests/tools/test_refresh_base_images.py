"""tools/refresh_base_images.py against a fake OCI registry on 127.0.0.1.

The fake speaks the part of the distribution API the tool uses on ECR Public: an anonymous
pull token from /token/, then /v2/<repository>/manifests/<tag> with a bearer token, answering
with the manifest and its Docker-Content-Digest.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tools import refresh_base_images

ROOT = Path(__file__).resolve().parents[2]
REPO = "docker/library/python"
TAG = "3.13-slim-bookworm"
TOKEN = "fake-pull-token"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _index(*platforms: tuple[str, str], media_type: str = OCI_INDEX) -> bytes:
    entries = [
        {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": "sha256:" + hashlib.sha256(f"{os_}/{arch}".encode()).hexdigest(),
            "size": 1234,
            "platform": {"os": os_, "architecture": arch}
            | ({"variant": "v8"} if arch == "arm64" else {}),
        }
        for os_, arch in platforms
    ]
    attestation = {  # what Docker's official images list next to each platform
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": "sha256:" + "0" * 64,
        "size": 840,
        "platform": {"os": "unknown", "architecture": "unknown"},
    }
    document = {"schemaVersion": 2, "mediaType": media_type, "manifests": [*entries, attestation]}
    return json.dumps(document).encode()


MULTI_ARCH = _index(("linux", "amd64"), ("linux", "arm64"), ("linux", "386"))


def _digest(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


@dataclass
class Answer:
    body: bytes = MULTI_ARCH
    content_type: str = OCI_INDEX
    status: int = 200
    digest_header: str | None = None  # default: the body's real digest
    delay: float = 0.0


@dataclass
class FakeRegistry:
    url: str
    manifests: dict[tuple[str, str], Answer] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        registry = self.server.registry
        registry.requests.append(self.path)
        url = urlsplit(self.path)
        if url.path == "/token/":
            query = parse_qs(url.query)
            scope = query.get("scope", [""])[0]
            if query.get("service") != ["public.ecr.aws"] or not scope.endswith(":pull"):
                self._send(400, b"{}", {})
                return
            self._send(200, json.dumps({"token": TOKEN}).encode(), {})
            return
        if not url.path.startswith("/v2/") or "/manifests/" not in url.path:
            self._send(404, b"{}", {})
            return
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._send(401, b"{}", {})
            return
        accept = self.headers.get("Accept", "")
        assert OCI_INDEX in accept
        assert DOCKER_LIST in accept
        repo, _, tag = url.path.removeprefix("/v2/").partition("/manifests/")
        answer = registry.manifests.get((repo, tag))
        if answer is None:
            self._send(404, b'{"errors": [{"code": "MANIFEST_UNKNOWN"}]}', {})
            return
        time.sleep(answer.delay)
        headers = {
            "Content-Type": answer.content_type,
            "Docker-Content-Digest": answer.digest_header or _digest(answer.body),
        }
        self._send(answer.status, answer.body, headers)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    registry: FakeRegistry


@pytest.fixture
def registry() -> Iterator[FakeRegistry]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.registry = FakeRegistry(url=f"http://127.0.0.1:{server.server_address[1]}")
    server.registry.manifests[(REPO, TAG)] = Answer()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.registry
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the services' Dockerfiles, as the tool finds them under a project root."""
    for dockerfile in refresh_base_images.dockerfiles(ROOT):
        target = tmp_path / "services" / dockerfile.parent.name / "Dockerfile"
        target.parent.mkdir(parents=True)
        shutil.copyfile(dockerfile, target)
    return tmp_path


def _files(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): p.read_text() for p in sorted(root.glob("services/*/Dockerfile"))
    }


def _run(root: Path, registry: FakeRegistry, *args: str) -> int:
    return refresh_base_images.main(
        ["--registry", registry.url, "--root", str(root), "--timeout", "5", *args]
    )


def _pinned(root: Path) -> set[str]:
    return {pin.digest for pin in refresh_base_images.find_pins(root.glob("services/*/Dockerfile"))}


def test_refresh_rewrites_every_digest_from_the_registry(
    tree: Path, registry: FakeRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _files(tree)
    assert len(before) == 2
    (old,) = _pinned(tree)
    new = _digest(MULTI_ARCH)
    assert old != new

    assert _run(tree, registry) == 0

    assert _pinned(tree) == {new}
    for name, text in _files(tree).items():
        # Only the digest changed: the tag stays next to it, everything else is byte-identical.
        assert text == before[name].replace(old, new)
        assert f"public.ecr.aws/{REPO}:{TAG}@{new}" in text
    # One token and one manifest lookup for the one image both services share.
    assert [r.split("?")[0] for r in registry.requests] == [
        "/token/",
        f"/v2/{REPO}/manifests/{TAG}",
    ]
    assert "updated 2 Dockerfile(s)" in capsys.readouterr().out
    assert not list(tree.rglob(".*.refresh"))


def test_check_reports_without_writing(
    tree: Path, registry: FakeRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _files(tree)
    assert _run(tree, registry, "--check") == 1
    assert _files(tree) == before
    out = capsys.readouterr().out
    assert out.count("stale, registry has " + _digest(MULTI_ARCH)) == 2

    assert _run(tree, registry) == 0
    capsys.readouterr()
    assert _run(tree, registry, "--check") == 0
    assert capsys.readouterr().out.count(" current") == 2


def test_a_docker_manifest_list_is_accepted(tree: Path, registry: FakeRegistry) -> None:
    body = _index(("linux", "arm64"), ("linux", "amd64"), media_type=DOCKER_LIST)
    registry.manifests[(REPO, TAG)] = Answer(body=body, content_type=DOCKER_LIST)
    assert _run(tree, registry) == 0
    assert _pinned(tree) == {_digest(body)}


def _assert_refused(
    tree: Path, registry: FakeRegistry, capsys: pytest.CaptureFixture[str], *words: str
) -> None:
    before = _files(tree)
    assert _run(tree, registry) == 2
    assert _files(tree) == before
    captured = capsys.readouterr()
    assert captured.out == ""
    error = captured.err
    assert error.count("\n") == 1, error  # one line, no stack trace
    assert error.startswith("refresh_base_images: ")
    assert "Traceback" not in error
    for word in words:
        assert word in error, error


def test_a_single_architecture_manifest_is_refused(
    tree: Path, registry: FakeRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    single = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json"},
            "layers": [],
        }
    ).encode()
    registry.manifests[(REPO, TAG)] = Answer(body=single, content_type=OCI_MANIFEST)
    _assert_refused(tree, registry, capsys, "not a multi-architecture index", "single-arch")


def test_an_index_without_arm64_is_refused(
    tree: Path, registry: FakeRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    registry.manifests[(REPO, TAG)] = Answer(body=_index(("linux", "amd64")))
    _assert_refused(tree, registry, capsys, "linux/arm64")


def test_one_failed_lookup_leaves_every_dockerfile_untouched(
    tree: Path, registry: FakeRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    # The binder moves to a tag the registry does not have; the agent's lookup succeeds first.
    binder = tree / "services" / "binder" / "Dockerfile"
    binder.write_text(binder.read_text().replace(f":{TAG}@", ":3.13-slim-nonexistent@"))
    _assert_refused(tree, registry, capsys, "3.13-slim-nonexistent", "HTTP 404")
    assert f"/v2/{REPO}/manifests/{TAG}" in registry.requests  # the agent's was looked up


def test_a_digest_header_that_does_not_match_the_manifest_is_refused(
    tree: Path, registry: FakeRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    registry.manifests[(REPO, TAG)] = Answer(digest_header="sha256:" + "1" * 64)
    _assert_refused(tree, registry, capsys, "does not match")


def test_a_slow_registry_times_out(
    tree: Path, registry: FakeRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    registry.manifests[(REPO, TAG)] = Answer(delay=3)
    before = _files(tree)
    started = time.monotonic()
    code = refresh_base_images.main(
        ["--registry", registry.url, "--root", str(tree), "--timeout", "0.3"]
    )
    assert time.monotonic() - started < 2.5
    assert code == 2
    assert _files(tree) == before
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "timed out" in error or "no answer" in error, error


def test_an_unreachable_registry_is_one_line(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    closed = FakeRegistry(url="http://127.0.0.1:9")  # discard port: nothing listens
    _assert_refused(tree, closed, capsys, "cannot reach")


def test_the_registry_comes_from_the_environment(
    tree: Path, registry: FakeRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BASE_IMAGE_REGISTRY", registry.url)
    assert refresh_base_images.main(["--root", str(tree), "--check"]) == 1
    assert registry.requests


def test_plain_http_is_refused_off_loopback(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    remote = FakeRegistry(url="http://registry.example.com")
    _assert_refused(tree, remote, capsys, "https://")


def test_no_pinned_from_line_is_an_error(
    tmp_path: Path, registry: FakeRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    dockerfile = tmp_path / "services" / "agent" / "Dockerfile"
    dockerfile.parent.mkdir(parents=True)
    dockerfile.write_text("FROM python:3.13-slim-bookworm\n")
    _assert_refused(tmp_path, registry, capsys, "no FROM public.ecr.aws/")
    assert registry.requests == []
