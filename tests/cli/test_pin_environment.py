"""Every path that pins a version renders a Model the framework container can start: SAGEMAKER_PROGRAM and
SAGEMAKER_SUBMIT_DIRECTORY from the handler layout register recorded. Direct promotion, a pull request's branch once
merged, a rollback, local mode; and a pin written by hand without the layout fails `mlinfra check` (exit 3).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from tests.cli.serveutil import train
from tests.cli.test_delivery import apply_job, git, merge, ok, repo  # noqa: F401 - repo is a fixture
from tests.cli.test_preview import edit_stack

Run = Callable[..., Result]
MODEL = "aws:sagemaker/model:Model"
HANDLER_ENV = {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code"}


def model_environment(root: Path, stage: str) -> dict[str, str]:
    """The environment of the one Model the stage's stack file renders (offline, Pulumi's mock runtime)."""
    from mlinfra.stacks.files import load_stage
    from mlinfra.stacks.project import Project
    from mlinfra.stacks.render import render_stage

    rendered = render_stage(load_stage(Project(root), stage))
    models = [r for r in rendered.resources if r.type == MODEL]
    assert len(models) == 1, [r.name for r in models]
    environment: dict[str, str] = models[0].inputs["primaryContainer"]["environment"]
    return environment


def assert_handler_env(environment: dict[str, Any], version: int) -> None:
    assert {k: environment.get(k) for k in HANDLER_ENV} == HANDLER_ENV
    assert environment["MLINFRA_VERSION"] == str(version)
    assert environment["PIP_NO_BUILD_ISOLATION"] == "0"


def register_sklearn(run: Run, root: Path, weights_seed: int) -> dict[str, Any]:
    """A real scikit-learn model with a handler, registered with --framework (the image picked from the model)."""
    import joblib
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    directory = train(root / "model")
    rng = np.random.default_rng(weights_seed)
    features = rng.normal(size=(60, 3))
    joblib.dump(LogisticRegression().fit(features, features[:, 0] > 0), directory / "model.joblib")
    return dict(ok(run("register", str(directory), "--model", "churn", "--framework", "sklearn", "--json")))


def test_direct_pull_request_and_rollback_pins_render_the_handler(
    repo: Path,  # noqa: F811 - test_delivery's fixture
    run: Run,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = register_sklearn(run, tmp_path / "v1", 1)
    assert first["frameworkVersion"] == "1.9-0", "picked from the scikit-learn version that pickled the model"
    assert first["image"].endswith("/sagemaker-scikit-learn:1.9-0-cpu-py3")

    # Direct (dev): the checkout's stack file is pinned at once.
    ok(run("promote", "churn", "--to", "dev", "--json"))
    assert_handler_env(model_environment(repo, "dev"), 1)

    # Pull request (staging): the branch carries the pin; main renders it once merged.
    ok(run("promote", "churn", "--to", "staging", "--json"))
    merge(tmp_path, "mlinfra/promote-staging-churn-v1")
    apply_job(run, tmp_path, monkeypatch, "staging", 1, cwd=repo)
    merged = tmp_path / "merged-main"
    git(tmp_path, "clone", "--quiet", str(tmp_path / "remote.git"), str(merged))
    assert_handler_env(model_environment(merged, "staging"), 1)

    # Rollback (dev, direct) to v1 after v2.
    register_sklearn(run, tmp_path / "v2", 2)
    ok(run("promote", "churn", "--to", "dev", "--json"))
    assert_handler_env(model_environment(repo, "dev"), 2)
    ok(run("promote", "churn", "--to", "staging", "--json"))
    merge(tmp_path, "mlinfra/promote-staging-churn-v2")
    apply_job(run, tmp_path, monkeypatch, "staging", 2, cwd=repo)
    ok(run("rollback", "churn", "--stage", "dev", "--reason", "latency", "--json"))
    assert_handler_env(model_environment(repo, "dev"), 1)

    # Rollback (staging, pull request) to v1 after v2, merged.
    ok(run("rollback", "churn", "--stage", "staging", "--reason", "latency", "--json"))
    merge(tmp_path, "mlinfra/rollback-staging-churn-v1")
    git(merged, "pull", "--quiet", "origin", "main")
    assert_handler_env(model_environment(merged, "staging"), 1)


def test_local_mode_pins_render_the_handler(project_dir: Path, aws_env: str, run: Run, tmp_path: Path) -> None:
    ok(run("local", "bootstrap", "--all", "--json"))
    register_sklearn(run, tmp_path, 1)
    ok(run("promote", "churn", "--to", "dev", "--json"))
    # In local mode the project's stack files are the scratch workspace's (.mlinfra/local/workspace/), pinned here.
    assert (project_dir / ".mlinfra" / "local" / "workspace" / "stacks" / "Pulumi.dev.yaml").is_file()
    assert_handler_env(model_environment(project_dir, "dev"), 1)


def test_a_hand_pin_without_the_handler_fails_check_in_every_stage(project_dir: Path, run: Run) -> None:
    digest = "sha256:" + "ab" * 32
    for stage in ("dev", "prod"):
        pin = {
            "version": 4,
            "digest": digest,
            "image": "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-scikit-learn:1.9-0-cpu-py3",
            "artifact": f"s3://mlinfra-{stage}-123456789012-eu-west-1/models/churn/sha256/{digest[7:]}/model.tar.gz",
        }
        edit_stack(project_dir, stage, "mlinfra:models", {"churn": {"pinned": pin}})
        result = run("check", "--stack", stage, "--offline", "--json")
        assert result.exit_code == 3, result.stderr
        violations = [v for v in ok_json(result)["violations"] if v["rule"] == "sagemaker-framework-handler"]
        assert [v["level"] for v in violations] == ["mandatory"], stage
        assert "without SAGEMAKER_PROGRAM and SAGEMAKER_SUBMIT_DIRECTORY" in violations[0]["message"]

        pin["handler"] = {"framework": "sklearn", "program": "inference.py", "directory": "code"}
        edit_stack(project_dir, stage, "mlinfra:models", {"churn": {"pinned": pin}})
        result = run("check", "--stack", stage, "--offline", "--json")
        assert not [v for v in ok_json(result)["violations"] if v["rule"] == "sagemaker-framework-handler"]


def ok_json(result: Result) -> Any:
    import json

    return json.loads(result.stdout)
