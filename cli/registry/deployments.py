"""Deploy records: after a stage's apply succeeds, what the stack now runs moves the stage pointer, audited.

The apply job (CI's `pulumi up` of a merged commit) runs `mlinfra record-deployment --stack S --commit SHA
--run-url URL`, and `mlinfra up` does the same after its own apply. The pins are read from the stack file at that
commit (not from whatever the checkout holds), each pinned version is checked against the stage's registry (same
digest, artifact intact), and for every model whose deployed version changed the stage pointer moves (If-Match)
carrying a `deploy` audit record with the commit and the run's URL. The pointer keeps `deployed: {version, digest,
since, commit, runUrl}`: the soak gate counts from `since`, the first recorded deployment of the running version,
so re-applying the same version does not restart the clock. Recording the same deployment twice changes nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlinfra.aws import StageAws, aws_errors
from mlinfra.errors import BadInputError, MlinfraError
from mlinfra.records import (
    Deployment,
    Stored,
    audit_record,
    deployed_of,
    deployment,
    now,
    pointer_of,
    undeployed_of,
)
from mlinfra.registry.store import ConflictError, MissingRegistryError, StageRegistry
from mlinfra.stacks.project import Project

if TYPE_CHECKING:
    from mlinfra_infra.config import Pin, StackConfig

ATTEMPTS = 5
MAX_RUN_URL = 2048  # what browsers and GitHub keep of a URL; the audit record and pointer carry it


def run_url_from_env() -> str | None:
    """The GitHub Actions run this process belongs to ($GITHUB_SERVER_URL/$GITHUB_REPOSITORY/actions/runs/ID)."""
    server, repo, run = (os.environ.get(k) for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"))
    return f"{server}/{repo}/actions/runs/{run}" if server and repo and run else None


@dataclass(frozen=True)
class AppliedStack:
    """The stack an apply deployed: its validated config and the commit it came from."""

    config: StackConfig
    commit: str | None
    dirty: bool  # the applied file differed from the commit's (an apply from an uncommitted working tree)
    source: str


def applied_stack(project: Project, stage: str, commit: str | None) -> AppliedStack:
    """The stage's stack file at `commit` (any commit-ish), or as in the working tree at HEAD when None."""
    from ruamel.yaml import YAML

    from mlinfra.delivery import pullrequest as delivery
    from mlinfra.git import Git, GitError
    from mlinfra.stacks.files import load_stage, raw_config_of, validate

    project.require_stage(stage)
    path = project.stage_file(stage).resolve()
    git = Git(path.parent)
    top = None
    if git.ok("rev-parse", "--show-toplevel"):
        top = git.run("rev-parse", "--show-toplevel", doing="finding the repository")
    if commit is None:
        loaded = load_stage(project, stage)
        if top is None:
            return AppliedStack(loaded.config, None, True, loaded.source)
        head = git.run("rev-parse", "HEAD^{commit}", doing="reading HEAD") if git.ok("rev-parse", "HEAD") else None
        relative = path.relative_to(os.path.realpath(top)).as_posix()
        committed = delivery.file_at(path.parent, head, relative) if head else None
        return AppliedStack(loaded.config, head, committed != path.read_bytes(), loaded.source)
    if top is None:
        raise BadInputError(f"--commit {commit}: {project.relative(path)} is not in a git repository")
    try:
        sha = git.run("rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}", doing="resolving --commit")
    except GitError:
        raise BadInputError(f"--commit {commit}: no such commit in this repository (fetch it first)") from None
    relative = path.relative_to(os.path.realpath(top)).as_posix()
    text = delivery.file_at(path.parent, sha, relative)
    if text is None:
        raise BadInputError(f"--commit {commit}: {relative} does not exist at {sha[:12]}")
    source = f"{relative}@{sha[:12]}"
    raw = raw_config_of(project, YAML(typ="safe", pure=True).load(text.decode("utf-8")), source)
    return AppliedStack(validate(project, stage, raw, source), sha, False, source)


def record_deployment(project: Project, stage: str, *, commit: str | None, run_url: str | None) -> dict[str, Any]:
    """Record that `stage` now runs what its stack file pins at `commit`; {"stage","commit","runUrl","models"}.

    Per pinned model: `deployed` (the pointer moved, a deploy record written) or `unchanged` (already recorded);
    per model declared but no longer pinned whose pointer recorded a deployment: `undeployed` (registry/forward.py).
    RefusedError (exit 3) when `commit` is older than a deployment the stage pointer records.
    """
    if run_url is not None and len(run_url) > MAX_RUN_URL:
        raise BadInputError(
            f"--run-url: {len(run_url):,} characters, more than a run's URL may be ({MAX_RUN_URL}); pass the apply "
            "run's page, e.g. $GITHUB_SERVER_URL/$GITHUB_REPOSITORY/actions/runs/$GITHUB_RUN_ID"
        )
    if run_url is not None and (
        not run_url.startswith(("https://", "http://")) or any(c.isspace() or not c.isprintable() for c in run_url)
    ):
        raise BadInputError(f"--run-url {run_url[:200]!r} is not an http(s) URL (the apply run's page)")
    from mlinfra.registry import forward

    applied = applied_stack(project, stage, commit)
    registry = StageRegistry(StageAws(applied.config, project.root))
    run_url = run_url or run_url_from_env()
    # Forward only: nothing moves if this commit is older than one a pointer records as deployed (exit 3).
    pointers = forward.read_pointers(registry, sorted(applied.config.models))
    forward.refuse_older_commit(project, stage, applied.commit, pointers)
    models = [
        _record_model(project, registry, model, settings.pinned, applied=applied, run_url=run_url)
        for model, settings in applied.config.pinned_models.items()
        if settings.pinned is not None
    ]
    unpinned = [m for m, settings in sorted(applied.config.models.items()) if settings.pinned is None]
    models += forward.record_undeploys(
        project, registry, unpinned, commit=applied.commit, dirty=applied.dirty, run_url=run_url
    )
    return {"stage": stage, "commit": applied.commit, "dirty": applied.dirty, "runUrl": run_url, "models": models}


def _record_model(
    project: Project, registry: StageRegistry, model: str, pin: Pin, *, applied: AppliedStack, run_url: str | None
) -> dict[str, Any]:
    from mlinfra.registry.protocol import actor, current_pointer, repair_audit, stage_lock

    stage = registry.stage
    with aws_errors(f"recording {model}'s deployment in {stage}"):
        record = registry.version(model, pin.version)
        if record is None or record.get("digest") != pin.digest:
            found = f"records {str(record.get('digest'))[:19]}..." if record else "has no such version"
            raise MlinfraError(
                f"{applied.source} pins {model} v{pin.version} ({pin.digest[:19]}...), but {stage}'s registry "
                f"{found}: promote it with `mlinfra promote` instead of editing the pin by hand"
            )
        registry.verify_artifact(model, pin.digest)
        who = actor(registry.aws)
        for attempt in range(ATTEMPTS):
            pointer = current_pointer(registry, model) if attempt == 0 else registry.pointer(model)
            repair_audit(registry, model, pointer)
            deployed = deployed_of(pointer)
            if deployed is not None and deployed.version == pin.version:
                return {"model": model, "version": pin.version, "status": "unchanged", "since": deployed.since}
            time = now()
            audit = audit_record(
                "deploy",
                model=model,
                stage=stage,
                version=pin.version,
                previous=deployed.version if deployed else None,
                digest=pin.digest,
                time=time,
                reason=f"applied {applied.commit[:12] if applied.commit else 'an uncommitted stack file'}"
                + (" (uncommitted changes)" if applied.dirty and applied.commit else ""),
                who=who,
                commit=applied.commit,
                dirty=applied.dirty,
                runUrl=run_url,
            )
            deployed_now = deployment(pin.version, pin.digest, time, commit=applied.commit, run_url=run_url)
            data = pointer_of(
                model, stage, {"version": pin.version, "digest": pin.digest}, audit, deployed=deployed_now
            )
            try:
                with stage_lock(project, stage):
                    registry.move_pointer(model, data, pointer)
            except ConflictError:
                continue  # a promotion or another record moved it meanwhile: decide again on top of it
            registry.write_audit(audit)
            return {"model": model, "version": pin.version, "status": "deployed", "since": time}
    raise MlinfraError(f"{model}'s pointer in {stage} kept moving while the deployment was recorded; run it again")


def pending_proposal(records: list[dict[str, Any]], deployed: Deployment | None) -> dict[str, Any] | None:
    """The newest pull-request promotion or rollback whose version is not the deployed one, if any."""
    proposals = [r for r in records if r.get("delivery") == "pullRequest" and r.get("action") != "deploy"]
    if not proposals:
        return None
    newest = max(proposals, key=lambda r: str(r["time"]))
    if deployed is not None and newest.get("version") == deployed.version:
        return None
    undone = [r for r in records if r.get("action") == "undeploy" and r.get("version") == newest.get("version")]
    if any(str(r["time"]) > str(newest["time"]) for r in undone):
        return None  # merged, deployed, then reverted: nothing is waiting
    return newest


def stage_delivery_state(registry: StageRegistry, model: str, pointer: Stored | None) -> dict[str, Any]:
    """For `status`: the recorded deployment and the pending pull request of a model in a stage."""
    deployed = deployed_of(pointer)
    pending = None
    if registry.config.delivery_mode == "pullRequest":
        try:
            proposal = pending_proposal(registry.audit_records(model), deployed)
        except MissingRegistryError:
            proposal = None
        if proposal is not None:
            pr = proposal.get("pullRequest") or {}
            pending = {
                "version": proposal["version"],
                "action": proposal["action"],
                "time": proposal["time"],
                "pullRequest": pr.get("url"),
                "branch": pr.get("branch"),
            }
    undeployed = undeployed_of(pointer)
    gone = (
        {"version": undeployed["version"], "time": undeployed["time"], "commit": undeployed.get("commit")}
        if undeployed
        else None
    )
    return {"deployed": deployed.to_json() if deployed else None, "pending": pending, "undeployed": gone}


def status_notes(row: dict[str, Any], *, entry: bool, delivery: str = "direct") -> list[str]:
    """What disagrees in a `status` row (pinned, pointer, deployed, pending, live, alarms), one note each."""
    notes = []
    pinned, pointer, live = row["pinned"], row["pointer"], row["live"]
    deployed, pending, undeployed = row.get("deployed"), row.get("pending"), row.get("undeployed")
    if undeployed:
        commit = f" by {str(undeployed['commit'])[:12]}" if undeployed.get("commit") else ""
        notes.append(
            f"v{undeployed['version']} undeployed at {undeployed['time']}{commit}: the stack file no longer pins it, "
            "nothing is recorded as deployed"
        )
    if pending:
        where = pending["pullRequest"] or f"branch {pending['branch']}"
        notes.append(
            f"v{pending['version']} proposed ({pending['action']}) in {where}, not deployed: merge it; "
            "the apply records the deployment"
        )
    if delivery == "pullRequest":
        if pinned is not None and pinned != pointer and (not pending or pending["version"] != pinned):
            notes.append(f"pinned v{pinned} here, deployed {f'v{pointer}' if pointer else 'nothing'}: apply pending")
    elif not entry and pointer != pinned and not (undeployed and pinned is None) and not row.get("pointerMissing"):
        notes.append(f"pointer v{pointer}, pinned v{pinned}: stack file out of step (re-run the promotion)")
    from mlinfra.aws import local_mode, mlinfra_command

    local = local_mode()
    recorded = (deployed or {}).get("version")
    if not entry and delivery == "direct" and pointer is not None and not undeployed and recorded != pointer:
        record_it = mlinfra_command(f"record-deployment --stack {row.get('stage')}")
        how = f"`{record_it}` stands in for it" if local else "`mlinfra up` or CI"
        notes.append(f"v{pointer} pinned, no deployment recorded: deploys on the next apply ({how})")
    if pinned is not None and live != pinned:
        if local and recorded == pinned:
            # The emulator runs no endpoint: a recorded deployment is as far as local mode goes.
            notes.append(f"v{pinned} deployed (recorded); the emulator runs no endpoints, so nothing is live")
        else:
            notes.append(f"pinned v{pinned}, live {f'v{live}' if live else 'nothing'}: apply pending")
    firing = [name for name, state in row.get("alarms", {}).items() if state == "ALARM"]
    if firing:
        notes.append(f"ALARM: {', '.join(firing)}")
    return notes
