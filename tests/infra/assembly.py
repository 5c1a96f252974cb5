"""The synthesized cloud assembly, as the infrastructure tests read it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Synthesized:
    outdir: Path
    templates: dict[str, dict[str, Any]]
    manifest: dict[str, Any]
    report: dict[str, Any]

    def stack(self, suffix: str) -> dict[str, Any]:
        (name,) = [n for n in self.templates if n.endswith(suffix)]
        return self.templates[name]

    def resources(self, type_: str, stack: str | None = None) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for name, template in self.templates.items():
            if stack and not name.endswith(stack):
                continue
            for logical_id, resource in template.get("Resources", {}).items():
                if resource["Type"] == type_:
                    found[logical_id] = resource
        return found
