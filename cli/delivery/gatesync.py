"""A promotion into a pull-request stage is gated by origin's gate settings, not by an uncommitted local edit.

`mlinfra promote` evaluates the gates of the checkout's stack file, but the pull request it opens carries only the
pin, built on origin's default branch: a local `requireApproval: false` or `minSoakHours: 0` would open a pull
request whose diff shows nothing of it and whose body says "not required". So before anything is evaluated or
written, the model's gate settings in the working tree are compared with those on origin's default branch, and a
difference refuses the promotion (exit 3) naming each setting. CI re-checks the merged pin against the committed
gates anyway (`mlinfra check`, registry/pingates.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlinfra.delivery.pullrequest import REMOTE, Checkout, file_at, prepare
from mlinfra.errors import RefusedError

if TYPE_CHECKING:
    from mlinfra.stacks.files import Stage
    from mlinfra.stacks.project import Project


def _gates_of(config: Any, model: str) -> dict[str, Any] | None:
    settings = config.models.get(model)
    return None if settings is None else dict(settings.gates.model_dump(mode="json", by_alias=True))


def refuse_local_gate_edits(project: Project, checkout: Checkout, stage: Stage, model: str) -> None:
    """RefusedError when `model`'s gates in `stage` differ between the working tree and origin's default branch."""
    from ruamel.yaml import YAML

    from mlinfra.stacks.files import raw_config_of, validate

    base, parent = prepare(checkout)
    raw = file_at(checkout.top, parent, checkout.path)
    if raw is None:
        return  # not on origin yet: the proposal says so (nothing to compare)
    source = f"{checkout.path}@{REMOTE}/{base}"
    origin = validate(
        project, stage.name, raw_config_of(project, YAML(typ="safe", pure=True).load(raw), source), source
    )
    here, there = _gates_of(stage.config, model), _gates_of(origin, model)
    if here == there:
        return
    if there is None:
        differences = f"{model} is not declared there"
    else:
        assert here is not None  # noqa: S101 - require_model checked the working tree
        differences = ", ".join(
            f"{key}: {_show(here.get(key))} here, {_show(there.get(key))} on {REMOTE}/{base}"
            for key in sorted(set(here) | set(there))
            if here.get(key) != there.get(key)
        )
    raise RefusedError(
        f"the gates of {model} in {stage.name} differ from {REMOTE}/{base}'s ({differences}): the pull request "
        f"carries only the pin and CI checks it against {REMOTE}/{base}'s gates; merge the gate change first, or "
        f"discard it (git checkout -- {checkout.path})"
    )


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "unset" if value is None else str(value)
