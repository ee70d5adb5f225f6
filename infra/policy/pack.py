"""The CrossGuard side of the policy pack: one pulumi_policy policy per rule, each calling the same rule function.

`policies()` builds them (importable and testable without the engine); `__main__.py` serves them to the Pulumi
engine as the `mlinfra` pack. A policy finds its stage from the resource's URN (`urn:pulumi:<stack>::...`) and reads
that stage's stack file for the context (allow-list, retention, protect); the enforcement level of every policy
comes from `--policy-pack-config infra/policy/config/<stage>.json` (`{"all": "advisory"|"mandatory"}`), which
`tests/infra/test_policy_pack.py` keeps equal to each stage's `mlinfra:policy.enforcement`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from . import rules
from .engine import Context, Rule, pack_config

__all__ = ["pack_config", "policies"]

PACK_NAME = "mlinfra"
# Without a --policy-pack-config, every policy blocks: the strictest reading of a bare `--policy-pack infra/policy`.
DEFAULT_LEVEL = EnforcementLevel.MANDATORY
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class PackResource:
    """A PolicyResource (or a validated resource) in the shape the rule functions read."""

    type: str
    name: str
    parent: str | None
    inputs: dict[str, Any]


def stage_of(urn: str) -> str:
    """`urn:pulumi:<stack>::<project>::<type>::<name>` -> `<stack>`."""
    parts = urn.split(":", 2)
    return parts[2].split("::", 1)[0] if len(parts) == 3 and parts[0] == "urn" else ""


@functools.lru_cache(maxsize=8)
def context_for(stage: str) -> Context:
    """The stage's context from its stack file in this repository.

    When it cannot be loaded the pack fails closed: the context carries the reason, which the mandatory
    `stage-context` rule reports (the allow-list and protection rules would otherwise pass on defaults).
    """
    if not stage:
        return Context(stage="", error="the resource's URN names no stack, so the pack cannot tell its stage")
    try:
        from mlinfra.stacks.files import load_stage  # noqa: PLC0415
        from mlinfra.stacks.project import Project  # noqa: PLC0415 - the CLI package, only where the pack runs

        return Context.from_config(load_stage(Project(REPO_ROOT), stage).config)
    except Exception as exc:  # noqa: BLE001 - a pack must not crash the engine; it reports the failure instead
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return Context(stage=stage, error=f"the context of stage {stage!r} could not be loaded: {first}")


def plain(value: Any) -> Any:
    """pulumi_policy's props (read-only Mapping/Sequence proxies that raise on unknown values) as dicts and lists.

    An unknown value (known only after apply) raises pulumi_policy's UnknownValueError, which the analyzer reports
    as "can't run policy during preview", as for any CrossGuard policy.
    """
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [plain(v) for v in value]
    return value


def _adapt(resource: PolicyResource) -> PackResource:
    parent = resource.parent.name if resource.parent is not None else None
    return PackResource(resource.resource_type, resource.name, parent, plain(resource.props))


def _resource_policy(rule: Rule) -> ResourceValidationPolicy:
    check = rule.resource_check
    assert check is not None  # noqa: S101 - a resource rule

    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        if not rule.applies_to(args.resource_type):
            return
        resource = PackResource(args.resource_type, args.name, None, plain(args.props))
        for message in check(resource, context_for(stage_of(args.urn))):
            report_violation(message, None)

    return ResourceValidationPolicy(
        name=rule.id, description=_describe(rule), validate=validate, enforcement_level=DEFAULT_LEVEL
    )


def _stack_policy(rule: Rule) -> StackValidationPolicy:
    check = rule.stack_check
    assert check is not None  # noqa: S101 - a stack rule

    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        if not args.resources:
            return
        resources = [_adapt(r) for r in args.resources]
        urns = {r.name: r.urn for r in args.resources}
        ctx = context_for(stage_of(args.resources[0].urn))
        for name, message in check(resources, ctx):
            report_violation(f"{name}: {message}", urns.get(name))

    return StackValidationPolicy(
        name=rule.id, description=_describe(rule), validate=validate, enforcement_level=DEFAULT_LEVEL
    )


def _describe(rule: Rule) -> str:
    checkov = f" (Checkov {', '.join(rule.checkov)})" if rule.checkov else ""
    return rule.description + checkov


def policies() -> list[Policy]:
    """One CrossGuard policy per rule of `rules.RULES`, in the same order."""
    return [_stack_policy(r) if r.is_stack_rule else _resource_policy(r) for r in rules.RULES]
