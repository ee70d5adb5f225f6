"""`mlinfra check --access`: the access contract against each stack's rendered policies, principal by principal.

Each stage is rendered offline as it will run once every declared model has a version pinned (a model without a pin
gets a sample one, so its endpoint role and the drift job are rendered too), then
`mlinfra_infra.policy.accesscheck` decides every call of the contract (infra/policy/access-contract.json) for each
principal the stack declares. A denied call is a mandatory violation: exit 3.
"""

from __future__ import annotations

import copy
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


def with_sample_pins(stage: Stage) -> tuple[dict[str, Any], list[str]]:
    """The stage's flat config with a sample pin for every declared model that has none; the models given one."""
    from mlinfra.records import pin_of
    from mlinfra_infra import layout, naming

    cfg = stage.config
    raw = copy.deepcopy(dict(stage.raw))
    models = raw.get("mlinfra:models")
    if not isinstance(models, dict):
        return raw, []
    from .render import MOCK_ACCOUNT

    bucket = cfg.registry.bucket_name or naming.registry_bucket(cfg.project, cfg.stage, cfg.region, MOCK_ACCOUNT)
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


def check_access(project: Project, stages: list[str]) -> list[AccessReport]:
    """Render each stage (unpinned models with sample pins) and decide every call of the contract there."""
    from mlinfra_infra.policy.accesscheck import evaluate_stack
    from mlinfra_infra.policy.engine import Context

    from .files import check_chain, load_stage
    from .render import render_stage

    loaded = [load_stage(project, stage) for stage in stages]
    check_chain(project, stages)
    reports = []
    for stage in loaded:
        raw, sampled = with_sample_pins(stage)
        rendered = render_stage(stage, raw=raw)
        access = evaluate_stack(rendered.resources, Context.from_config(stage.config))
        reports.append(AccessReport(stage.name, access, sampled))
    return reports
