"""Shared test settings. Kept free of CDK imports: tests/services also run on the image's Python."""

from devstack import moto_fixes


def pytest_configure(config: object) -> None:
    """moto as this project runs it everywhere (devstack/moto_fixes.py says why)."""
    moto_fixes.apply()
