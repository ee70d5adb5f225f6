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
