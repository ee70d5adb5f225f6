"""The registry's records, each with one type and one builder: the pin, the stage pointer and its deployment.

Every path that writes one of these (register, promote, rollback, a pull request's branch, a recorded deployment,
local mode) calls the builder here, so a field cannot be dropped on one path and kept on another: a pin built
without the handler layout would start a container that cannot load its model.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlinfra.registry.store import Stored, parse_time


class Deployment(BaseModel):
    """The `deployed` block of a stage pointer: the version the last recorded apply deployed, and since when.

    `since` is the first recorded deployment of this version in a row (re-applying it keeps the clock); `commit`
    and `runUrl` name the apply that first deployed it.
    """

    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)

    schema_version: int = Field(default=1, alias="schemaVersion")
    version: int
    digest: str
    since: str
    commit: str | None = None
    run_url: str | None = Field(default=None, alias="runUrl")

    def to_json(self) -> dict[str, Any]:
        """As stored in the pointer and printed by `status --json`."""
        return self.model_dump(mode="json", by_alias=True)

    def hours(self) -> float:
        """How long it has been deployed, in hours."""
        return (datetime.now(UTC) - parse_time(self.since)).total_seconds() / 3600


def deployed_of(pointer: Stored | None) -> Deployment | None:
    """The deployment a stage pointer carries, None when none was recorded (or the block is unreadable)."""
    block = pointer.data.get("deployed") if pointer is not None else None
    if not isinstance(block, dict):
        return None
    try:
        return Deployment.model_validate(block)
    except ValidationError:
        return None


def pin_of(record: dict[str, Any], artifact: str) -> dict[str, Any]:
    """The pin of a version in a stage's stack file: what the stage's Model runs, from the version record.

    `artifact` is the stage registry's URI of the version's model.tar.gz. The handler layout (where the container
    finds the inference code) travels with the pin: without it the framework containers fall back to their
    default handler and the endpoint never starts.
    """
    pin = {"version": record["version"], "digest": record["digest"], "image": record["image"], "artifact": artifact}
    if record.get("handler"):
        pin["handler"] = record["handler"]
    return pin


def pointer_of(
    model: str, stage: str, record: dict[str, Any], audit: dict[str, Any], expected: Stored | None
) -> dict[str, Any]:
    """The stage pointer after an action commits `record` (the version) with its audit record.

    The deployment recorded by the last apply stays until the next one (mlinfra.registry.deployments).
    """
    return {
        "model": model,
        "stage": stage,
        "version": record["version"],
        "digest": record["digest"],
        "since": audit["time"],
        "record": audit,
        "deployed": expected.data.get("deployed") if expected else None,
    }


class VersionRecord(BaseModel):
    """A registered version, as stored in models/<model>/versions/<n>.json; what `mlinfra.register` returns.

    Fields keep the stored camelCase names as aliases (`record.registered_at` is `registeredAt`); keys this type does
    not name (a promotion's `lineage` details, `lastAttach`) are kept as extra fields.
    """

    model_config = ConfigDict(populate_by_name=True, extra="allow", frozen=True, protected_namespaces=())

    model: str
    version: int
    digest: str
    size: int
    framework: str | None = None
    framework_version: str | None = Field(default=None, alias="frameworkVersion")
    image: str
    artifact: str
    metrics: dict[str, float] = Field(default_factory=dict)
    git_sha: str | None = Field(default=None, alias="gitSha")
    registered_by: str | None = Field(default=None, alias="registeredBy")
    registered_by_user: str | None = Field(default=None, alias="registeredByUser")
    registered_at: str | None = Field(default=None, alias="registeredAt")
    stage: str
    package_arn: str | None = Field(default=None, alias="packageArn")
    lineage: Any = None
    baseline: str | None = None
    handler: dict[str, Any] | None = None
    description: str | None = None
    card: str | None = None

    def to_json(self) -> dict[str, Any]:
        """As stored (camelCase keys)."""
        return self.model_dump(mode="json", by_alias=True)


def version_record(
    *,
    model: str,
    version: int,
    digest: str,
    size: int,
    framework: str | None,
    framework_version: str | None,
    image: str,
    artifact: str,
    metrics: dict[str, float] | None,
    git_sha: str | None,
    who: dict[str, Any],
    registered_at: str,
    stage: str,
    package_arn: str,
    baseline_key: str | None,
    handler: dict[str, Any] | None,
    description: str | None,
    card_key: str | None,
) -> dict[str, Any]:
    """The record `register` stores for a new version (validated as a VersionRecord), as a JSON object."""
    record = {
        "model": model,
        "version": version,
        "digest": digest,
        "size": size,
        "framework": framework,
        "frameworkVersion": framework_version,
        "image": image,
        "artifact": artifact,
        "metrics": metrics or {},
        "gitSha": git_sha,
        "registeredBy": who["actor"],
        "registeredByUser": who["user"],
        "registeredAt": registered_at,
        "stage": stage,
        "packageArn": package_arn,
        "lineage": None,
        "baseline": baseline_key,
        "handler": handler,
        "description": description,
        "card": card_key,
    }
    VersionRecord.model_validate(record)
    return record


def parse_version_record(data: dict[str, Any]) -> VersionRecord:
    """A stored version record (or what `register` returns, whose extra keys are dropped) as a VersionRecord."""
    return VersionRecord.model_validate({k: v for k, v in data.items() if k not in {"existing", "attached"}})
