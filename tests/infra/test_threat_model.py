"""docs/threat-model.md cannot drift from the suite.

Here: every threat row names at least one test, every named test exists, and every threat of the
design brief has its row. At the end of the session (tests/conftest.py): every named test ran in
the session and passed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests import threat_model

ROOT = Path(__file__).resolve().parents[2]


def _defined(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test_")
    }


def test_every_threat_row_names_tests_that_exist() -> None:
    rows = threat_model.rows()
    assert len(rows) >= 40
    assert [r.threat for r in rows if not r.tests] == []
    missing = []
    for test in sorted(threat_model.named_tests()):
        path, name = test.split("::")
        if not (ROOT / path).exists() or name not in _defined(ROOT / path):
            missing.append(test)
    assert missing == []


# Each threat the design brief names, and words that must appear in the threat cell of a row
# that covers it (so a row cannot be satisfied by a stray word elsewhere on the page).
DESIGN_BRIEF_THREATS = {
    "authorization-URL forwarding": ("browser swapping",),
    "CSRF on the callback": ("csrf on the callback",),
    "login CSRF": ("login csrf",),
    "code injection": ("code injection",),
    "state replay": ("state replay",),
    "mix-up": ("mix-up",),
    "open redirect via the return URL": ("open redirect",),
    "PKCE downgrade": ("pkce downgrade",),
    "expired or foreign sessions": ("expired or unknown session",),
    "JWT forgery: alg none": ("alg: none",),
    "JWT forgery: wrong key": ("another key",),
    "JWT: wrong iss/client_id": ("another issuer or app client",),
    "JWT: wrong token_use": ("id token used as access token",),
    "JWT: expired": ("expired or not-yet-valid token",),
    "cross-user token leakage under concurrency": ("cross-user token leakage",),
    "tokens leaking into logs": ("in logs",),
    "tokens leaking into error pages": ("error pages",),
    "refresh races that burn single-use refresh tokens": ("refresh race",),
}


@pytest.mark.parametrize("threat", sorted(DESIGN_BRIEF_THREATS))
def test_every_threat_of_the_design_brief_has_a_row_with_tests(threat: str) -> None:
    words = DESIGN_BRIEF_THREATS[threat]
    covering = [
        row
        for row in threat_model.rows()
        if all(word in row.threat.lower() for word in words) and row.tests
    ]
    assert covering, f"no row of docs/threat-model.md covers {threat!r} with tests"


def test_the_row_parser_reads_threat_tables_only() -> None:
    page = "\n".join(
        [
            "## Assets",
            "| asset | where | `binder/test_a.py::test_not_a_threat` |",
            "## Threats, mitigations and tests",
            "### Step 1",
            "| threat | mitigation | test |",
            "| --- | --- | --- |",
            "| forged thing (S) | a check | `binder/test_a.py::test_one`, "
            "`agent/test_b.py::test_two`, `binder/providers/test_c.py::test_three` |",
            "| untested thing (T) | hope | none |",
            "## Accepted risks",
        ]
    )
    rows = threat_model.rows(page)
    assert [(r.section, r.threat, r.tests) for r in rows] == [
        (
            "Step 1",
            "forged thing (S)",
            (
                "tests/binder/test_a.py::test_one",
                "tests/agent/test_b.py::test_two",
                "tests/binder/providers/test_c.py::test_three",
            ),
        ),
        ("Step 1", "untested thing (T)", ()),
    ]
