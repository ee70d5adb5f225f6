"""Shared fixtures: the offline render under Pulumi's mock runtime."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from mlinfra.stacks.render import RenderedStack, render
from tests.builders import IMAGE, PROJECT, REGION, base_config, digest_of, merge, pin

pytest_plugins = ["tests.emulator"]

__all__ = ["IMAGE", "PROJECT", "REGION", "base_config", "digest_of", "merge", "pin", "policy"]


@pytest.fixture
def render_stack() -> Callable[..., RenderedStack]:
    """Render a stack offline: `render_stack({"mlinfra:models": {...}}, stage="prod")`."""

    def _render(overrides: Mapping[str, Any] | None = None, *, stage: str = "dev") -> RenderedStack:
        raw = merge(base_config(stage), overrides or {})
        return render(raw, project=PROJECT, stage=stage, source=f"stacks/Pulumi.{stage}.yaml")

    return _render


def policy(resource_inputs: Mapping[str, Any], key: str = "policy") -> dict[str, Any]:
    """Parse a JSON policy document input."""
    value = resource_inputs[key]
    return json.loads(value) if isinstance(value, str) else dict(value)
