"""What the bootstrap components share: their tags and child options."""

from __future__ import annotations

import json
from typing import Any

import pulumi

from mlinfra_infra.bootstrap import names

BOOTSTRAP_MANAGED_BY = names.MANAGED_BY  # never `mlinfra`: the deploy roles' tag conditions must not match these


def tags(owner: str, stage: str | None = None) -> dict[str, str]:
    """The bootstrap's tags: owner, managed-by mlinfra-bootstrap, and the stage a per-stage resource serves."""
    out = {"owner": owner, "managed-by": BOOTSTRAP_MANAGED_BY}
    if stage is not None:
        out["stage"] = stage
    return out


def child(parent: pulumi.Resource, provider: pulumi.ProviderResource | None, **extra: Any) -> pulumi.ResourceOptions:
    """Options of a child resource: its parent, and the provider of the account it lives in."""
    return pulumi.ResourceOptions(parent=parent, provider=provider, **extra)


def to_json(document: dict[str, Any]) -> str:
    """A policy document as the JSON text IAM, S3 and KMS take (stable key order)."""
    return json.dumps(document, sort_keys=False)
