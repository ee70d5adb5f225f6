"""The registry's records, each with one type and one builder: the pin, the stage pointer and its deployment.

Records read back are checked against the shape their readers rely on (`version_record`, `pointer`): a record
changed out of band is one line naming its key and what is wrong, never a KeyError deep in a command.

Every path that writes one of these (register, promote, rollback, a pull request's branch, a recorded deployment,
local mode) calls the builder here, so a field cannot be dropped on one path and kept on another: a pin built
without the handler layout would start a container that cannot load its model.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from mlinfra.errors import MlinfraError


@dataclass
class Stored:
    """A JSON record read from the registry and the ETag it had (for If-Match)."""

    data: dict[str, Any]
    etag: str


def now() -> str:
    """The current UTC time in ISO 8601 with microseconds (sortable)."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    """Parse a time written by `now()`."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


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
    model: str,
    stage: str,
    record: dict[str, Any],
    audit: dict[str, Any],
    expected: Stored | None,
    *,
    deployed: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The stage pointer after an action commits `record` (the version) with its audit record.

    The deployment recorded by the last apply stays until the next one (mlinfra.registry.deployments); a pointer
    rebuilt from the audit log (no `expected`) takes the one its newest deploy record names (`deployed`).
    """
    return {
        "model": model,
        "stage": stage,
        "version": record["version"],
        "digest": record["digest"],
        "since": audit["time"],
        "record": audit,
        "deployed": expected.data.get("deployed") if expected else deployed,
    }


def audit_of(
    action: str,
    model: str,
    stage: str,
    version: int,
    digest: str,
    *,
    who: dict[str, Any],
    reason: str,
    previous: int | None = None,
    source: str | None = None,
) -> dict[str, Any]:
    """An audit record of an action without gates (register, repair): who, when, what and why, with a fresh id."""
    return {
        "id": uuid.uuid4().hex,
        "action": action,
        "model": model,
        "stage": stage,
        "version": version,
        "previous": previous,
        "digest": digest,
        "time": now(),
        "reason": reason,
        "source": source,
        "forced": False,
        "gates": [],
        **who,
    }


# --- checking records read back -------------------------------------------------------------------------------

Digest = Annotated[str, StringConstraints(pattern=r"^sha256:[0-9a-f]{64}$")]


class CorruptRecordError(MlinfraError):
    """Raised when a record read from the registry is JSON of the wrong shape (changed out of band)."""


class _Checked(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class VersionRecordShape(_Checked):
    """What every reader of a version record relies on."""

    model: str
    version: Annotated[int, Field(ge=1)]
    digest: Digest
    size: Annotated[int, Field(ge=0)]
    image: str
    artifact: str
    metrics: dict[str, Any] | None = None
    packageArn: str | None = None  # noqa: N815 - the stored key


class PointerShape(_Checked):
    """What every reader of a stage pointer relies on."""

    model: str
    version: Annotated[int, Field(ge=1)]
    digest: Digest
    record: dict[str, Any] | None = None
    deployed: dict[str, Any] | None = None


def _checked(shape: type[_Checked], data: Any, where: str, what: str) -> dict[str, Any]:
    restore = "restore it from its earlier versions (the bucket is versioned)"
    if not isinstance(data, dict):
        raise CorruptRecordError(f"{where}: corrupt {what}: not a JSON object ({type(data).__name__}); {restore}")
    try:
        shape.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(part) for part in error["loc"]) or "(record)"
        message = "missing" if error["type"] == "missing" else str(error["msg"])
        raise CorruptRecordError(f"{where}: corrupt {what}: {key}: {message}; {restore}") from None
    return data


def version_record(data: Any, where: str, number: int | None = None) -> dict[str, Any]:
    """A version record read back, checked; CorruptRecordError names the key and what is wrong."""
    checked = _checked(VersionRecordShape, data, where, "version record")
    if number is not None and checked["version"] != number:
        raise CorruptRecordError(
            f"{where}: corrupt version record: version: {checked['version']} under the key of v{number}; "
            "restore it from its earlier versions (the bucket is versioned)"
        )
    return checked


def pointer(data: Any, where: str) -> dict[str, Any]:
    """A stage pointer read back, checked."""
    return _checked(PointerShape, data, where, "stage pointer")
