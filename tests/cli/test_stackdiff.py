"""`diff_rendered` on real renders: a pin change replaces model and config and updates the endpoint in place."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from mlinfra.stacks.diff import diff_rendered, flatten
from mlinfra.stacks.forcenew import replaces, sdk_replacement_hints
from mlinfra.stacks.render import RenderedStack
from tests.builders import pin
from tests.cli.conftest import REPO
from tests.cli.test_preview import edit_stack

Render = Callable[..., RenderedStack]
Run = Callable[..., Result]
STAGES = ["sandbox", "dev", "staging", "prod"]
MODEL = "aws:sagemaker/model:Model"
CONFIG = "aws:sagemaker/endpointConfiguration:EndpointConfiguration"
ENDPOINT = "aws:sagemaker/endpoint:Endpoint"


def staging(render_stack: Render, version: int | None, **settings: object) -> RenderedStack:
    model: dict[str, object] = {**settings}
    if version is not None:
        model["pinned"] = pin(version=version, stage="staging")
    return render_stack({"mlinfra:models": {"churn": model}}, stage="staging")


def test_same_render_is_no_change(render_stack: Render) -> None:
    before = staging(render_stack, 3)
    diff = diff_rendered(before, staging(render_stack, 3))
    assert diff.empty
    assert diff.unchanged == sum(1 for r in before.resources if r.custom)
    assert diff.summary() == f"no changes ({diff.unchanged} unchanged)"


def test_pin_change_replaces_model_and_config_and_updates_the_endpoint(render_stack: Render) -> None:
    diff = diff_rendered(staging(render_stack, 3), staging(render_stack, 4), base="main (abc1234)")
    actions = {(r.type, r.action) for r in diff.resources}
    assert (MODEL, "replace") in actions
    assert (CONFIG, "replace") in actions
    assert (ENDPOINT, "update") in actions
    model = next(r for r in diff.resources if r.type == MODEL)
    changed = {c.path: c for c in model.changes}
    assert changed["primaryContainer.environment.MLINFRA_VERSION"].before == "3"
    assert changed["primaryContainer.environment.MLINFRA_VERSION"].after == "4"
    assert changed["primaryContainer.modelDataUrl"].replaces
    # The config refers to the model's new (provider-chosen) name: known only after apply, and it replaces the config.
    config = next(r for r in diff.resources if r.type == CONFIG)
    assert [(c.path, c.computed, c.replaces) for c in config.changes] == [
        ("productionVariants.0.modelName", True, True)
    ]
    endpoint = next(r for r in diff.resources if r.type == ENDPOINT)
    assert [(c.path, c.computed, c.replaces) for c in endpoint.changes] == [("endpointConfigName", True, False)]
    assert diff.counts()["add"] == 0
    assert diff.counts()["remove"] == 0


def test_instance_count_change_replaces_only_the_config(render_stack: Render) -> None:
    diff = diff_rendered(staging(render_stack, 3, instanceCount=1), staging(render_stack, 3, instanceCount=2))
    by_type = {r.type: r for r in diff.resources}
    assert by_type[CONFIG].action == "replace"
    change = next(c for c in by_type[CONFIG].changes if not c.computed)
    assert (change.path, change.before, change.after) == ("productionVariants.0.initialInstanceCount", 1, 2)
    assert by_type[ENDPOINT].action == "update"
    assert MODEL not in by_type


def test_first_pin_adds_the_endpoint_and_removing_it_removes_it(render_stack: Render) -> None:
    unpinned, pinned = staging(render_stack, None), staging(render_stack, 3)
    added = diff_rendered(unpinned, pinned)
    assert {r.action for r in added.resources} == {"add"}
    assert {ENDPOINT, MODEL, CONFIG} <= {r.type for r in added.resources}
    endpoint = next(r for r in added.resources if r.type == ENDPOINT)
    assert ("name", "mlinfra-staging-churn") in {(c.path, c.after) for c in endpoint.changes}
    removed = diff_rendered(pinned, unpinned)
    assert {r.action for r in removed.resources} == {"remove"}
    assert len(removed.resources) == len(added.resources)


def test_markdown_and_text_mark_replacements(render_stack: Render) -> None:
    diff = diff_rendered(staging(render_stack, 3), staging(render_stack, 4), base="main (abc1234)")
    markdown = diff.markdown()
    assert markdown.startswith("#### Stack `staging` against `main (abc1234)`: 2 to replace, 1 to update (")
    assert "| **replace** | `mlinfra-staging-churn-m` | `sagemaker:Model` |" in markdown
    assert "| `endpointConfigName` | `mlinfra-staging-churn-c-" in markdown
    assert "`(known after apply)` |" in markdown
    assert "**(forces replacement)**" in markdown
    text = diff.text()
    assert text.startswith("stack staging against main (abc1234): +0 ~1 -0 +-2 (")
    assert text.splitlines()[0].endswith(
        "; replaces mlinfra-staging-churn-c (sagemaker:EndpointConfiguration), "
        "mlinfra-staging-churn-m (sagemaker:Model)"
    )
    assert "   ~ churn-endpoint-endpoint (sagemaker:Endpoint) update" in text
    assert "[forces replacement]" not in text and "--details lists them" in text
    assert len(text.splitlines()) < 12  # one pin: a summary, not a listing of every property
    detailed = diff.text(details=True)
    assert "[forces replacement]" in detailed and len(detailed.splitlines()) > len(text.splitlines())
    assert "…" not in markdown  # --markdown never cuts a value
    doc = diff.to_json()
    assert doc["summary"] == {"add": 0, "replace": 2, "update": 1, "remove": 0, "unchanged": diff.unchanged}


def test_force_new_rules() -> None:
    assert replaces(ENDPOINT, "name")
    assert not replaces(ENDPOINT, "endpointConfigName")
    assert not replaces(ENDPOINT, "deploymentConfig.blueGreenUpdatePolicy.terminationWaitInSeconds")
    assert replaces(ENDPOINT, "deploymentConfig.autoRollbackConfiguration.alarms.0.alarmName")
    assert replaces(MODEL, "primaryContainer.image")
    assert not replaces(MODEL, "tags.stage")
    assert replaces("aws:ec2/instance:Instance", "rootBlockDevice.encrypted")
    assert not replaces("aws:ec2/instance:Instance", "instanceType")
    # A type without a rule: its physical name replaces it, nothing else does.
    assert replaces("aws:acm/certificate:Certificate", "name")
    assert not replaces("aws:acm/certificate:Certificate", "validationMethod.x")


def test_sdk_hints_come_from_the_installed_provider() -> None:
    # The installed SDK documents these as "Changing this forces a new resource" (read, not listed by hand).
    assert {"snapshotArns", "snapshotName"} <= sdk_replacement_hints("aws:elasticache/cluster:Cluster")
    assert replaces("aws:elasticache/cluster:Cluster", "snapshotName")
    # Conditional statements ("If the type is not Interface, changing this forces...") are not taken as force-new.
    assert "privateDnsEnabled" not in sdk_replacement_hints("aws:ec2/vpcEndpoint:VpcEndpoint")
    assert sdk_replacement_hints("aws:nosuch/thing:Thing") == frozenset()


def test_flatten_opens_json_documents() -> None:
    flat = flatten({"policy": '{"Statement": [{"Effect": "Allow", "Action": ["s3:GetObject"]}]}', "n": 1})
    assert flat == {"policy.Statement.0.Effect": "Allow", "policy.Statement.0.Action": ["s3:GetObject"], "n": 1}


# --- `mlinfra preview --diff` in a real git repository --------------------------------------------------------------


def git(root: Path, *args: str) -> str:
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "PATH": os.environ["PATH"],
        "HOME": str(root),
    }
    return subprocess.run(["git", *args], cwd=root, env=env, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(project_dir: Path) -> Path:
    git(project_dir, "init", "-q", "-b", "main")
    git(project_dir, "add", "-A")
    git(project_dir, "commit", "-q", "-m", "stacks")
    return project_dir


def test_diff_against_the_merge_base_with_main(repo: Path, run: Run) -> None:
    git(repo, "checkout", "-q", "-b", "promote-churn")
    edit_stack(repo, "staging", "mlinfra:models", {"churn": {"pinned": pin(version=3, stage="staging")}})
    git(repo, "commit", "-q", "-am", "pin churn 3")
    edit_stack(repo, "staging", "mlinfra:models", {"churn": {"pinned": pin(version=4, stage="staging")}})
    main_commit = git(repo, "rev-parse", "main").strip()

    # Against the merge base with main (nothing pinned there): the endpoint is new.
    result = run("preview", "--diff", "-s", "staging", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["base"] == f"merge-base with main ({main_commit[:7]})"
    assert doc["summary"]["add"] > 0
    # Besides the new resources, only the dashboard changes (its widgets now show the endpoint), in place.
    assert [(r["type"], r["action"]) for r in doc["resources"] if r["action"] != "add"] == [
        ("aws:cloudwatch/dashboard:Dashboard", "update")
    ]
    assert ENDPOINT in {r["type"] for r in doc["resources"] if r["action"] == "add"}
    # The cost of the change: the new endpoint's instance hours (and its alarms), none of it before.
    cost = doc["monthlyUsd"]
    assert cost["delta"] == round(cost["after"] - cost["before"], 2) > 50
    assert any(c["resource"].endswith("-churn-c") and c["before"] is None for c in cost["resources"])

    # Against the branch's last commit (version 3 pinned): model and config replaced, endpoint updated in place.
    result = run("preview", "--diff", "-s", "staging", "--base", "HEAD", "--json")
    assert result.exit_code == 0, result.stderr
    actions = {r["type"]: r["action"] for r in json.loads(result.stdout)["resources"]}
    assert {MODEL: "replace", CONFIG: "replace", ENDPOINT: "update"}.items() <= actions.items()
    assert "add" not in actions.values()
    assert "remove" not in actions.values()

    markdown = run("preview", "--diff", "-s", "staging", "--base", "HEAD", "--markdown").stdout
    assert markdown.startswith("#### Stack `staging` against `HEAD (")
    assert "Monthly estimate: $" in markdown
    assert git(repo, "status", "--porcelain") == " M stacks/Pulumi.staging.yaml\n"  # the working tree is untouched


@pytest.mark.parametrize("program_changed", [False, True], ids=["rendered here", "rendered in a child process"])
def test_diff_all_and_a_stage_new_since_the_base(repo: Path, run: Run, program_changed: bool) -> None:
    (repo / "stacks" / "Pulumi.qa.yaml").write_text((repo / "stacks" / "Pulumi.dev.yaml").read_text())
    if program_changed:
        (repo / "infra").mkdir()
        (repo / "infra" / "notes.py").write_text("")
    result = run("preview", "--diff", "--all", "--base", "main", "--json")
    assert result.exit_code == 0, result.stderr
    docs = {d["stack"]: d for d in json.loads(result.stdout)}
    assert list(docs) == ["sandbox", "dev", "staging", "prod", "qa"]
    assert all(docs[s]["resources"] == [] for s in ("sandbox", "dev", "staging", "prod"))
    assert {r["action"] for r in docs["qa"]["resources"]} == {"add"}


@pytest.mark.parametrize("fork", [True, False], ids=["forked child", "fresh interpreter"])
def test_base_uses_the_program_of_that_commit(
    repo: Path, run: Run, fork: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not fork:  # as on platforms without os.fork
        monkeypatch.delattr(os, "fork")
    # Commit a copy of the program whose tags differ; the working tree's program is the installed one.
    shutil.copytree(REPO / "infra", repo / "infra", ignore=shutil.ignore_patterns("__pycache__"))
    naming = repo / "infra" / "naming.py"
    naming.write_text(naming.read_text().replace('MANAGED_BY = "mlinfra"', 'MANAGED_BY = "old-program"'))
    shutil.copy(REPO / "pyproject.toml", repo / "pyproject.toml")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "old program")
    # The working tree holds the program as installed (this checkout's), which renders the working-tree side.
    shutil.copy(REPO / "infra" / "naming.py", naming)
    result = run("preview", "--diff", "-s", "dev", "--base", "HEAD", "--json")
    assert result.exit_code == 0, result.stderr
    resources = json.loads(result.stdout)["resources"]
    assert resources
    assert {r["action"] for r in resources} == {"update"}
    tag_changes = {(c["path"], c["before"], c["after"]) for r in resources for c in r["changes"]}
    assert ("tags.managed-by", "old-program", "mlinfra") in tag_changes


def test_only_stages_whose_inputs_changed_render_the_base(repo: Path, run: Run) -> None:
    from mlinfra.stacks.project import Project
    from mlinfra.stacks.refrender import changed_since, stages_to_render

    project = Project(repo)
    head = git(repo, "rev-parse", "HEAD").strip()
    assert changed_since(project, head) == set()
    edit_stack(repo, "staging", "mlinfra:models", {"churn": {"pinned": pin(version=3, stage="staging")}})
    (repo / "README.md").write_text("notes\n")
    changed = changed_since(project, head)
    assert changed == {"stacks/Pulumi.staging.yaml", "README.md"}
    assert stages_to_render(project, STAGES, changed) == ["staging"]
    (repo / "infra").mkdir()
    (repo / "infra" / "extra.py").write_text("")
    assert stages_to_render(project, STAGES, changed_since(project, head)) == STAGES
    # Unchanged stages still get an (empty) diff.
    docs = json.loads(run("preview", "--diff", "--all", "--base", "HEAD", "--json").stdout)
    assert [d["stack"] for d in docs] == STAGES


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--base", "no-such-ref"), "error: --base no-such-ref: no such commit, branch or tag in this repository\n"),
        (("--base", "HEAD", "--json", "--markdown"), None),
    ],
)
def test_bad_base(repo: Path, run: Run, args: tuple[str, ...], expected: str | None) -> None:
    result = run("preview", "--diff", "-s", "dev", *args)
    assert result.exit_code == 2
    if expected:
        assert result.stderr == expected
    else:
        assert "give --json or --markdown, not both" in result.stderr


def test_no_merge_base_says_what_to_do(repo: Path, run: Run) -> None:
    git(repo, "branch", "-m", "main", "trunk")
    result = run("preview", "--diff", "-s", "dev")
    assert result.exit_code == 2
    assert result.stderr == (
        "error: no merge base with main or origin/main: pass --base REF (in CI, check out with fetch-depth: 0 and "
        "fetch main)\n"
    )


def test_outside_git(project_dir: Path, run: Run) -> None:
    result = run("preview", "--diff", "-s", "dev", env={"GIT_CEILING_DIRECTORIES": str(project_dir.parent)})
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {project_dir} is not in a git repository: `preview --diff` compares against a commit\n"
    )


def test_base_only_with_diff(project_dir: Path, run: Run) -> None:
    result = run("preview", "-s", "dev", "--base", "main")
    assert result.exit_code == 2
    assert "--base, --markdown and --details go with --diff" in result.stderr


@pytest.mark.parametrize("program_changed", [False, True], ids=["rendered here", "rendered in a child process"])
def test_a_base_that_does_not_render_names_the_commit(repo: Path, run: Run, program_changed: bool) -> None:
    edit_stack(repo, "dev", "mlinfra:monitorin", {"enabled": True})
    git(repo, "commit", "-q", "-am", "typo")
    edit_stack(repo, "dev", "mlinfra:monitoring", {"enabled": True})
    path = repo / "stacks" / "Pulumi.dev.yaml"
    path.write_text(path.read_text().replace("  mlinfra:monitorin:\n    enabled: true\n", ""))
    commit = git(repo, "rev-parse", "HEAD").strip()
    if program_changed:  # a program file changed too: the base renders its own tree in a child process
        (repo / "infra").mkdir()
        (repo / "infra" / "notes.py").write_text("")
    result = run("preview", "--diff", "-s", "dev", "--base", "HEAD")
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: base HEAD ({commit[:7]}): stacks/Pulumi.dev.yaml: mlinfra:monitorin: unknown key "
        "(did you mean 'monitoring'?)\n"
    )


def test_force_new_rules_agree_with_the_replacement_tests_data() -> None:
    # tests/infra/data/force_new.json (read from the provider's source for every fixed-name type) is the other record
    # of the same facts; the diff must mark at least what it lists.
    data = json.loads((REPO / "tests" / "infra" / "data" / "force_new.json").read_text())
    for type_token, entry in data["types"].items():
        for path in entry["forceNew"]:
            assert replaces(type_token, path), f"{type_token}: {path}"


def test_every_type_the_shipped_stacks_declare_has_a_rule() -> None:
    from mlinfra.stacks.files import load_stage
    from mlinfra.stacks.forcenew import FORCE_NEW
    from mlinfra.stacks.project import Project
    from mlinfra.stacks.render import render_stage

    project = Project(REPO)
    declared = {
        r.type for stage in project.stages() for r in render_stage(load_stage(project, stage)).resources if r.custom
    }
    assert declared - set(FORCE_NEW) == set()
