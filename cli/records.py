"""The registry's records, each with one type and one builder: version record, pin, stage pointer, deployment, audit.

Every path that writes one of these (register, promote, rollback, approve, attach, a pull request's branch, a
recorded deployment, local mode) calls the builder here, so a field cannot be dropped on one path and kept on
another: a pin built without the handler layout would start a container that cannot load its model.

The JSON on S3 is what `to_json()` returns, written with sorted keys (mlinfra.registry.store): exactly the keys a
builder set (or a stored record held), so records written before these types existed read and write back
byte-for-byte (tests/cli/test_records.py). Unknown keys are kept, for records written by a newer mlinfra.

Records read back are checked against these types (`checked_version`, `checked_pointer`, called by the store): a
record changed out of band is one line naming its key and what is wrong, never a KeyError deep in a command.
The store imports this module (never the other way round): `Stored`, `now` and `parse_time` live here.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlinfra.errors import MlinfraError


def now() -> str:
    """The current UTC time in ISO 8601 with microseconds (sortable)."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    """Parse a time written by `now()`."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class Stored:
    """A JSON record read from the registry and the ETag it had (for If-Match)."""

    data: dict[str, Any]
    etag: str


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


class Record(BaseModel):
    """A registry record: camelCase on S3, the keys it was built or read with, unknown keys kept."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")

    def to_json(self) -> dict[str, Any]:
        """As stored: the keys that were set (None included), by their S3 names."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


class VersionRecord(Record):
    """models/<model>/versions/<n>.json: one immutable version as registered, or as copied into a later stage."""

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
    lineage: dict[str, Any] | None = None
    baseline: str | None = None
    handler: dict[str, Any] | None = None
    description: str | None = None
    card: str | None = None


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
    stage: str,
    package_arn: str,
    baseline: str | None,
    handler: dict[str, Any] | None,
    description: str | None,
    card: str | None,
) -> VersionRecord:
    """A newly registered version's record (in the entry stage; no lineage)."""
    return VersionRecord(
        model=model,
        version=version,
        digest=digest,
        size=size,
        framework=framework,
        framework_version=framework_version,
        image=image,
        artifact=artifact,
        metrics=metrics or {},
        git_sha=git_sha,
        registered_by=who["actor"],
        registered_by_user=who["user"],
        registered_at=now(),
        stage=stage,
        package_arn=package_arn,
        lineage=None,
        baseline=baseline,
        handler=handler,
        description=description,
        card=card,
    )


def promoted_record(
    record: dict[str, Any], *, source_stage: str, stage: str, artifact: str, package_arn: str
) -> dict[str, Any]:
    """A version's record as copied into a later stage: the same version, with that stage's artifact and package.

    Every other key of the source record is kept as it is (metrics, baseline, handler, card, registration).
    """
    lineage = {
        "sourceStage": source_stage,
        "sourcePackageArn": record.get("packageArn"),
        "sourceArtifact": record.get("artifact"),
    }
    return {**record, "stage": stage, "artifact": artifact, "packageArn": package_arn, "lineage": lineage}


class AuditRecord(Record):
    """audit/<model>/<time>-<n>.json: one immutable record per register, promotion, approval, rollback, deploy."""

    id: str
    action: str
    model: str
    stage: str
    version: int | None
    previous: int | None = None
    digest: str | None = None
    time: str
    reason: str | None = None
    source: str | None = None
    forced: bool = False
    gates: list[dict[str, Any]] = Field(default_factory=list)
    actor: str | None = None
    role: str | None = None
    user: str | None = None


def audit_record(
    action: str,
    *,
    model: str,
    stage: str,
    version: int | None,
    digest: str | None,
    reason: str | None,
    who: dict[str, Any],
    previous: int | None = None,
    source: str | None = None,
    forced: bool = False,
    gates: list[dict[str, Any]] | None = None,
    time: str | None = None,
    **details: Any,
) -> dict[str, Any]:
    """The audit record of one action, as stored; `details` are the action's own keys (changes, commit, runUrl...)."""
    record = AuditRecord(
        id=uuid.uuid4().hex,
        action=action,
        model=model,
        stage=stage,
        version=version,
        previous=previous,
        digest=digest,
        time=time or now(),
        reason=reason,
        source=source,
        forced=forced,
        gates=gates or [],
        **who,
        **details,
    )
    return record.to_json()


class Pin(Record):
    """A model's `pinned` block in a stage's stack file: what the stage's Model runs."""

    version: int
    digest: str
    image: str
    artifact: str
    handler: dict[str, Any] | None = None


def pin_of(record: dict[str, Any], artifact: str) -> dict[str, Any]:
    """The pin of a version in a stage's stack file, from its version record.

    `artifact` is the stage registry's URI of the version's model.tar.gz. The handler layout (where the container
    finds the inference code) travels with the pin: without it the framework containers fall back to their
    default handler and the endpoint never starts.
    """
    fields = {"version": record["version"], "digest": record["digest"], "image": record["image"], "artifact": artifact}
    if record.get("handler"):
        fields["handler"] = record["handler"]
    return Pin(**fields).to_json()


class Pointer(Record):
    """stages/<model>.json: the version a stage runs, the audit record of its last move and its deployment."""

    model: str
    stage: str
    version: int
    digest: str
    since: str
    record: dict[str, Any]
    deployed: dict[str, Any] | None = None


def pointer_of(
    model: str,
    stage: str,
    record: dict[str, Any],
    audit: dict[str, Any],
    *,
    deployed: dict[str, Any] | None,
) -> dict[str, Any]:
    """The stage pointer after `audit` moved it to `record`'s version, carrying `deployed` (a Deployment's JSON)."""
    return Pointer(
        model=model,
        stage=stage,
        version=record["version"],
        digest=record["digest"],
        since=audit["time"],
        record=audit,
        deployed=deployed,
    ).to_json()


def deployment(version: int, digest: str, since: str, *, commit: str | None, run_url: str | None) -> dict[str, Any]:
    """A stage pointer's `deployed` block: what the last recorded apply deployed, and since when."""
    return Deployment(version=version, digest=digest, since=since, commit=commit, run_url=run_url).to_json()


def undeploy_record(
    model: str,
    stage: str,
    deployed: Deployment,
    *,
    time: str,
    commit: str | None,
    dirty: bool,
    run_url: str | None,
    who: dict[str, Any],
) -> dict[str, Any]:
    """The audit record of an apply that left `model` declared but no longer pinned in `stage` (a revert).

    `version`, `digest` and `previous` name what was deployed until then; `commit` and `runUrl` the apply.
    """
    applied = commit[:12] if commit else "an uncommitted stack file"
    return audit_record(
        "undeploy",
        model=model,
        stage=stage,
        version=deployed.version,
        previous=deployed.version,
        digest=deployed.digest,
        time=time,
        reason=f"applied {applied}, which no longer pins {model} (deployed since {deployed.since})",
        who=who,
        commit=commit,
        dirty=dirty,
        runUrl=run_url,
    )


def undeployed_pointer(pointer: Stored, audit: dict[str, Any]) -> dict[str, Any]:
    """The stage pointer after an undeploy: the version it names stays, its deployment is cleared."""
    return Pointer.model_validate({**pointer.data, "record": audit, "deployed": None}).to_json()


def undeployed_of(pointer: Stored | None) -> dict[str, Any] | None:
    """The undeploy record a pointer carries when its last move was an undeploy (nothing deployed since), else None."""
    if pointer is None or pointer.data.get("deployed") is not None:
        return None
    record = pointer.data.get("record")
    return dict(record) if isinstance(record, dict) and record.get("action") == "undeploy" else None


def parse_version_record(data: dict[str, Any]) -> VersionRecord:
    """A stored version record (or what `register` returns, whose extra keys are dropped) as a VersionRecord."""
    return VersionRecord.model_validate({k: v for k, v in data.items() if k not in {"existing", "attached"}})


# --- checking records read back ------------------------------------------------------------------------------

DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
RESTORE = "restore it from its earlier versions (the bucket is versioned)"


class CorruptRecordError(MlinfraError):
    """Raised when a record read from the registry is JSON of the wrong shape (changed out of band)."""


def _checked(shape: type[Record], data: Any, where: str, what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise CorruptRecordError(f"{where}: corrupt {what}: not a JSON object ({type(data).__name__}); {RESTORE}")
    try:
        shape.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(part) for part in error["loc"]) or "(record)"
        message = "missing" if error["type"] == "missing" else str(error["msg"])
        raise CorruptRecordError(f"{where}: corrupt {what}: {key}: {message}; {RESTORE}") from None
    if not DIGEST.match(str(data.get("digest"))):
        raise CorruptRecordError(f"{where}: corrupt {what}: digest: not sha256:<64 hex digits>; {RESTORE}")
    return data


def checked_version(data: Any, where: str, number: int) -> dict[str, Any]:
    """A version record read back from `where` (the key of version `number`): its data, or CorruptRecordError."""
    record = _checked(VersionRecord, data, where, "version record")
    if record["version"] != number:
        raise CorruptRecordError(
            f"{where}: corrupt version record: version: {record['version']!r} under the key of v{number}; {RESTORE}"
        )
    return record


def checked_pointer(data: Any, where: str) -> dict[str, Any]:
    """A stage pointer read back from `where`: its data, or CorruptRecordError."""
    return _checked(Pointer, data, where, "stage pointer")
