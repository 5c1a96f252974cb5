"""docs/threat-model.md as data: its threat rows and the tests each one names.

Used twice: `tests/infra/test_threat_model.py` checks the page's shape and that every named test
exists; the hooks in `tests/conftest.py` check, at the end of a session that ran that test, that
every named test also ran in the session and passed (a named test that exists but is skipped,
deselected or failing proves nothing).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "threat-model.md"
CHECK = "tests/infra/test_threat_model.py::test_every_threat_row_names_tests_that_exist"
_TEST = re.compile(r"`([a-z_]+(?:/[a-z_]+)*/test_[a-z0-9_]+\.py)::(test_[a-z0-9_]+)`")


@dataclass(frozen=True)
class Row:
    section: str
    threat: str
    tests: tuple[str, ...]  # node IDs relative to the repository: tests/x/test_y.py::test_z


def rows(text: str | None = None) -> list[Row]:
    """Every row of the threat tables (the tables under "## Threats ..."), in page order."""
    text = PAGE.read_text() if text is None else text
    found: list[Row] = []
    section = ""
    in_threats = False
    for line in text.splitlines():
        if line.startswith("## "):
            in_threats = line.lower().startswith("## threats")
        elif line.startswith("### "):
            section = line[4:].strip()
        elif in_threats and line.startswith("|") and not _is_header(line):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            tests = tuple(f"tests/{path}::{name}" for path, name in _TEST.findall(cells[-1]))
            found.append(Row(section=section, threat=cells[0], tests=tests))
    return found


def named_tests(text: str | None = None) -> set[str]:
    return {test for row in rows(text) for test in row.tests}


def _is_header(line: str) -> bool:
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    return cells[0].startswith("threat") or all(set(c) <= {"-", ":"} for c in cells)


def base_id(nodeid: str) -> str:
    """A collected node ID without its parameters: tests/a.py::test_b[x] -> tests/a.py::test_b."""
    return nodeid.split("[", 1)[0]
