"""cfn-lint and checkov on the synthesized templates (the same assembly the other tests read)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.infra.assembly import Synthesized

ROOT = Path(__file__).resolve().parents[2]


def _templates(synth: Synthesized) -> list[str]:
    return sorted(str(p) for p in synth.outdir.glob("*.template.json"))


def test_cfn_lint_reports_no_errors_or_warnings(synth: Synthesized) -> None:
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    result = subprocess.run(
        [str(cfn_lint), "--format", "parseable", *_templates(synth)],
        cwd=ROOT,  # picks up .cfnlintrc.yaml
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.stdout.strip() == "", result.stdout
    assert result.returncode == 0, result.stderr


def _checkov() -> str:
    path = os.environ.get("CHECKOV") or shutil.which("checkov")
    default = ROOT / ".venv-checkov" / "bin" / "checkov"
    if not path and default.exists():
        path = str(default)
    if not path:
        pytest.fail("checkov not found: run `make test` (it installs .venv-checkov)")
    return path


def _checkov_failures(synth: Synthesized) -> set[tuple[str, str]]:
    result = subprocess.run(
        [
            _checkov(),
            "--directory",
            str(synth.outdir),
            "--framework",
            "cloudformation",
            "--skip-download",
            "--quiet",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
    )
    assert result.returncode in (0, 1), result.stderr[-2000:]
    reports: Any = json.loads(result.stdout) if result.stdout.strip() else []
    if isinstance(reports, dict):
        reports = [reports]
    failures: set[tuple[str, str]] = set()
    for report in reports:
        summary = report.get("summary", {})
        assert summary.get("parsing_errors", 0) == 0, summary
        assert summary.get("passed", 0) > 100, "checkov must actually have checked the templates"
        for failed in report["results"]["failed_checks"]:
            failures.add((failed["check_id"], failed["resource"].split(".", 1)[1]))
    return failures


def test_checkov_finds_nothing_beyond_the_reasoned_skips(synth: Synthesized) -> None:
    skips = yaml.safe_load((ROOT / "checkov-skips.yaml").read_text())["skips"]
    for skip in skips:
        assert len(skip["reason"]) >= 60, f"{skip['check']} needs a specific reason"
    failures = _checkov_failures(synth)

    def skipped(check: str, resource: str) -> bool:
        return any(
            s["check"] == check and any(resource.startswith(p) for p in s["resources"])
            for s in skips
        )

    unexplained = sorted(f for f in failures if not skipped(*f))
    assert unexplained == [], "fix these resources, or add a reasoned entry to checkov-skips.yaml"
    stale = [
        (s["check"], prefix)
        for s in skips
        for prefix in s["resources"]
        if not any(c == s["check"] and r.startswith(prefix) for c, r in failures)
    ]
    assert stale == [], "these checkov-skips.yaml entries match nothing any more: remove them"


def test_dockerfiles_pass_checkov() -> None:
    result = subprocess.run(
        [
            _checkov(),
            "--directory",
            str(ROOT / "services"),
            "--framework",
            "dockerfile",
            "--skip-download",
            "--quiet",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [f["check_id"] for r in reports for f in r["results"]["failed_checks"]]
    passed = sum(r["summary"]["passed"] for r in reports)
    assert failed == []
    assert passed >= 20
