"""Read-only views of the stages: a model's audit history, and each stage's pointer, endpoint and alarms (status)."""

from __future__ import annotations

from typing import Any

from mlinfra.aws import StageAws, aws_errors, error_code
from mlinfra.registry import deployments
from mlinfra.registry.audittrail import audit_trail
from mlinfra.registry.driftstatus import latest_drift
from mlinfra.registry.protocol import Context, last_move, require_model
from mlinfra.registry.store import MissingRegistryError
from mlinfra.stacks.project import Project
from mlinfra.stacks.workspace import missing_registry_note
from mlinfra_infra import naming


def history(project: Project, model: str, stage: str | None, *, notes: list[str] | None = None) -> list[dict[str, Any]]:
    """Audit records of `model` (in one stage, or every stage), newest first.

    Includes a committed record whose audit write is still pending (it travels with the pointer), and records
    hidden behind a delete marker (read from their kept version, marked `deleted`). `notes` receives a line per
    stage whose deleted records could not be looked for.
    """
    names = [project.require_stage(stage)] if stage else project.stages()
    ctx = Context.load(project, *names)
    if not any(model in s.config.models for s in ctx.stages.values()):
        require_model(ctx.stages[names[0]], model)
    records: dict[str, dict[str, Any]] = {}
    for name in names:
        if model not in ctx.stages[name].config.models:
            continue
        registry = ctx.registry(name)
        with aws_errors(f"reading {model}'s audit trail in {name}"):
            try:
                found, complete = audit_trail(registry, model)
                pointer = registry.pointer(model)
            except MissingRegistryError:
                if stage:
                    raise
                continue  # a stage not deployed (no bucket) has no history
        if not complete and notes is not None:
            notes.append(
                f"{name}: deleted audit records not looked for (this identity may not list object versions: "
                "s3:ListBucketVersions)"
            )
        for record in found:
            if isinstance(record.get("id"), str) and isinstance(record.get("time"), str):
                records.setdefault(record["id"], record)
        if pointer is not None and isinstance(pointer.data.get("record"), dict):
            records.setdefault(pointer.data["record"]["id"], pointer.data["record"])
    return sorted(records.values(), key=lambda r: r["time"], reverse=True)


ENDPOINT_STATUS_NOTES = {
    "Updating": "endpoint Updating: a deployment is in progress",
    "RollingBack": (
        "endpoint RollingBack: a rollback alarm fired during the deployment and SageMaker is returning traffic to "
        "the previous fleet; once it is InService, run `pulumi refresh` on this stack before the next `pulumi up`"
    ),
    "Failed": "endpoint Failed: see its FailureReason (`aws sagemaker describe-endpoint`)",
    "SystemUpdating": "endpoint SystemUpdating: SageMaker is maintaining it",
}


def live_version(aws: StageAws, endpoint: str, state: dict[str, str] | None = None) -> int | None:
    """The version the live endpoint serves (from its model's MLINFRA_VERSION), None if there is no endpoint.

    `state`, when given, receives the endpoint's `EndpointStatus` under "status".
    """
    sagemaker = aws.client("sagemaker")
    try:
        described = sagemaker.describe_endpoint(EndpointName=endpoint)
        if state is not None:
            state["status"] = str(described.get("EndpointStatus", ""))
        config = sagemaker.describe_endpoint_config(EndpointConfigName=described["EndpointConfigName"])
        model_name = config["ProductionVariants"][0]["ModelName"]
        environment = sagemaker.describe_model(ModelName=model_name).get("PrimaryContainer", {}).get("Environment", {})
    except Exception as exc:
        if error_code(exc) in {"ValidationException", "ResourceNotFound"}:
            return None
        raise
    value = environment.get("MLINFRA_VERSION")
    return int(value) if value and str(value).isdigit() else None


def status(project: Project, names: list[str]) -> list[dict[str, Any]]:
    """Per model and stage: pinned (stack file), pointer (registry), live (endpoint), alarms, and what disagrees."""
    ctx = Context.load(project, *names)
    rows: list[dict[str, Any]] = []
    for name in names:
        stage = ctx.stages[name]
        cfg = stage.config
        registry = ctx.registry(name)
        for model, model_cfg in sorted(cfg.models.items()):
            pinned = model_cfg.pinned.version if model_cfg.pinned else None
            row: dict[str, Any] = {"model": model, "stage": name, "pinned": pinned, "pointer": None, "live": None}
            notes: list[str] = []
            with aws_errors(f"reading {model}'s state in {name}"):
                try:
                    pointer = registry.pointer(model)
                except MissingRegistryError as exc:
                    pointer = None
                    notes.append(missing_registry_note(project.root, name, exc))
                last = last_move(registry.audit_records(model)) if pointer is None and not notes else None
                row["pointerMissing"] = last is not None
                if last is not None:
                    notes.append(
                        f"pointer missing: deleted out of band, the audit log records v{last.get('version')} "
                        f"({last.get('action')}); rebuild it: `mlinfra repair pointer {model} --stack {name}`"
                    )
                row["pointer"] = pointer.data.get("version") if pointer else None
                row.update(deployments.stage_delivery_state(registry, model, pointer))
                if pointer is not None and pointer.data.get("record"):
                    audit_key = registry.audit_key(pointer.data["record"])
                    if registry.read(audit_key) is None:
                        notes.append("audit record pending: the next action on this model writes it")
                endpoint: dict[str, str] = {}
                row["live"] = live_version(registry.aws, naming.endpoint(cfg.project, name, model), endpoint)
                row["endpoint"] = endpoint.get("status")  # its EndpointStatus (InService, Updating...), None: none
                if endpoint.get("status") in ENDPOINT_STATUS_NOTES:
                    notes.append(ENDPOINT_STATUS_NOTES[endpoint["status"]])
                alarm_names = [naming.alarm(cfg.project, name, model, kind) for kind in naming.ALARM_KINDS]
                alarms = registry.aws.client("cloudwatch").describe_alarms(AlarmNames=alarm_names)
            row["alarms"] = {
                a["AlarmName"]: a.get("StateValue")
                for a in [*alarms.get("MetricAlarms", []), *alarms.get("CompositeAlarms", [])]
            }
            with aws_errors(f"reading {model}'s drift in {name}"):
                row["drift"] = latest_drift(registry.aws.client("cloudwatch"), cfg.project, name, model, row["alarms"])
            notes += deployments.status_notes(row, entry=name == cfg.entry_stage, delivery=cfg.delivery_mode)
            row["notes"] = notes
            rows.append(row)
    return rows
