"""Recorded deployments only move forward, and a model that is no longer pinned is recorded as undeployed.

`mlinfra record-deployment --commit SHA` runs after each apply. Two things it must not get wrong:

- An older run re-run ("Re-run failed jobs"), or started last, records an older commit. If SHA is an ancestor of
  the commit a stage pointer records as deployed, the record is refused (exit 3, naming both) before any pointer
  moves. (A deployed commit this checkout does not have cannot be ordered and does not refuse; CI's apply job
  checks out the full history.)
- A revert of a promotion's merge leaves the model declared but unpinned: the apply removed its endpoint. The
  pointer's deployment is cleared and an `undeploy` audit record (records.undeploy_record) says when and by which
  commit, so `status` stops saying it is deployed and the next stage's soak gate stops counting.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlinfra.aws import aws_errors
from mlinfra.errors import MlinfraError, RefusedError
from mlinfra.git import Git
from mlinfra.records import deployed_of, now, undeploy_record, undeployed_pointer
from mlinfra.registry.store import ConflictError, MissingRegistryError

if TYPE_CHECKING:
    from mlinfra.records import Stored
    from mlinfra.registry.store import StageRegistry
    from mlinfra.stacks.project import Project

ATTEMPTS = 5


def refuse_older_commit(project: Project, stage: str, commit: str | None, pointers: dict[str, Stored | None]) -> None:
    """RefusedError (exit 3) when `commit` is an ancestor of a commit the stage's pointers record as deployed."""
    if commit is None:
        return
    git = Git(project.stage_file(stage).resolve().parent)
    for model, pointer in sorted(pointers.items()):
        deployed = deployed_of(pointer)
        if deployed is None or not deployed.commit or deployed.commit == commit:
            continue
        if not git.ok("cat-file", "-e", f"{deployed.commit}^{{commit}}"):
            continue  # not in this repository: cannot tell which is older
        if git.ok("merge-base", "--is-ancestor", commit, deployed.commit):
            raise RefusedError(
                f"refused: {commit[:12]} is older than {deployed.commit[:12]}, the commit {stage}'s deployment of "
                f"{model} v{deployed.version} records; the pointer stays (an older run re-run, or started last): "
                f"apply main's head instead",
                [{"model": model, "commit": commit, "deployedCommit": deployed.commit}],
            )


def read_pointers(registry: StageRegistry, models: list[str]) -> dict[str, Stored | None]:
    """The stage pointer of each model (None where none exists, or where the stage has no registry yet)."""
    pointers: dict[str, Stored | None] = {}
    with aws_errors(f"reading the pointers of {registry.stage}"):
        for model in models:
            try:
                pointers[model] = registry.pointer(model)
            except MissingRegistryError:
                pointers[model] = None
    return pointers


def record_undeploys(
    project: Project,
    registry: StageRegistry,
    unpinned: list[str],
    *,
    commit: str | None,
    dirty: bool,
    run_url: str | None,
) -> list[dict[str, Any]]:
    """For each model declared but not pinned whose pointer still records a deployment: clear it, audited."""
    entries = [_undeploy(project, registry, m, commit=commit, dirty=dirty, run_url=run_url) for m in unpinned]
    return [entry for entry in entries if entry is not None]


def _undeploy(
    project: Project, registry: StageRegistry, model: str, *, commit: str | None, dirty: bool, run_url: str | None
) -> dict[str, Any] | None:
    from mlinfra.registry.protocol import actor, repair_audit, stage_lock

    stage = registry.stage
    with aws_errors(f"recording that {model} is no longer deployed in {stage}"):
        for _ in range(ATTEMPTS):
            try:
                pointer = registry.pointer(model)
            except MissingRegistryError:
                return None
            deployed = deployed_of(pointer)
            if pointer is None or deployed is None:
                return None  # nothing recorded as deployed: nothing to undo
            repair_audit(registry, model, pointer)
            time = now()
            audit = undeploy_record(
                model,
                stage,
                deployed,
                time=time,
                commit=commit,
                dirty=dirty,
                run_url=run_url,
                who=actor(registry.aws),
            )
            try:
                with stage_lock(project, stage):
                    registry.move_pointer(model, undeployed_pointer(pointer, audit), pointer)
            except ConflictError:
                continue  # moved meanwhile: decide again on top of it
            registry.write_audit(audit)
            return {"model": model, "version": deployed.version, "status": "undeployed", "since": time}
    raise MlinfraError(f"{model}'s pointer in {stage} kept moving while the undeploy was recorded; run it again")
