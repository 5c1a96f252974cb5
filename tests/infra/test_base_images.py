"""The container images' base and scratch space, read statically (no Docker daemon here).

- every FROM is the Docker official image's ECR Public mirror, tag and index digest pinned,
  the same base for both services, and a line tools/refresh_base_images.py can refresh;
- the Makefile still derives the images' Python version from the new FROM form.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tools.refresh_base_images import dockerfiles, find_pins

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = dockerfiles(ROOT)
PINNED = re.compile(
    r"public\.ecr\.aws/docker/library/(?P<image>[a-z0-9-]+):(?P<tag>[\w][\w.-]*)"
    r"@sha256:[0-9a-f]{64}"
)


def _instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def _from_images(path: Path) -> list[str]:
    stages: set[str] = set()
    images = []
    for keyword, rest in _instructions(path):
        if keyword != "FROM":
            continue
        words = [w for w in rest.split() if not w.startswith("--platform=")]
        if words[0] not in stages:  # a FROM of an earlier stage pulls nothing
            images.append(words[0])
        if len(words) == 3 and words[1].upper() == "AS":
            stages.add(words[2])
    return images


def test_both_services_have_a_dockerfile() -> None:
    assert [p.parent.name for p in DOCKERFILES] == ["agent", "binder"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_every_base_is_the_ecr_public_mirror_pinned_by_tag_and_digest(dockerfile: Path) -> None:
    images = _from_images(dockerfile)
    assert images
    for image in images:
        assert PINNED.fullmatch(image), f"{dockerfile}: {image} is not image:tag@sha256:digest"
    # ... and the refresh tool sees every one of them.
    refreshable = [f"public.ecr.aws/{p.repo}:{p.tag}@{p.digest}" for p in find_pins([dockerfile])]
    assert refreshable == images


def test_both_services_use_the_same_base() -> None:
    bases = {image for path in DOCKERFILES for image in _from_images(path)}
    assert len(bases) == 1, bases


def test_makefile_reads_the_images_python_from_the_pinned_from_line() -> None:
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    result = subprocess.run(
        [
            make,
            "--no-print-directory",
            "-s",
            "--eval",
            "print-image-py-version: ; @echo $(IMAGE_PY_VERSION)",
            "print-image-py-version",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    (pin,) = {(p.repo, p.tag) for p in find_pins(DOCKERFILES)}
    expected = re.match(r"\d+\.\d+", pin[1])
    assert expected is not None
    assert result.stdout.strip() == expected.group(0)
