"""What the figures of issue 10 rest on, checked structurally (the figures themselves are benchmarks in bench/)."""

from __future__ import annotations

import gc
from typing import Any

import pytest

from mlinfra.stacks.files import raw_config
from mlinfra.stacks.project import Project
from mlinfra.stacks.render import render
from mlinfra_infra import program
from tests.builders import merge, pin
from tests.cli.conftest import REPO


def test_the_program_runs_with_the_cyclic_collector_paused_and_it_is_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    # Full collections during a render scanned a heap that grows with the models: quadratic (bench_preview).
    project = Project(REPO)
    models = {f"model-{i:02d}": {"pinned": pin(f"model-{i:02d}", 1, "staging")} for i in range(3)}
    raw = merge(raw_config(project, "staging"), {"mlinfra:models": models})
    seen: list[bool] = []
    build = program.build

    def recording_build(cfg: Any) -> Any:
        seen.append(gc.isenabled())
        return build(cfg)

    monkeypatch.setattr(program, "build", recording_build)
    stack = render(raw, project=project.name, stage="staging", source="test")
    assert len(stack.of_type("aws:sagemaker/endpoint:Endpoint")) == 3
    assert seen == [False], "the program runs while the collector is paused"
    assert gc.isenabled(), "the collector runs again afterwards"


def test_render_leaves_a_disabled_collector_disabled() -> None:
    project = Project(REPO)
    gc.disable()
    try:
        render(raw_config(project, "sandbox"), project=project.name, stage="sandbox", source="test")
        assert not gc.isenabled()
    finally:
        gc.enable()
