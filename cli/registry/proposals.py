"""Promotions into `pullRequest` stages: a checked, prepared promotion (or rollback) proposed as a pull request.

`mlinfra.registry.promote._execute` has verified, gated and prepared the version (artifact copied server-side, model
package and version record in the target registry) when it hands over here. What changes is the commit: instead of
moving the stage pointer and editing the checkout's stack file, the pin goes on a branch from origin's default
branch (see mlinfra.delivery.pullrequest), a pull request carries the gate results, who asked and the offline
preview diff, and a `promote` (or `rollback`) audit record names the pull request. The stage pointer moves when the
apply of the merged commit is recorded (mlinfra.registry.deployments).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from mlinfra.delivery import pullrequest as delivery
from mlinfra.errors import BadInputError, MlinfraError
from mlinfra.stacks.project import Project

if TYPE_CHECKING:
    from mlinfra.registry.protocol import Context, Plan
    from mlinfra.registry.store import StageRegistry


def preflight(ctx: Context, stage: str) -> delivery.Checkout | None:
    """For a pullRequest stage, the checkout the branch is built in (checked before anything is written)."""
    if ctx.stages[stage].config.delivery_mode != "pullRequest":
        return None
    return delivery.checkout_of(ctx.project, stage)


def refuse_apply(project: Project, stage: str) -> None:
    """BadInputError (exit 2) when `--apply` is asked for a stage delivered by pull request."""
    from mlinfra.stacks.files import load_stage

    if load_stage(project, project.require_stage(stage)).config.delivery_mode == "pullRequest":
        raise BadInputError(
            f"--apply is refused for {stage}: it is delivered by pull request (mlinfra:delivery), and CI's next "
            "apply from main would revert an apply from this checkout; merge the pull request instead"
        )


def propose(
    ctx: Context,
    plan: Plan,
    target: StageRegistry,
    record: dict[str, Any],
    request: dict[str, Any],
    *,
    previous: int | None,
    forced: bool,
) -> dict[str, Any]:
    """Put the pin on a branch, open the pull request, write the audit record; the summary `promote` prints."""
    from mlinfra.registry.protocol import pin_for
    from mlinfra.registry.records import audit_record
    from mlinfra.stacks.edit import pinned_text
    from mlinfra.stacks.workspace import is_scratch_remote

    project, stage, model, action = ctx.project, plan.target, plan.model, request["action"]
    checkout = delivery.checkout_of(project, stage)
    base, parent = delivery.prepare(checkout)
    source = checkout.path
    before = delivery.file_at(checkout.top, parent, checkout.path)
    if before is None:
        raise MlinfraError(f"{checkout.path} does not exist on {delivery.REMOTE}/{base}: push the stack file first")
    pin = pin_for(target, model, record)
    text = pinned_text(project, stage, model, pin, raw=before, source=source)
    summary: dict[str, Any] = {
        "model": model,
        "stage": stage,
        "version": plan.version,
        "previous": previous,
        "digest": record["digest"],
        "artifact": pin["artifact"],
        "action": action,
        "forced": forced,
        "gates": [g.to_json() for g in plan.gates],
        "delivery": "pullRequest",
    }
    if text is None:
        # origin's default branch already pins this version: merged, waiting for (or past) its apply.
        return {**summary, "alreadyDone": True, "pullRequest": None, "base": base}
    after = text.replace("\n", "\r\n").encode() if b"\r\n" in before else text.encode()
    audit = audit_record(
        action,
        model=model,
        stage=stage,
        version=plan.version,
        previous=previous,
        digest=record["digest"],
        reason=request["reason"],
        source=request["source"],
        who={key: request[key] for key in ("actor", "role", "user")},
        forced=forced,
        gates=summary["gates"],
        delivery="pullRequest",
        **_ci_requester(),
    )
    verb = "Promote" if action == "promote" else "Roll back"
    title = (
        f"Promote {model} v{plan.version} to {stage}"
        if action == "promote"
        else f"Roll back {model} in {stage} to v{plan.version}"
    )
    origin = f"from {plan.source}" if action == "promote" else f"from v{previous}"
    summary_line = f"{verb} `{model}` v{plan.version} ({record['digest'][:19]}...) into `{stage}` {origin}."
    body = delivery.pull_request_body(
        summary=summary_line,
        asked=audit,
        gates=summary["gates"],
        diff=delivery.preview_diff(project, stage, before, after, source=source, base=f"{base} ({parent[:7]})"),
        stage=stage,
    )
    proposed = delivery.propose(
        checkout,
        branch=delivery.branch_name(action, stage, model, plan.version),
        new_text=after,
        base=base,
        parent=parent,
        title=title,
        body=body,
        local_remote=is_scratch_remote(project.root, checkout.remote_url()),
    )
    audit["pullRequest"] = proposed.to_json()
    again = _same_proposal(target, model, audit)
    if again is not None:
        return {**summary, "alreadyDone": True, "pullRequest": again["pullRequest"], "base": base}
    target.write_audit(audit)
    return {**summary, "alreadyDone": False, "pullRequest": proposed.to_json(), "base": base}


def _ci_requester() -> dict[str, str]:
    """Who dispatched the run when CI promotes (promote.yml): the GitHub user and the run, beside the role's ARN."""
    from mlinfra.registry.deployments import run_url_from_env

    actor, run = os.environ.get("GITHUB_ACTOR"), run_url_from_env()
    return {"requestedBy": actor, "runUrl": run} if actor and run else {}


def _same_proposal(target: StageRegistry, model: str, audit: dict[str, Any]) -> dict[str, Any] | None:
    """An audit record of this very proposal (same action, version, branch commit), written by an earlier run."""
    for record in target.audit_records(model):
        proposal = record.get("pullRequest") or {}
        if (
            record.get("action") == audit["action"]
            and record.get("version") == audit["version"]
            and proposal.get("commit") == audit["pullRequest"]["commit"]
        ):
            if not proposal.get("url") and audit["pullRequest"].get("url"):
                continue  # the earlier run could not open the pull request; this one did: record it
            return record
    return None
