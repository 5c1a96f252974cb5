"""One-screen summary of a synthesized cloud assembly and its compliance report.

Usage: python tools/synth_summary.py CDK_OUT [--cdk-exit N]

Prints the stacks with their resource counts, then per validation plugin (the cdk-nag packs
and CDK's own annotations) the unacknowledged findings and the acknowledgments, then the
unacknowledged findings themselves. Exits 1 if synthesis failed or any finding, of any
severity, is unacknowledged.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_LISTED = 15


@dataclass
class PackResult:
    name: str
    findings: list[tuple[str, str]] = field(default_factory=list)  # (rule, construct path)
    acknowledged: list[tuple[str, str, str]] = field(default_factory=list)  # + reason


def read_stacks(out: Path) -> dict[str, int]:
    manifest = json.loads((out / "manifest.json").read_text())
    stacks: dict[str, int] = {}
    for name, artifact in manifest.get("artifacts", {}).items():
        if artifact.get("type") != "aws:cloudformation:stack":
            continue
        template = json.loads((out / artifact["properties"]["templateFile"]).read_text())
        resources = template.get("Resources", {})
        stacks[name] = sum(1 for r in resources.values() if r.get("Type") != "AWS::CDK::Metadata")
    return stacks


def read_report(out: Path) -> list[PackResult]:
    report: dict[str, Any] = json.loads((out / "validation-report.json").read_text())
    packs = []
    for plugin in report.get("pluginReports", []):
        result = PackResult(name=plugin.get("pluginName", "?"))
        for violation in plugin.get("violations", []):
            for construct in violation.get("violatingConstructs", []):
                result.findings.append((violation["ruleName"], construct["constructPath"]))
        for violation in plugin.get("suppressedViolations", []):
            for construct in violation.get("violatingConstructs", []):
                result.acknowledged.append(
                    (violation["ruleName"], construct["constructPath"], violation.get("reason", ""))
                )
        packs.append(result)
    return packs


def read_acknowledgments(out: Path) -> set[tuple[str, str]]:
    """Every (construct path, rule id) acknowledged in the app, from the stacks' metadata."""
    acks: set[tuple[str, str]] = set()
    for file in out.glob("*.metadata.json"):
        for path, entries in json.loads(file.read_text()).items():
            for entry in entries:
                if entry.get("type") == "aws:cdk:acknowledged-rules":
                    acks.update((path.lstrip("/"), rule) for rule in entry.get("data", {}))
    return acks


def used_acknowledgments(out: Path) -> set[tuple[str, str]]:
    report = json.loads((out / "validation-report.json").read_text())
    return {
        (v.get("acknowledgedAt", ""), v.get("acknowledgedId", ""))
        for plugin in report.get("pluginReports", [])
        for v in plugin.get("suppressedViolations", [])
    }


def render(
    stacks: dict[str, int],
    packs: list[PackResult],
    cdk_exit: int,
    stale: set[tuple[str, str]] | None = None,
) -> tuple[str, bool]:
    lines = [f"Stacks ({len(stacks)}, {sum(stacks.values())} resources)"]
    width = max((len(n) for n in stacks), default=10)
    lines += [f"  {name:<{width}}  {count:>4} resources" for name, count in stacks.items()]
    lines.append("")
    lines.append(f"  {'validation plugin':<24}{'unacknowledged':>16}{'acknowledged':>14}")
    for pack in packs:
        lines.append(f"  {pack.name:<24}{len(pack.findings):>16}{len(pack.acknowledged):>14}")
    rules = Counter(rule.split("[")[0] for pack in packs for rule, _, _ in pack.acknowledged)
    if rules:
        lines.append("")
        lines.append("  acknowledged rules (each with its reason next to the resource):")
        lines += [f"    {count:>3} x {rule}" for rule, count in sorted(rules.items())]
    findings = [(p.name, rule, path) for p in packs for rule, path in p.findings]
    weak = [(r, p) for pack in packs for r, p, reason in pack.acknowledged if len(reason) < 40]
    stale = stale or set()
    ok = cdk_exit == 0 and not findings and not weak and not stale and bool(stacks)
    if findings:
        lines.append("")
        lines.append("  unacknowledged findings (fix the resource, or acknowledge with a reason):")
        lines += [f"    {rule}  at {path}" for _, rule, path in findings[:MAX_LISTED]]
        if len(findings) > MAX_LISTED:
            lines.append(f"    ... and {len(findings) - MAX_LISTED} more")
    if weak:
        lines.append("")
        lines.append("  acknowledgments without a specific reason:")
        lines += [f"    {rule}  at {path}" for rule, path in weak[:MAX_LISTED]]
    if stale:
        lines.append("")
        lines.append("  stale acknowledgments (no finding left to acknowledge; remove them):")
        lines += [f"    {rule}  at {path}" for path, rule in sorted(stale)[:MAX_LISTED]]
    lines.append("")
    if ok:
        lines.append("synth: PASS (all packs clean or acknowledged with reasons)")
    elif cdk_exit != 0 and not findings:
        lines.append(f"synth: FAIL (cdk synth exited with {cdk_exit}; see its output above)")
    else:
        lines.append("synth: FAIL")
    return "\n".join(lines), ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--cdk-exit", type=int, default=0)
    args = parser.parse_args(argv)
    out: Path = args.out
    if not (out / "manifest.json").is_file():
        print(f"synth: FAIL (no cloud assembly in {out}; cdk exited with {args.cdk_exit})")
        return 1
    stacks = read_stacks(out)
    report = out / "validation-report.json"
    packs = read_report(out) if report.is_file() else []
    if not packs:
        print(f"synth: FAIL (no validation report in {out}: were the nag packs registered?)")
        return 1
    # Only acknowledgments of the registered plugins; CDK adds some of its own elsewhere.
    plugins = {pack.name for pack in packs}
    stale = {
        (path, rule)
        for path, rule in read_acknowledgments(out) - used_acknowledgments(out)
        if rule.split("::")[0] in plugins
    }
    text, ok = render(stacks, packs, args.cdk_exit, stale)
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
