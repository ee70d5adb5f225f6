"""Shared fixtures: the offline render under Pulumi's mock runtime."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from mlinfra.stacks.render import RenderedStack, render
from tests import access_recorder
from tests.builders import IMAGE, PROJECT, REGION, base_config, digest_of, merge, pin

pytest_plugins = ["tests.emulator"]

__all__ = ["IMAGE", "PROJECT", "REGION", "base_config", "digest_of", "merge", "pin", "policy"]

# Every botocore client the tests create records the calls the code makes (tests/access_recorder.py).
access_recorder.install()
RECORD_DIR = os.environ.get("MLINFRA_ACCESS_RECORD")


@pytest.fixture(autouse=True)
def access_contract_guard() -> Iterator[None]:
    """Fail a test whose code made an AWS call the access contract (infra/policy/access-contract.json) lacks.

    With MLINFRA_ACCESS_RECORD=<dir> (`make access-contract`) the calls are written there instead, to regenerate it.
    """
    access_recorder.drain()
    yield
    calls = access_recorder.drain()
    if RECORD_DIR:
        access_recorder.write(calls, Path(RECORD_DIR))
        return
    if calls:
        problems = access_recorder.problems(calls)
        if problems:
            pytest.fail("; ".join(problems) + " (regenerate it with `make access-contract`)", pytrace=False)


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
