"""A stage's audit trail as `history` reads it: the records still visible and those hidden behind a delete marker.

The bucket policy denies deleting audit records to everyone but the stage's break-glass role; a record hidden by a
delete marker anyway (before that policy, or by that role) keeps its bytes as a noncurrent object version, which is
read and reported (`deleted`), never silently dropped.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from mlinfra.aws import error_code
from mlinfra.registry.store import StageRegistry
from mlinfra_infra import layout


def audit_trail(registry: StageRegistry, model: str) -> tuple[list[dict[str, Any]], bool]:
    """Every audit record of `model`, those hidden behind a delete marker too (each marked `deleted`).

    The second value is False when the object versions could not be listed (a role without
    s3:ListBucketVersions): only the records still visible are returned then.
    """
    records = registry.audit_records(model)
    try:
        hidden = _hidden_audit(registry, model)
    except Exception as exc:
        if error_code(exc) in {"AccessDenied", "403"}:
            return records, False
        raise
    return records + hidden, True


def _hidden_audit(registry: StageRegistry, model: str) -> list[dict[str, Any]]:
    markers: dict[str, Any] = {}
    kept: dict[str, list[dict[str, Any]]] = {}
    paginator = registry.s3.get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket=registry.bucket, Prefix=layout.audit_prefix(model)):
        for marker in page.get("DeleteMarkers", []):
            if marker.get("IsLatest"):
                markers[str(marker["Key"])] = marker
        for version in page.get("Versions", []):
            kept.setdefault(str(version["Key"]), []).append(version)
    found: list[dict[str, Any]] = []
    for key, marker in sorted(markers.items()):
        versions = sorted(kept.get(key, []), key=lambda v: v["LastModified"], reverse=True)
        if not versions:
            continue  # deleted for good: nothing left to read
        body = registry.s3.get_object(Bucket=registry.bucket, Key=key, VersionId=versions[0]["VersionId"])[
            "Body"
        ].read()
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            continue
        if isinstance(data, dict):
            when = marker.get("LastModified")
            deleted = {"key": key, "time": when.isoformat() if isinstance(when, datetime) else str(when)}
            found.append({**data, "deleted": deleted})
    return found
