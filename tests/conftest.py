"""Shared test settings. Kept free of CDK imports: tests/services also run on the image's Python.

Two session-wide duties:
- moto runs as this project runs it everywhere (devstack/moto_fixes.py says why);
- when the threat-model check runs, every test the threat model names must run in the same
  session and pass, or the session fails (tests/threat_model.py).
"""

from __future__ import annotations

from collections import defaultdict

import pytest

from devstack import moto_fixes
from tests import threat_model

_outcomes: dict[str, set[str]] = defaultdict(set)
_checking: list[bool] = []


def pytest_configure(config: pytest.Config) -> None:
    moto_fixes.apply()


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    _checking[:] = [any(item.nodeid == threat_model.CHECK for item in items)]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" or report.outcome != "passed":
        _outcomes[threat_model.base_id(report.nodeid)].add(report.outcome)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not (_checking and _checking[0]):
        return
    unproven = sorted(
        test for test in threat_model.named_tests() if _outcomes.get(test, set()) != {"passed"}
    )
    if unproven:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        lines = [
            f"threat model: {len(unproven)} named test(s) did not run and pass in this session "
            "(run the whole suite):",
            *(f"  {test}: {sorted(_outcomes.get(test, set())) or 'not run'}" for test in unproven),
        ]
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line("\n".join(lines), red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
