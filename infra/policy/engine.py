"""Rule machinery shared by both runners (CrossGuard and `mlinfra check`).

A rule is a plain function over a resource's type and inputs (or over the stack's resources), with an id, the
Checkov checks it corresponds to and a description. The offline runner passes `RenderedResource`s; the CrossGuard
pack adapts `PolicyResource`s to the same shape (`type`, `name`, `parent`, `inputs` under Pulumi's wire names).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Level = Literal["advisory", "mandatory"]
# Rules that block in every stage, whatever its enforcement level: a stack breaking them cannot serve at all.
ALWAYS_MANDATORY = ("sagemaker-framework-handler",)


class Resource(Protocol):
    """What a rule sees of a resource: its type token, logical name, parent's logical name and inputs."""

    @property
    def type(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def parent(self) -> str | None: ...
    @property
    def inputs(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Context:
    """The stage a stack belongs to and what its config says the pack should enforce."""

    stage: str
    enforcement: Level = "advisory"
    allowed_instance_types: tuple[str, ...] = ()
    entry_stage: str = "sandbox"
    capture_retention_days: int | None = None
    protect: bool = False

    @classmethod
    def from_config(cls, cfg: Any) -> Context:
        """Build from a `StackConfig` (mlinfra_infra.config)."""
        return cls(
            stage=cfg.stage,
            enforcement=cfg.policy.enforcement,
            allowed_instance_types=tuple(cfg.policy.allowed_instance_types),
            entry_stage=cfg.entry_stage,
            capture_retention_days=cfg.registry.capture_retention_days,
            protect=cfg.registry.protect,
        )


# A resource rule yields messages; a stack rule yields (resource name, message) pairs.
ResourceCheck = Callable[[Resource, Context], Iterable[str]]
StackCheck = Callable[[Sequence[Resource], Context], Iterable[tuple[str, str]]]


@dataclass(frozen=True)
class Rule:
    """One policy: `check` is a resource check (with `types`) or a stack check (`types` empty)."""

    id: str
    description: str
    checkov: tuple[str, ...]
    types: tuple[str, ...]
    resource_check: ResourceCheck | None = None
    stack_check: StackCheck | None = None
    # "mandatory" for a rule that blocks in every stage (ALWAYS_MANDATORY); None: the stage's enforcement level.
    level: Level | None = None

    @property
    def is_stack_rule(self) -> bool:
        return self.stack_check is not None

    def applies_to(self, type_token: str) -> bool:
        return type_token in self.types


@dataclass(frozen=True)
class Violation:
    """A rule broken by a resource (or by the stack, when `resource` is empty)."""

    rule: str
    resource: str
    level: Level
    message: str

    def to_json(self) -> dict[str, str]:
        return {"rule": self.rule, "resource": self.resource, "level": self.level, "message": self.message}


RULES: list[Rule] = []


def resource_rule(
    rule_id: str, description: str, types: Sequence[str], checkov: Sequence[str] = ()
) -> Callable[[ResourceCheck], ResourceCheck]:
    """Register a resource rule (decorator); one listed in ALWAYS_MANDATORY blocks in every stage."""
    level: Level | None = "mandatory" if rule_id in ALWAYS_MANDATORY else None

    def register(check: ResourceCheck) -> ResourceCheck:
        RULES.append(Rule(rule_id, description, tuple(checkov), tuple(types), resource_check=check, level=level))
        return check

    return register


def stack_rule(rule_id: str, description: str, checkov: Sequence[str] = ()) -> Callable[[StackCheck], StackCheck]:
    """Register a stack rule (decorator)."""

    def register(check: StackCheck) -> StackCheck:
        RULES.append(Rule(rule_id, description, tuple(checkov), (), stack_check=check))
        return check

    return register


def level_for(ctx: Context) -> Level:
    """Every rule takes the stage's enforcement level (advisory in sandbox, mandatory in prod)."""
    return ctx.enforcement


def pack_config(enforcement: str) -> dict[str, str]:
    """The --policy-pack-config document that sets every CrossGuard policy's level for a stage.

    The stage's level for all, and "mandatory" for the rules that block everywhere (ALWAYS_MANDATORY).
    """
    return {"all": enforcement, **dict.fromkeys(ALWAYS_MANDATORY, "mandatory")}


def evaluate(resources: Sequence[Resource], ctx: Context, rules: Sequence[Rule] | None = None) -> list[Violation]:
    """Run every rule over the stack's resources; violations in rule order, then resource order."""
    chosen = RULES if rules is None else rules
    stage_level = level_for(ctx)
    found: list[Violation] = []
    by_type: dict[str, list[Resource]] = {}
    for resource in resources:
        by_type.setdefault(resource.type, []).append(resource)
    for rule in chosen:
        level = rule.level or stage_level
        if rule.stack_check is not None:
            found.extend(Violation(rule.id, name, level, msg) for name, msg in rule.stack_check(resources, ctx))
            continue
        assert rule.resource_check is not None  # noqa: S101 - registered by resource_rule
        for type_token in rule.types:
            for resource in by_type.get(type_token, []):
                found.extend(Violation(rule.id, resource.name, level, m) for m in rule.resource_check(resource, ctx))
    return found


# ---------------------------------------------------------------------------------------------------------------
# Helpers over inputs.


def get(inputs: Any, path: str, default: Any = None) -> Any:
    """A dotted path into inputs (`a.b.0.c`), or `default`."""
    value = inputs
    for part in path.split("."):
        if isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        elif isinstance(value, Mapping) and part in value:
            value = value[part]
        else:
            return default
    return value


def document(value: Any) -> dict[str, Any]:
    """An IAM/resource policy input as a dict (the program passes JSON text); {} when absent or unknown."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def statements(doc: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for statement in as_list(doc.get("Statement")):
        if isinstance(statement, Mapping):
            yield dict(statement)


def of_type(resources: Sequence[Resource], type_token: str) -> list[Resource]:
    return [r for r in resources if r.type == type_token]


@dataclass
class Index:
    """Lookups a stack rule needs: resources by type and by a key input (bucket, alarm name, ...)."""

    resources: Sequence[Resource]
    by_type: dict[str, list[Resource]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for resource in self.resources:
            self.by_type.setdefault(resource.type, []).append(resource)

    def of(self, type_token: str) -> list[Resource]:
        return self.by_type.get(type_token, [])
