"""`mlinfra preview`: the offline render through the CLI, and every kind of bad stack file."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result
from ruamel.yaml import YAML

from tests.builders import pin
from tests.cli.conftest import snapshot

Run = Callable[..., Result]


def edit_stack(root: Path, stage: str, key: str, value: object) -> None:
    path = root / "stacks" / f"Pulumi.{stage}.yaml"
    yaml = YAML()
    data = yaml.load(path.read_text())
    data["config"][key] = value
    with path.open("w") as handle:
        yaml.dump(data, handle)


def test_preview_json_has_the_documented_shape(project_dir: Path, run: Run) -> None:
    result = run("preview", "--stack", "dev", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["stack"] == "dev"
    assert {"type", "name", "parent", "inputs"} == set(doc["resources"][0])
    buckets = [r for r in doc["resources"] if r["type"] == "aws:s3/bucket:Bucket"]
    # The registry bucket and its access-log bucket.
    assert [b["parent"] for b in buckets] == ["registry", "registry"]
    assert [b["inputs"].get("bucket") for b in buckets] == [None, "mlinfra-dev-123456789012-eu-west-1"]


def test_preview_all_prints_a_list_of_every_stack(project_dir: Path, run: Run) -> None:
    result = run("preview", "--all", "--json")
    assert result.exit_code == 0, result.stderr
    docs = json.loads(result.stdout)
    assert [d["stack"] for d in docs] == ["sandbox", "dev", "staging", "prod"]
    types_by_stack = {d["stack"]: {r["type"] for r in d["resources"]} for d in docs}
    assert "mlinfra:aws:SandboxVM" in types_by_stack["sandbox"]
    assert "mlinfra:aws:SandboxVM" not in types_by_stack["prod"]
    assert "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration" in types_by_stack["prod"]
    # Nothing is pinned in the shipped stacks: registries and package groups, no endpoint.
    assert all("aws:sagemaker/endpoint:Endpoint" not in types for types in types_by_stack.values())


def test_preview_tree_shows_key_properties(project_dir: Path, run: Run) -> None:
    result = run("preview", "-s", "prod")
    assert result.exit_code == 0, result.stderr
    assert "stack prod" in result.stdout
    assert "registry-bucket s3:Bucket" in result.stdout
    assert "registry-object-lock s3:BucketObjectLockConfiguration  objectLockEnabled=Enabled" in result.stdout


def test_preview_with_a_pin_declares_the_endpoint(project_dir: Path, run: Run) -> None:
    edit_stack(project_dir, "staging", "mlinfra:models", {"churn": {"pinned": pin(stage="staging")}})
    doc = json.loads(run("preview", "-s", "staging", "--json").stdout)
    endpoints = [r for r in doc["resources"] if r["type"] == "aws:sagemaker/endpoint:Endpoint"]
    assert [e["inputs"]["name"] for e in endpoints] == ["mlinfra-staging-churn"]


def test_secret_config_stays_masked(project_dir: Path, run: Run) -> None:
    edit_stack(
        project_dir,
        "prod",
        "mlinfra:monitoring",
        {"enabled": True, "notifications": [{"protocol": "https", "endpoint": {"secure": "v1:c2VjcmV0LXRva2Vu"}}]},
    )
    result = run("preview", "-s", "prod", "--json")
    assert result.exit_code == 0, result.stderr
    assert "c2VjcmV0LXRva2Vu" not in result.stdout
    assert "[secret]" in result.stdout


def test_stack_and_all_together_is_a_usage_error(project_dir: Path, run: Run) -> None:
    result = run("preview", "--all", "--stack", "dev")
    assert result.exit_code == 2
    assert "give --stack or --all, not both" in result.stderr


BAD_EDITS = [
    (
        "mlinfra:models",
        {"churn": {"instanceTyp": "ml.m5.large"}},
        "error: stacks/Pulumi.dev.yaml: mlinfra:models.churn.instanceTyp: unknown key (did you mean 'instanceType'?)",
    ),
    (
        "mlinfra:models",
        {"churn": {"instanceCount": "lots"}},
        "error: stacks/Pulumi.dev.yaml: mlinfra:models.churn.instanceCount: Input should be a valid integer, unable to "
        "parse string as an integer (got 'lots')",
    ),
    (
        "mlinfra:models",
        {"churn": {"instanceType": "ml.x1.huge", "mode": "realtime"}},
        "error: stacks/Pulumi.dev.yaml: mlinfra:models.churn.instanceType: 'ml.x1.huge' is not an instance type "
        "SageMaker hosting accepts",
    ),
    (
        "mlinfra:models",
        {"a-model-name-that-is-far-too-long-for-sagemaker-endpoints": {}},
        "error: stacks/Pulumi.dev.yaml: mlinfra:models.a-model-name-that-is-far-too-long-for-sagemaker-endpoints: ",
    ),
    (
        "mlinfra:models",
        {"churn": {"pinned": {"version": 1, "digest": "sha256:" + "0" * 64, "image": pin()["image"]}}},
        "error: stacks/Pulumi.dev.yaml: mlinfra:models.churn.pinned.artifact: required key is missing",
    ),
    (
        "mlinfra:models",
        {"churn": {"pinned": {**pin(), "digest": "sha256:XYZ"}}},
        "error: stacks/Pulumi.dev.yaml: mlinfra:models.churn.pinned.digest: 'sha256:XYZ' is not a digest of the form "
        "sha256:<64 lowercase hex>",
    ),
    (
        "mlinfra:monitorin",
        {"enabled": True},
        "error: stacks/Pulumi.dev.yaml: mlinfra:monitorin: unknown key (did you mean 'monitoring'?)",
    ),
]


@pytest.mark.parametrize(("key", "value", "expected"), BAD_EDITS, ids=[e[2].split(": ")[2] for e in BAD_EDITS])
@pytest.mark.parametrize("command", [("preview", "-s", "dev"), ("stack", "show", "dev"), ("up", "-s", "dev")])
def test_bad_stack_config_exits_2_with_one_line(
    project_dir: Path, run: Run, key: str, value: object, expected: str, command: tuple[str, ...]
) -> None:
    edit_stack(project_dir, "dev", key, value)
    before = snapshot(project_dir)
    result = run(*command, env={"PATH": ""})  # `up` must fail on the config before looking for pulumi
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(expected), result.stderr
    assert result.stderr.count("\n") == 1
    assert result.stdout == ""
    assert snapshot(project_dir) == before


def test_malformed_stack_file(project_dir: Path, run: Run) -> None:
    (project_dir / "stacks" / "Pulumi.dev.yaml").write_text("config:\n  aws:region: [eu-west-1\n")
    result = run("preview", "-s", "dev")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: stacks/Pulumi.dev.yaml: line 3: invalid YAML: ")
    assert result.stderr.count("\n") == 1


def test_stack_file_that_is_not_a_mapping(project_dir: Path, run: Run) -> None:
    (project_dir / "stacks" / "Pulumi.dev.yaml").write_text("- just\n- a list\n")
    result = run("preview", "-s", "dev")
    assert result.exit_code == 2
    assert result.stderr == "error: stacks/Pulumi.dev.yaml: must be a mapping with a `config:` block\n"


def test_missing_stack_file_is_an_unknown_stage(project_dir: Path, run: Run) -> None:
    (project_dir / "stacks" / "Pulumi.dev.yaml").unlink()
    result = run("preview", "-s", "dev")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: unknown stage 'dev': no stacks/Pulumi.dev.yaml")


def test_missing_region(project_dir: Path, run: Run) -> None:
    path = project_dir / "stacks" / "Pulumi.dev.yaml"
    path.write_text(path.read_text().replace("  aws:region: eu-west-1\n", ""))
    result = run("preview", "-s", "dev")
    assert result.exit_code == 2
    assert (
        result.stderr
        == "error: stacks/Pulumi.dev.yaml: aws:region: required key is missing (e.g. aws:region: eu-west-1)\n"
    )


def test_preview_refuses_a_broken_cross_account_chain(project_dir: Path, run: Run) -> None:
    role = "arn:aws:iam::444444444444:role/mlinfra-promotion"
    edit_stack(project_dir, "prod", "mlinfra:access", {"roleArn": role})
    before = snapshot(project_dir)
    result = run("preview", "--stack", "prod")
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        "error: stacks/Pulumi.staging.yaml: mlinfra:registry.readerRoleArns: does not list prod's promotion role "
        f"{role} (access.roleArn of prod); add it, or `mlinfra promote --to prod` cannot read staging's artifacts\n"
    )
    assert snapshot(project_dir) == before
    edit_stack(project_dir, "staging", "mlinfra:registry", {"readerRoleArns": [role]})
    assert run("preview", "--stack", "prod").exit_code == 0
    assert run("preview", "--all", "--json").exit_code == 0
