"""The README's configuration table matches the context keys the app reads."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from stacks.config import RETIRED_KEYS, AppConfig
from tests.infra.conftest import example_context

ROOT = Path(__file__).resolve().parents[2]


def _keys_read_by_the_app() -> set[str]:
    context = example_context()
    read: set[str] = set()

    def get(key: str) -> Any:
        read.add(key)
        return context.get(key)

    AppConfig.from_context(get)
    return read - set(RETIRED_KEYS)  # asked for only to refuse them


def _documented_keys() -> set[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Configuration (CDK context)", 1)[1].split("\n## ", 1)[0]
    keys: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            keys.update(re.findall(r"`([a-z_]+)`", line.split("|")[1]))
    return keys


def test_every_context_key_is_documented_and_every_documented_key_is_read() -> None:
    assert _documented_keys() == _keys_read_by_the_app()


def test_example_context_sets_only_known_keys() -> None:
    project_keys = {k for k in example_context() if not k.startswith("@aws-cdk") and ":" not in k}
    assert project_keys <= _keys_read_by_the_app()
