"""The container images' base and scratch space, read statically (no Docker daemon here).

- every FROM is the Docker official image's ECR Public mirror, tag and index digest pinned,
  the same base for both services, and a line tools/refresh_base_images.py can refresh;
- each image makes the task's scratch path world-writable (sticky) and then declares it a
  VOLUME: on Fargate the task's bind-mount volume is then a copy of that directory, not a
  root-owned 0755 one that UID 10001 cannot write. The path is the one the task definition
  mounts (constructs.hardened_service.SCRATCH_PATH);
- the Makefile still derives the images' Python version from the new FROM form.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from constructs.hardened_service import SCRATCH_PATH
from tests.dockerfile import instructions
from tools.refresh_base_images import dockerfiles, find_pins

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = dockerfiles(ROOT)
PINNED = re.compile(
    r"public\.ecr\.aws/docker/library/(?P<image>[a-z0-9-]+):(?P<tag>[\w][\w.-]*)"
    r"@sha256:[0-9a-f]{64}"
)


def _from_images(path: Path) -> list[str]:
    stages: set[str] = set()
    images = []
    for keyword, rest in instructions(path):
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


def _volumes(rest: str) -> list[str]:
    if rest.startswith("["):
        paths: list[str] = json.loads(rest)
        return paths
    return rest.split()


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_scratch_path_is_writable_by_the_task_user_and_declared_a_volume(
    dockerfile: Path,
) -> None:
    steps = instructions(dockerfile)
    volumes = [
        (index, path)
        for index, (keyword, rest) in enumerate(steps)
        if keyword == "VOLUME"
        for path in _volumes(rest)
    ]
    assert [path for _, path in volumes] == [SCRATCH_PATH]
    (volume_at, _) = volumes[0]
    path = re.escape(SCRATCH_PATH)
    # World-writable with the sticky bit, or owned by the task user and private to it.
    mode_set = re.compile(
        rf"chmod\s+1777\s+{path}(?!\S)"
        rf"|chown\s+10001(:10001)?\s+{path}(?!\S).*chmod\s+0?700\s+{path}(?!\S)"
    )
    runs = [(i, rest) for i, (keyword, rest) in enumerate(steps) if keyword == "RUN"]
    assert any(mode_set.search(rest) for i, rest in runs if i < volume_at), (
        f"{dockerfile}: no RUN sets the mode of {SCRATCH_PATH} before VOLUME"
    )
    # Changes to a volume's path after VOLUME are discarded at build time.
    assert not [rest for i, rest in runs if i > volume_at and SCRATCH_PATH in rest]


def test_makefile_reads_the_images_python_from_the_pinned_from_line() -> None:
    make = shutil.which("make")
    assert make is not None, "make runs every entry point of the project (README)"
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
