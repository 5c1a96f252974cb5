"""Static checks of the container images (no Docker daemon here: the files are read)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.dockerfile import instructions

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("agent", "binder")


def _instructions(service: str) -> list[tuple[str, str]]:
    return instructions(ROOT / "services" / service / "Dockerfile")


@pytest.mark.parametrize("service", SERVICES)
def test_image_is_slim_pinned_and_non_root(service: str) -> None:
    instructions = _instructions(service)
    (base,) = [rest for keyword, rest in instructions if keyword == "FROM"]
    # The Docker official image from its ECR Public mirror, tag kept for readers, pinned by
    # digest (tests/infra/test_base_images.py checks the rest of the pin).
    assert re.fullmatch(
        r"public\.ecr\.aws/docker/library/python:3\.\d+-slim(-\w+)?@sha256:[0-9a-f]{64}", base
    ), base
    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users
    assert users[-1].split(":")[0] not in ("root", "0")
    assert any(keyword == "HEALTHCHECK" for keyword, _ in instructions)
    assert instructions[-1][0] == "CMD"
    # The USER switch comes after every RUN: nothing runs as root at run time.
    last_run = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "RUN")
    first_user = min(i for i, (keyword, _) in enumerate(instructions) if keyword == "USER")
    assert first_user > last_run


@pytest.mark.parametrize("service", SERVICES)
def test_no_build_time_secrets(service: str) -> None:
    for keyword, rest in _instructions(service):
        if keyword in ("ARG", "ENV"):
            assert not re.search(r"(?i)(secret|token|password|key)", rest), rest
        assert "--mount=type=secret" not in rest


def test_both_images_use_the_same_python() -> None:
    bases = {
        next(rest for keyword, rest in _instructions(service) if keyword == "FROM")
        for service in SERVICES
    }
    assert len(bases) == 1
