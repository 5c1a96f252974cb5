"""Every test docs/threat-model.md names exists (the page cannot drift from the suite)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _named_tests() -> set[tuple[str, str]]:
    text = (ROOT / "docs" / "threat-model.md").read_text()
    return set(re.findall(r"`([a-z_]+/test_[a-z_]+\.py)::(test_[a-z0-9_]+)`", text))


def _defined(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test_")
    }


def test_every_named_test_exists() -> None:
    named = _named_tests()
    assert len(named) >= 50
    missing = [
        f"{file}::{name}"
        for file, name in sorted(named)
        if not (ROOT / "tests" / file).exists() or name not in _defined(ROOT / "tests" / file)
    ]
    assert missing == []


def test_every_threat_of_the_design_brief_is_covered() -> None:
    text = (ROOT / "docs" / "threat-model.md").read_text().lower()
    for threat in (
        "browser swapping",
        "csrf on the callback",
        "login csrf",
        "code injection",
        "state replay",
        "mix-up",
        "open redirect",
        "pkce downgrade",
        "expired or unknown session",
        "alg: none",
        "wrong",
        "cross-user token leakage",
        "logs",
        "refresh race",
    ):
        assert threat in text, threat
