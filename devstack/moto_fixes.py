"""Fixes applied to moto wherever this project runs it (unit tests, moto server).

moto 5.2's `update_secret_version_stage` moves the `AWSCURRENT` label but leaves the secret's
`default_version_id` behind, so a `GetSecretValue` without `VersionStage` (the AWS CLI,
`tools/vault_admin.py`, the load run's checks) keeps returning the value from before the move,
unlike Secrets Manager. The binder writes every vault record by moving `AWSCURRENT` (a
compare-and-swap, see services/binder/binder/vault.py), so without this fix such readers see
stale tokens locally. The binder itself always reads by label and does not depend on it.
"""

from __future__ import annotations

from typing import Any

_APPLIED = False


def apply() -> None:
    """Patch moto in this process (idempotent)."""
    global _APPLIED
    if _APPLIED:
        return
    from moto.secretsmanager.models import SecretsManagerBackend

    original = SecretsManagerBackend.update_secret_version_stage

    def update_secret_version_stage(
        self: Any,
        secret_id: str,
        version_stage: str,
        remove_from_version_id: str,
        move_to_version_id: str,
    ) -> tuple[str, str]:
        result: tuple[str, str] = original(
            self, secret_id, version_stage, remove_from_version_id, move_to_version_id
        )
        if version_stage == "AWSCURRENT" and move_to_version_id:
            self.secrets[secret_id].default_version_id = move_to_version_id
        return result

    SecretsManagerBackend.update_secret_version_stage = update_secret_version_stage  # type: ignore[method-assign]
    _APPLIED = True
