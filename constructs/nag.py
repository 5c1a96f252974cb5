"""cdk-nag 3 acknowledgments, kept next to the resource they concern.

cdk-nag 3 reads CDK's native `Validations.of(construct).acknowledge(...)`; an acknowledgment
covers the construct and its children, so call this on the narrowest construct possible.
IDs use the `<pack>::<rule>[finding]` form that synthesis prints.
"""

from __future__ import annotations

from collections.abc import Iterable

from aws_cdk import Acknowledgment, Validations

from constructs import IConstruct


def acknowledge(construct: IConstruct, rule_ids: Iterable[str], reason: str) -> None:
    """Acknowledge `rule_ids` on `construct` with one specific reason (what and why)."""
    if len(reason) < 40:
        raise ValueError("an acknowledgment needs a specific reason: what, and why it cannot apply")
    Validations.of(construct).acknowledge(
        *(Acknowledgment(id=rule_id, reason=reason) for rule_id in rule_ids)
    )
