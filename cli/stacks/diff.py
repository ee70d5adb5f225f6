"""What applying a stack would change: two offline renders compared resource by resource, property by property.

`diff_rendered(before, after)` is pure: it takes two `RenderedStack`s (see `mlinfra.stacks.render`) and returns a
`StackDiff` listing the resources to add, remove, replace or update in place, each with its changed inputs. Whether
a change replaces a resource comes from the provider's force-new fields (`mlinfra.stacks.forcenew`). A replaced
resource that the provider names (SageMaker models and endpoint configurations are auto-named) gets a new name, so
every input that refers to it changes too; such inputs are shown as known only after apply, and may replace their
resource in turn (a new model replaces its endpoint configuration, whose new name updates the endpoint in place).

`render_at_ref` (re-exported from `mlinfra.stacks.refrender`) renders a stack as of a git ref.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from mlinfra.stacks.forcenew import replaces

if TYPE_CHECKING:
    from mlinfra.stacks.project import Project
    from mlinfra.stacks.render import RenderedResource, RenderedStack

Action = Literal["add", "remove", "replace", "update"]
ACTIONS: tuple[Action, ...] = ("add", "replace", "update", "remove")
COMPUTED = "(known after apply)"
Key = tuple[str, str]  # a resource's identity: type token and logical name
SYMBOLS: dict[Action, str] = {"add": "+", "remove": "-", "replace": "+-", "update": "~"}


class _Absent:
    """An input that is not set on one side of a change."""

    def __repr__(self) -> str:
        return "(not set)"


ABSENT: Any = _Absent()


@dataclass(frozen=True)
class PropertyChange:
    """One input that differs: its dotted path (wire names), the values before and after, and whether it replaces."""

    path: str
    before: Any
    after: Any
    replaces: bool
    computed: bool = False

    def to_json(self) -> dict[str, Any]:
        """`{"path", "before"?, "after"?, "replaces", "computed"}`; a side where the input is not set is left out."""
        out: dict[str, Any] = {"path": self.path}
        if self.before is not ABSENT:
            out["before"] = self.before
        if self.after is not ABSENT:
            out["after"] = COMPUTED if self.computed else self.after
        out["replaces"] = self.replaces
        out["computed"] = self.computed
        return out


@dataclass(frozen=True)
class ResourceChange:
    """A resource that would change: the action, its identity (type token, logical name, parent) and the changes."""

    action: Action
    type: str
    name: str
    parent: str | None
    changes: tuple[PropertyChange, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The JSON shape of one entry of `mlinfra preview --diff --json`'s `resources`."""
        return {
            "action": self.action,
            "type": self.type,
            "name": self.name,
            "parent": self.parent,
            "changes": [c.to_json() for c in self.changes],
        }


@dataclass
class StackDiff:
    """Every change between two renders of one stack, in the order of the later render (removals last)."""

    stack: str
    resources: list[ResourceChange] = field(default_factory=list)
    unchanged: int = 0
    base: str | None = None
    # What the change does to the monthly estimate (mlinfra_infra.policy.cost.CostDelta), when computed.
    cost: Any = None

    @property
    def empty(self) -> bool:
        """True when applying would change nothing."""
        return not self.resources

    def counts(self) -> dict[str, int]:
        """Resources per action, every action present."""
        counts: dict[str, int] = dict.fromkeys(ACTIONS, 0)
        for resource in self.resources:
            counts[resource.action] += 1
        return counts

    def summary(self) -> str:
        """`2 to replace, 1 to update (40 unchanged)` or `no changes (42 unchanged)`."""
        parts = [f"{n} to {action}" for action, n in self.counts().items() if n]
        return f"{', '.join(parts) or 'no changes'} ({self.unchanged} unchanged)"

    def to_json(self) -> dict[str, Any]:
        """The JSON shape `mlinfra preview --diff --json` prints for one stack."""
        return {
            "stack": self.stack,
            "base": self.base,
            "summary": {**self.counts(), "unchanged": self.unchanged},
            "resources": [r.to_json() for r in self.resources],
            **({"monthlyUsd": self._cost_json()} if self.cost is not None else {}),
        }

    def _cost_json(self) -> dict[str, Any]:
        cost = self.cost
        return {
            "before": cost.before_total,
            "after": cost.after_total,
            "delta": cost.delta,
            "resources": [{"resource": c.resource, "before": c.before, "after": c.after} for c in cost.changes],
        }

    def pulumi_summary(self) -> str:
        """Pulumi's way: `+8 ~1 -0 +-2 (40 unchanged)`, then the resources to replace by name."""
        counts = self.counts()
        line = (
            f"+{counts['add']} ~{counts['update']} -{counts['remove']} +-{counts['replace']} "
            f"({self.unchanged} unchanged)"
        )
        replaced = [f"{r.name} ({_short(r.type)})" for r in self.resources if r.action == "replace"]
        return line + (f"; replaces {', '.join(replaced)}" if replaced else "")

    def text(self, *, details: bool = False) -> str:
        """Plain text for a terminal or a CI log: the summary and each resource; `details` adds every property."""
        against = f" against {self.base}" if self.base else ""
        lines = [f"stack {self.stack}{against}: {self.pulumi_summary()}"]
        if self.cost is not None:
            cost = self.cost
            lines.append(
                f"  monthly estimate: ${cost.before_total:,.2f} -> ${cost.after_total:,.2f} ({cost.delta:+,.2f})"
            )
        for resource in self.resources:
            lines.append(f"  {SYMBOLS[resource.action]:>2} {resource.name} ({_short(resource.type)}) {resource.action}")
            if not details:
                forcing = sorted({c.path for c in resource.changes if c.replaces})
                if forcing:
                    lines.append(f"       forced by: {', '.join(forcing)}")
                continue
            for change in resource.changes:
                mark = "  [forces replacement]" if change.replaces else ""
                lines.append(f"       {change.path}: {_show(change.before)} -> {_after(change)}{mark}")
        changed = sum(len(r.changes) for r in self.resources)
        if not details and changed:
            lines.append(f"  ({changed} property change(s): --details lists them, before -> after)")
        return "\n".join(lines)

    def markdown(self) -> str:
        """GitHub-flavoured Markdown for a pull request body or comment."""
        against = f" against `{self.base}`" if self.base else ""
        lines = [f"#### Stack `{self.stack}`{against}: {self.summary()}", ""]
        if self.cost is not None:
            lines += [self.cost.markdown().rstrip("\n"), ""]
        if self.empty:
            return "\n".join(lines).rstrip() + "\n"
        lines += ["| | resource | type | property | before | after |", "|---|---|---|---|---|---|"]
        for resource in self.resources:
            head = f"| **{resource.action}** | `{resource.name}` | `{_short(resource.type)}` "
            if not resource.changes:
                lines.append(head + "| | | |")
            for index, change in enumerate(resource.changes):
                prefix = head if index == 0 else "| | | "
                forced = " **(forces replacement)**" if change.replaces else ""
                before, after = _show(change.before, limit=None), _after(change, limit=None)
                lines.append(f"{prefix}| `{change.path}`{forced} | {_md(before)} | {_md(after)} |")
        return "\n".join(lines) + "\n"


def _short(type_token: str) -> str:
    from mlinfra.stacks.render import short_type

    return short_type(type_token)


def _show(value: Any, limit: int | None = 100) -> str:
    """A value as shown: in the terminal cut in the middle past `limit`; in Markdown (`limit=None`) whole."""
    if value is ABSENT:
        return "(not set)"
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    # Cut in the middle: the ends of ARNs, URIs and digests are what tell two values apart.
    if limit is None or len(text) <= limit:
        return text
    return text[: limit // 2] + "…" + text[-(limit - limit // 2 - 1) :]


def _after(change: PropertyChange, limit: int | None = 100) -> str:
    return COMPUTED if change.computed else _show(change.after, limit)


def _md(text: str) -> str:
    return "`" + text.replace("`", "'").replace("|", "\\|") + "`"


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Leaves of an input value by dotted path; JSON documents held in strings (policies) are opened up too."""
    if isinstance(value, str) and value[:1] in "{[":
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict | list) and parsed:
            return flatten(parsed, prefix)
    if isinstance(value, Mapping) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list) and any(isinstance(item, Mapping | list) for item in value):
        out = {}
        for index, item in enumerate(value):
            out.update(flatten(item, f"{prefix}.{index}" if prefix else str(index)))
        return out
    return {prefix: value}


def _property_changes(type_token: str, before: Mapping[str, Any], after: Mapping[str, Any]) -> list[PropertyChange]:
    old, new = flatten(dict(before)), flatten(dict(after))
    changes = []
    for path in sorted(set(old) | set(new)):
        was, now = old.get(path, ABSENT), new.get(path, ABSENT)
        if was != now:
            changes.append(PropertyChange(path, was, now, replaces(type_token, path)))
    return changes


def _mentions(value: Any, tokens: set[str]) -> bool:
    return isinstance(value, str) and any(token in value for token in tokens)


def _key(resource: RenderedResource) -> Key:
    return resource.type, resource.name


def _iter_custom(stack: RenderedStack) -> Iterator[RenderedResource]:
    return (r for r in stack.resources if r.custom)


def _propagate(
    old: Mapping[Key, RenderedResource], new: Mapping[Key, RenderedResource], changes: dict[Key, list[PropertyChange]]
) -> None:
    """A replaced, provider-named resource gets a new name: what refers to it changes, possibly replacing it too."""
    from mlinfra.stacks.render import mock_identities

    def is_replaced(key: Key) -> bool:
        return any(c.replaces for c in changes.get(key, ()))

    propagated: set[Key] = set()
    while fresh := [k for k in changes if is_replaced(k) and k not in propagated]:
        propagated.update(fresh)
        tokens: set[str] = set()
        for key in fresh:
            tokens |= mock_identities(key[0], key[1], new[key].inputs)
        for key, resource in new.items():
            if key not in old or key in propagated or not tokens:
                continue
            current = {c.path for c in changes.get(key, [])}
            for path, value in flatten(resource.inputs).items():
                if path not in current and _mentions(value, tokens):
                    change = PropertyChange(path, value, value, replaces(resource.type, path), computed=True)
                    changes.setdefault(key, []).append(change)
            if key in changes:
                changes[key].sort(key=lambda c: c.path)


def diff_rendered(before: RenderedStack, after: RenderedStack, *, base: str | None = None) -> StackDiff:
    """The changes that turn `before` into `after` (pure; component resources are grouping only and not compared).

    A resource keeps its identity by type token and logical name, as in its Pulumi URN; a changed type is a removal
    and an addition. `base` labels the `before` side in the output (e.g. `main (1a2b3c4)`).
    """
    old = {_key(r): r for r in _iter_custom(before)}
    new = {_key(r): r for r in _iter_custom(after)}
    changes: dict[Key, list[PropertyChange]] = {}
    for key, resource in new.items():
        if key in old:
            found = _property_changes(resource.type, old[key].inputs, resource.inputs)
            if found:
                changes[key] = found
    _propagate(old, new, changes)

    result = StackDiff(stack=after.stack, base=base)
    for key, resource in new.items():
        if key not in old:
            added = [PropertyChange(p, ABSENT, v, False) for p, v in sorted(flatten(resource.inputs).items())]
            result.resources.append(ResourceChange("add", resource.type, resource.name, resource.parent, tuple(added)))
        elif key in changes:
            action: Action = "replace" if any(c.replaces for c in changes[key]) else "update"
            result.resources.append(
                ResourceChange(action, resource.type, resource.name, resource.parent, tuple(changes[key]))
            )
        else:
            result.unchanged += 1
    result.resources += [ResourceChange("remove", r.type, r.name, r.parent) for key, r in old.items() if key not in new]
    return result


def preview_diffs(project: Project, stages: list[str], base: str | None = None) -> list[StackDiff]:
    """`mlinfra preview --diff`: each stage as of `base` (default: merge base with main) against the working tree.

    A stage none of whose inputs changed since the base (only other stages' stack files, or files that hold no render
    input, differ) is rendered once: its base is its working-tree render. When only stack files changed, the base's
    stack files are rendered with this program, here; when the program changed, the base's whole tree is rendered in
    a child process (`mlinfra.stacks.refrender.render_tree_at`).
    """
    from mlinfra.stacks import refrender
    from mlinfra.stacks.files import load_stage
    from mlinfra.stacks.render import render_stage

    label, commit = refrender.resolve_base(project, base)
    changed = refrender.changed_since(project, commit)
    needed = refrender.stages_to_render(project, stages, changed)
    loaded = {stage: load_stage(project, stage) for stage in stages}
    current = {stage: render_stage(loaded[stage]) for stage in stages}
    if not needed:
        before = {}
    elif refrender.only_stack_files(project, changed):
        before = {stage: refrender.render_stack_file_at(project, stage, commit, label) for stage in needed}
    else:
        before = refrender.render_tree_at(project, needed, commit, label)
    shown = f"{label} ({commit[:7]})"
    diffs = [diff_rendered(before.get(stage, current[stage]), current[stage], base=shown) for stage in stages]
    for diff in diffs:
        diff.cost = cost_delta(
            loaded[diff.stack].config, before.get(diff.stack, current[diff.stack]), current[diff.stack]
        )
    return diffs


def cost_delta(cfg: Any, before: RenderedStack, after: RenderedStack) -> Any:
    """The monthly estimate of both renders (the policy pack's price table, the stage's current assumptions)."""
    from mlinfra_infra.policy.cost import Assumptions, PriceTable, delta, estimate

    table, assume = PriceTable.load(), Assumptions.from_config(cfg)
    return delta(
        estimate(before.resources, cfg.region, assume, table), estimate(after.resources, cfg.region, assume, table)
    )


def render_at_ref(project: Project, stage: str, ref: str | None = None) -> RenderedStack:
    """The stack of `stage` as of git `ref` (see `mlinfra.stacks.refrender.render_at_ref`)."""
    from mlinfra.stacks.refrender import render_at_ref as _render_at_ref

    return _render_at_ref(project, stage, ref)
