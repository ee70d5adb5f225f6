"""`mlinfra check --access`: the access contract against each stack's rendered policies, principal by principal.

Each stage is rendered offline as it will run once every declared model has a version pinned (a model without a pin
gets a sample one, so its endpoint role and the drift job are rendered too), then
`mlinfra_infra.policy.accesscheck` decides every call of the contract (infra/policy/access-contract.json) for each
principal the stack declares. A denied call is a mandatory violation: exit 3.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlinfra_infra.policy.accesscheck import StackAccess

    from .files import Stage
    from .project import Project

SAMPLE_DIGEST = "sha256:" + "0" * 64
# A SageMaker scikit-learn inference image (AWS's account for most regions); only its repository ARN matters here.
SAMPLE_IMAGE = "683313688378.dkr.ecr.{region}.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"


@dataclass
class AccessReport:
    """One stack's access check: its calls decided, the principals it does not declare, the models given samples."""

    stack: str
    access: StackAccess
    sampled: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "sampledPins": self.sampled,
            "denied": len(self.access.denied),
            "calls": [r.to_json() for r in self.access.results],
            "absentPrincipals": self.access.absent,
            "notes": self.access.notes,
        }


def with_sample_pins(stage: Stage, account: str = "") -> tuple[dict[str, Any], list[str]]:
    """The stage's flat config with a sample pin for every declared model that has none; the models given one."""
    from mlinfra.records import pin_of
    from mlinfra_infra import layout, naming

    cfg = stage.config
    raw = copy.deepcopy(dict(stage.raw))
    models = raw.get("mlinfra:models")
    if not isinstance(models, dict):
        return raw, []
    from .render import MOCK_ACCOUNT

    bucket = cfg.registry.bucket_name or naming.registry_bucket(
        cfg.project, cfg.stage, cfg.region, account or MOCK_ACCOUNT
    )
    sampled = []
    for model, settings in sorted(models.items()):
        block = dict(settings or {})
        if block.get("pinned"):
            continue
        sample = {"version": 1, "digest": SAMPLE_DIGEST, "image": SAMPLE_IMAGE.format(region=cfg.region)}
        block["pinned"] = pin_of(sample, f"s3://{bucket}/{layout.artifact_key(model, SAMPLE_DIGEST)}")
        models[model] = block
        sampled.append(model)
    return raw, sampled


def check_access(
    project: Project,
    stages: list[str],
    *,
    identities: Sequence[Any] = (),
    accounts: Mapping[str, str] | None = None,
) -> list[AccessReport]:
    """Render each stage (unpinned models with sample pins) and decide every call of the contract there.

    `identities`, `accounts`: the bootstrap stack's rendered resources and the account it gives each stage. Its CI
    roles and every role's permissions boundary are then evaluated too, each stage rendered in its account. Calls
    on the source stage's resources (promote's reads, the gate re-check) are decided against that stage's render,
    as the source stage's source and approval roles where its stage file names them (`access.sourceRoleArn`,
    `approvalRoleArn`), with their sts:AssumeRole by the calling CI role.
    """
    from mlinfra_infra.policy.accesscheck import evaluate_stack
    from mlinfra_infra.policy.engine import Context

    from .files import check_chain, load_stage
    from .render import MOCK_ACCOUNT, RenderedStack, render_stage

    check_chain(project, stages)
    accounts = accounts or {}
    order = project.stages()
    rendered: dict[str, tuple[RenderedStack, Stage, list[str]]] = {}

    def rendered_stage(name: str) -> tuple[RenderedStack, Stage, list[str]]:
        if name not in rendered:
            stage = load_stage(project, name)
            account = stage.config.account_id or accounts.get(name, MOCK_ACCOUNT)
            raw, sampled = with_sample_pins(stage, account)
            rendered[name] = (render_stage(stage, raw=raw, account_id=account), stage, sampled)
        return rendered[name]

    reports = []
    for name in stages:
        stack, stage, sampled = rendered_stage(name)
        index = order.index(name) if name in order else 0
        source = None
        lent: dict[str, str] = {}
        if index > 0:
            source_stack, source_stage, _ = rendered_stage(order[index - 1])
            source = (source_stack.resources, Context.from_config(source_stage.config))
            # The roles the source stage lends this one (its stage file's settings; the bootstrap creates them).
            access_settings = source_stage.config.access
            roles = {"source": access_settings.source_role_arn, "approval": access_settings.approval_role_arn}
            lent = {purpose: arn for purpose, arn in roles.items() if arn}
        access = evaluate_stack(
            stack.resources,
            Context.from_config(stage.config),
            identities=identities,
            source=source,
            source_roles=lent,
        )
        reports.append(AccessReport(stage.name, access, sampled))
    return reports
