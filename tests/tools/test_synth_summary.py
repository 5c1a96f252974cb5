"""The `make synth` summary passes only a clean, fully reasoned compliance report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tools import synth_summary

REASON = "A specific reason that says what is acknowledged and why it cannot apply here."


def _assembly(
    tmp_path: Path,
    *,
    violations: list[dict[str, Any]] | None = None,
    suppressed: list[dict[str, Any]] | None = None,
    acknowledged: dict[str, str] | None = None,
) -> Path:
    template = {
        "Resources": {"A": {"Type": "AWS::S3::Bucket"}, "M": {"Type": "AWS::CDK::Metadata"}}
    }
    (tmp_path / "S.template.json").write_text(json.dumps(template))
    manifest = {
        "artifacts": {
            "S": {
                "type": "aws:cloudformation:stack",
                "properties": {"templateFile": "S.template.json"},
            }
        }
    }
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    report = {
        "pluginReports": [
            {
                "pluginName": "AwsSolutions",
                "violations": violations or [],
                "suppressedViolations": suppressed or [],
            }
        ]
    }
    (tmp_path / "validation-report.json").write_text(json.dumps(report))
    metadata = {
        "/S/B": [
            {"type": "aws:cdk:acknowledged-rules", "data": {k: v}}
            for k, v in (acknowledged or {}).items()
        ]
    }
    (tmp_path / "S.metadata.json").write_text(json.dumps(metadata))
    return tmp_path


def _suppressed(reason: str = REASON) -> dict[str, Any]:
    return {
        "ruleName": "AwsSolutions-S1",
        "violatingConstructs": [{"constructPath": "S/B/Resource"}],
        "acknowledgedId": "AwsSolutions::AwsSolutions-S1",
        "acknowledgedAt": "S/B",
        "reason": reason,
    }


def test_clean_report_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = _assembly(
        tmp_path,
        suppressed=[_suppressed()],
        acknowledged={"AwsSolutions::AwsSolutions-S1": REASON},
    )
    assert synth_summary.main([str(out)]) == 0
    text = capsys.readouterr().out
    assert "S  " in text
    assert "1 resources" in text
    assert "synth: PASS" in text


def test_unacknowledged_finding_fails_and_is_listed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    violation = {"ruleName": "AwsSolutions-S10", "violatingConstructs": [{"constructPath": "S/X"}]}
    assert synth_summary.main([str(_assembly(tmp_path, violations=[violation]))]) == 1
    text = capsys.readouterr().out
    assert "AwsSolutions-S10  at S/X" in text
    assert "synth: FAIL" in text


def test_vague_reason_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = _assembly(
        tmp_path,
        suppressed=[_suppressed("not needed")],
        acknowledged={"AwsSolutions::AwsSolutions-S1": "not needed"},
    )
    assert synth_summary.main([str(out)]) == 1
    assert "without a specific reason" in capsys.readouterr().out


def test_stale_acknowledgment_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = _assembly(tmp_path, acknowledged={"AwsSolutions::AwsSolutions-S2": REASON})
    assert synth_summary.main([str(out)]) == 1
    assert "stale acknowledgments" in capsys.readouterr().out


def test_failed_cdk_run_fails_even_with_a_clean_report(tmp_path: Path) -> None:
    assert synth_summary.main([str(_assembly(tmp_path)), "--cdk-exit", "1"]) == 1


def test_missing_assembly_fails_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert synth_summary.main([str(tmp_path / "nothing")]) == 1
    assert "no cloud assembly" in capsys.readouterr().out
