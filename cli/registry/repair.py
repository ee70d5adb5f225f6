"""`mlinfra repair pointer`: rebuild a stage pointer deleted out of band, from the stage's audit log.

The audit log is the pointer's history: the newest record that moved the pointer (register, promote, rollback,
deploy) is what the pointer carries, and the newest `deploy` record is its recorded deployment. The rebuilt pointer
is created only if none exists (If-None-Match), and a `repair` audit record says who rebuilt it and from what.
"""

from __future__ import annotations

from typing import Any

from mlinfra.aws import aws_errors
from mlinfra.errors import BadInputError, MlinfraError
from mlinfra.records import audit_record, deployment, pointer_of
from mlinfra.registry.protocol import Context, actor, last_move, require_model, stage_lock
from mlinfra.registry.store import ConflictError
from mlinfra.stacks.project import Project


def repair_pointer(project: Project, model: str, stage: str) -> dict[str, Any]:
    """Rebuild `model`'s pointer in `stage` from its audit log; {"model","stage","version","rebuilt",...}."""
    project.require_stage(stage)
    ctx = Context.load(project, stage)
    require_model(ctx.stages[stage], model)
    registry = ctx.registry(stage)
    with aws_errors(f"repairing {model}'s pointer in {stage}"):
        pointer = registry.pointer(model)
        if pointer is not None:
            return {"model": model, "stage": stage, "version": pointer.data.get("version"), "rebuilt": False}
        records = registry.audit_records(model)
        last = last_move(records)
        if last is None:
            raise BadInputError(
                f"{model} has no pointer in {stage} and {stage}'s audit log records no move of it: nothing to "
                "rebuild (it has never run there)"
            )
        version = int(last["version"])
        record = registry.require_version(model, version)
        if record.get("digest") != last.get("digest"):
            raise MlinfraError(
                f"{stage}'s audit log says {model} v{version} is {str(last.get('digest'))[:19]}..., but its version "
                f"record says {str(record.get('digest'))[:19]}...: the registry was changed out of band; "
                "investigate before rebuilding the pointer"
            )
        registry.verify_artifact(model, record["digest"])
        deploys = [r for r in records if r.get("action") == "deploy" and isinstance(r.get("time"), str)]
        newest = max(deploys, key=lambda r: str(r["time"])) if deploys else None
        deployed = (
            deployment(
                int(newest["version"]),
                str(newest["digest"]),
                str(newest["time"]),
                commit=newest.get("commit"),
                run_url=newest.get("runUrl"),
            )
            if newest is not None
            else None
        )
        data = pointer_of(model, stage, record, last, deployed=deployed)
        with stage_lock(project, stage):
            try:
                registry.move_pointer(model, data, None)
            except ConflictError:
                raise MlinfraError(
                    f"{model}'s pointer in {stage} was created while it was rebuilt (another action ran): "
                    "nothing was rebuilt; check `mlinfra status`"
                ) from None
        reason = f"stage pointer rebuilt from the audit log ({last['action']} at {last['time']})"
        audit = audit_record(
            "repair",
            model=model,
            stage=stage,
            version=version,
            digest=record["digest"],
            reason=reason,
            who=actor(registry.aws),
        )
        registry.write_audit(audit)
    pin = ctx.stages[stage].config.models[model].pinned
    return {
        "model": model,
        "stage": stage,
        "version": version,
        "rebuilt": True,
        "from": {"action": last["action"], "time": last["time"], "record": last.get("id")},
        "deployed": deployed,
        "pinned": pin.version if pin else None,
    }
