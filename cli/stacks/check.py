"""`mlinfra check`'s library: render each stack once, run the policy pack's rules over it and estimate its cost.

The rules and the estimate live in `mlinfra_infra.policy` (the same functions the CrossGuard pack runs under
`pulumi up --policy-pack infra/policy`); this module only loads stages, renders them and reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlinfra.stacks.files import Stage
    from mlinfra.stacks.project import Project
    from mlinfra.stacks.render import RenderedStack
    from mlinfra_infra.policy.cost import Estimate
    from mlinfra_infra.policy.engine import Violation


@dataclass
class StackReport:
    """One stack's result: the rules evaluated, the violations, the estimate and the stage's budget."""

    stack: str
    enforcement: str
    rules: int
    violations: list[Violation]
    estimate: Estimate
    budget: float | None

    @property
    def mandatory(self) -> list[Violation]:
        return [v for v in self.violations if v.level == "mandatory"]

    @property
    def over_budget(self) -> bool:
        return self.budget is not None and self.estimate.total > self.budget

    @property
    def refused(self) -> bool:
        return bool(self.mandatory) or self.over_budget

    def to_json(self) -> dict[str, Any]:
        """The object `mlinfra check --json` prints per stack."""
        return {
            "stack": self.stack,
            "enforcement": self.enforcement,
            "rules": self.rules,
            "violations": [v.to_json() for v in self.violations],
            "monthlyUsd": self.estimate.total,
            "budgetMonthlyUsd": self.budget,
            "overBudget": self.over_budget,
            "region": self.estimate.region,
            "priceTableDate": self.estimate.table_date,
            "missingPrices": [line.resource for line in self.estimate.missing],
            "endpointHourlyUsd": {
                "steady": self.estimate.steady_hourly,
                "deploymentPeak": self.estimate.peak_hourly,
                "peakBasis": self.estimate.peak_basis,
            },
            "resources": [line.to_json() for line in self.estimate.lines],
        }


def check_rendered(stage: Stage, rendered: RenderedStack) -> StackReport:
    """Run every rule and the estimate over one rendered stack."""
    from mlinfra_infra.policy import rules  # noqa: F401 - registers the rules
    from mlinfra_infra.policy.cost import Assumptions, estimate
    from mlinfra_infra.policy.engine import RULES, Context, evaluate

    cfg = stage.config
    violations = evaluate(rendered.resources, Context.from_config(cfg))
    cost = estimate(rendered.resources, cfg.region, Assumptions.from_config(cfg))
    return StackReport(stage.name, cfg.policy.enforcement, len(RULES), violations, cost, cfg.budget_monthly_usd)


def check(project: Project, stages: list[str]) -> list[StackReport]:
    """Load, render (once each) and check the stages, in order. Config problems exit 2 before any render.

    Stacks render one after the other in this process: most of a render's time is importing pulumi_aws's service
    modules once, and two forked processes (measured) were slower, both importing the shared modules.
    """
    from mlinfra.stacks.files import check_chain, load_stage
    from mlinfra.stacks.render import render_stage

    loaded = [load_stage(project, stage) for stage in stages]
    check_chain(project, stages)
    return [check_rendered(stage, render_stage(stage)) for stage in loaded]


def policy_pack_options(project: Project, stage: Stage) -> dict[str, list[str]]:
    """`policy_packs`/`policy_pack_configs` for the Automation API's `up`: the project's pack at the stage's level.

    The level comes from the stage's `mlinfra:policy.enforcement`, written to `.mlinfra/policy/<stage>.json` (the
    Pulumi CLI reads a file); a project without `infra/policy/PulumiPolicy.yaml` gets no pack.
    """
    import json

    from mlinfra.stacks.project import STATE_DIR
    from mlinfra_infra.policy import rules  # noqa: F401 - registers the rules whose level is fixed
    from mlinfra_infra.policy.engine import pack_config

    pack_dir = project.root / "infra" / "policy"
    if not (pack_dir / "PulumiPolicy.yaml").is_file():
        return {}
    config = project.root / STATE_DIR / "policy" / f"{stage.name}.json"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(json.dumps(pack_config(stage.config.policy.enforcement)) + "\n")
    return {"policy_packs": [str(pack_dir)], "policy_pack_configs": [str(config)]}
