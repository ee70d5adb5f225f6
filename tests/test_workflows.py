"""The GitHub workflows pass a security review: the shipped files pass every check, and each breakage a reviewer
would try (a wrong `needs`, a misspelled event, `pull_request_target`, a removed push-only guard, a guard widened by
`|| ...`, a failure swallowed by `|| true`, an apply that no longer checks main's head, a plan that no longer
re-checks the gates, a scrambled stage order, a shallow checkout where history is needed, ...) is rejected.
"""

from __future__ import annotations

import copy
import functools
import io
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from mlinfra.stacks.project import Project
from tests.workflow_checks import (
    GATES_RUN,
    NODE24_MAJORS,
    OFFLINE_CHECK_RUN,
    PREVIEW_IF,
    check_ci,
    check_promote,
    check_stacks,
    jobs,
    needs_of,
    triggers,
)

REPO = Path(__file__).resolve().parents[1]
GITHUB = REPO / ".github"
WORKFLOWS = GITHUB / "workflows"
BIN = Path(sys.executable).parent
STAGES = Project(REPO).stages()
# What an apply deploys: a push that changes none of it starts no stacks run (and does not supersede one).
DEPLOY_PATHS = [
    "stacks/**",
    "infra/**",
    "cli/**",
    "model_templates/**",
    "drift/**",
    "Pulumi.yaml",
    "pyproject.toml",
    "requirements/**",
    ".pulumi-version",
    ".python-version",
    "Makefile",
    ".ci/**",
    ".github/workflows/stacks.yml",
]


def load(name: str) -> dict[str, Any]:
    return YAML(typ="safe").load((WORKFLOWS / name).read_text())


def text(name: str) -> str:
    return (WORKFLOWS / name).read_text()


def test_the_project_has_the_stages_the_checks_expect() -> None:
    # The checks take the stage list from the project; this guards against reading an empty stacks/.
    assert STAGES == ["sandbox", "dev", "staging", "prod"]


def test_stacks_workflow_passes_every_check() -> None:
    assert check_stacks(load("stacks.yml"), text("stacks.yml"), STAGES, DEPLOY_PATHS) == []


def test_stacks_job_graph() -> None:
    workflow = load("stacks.yml")
    graph = {name: needs_of(job) for name, job in jobs(workflow).items()}
    assert graph == {
        "diff": [],
        "preview": [],
        "comment": ["preview"],
        "plan-sandbox": [],
        "apply-sandbox": ["plan-sandbox"],
        "plan-dev": ["apply-sandbox"],
        "apply-dev": ["plan-dev"],
        "plan-staging": ["apply-dev"],
        "apply-staging": ["plan-staging"],
        "plan-prod": ["apply-staging"],
        "apply-prod": ["plan-prod"],
    }
    environments = {name: job.get("environment") for name, job in jobs(workflow).items() if "environment" in job}
    assert environments == {
        "preview": "preview-${{ matrix.stage }}",
        **{f"plan-{stage}": f"preview-{stage}" for stage in STAGES},
        **{f"apply-{stage}": stage for stage in STAGES},
    }
    permissions = {name: job["permissions"] for name, job in jobs(workflow).items()}
    assert permissions["diff"] == {"contents": "read"}
    assert permissions["comment"] == {"pull-requests": "write"}
    assert all(
        permissions[f"{kind}-{s}"] == {"contents": "read", "id-token": "write"}
        for s in STAGES
        for kind in ("plan", "apply")
    )


# --- Deliberate breakages -------------------------------------------------------------------------------------------

Mutation = Callable[[Any], None]


def _key(part: str) -> str | int:
    return int(part) if part.isdigit() else part


def _parent(doc: Any, path: str) -> tuple[Any, str | int]:
    *parents, last = path.split("/")
    node = doc
    for part in parents:
        node = node[_key(part)]
    return node, _key(last)


def _set(path: str, value: Any) -> Mutation:
    def mutate(doc: Any) -> None:
        node, last = _parent(doc, path)
        node[last] = value

    return mutate


def _delete(path: str) -> Mutation:
    def mutate(doc: Any) -> None:
        node, last = _parent(doc, path)
        del node[last]

    return mutate


def _rename_event(old: str, new: str) -> Mutation:
    def mutate(doc: Any) -> None:
        on = doc["on"]
        on.insert(list(on).index(old), new, on[old])
        del on[old]

    return mutate


def _add_event(event: str, value: Any) -> Mutation:
    return lambda doc: doc["on"].insert(0, event, value)


def _checkout(job: str) -> str:
    return f"jobs/{job}/steps/0/with"


def _step_with(job: str, action: str) -> Callable[[Any], Any]:
    return lambda doc: next(s for s in doc["jobs"][job]["steps"] if str(s.get("uses", "")).startswith(action))


def _edit_step(job: str, action: str, key: str, value: Any) -> Mutation:
    return lambda doc: _step_with(job, action)(doc)["with"].__setitem__(key, value)


def _replace_run(job: str, old: str, new: str) -> Mutation:
    def mutate(doc: Any) -> None:
        for step in doc["jobs"][job]["steps"]:
            if "run" in step and old in step["run"]:
                step["run"] = step["run"].replace(old, new)
                return
        raise AssertionError(f"{job}: no run containing {old!r}")

    return mutate


def _step_index(doc: Any, job: str, command: str) -> int:
    found = [i for i, step in enumerate(doc["jobs"][job]["steps"]) if command in str(step.get("run", ""))]
    assert found, f"{job}: no run containing {command!r}"
    return found[0]


def _drop_step(job: str, command: str) -> Mutation:
    return lambda doc: doc["jobs"][job]["steps"].pop(_step_index(doc, job, command))


def _swap_steps(job: str, first: str, second: str) -> Mutation:
    def mutate(doc: Any) -> None:
        steps = doc["jobs"][job]["steps"]
        a, b = _step_index(doc, job, first), _step_index(doc, job, second)
        steps[a], steps[b] = steps[b], steps[a]

    return mutate


def _scramble(doc: Any) -> None:
    # sandbox -> staging -> dev -> prod
    doc["jobs"]["plan-staging"]["needs"] = "apply-sandbox"
    doc["jobs"]["plan-dev"]["needs"] = "apply-staging"
    doc["jobs"]["plan-prod"]["needs"] = "apply-dev"


class TextEdit:
    """A breakage made in the text (comments and pins), not in the parsed document."""

    def __init__(self, old: str, new: str) -> None:
        self.old, self.new = old, new

    def __call__(self, source: str) -> str:
        assert self.old in source, self.old
        return source.replace(self.old, self.new, 1)


_text = TextEdit


GUARDLESS = "${{ !cancelled() && !failure() && needs.plan-staging.outputs.changes == 'true' }}"
EVERY_EVENT = "${{ !cancelled() && !failure() && needs.plan-dev.outputs.changes == 'true' }}"
NO_CHAIN = (
    "${{ github.ref == 'refs/heads/main' && (github.event_name == 'push' || github.event_name == 'workflow_dispatch')"
    " && needs.plan-prod.outputs.changes == 'true' }}"
)
TYPO_OUTPUT = (
    "${{ !cancelled() && !failure() && github.ref == 'refs/heads/main' && (github.event_name == 'push' || "
    "github.event_name == 'workflow_dispatch') && needs.plan-dev.outputs.change == 'true' }}"
)
SAME_REPO_IF = (
    "github.event_name == 'pull_request' && github.event.pull_request.head.repo.full_name == github.repository"
)
APPLY_PROD_IF = (
    "${{ !cancelled() && !failure() && github.ref == 'refs/heads/main' && (github.event_name == 'push' || "
    "github.event_name == 'workflow_dispatch') && needs.plan-prod.outputs.changes == 'true' }}"
)
CHECKOUT = "actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1"
SETUP_PYTHON = "setup-python@5fda3b95a4ea91299a34e894583c3862153e4b97 # v7.0.0"
MUTATIONS: list[tuple[str, Mutation | TextEdit, str]] = [
    ("wrong needs on an apply", _set("jobs/apply-dev/needs", "plan-sandbox"), "apply-dev: needs ['plan-sandbox']"),
    ("wrong needs on a plan", _set("jobs/plan-prod/needs", "apply-dev"), "plan-prod: needs ['apply-dev']"),
    ("apply needing nothing", _delete("jobs/apply-prod/needs"), "apply-prod: needs []"),
    ("misspelled event", _rename_event("pull_request", "pull_requests"), "on: ['merge_group', 'pull_requests'"),
    (
        "pull_request_target instead",
        _rename_event("pull_request", "pull_request_target"),
        "on: ['merge_group', 'pull_request_target'",
    ),
    (
        "pull_request_target added",
        _add_event("pull_request_target", None),
        "on: ['merge_group', 'pull_request', 'pull_request_target'",
    ),
    (
        "workflow_run added",
        _add_event("workflow_run", {"workflows": ["ci"]}),
        "expected pull_request, merge_group, push",
    ),
    ("push to any branch", _delete("on/push/branches"), "on.push.branches: None"),
    ("push-only guard removed", _set("jobs/apply-staging/if", GUARDLESS), "apply-staging: if must be"),
    (
        "push-only guard widened to every event",
        _set("jobs/apply-dev/if", EVERY_EVENT),
        "apply-dev: if must be",
    ),
    ("apply not stopped by a failed stage", _set("jobs/apply-prod/if", NO_CHAIN), "apply-prod: if must be"),
    ("stage order scrambled", _scramble, "stage order through needs: ['sandbox', 'staging', 'dev', 'prod']"),
    (
        "dispatch options scrambled",
        _set("on/workflow_dispatch/inputs/stage/options", ["dev", "sandbox", "staging", "prod"]),
        "on.workflow_dispatch.inputs.stage",
    ),
    (
        "preview matrix missing prod",
        lambda d: d["jobs"]["preview"]["strategy"]["matrix"]["include"].pop(),
        "preview: matrix stages",
    ),
    ("fetch-depth 1 in the offline diff", _set(_checkout("diff") + "/fetch-depth", 1), "diff: fetch-depth 1"),
    ("fetch-depth 1 in the preview", _set(_checkout("preview") + "/fetch-depth", 1), "preview: fetch-depth 1"),
    (
        "persisted credentials",
        _delete(_checkout("apply-prod") + "/persist-credentials"),
        "apply-prod: checkout without persist-credentials",
    ),
    (
        "permissions at the top",
        _set("permissions", {"contents": "write", "id-token": "write"}),
        "permissions at the top",
    ),
    (
        "id-token on the offline diff",
        _set("jobs/diff/permissions/id-token", "write"),
        "diff: id-token: write without an OIDC step",
    ),
    (
        "pull-requests write on the preview",
        _set("jobs/preview/permissions/pull-requests", "write"),
        "preview: pull-requests: write",
    ),
    (
        "contents write on an apply",
        _set("jobs/apply-prod/permissions/contents", "write"),
        "apply-prod: contents: write",
    ),
    ("no job permissions", _delete("jobs/plan-dev/permissions"), "plan-dev: no job-level permissions"),
    (
        "OIDC without id-token",
        _delete("jobs/apply-dev/permissions/id-token"),
        "apply-dev: uses OIDC but lacks id-token",
    ),
    (
        "plan in the apply's environment",
        _set("jobs/plan-prod/environment", "prod"),
        "plan-prod: environment 'prod', expected 'preview-prod'",
    ),
    (
        "preview in the apply's environment",
        _set("jobs/preview/environment", "prod"),
        "preview: environment 'prod', expected 'preview-${{ matrix.stage }}'",
    ),
    (
        "wrong environment on an apply",
        _set("jobs/apply-staging/environment", "prod"),
        "apply-staging: environment 'prod'",
    ),
    ("an apply that cancels", _set("jobs/apply-prod/concurrency/cancel-in-progress", True), "apply-prod: concurrency"),
    (
        "one apply group for every stage",
        _set("jobs/apply-dev/concurrency/group", "stacks-apply"),
        "apply-dev: concurrency",
    ),
    (
        "previews that never cancel",
        _set("jobs/preview/concurrency/cancel-in-progress", False),
        "preview: needs a per-pull-request concurrency",
    ),
    ("no timeout", _delete("jobs/apply-prod/timeout-minutes"), "apply-prod: timeout-minutes None"),
    ("apply timeout shorter than a deployment", _set("jobs/apply-prod/timeout-minutes", 60), "would kill `pulumi up`"),
    ("comment misses a stage", _set("jobs/comment/steps/1/env/STAGES", "sandbox dev prod"), "comment: STAGES"),
    (
        "fork guard removed from the preview",
        _set("jobs/preview/if", "github.event_name == 'pull_request'"),
        "preview: must not run for pull requests from forks",
    ),
    (
        "offline diff limited to this repository",
        _set("jobs/diff/if", SAME_REPO_IF),
        "diff: the offline diff must run for forks too",
    ),
    (
        "deploy role in a plan",
        _edit_step(
            "plan-dev", "aws-actions/configure-aws-credentials", "role-to-assume", "${{ vars.AWS_DEPLOY_ROLE }}"
        ),
        "plan-dev: must use the read-only preview role",
    ),
    (
        "preview role in an apply",
        _edit_step(
            "apply-dev", "aws-actions/configure-aws-credentials", "role-to-assume", "${{ vars.AWS_PREVIEW_ROLE_DEV }}"
        ),
        "apply-dev: must assume the deploy role",
    ),
    (
        "another stage's preview role",
        _set("jobs/preview/strategy/matrix/include/3/role", "${{ vars.AWS_PREVIEW_ROLE_DEV }}"),
        "preview: stage prod does not use its own",
    ),
    (
        "Pulumi CLI not pinned",
        _edit_step("apply-prod", "pulumi/actions", "pulumi-version-file", "latest"),
        "apply-prod: the Pulumi CLI version",
    ),
    (
        "unlocked install",
        _replace_run("apply-prod", "make ci-install", "pip install -e ."),
        "apply-prod: pip install outside make ci-install",
    ),
    (
        "apply not recorded",
        _replace_run("apply-prod", "mlinfra record-deployment", "echo"),
        "apply-prod: must run `mlinfra up`",
    ),
    (
        "plan without Pulumi",
        _replace_run("plan-dev", "pulumi preview --refresh --stack", "true"),
        "plan-dev: no step runs `pulumi preview`",
    ),
    ("needs output misspelled", _set("jobs/apply-dev/if", TYPO_OUTPUT), "needs.plan-dev.outputs.change"),
    ("double-quoted string", _set("jobs/diff/if", 'github.event_name == "pull_request"'), "a double-quoted string"),
    ("single = in an if", _set("jobs/diff/if", "github.event_name = 'pull_request'"), "a lone = (comparison is ==)"),
    ("single & in an if", _set("jobs/plan-sandbox/if", NO_CHAIN.replace("&&", "&", 1)), "a lone & or |"),
    ("unbalanced brackets", _set("jobs/apply-prod/if", NO_CHAIN.replace("(", "", 1)), "unbalanced brackets"),
    (
        "env in a job if",
        _set("jobs/diff/if", "github.event_name == 'pull_request' && env.DEBUG == 'x'"),
        "context `env` is not available in job.if",
    ),
    (
        "matrix in a job if",
        _set("jobs/preview/if", SAME_REPO_IF + " && matrix.stage != 'prod'"),
        "context `matrix` is not available in job.if",
    ),
    (
        "unknown input",
        _set("jobs/plan-dev/name", "plan ${{ inputs.stag }}"),
        "inputs.stag is not a workflow_dispatch input",
    ),
    (
        "unknown step output",
        _set("jobs/plan-dev/outputs/changes", "${{ steps.plans.outputs.changes }}"),
        "steps.plans.outputs.changes refers to no earlier step",
    ),
    (
        "expression in a script",
        _replace_run("diff", '"$BASE"', '"${{ github.head_ref }}"'),
        "diff: an expression inside run:",
    ),
    (
        "a stored Pulumi token",
        _set("jobs/apply-prod/env", {"PULUMI_ACCESS_TOKEN": "${{ secrets.PULUMI_ACCESS_TOKEN }}"}),
        "a stored secret is used",
    ),
    ("movable tag", _text(f"{CHECKOUT} # v7.0.1", "actions/checkout@v7 # v7"), "is not pinned to a full commit SHA"),
    ("Node 20 major", _text("# v7.0.1", "# v4.2.2"), "actions/checkout: v4 predates Node 24"),
    ("no version comment", _text(" # v7.0.0\n", "\n"), "no version comment"),
    (
        "unreviewed action",
        _text(f"actions/{SETUP_PYTHON}", f"someone/{SETUP_PYTHON}"),
        "someone/setup-python: not a reviewed action",
    ),
    # --- forward only, gates where the pin is applied, refreshed plans, least privilege by stage ---
    (
        "fork guard widened by a label",
        _set("jobs/preview/if", PREVIEW_IF + " || contains(github.event.pull_request.labels.*.name, 'safe')"),
        "preview: if must be exactly",
    ),
    (
        "apply guard widened by a label",
        _set(
            "jobs/apply-prod/if",
            APPLY_PROD_IF.replace(" }}", " || contains(github.event.pull_request.labels.*.name, 'go') }}"),
        ),
        "apply-prod: if must be exactly",
    ),
    (
        "policy check failure swallowed",
        _replace_run("diff", OFFLINE_CHECK_RUN, OFFLINE_CHECK_RUN + " || true"),
        "diff: a script swallows a failure (|| true)",
    ),
    (
        "offline check with --all dropped to one stack",
        _replace_run("diff", OFFLINE_CHECK_RUN, ".venv/bin/mlinfra check --stack prod --offline"),
        "diff: the `mlinfra check` step must be exactly",
    ),
    (
        "gate failure swallowed in a plan",
        _replace_run("plan-prod", GATES_RUN, GATES_RUN + " || :"),
        "plan-prod: a script swallows a failure (|| :)",
    ),
    (
        "gate-less plan (a hand-written pin would apply)",
        _replace_run("plan-prod", GATES_RUN, "true"),
        "plan-prod: no step runs `mlinfra check`",
    ),
    (
        "gates checked with the policy pack only",
        _replace_run("plan-staging", GATES_RUN, GATES_RUN + " --offline"),
        "plan-staging: the `mlinfra check` step must be exactly",
    ),
    (
        "gates checked after the plan decided",
        _swap_steps("plan-dev", "mlinfra check", "pulumi preview"),
        "plan-dev: must re-check the gates (mlinfra check) before",
    ),
    (
        "apply on a non-head commit (main's head check removed)",
        _drop_step("apply-prod", ".ci/forward.py"),
        "apply-prod: does not refuse a commit that is no longer main's head",
    ),
    (
        "plan on a non-head commit (main's head check removed)",
        _drop_step("plan-sandbox", ".ci/forward.py"),
        "plan-sandbox: does not refuse a commit that is no longer main's head",
    ),
    (
        "main's head checked after the apply",
        _swap_steps("apply-staging", ".ci/forward.py", "mlinfra up"),
        "apply-staging: checks main's head after",
    ),
    (
        "main's head check tolerating a failure",
        _replace_run("apply-dev", "--head FETCH_HEAD", "--head FETCH_HEAD || exit 0"),
        "apply-dev: a script swallows a failure (|| exit 0)",
    ),
    (
        "main's head compared with the run's own commit",
        _replace_run("apply-prod", "--head FETCH_HEAD", '--head "$GITHUB_SHA"'),
        "apply-prod: the main's-head step must be exactly",
    ),
    ("step allowed to fail", _set("jobs/apply-prod/steps/4/continue-on-error", True), "apply-prod: continue-on-error"),
    ("job allowed to fail", _set("jobs/plan-prod/continue-on-error", True), "plan-prod: continue-on-error"),
    (
        "plan without refresh",
        _replace_run("plan-staging", "pulumi preview --refresh", "pulumi preview"),
        "plan-staging: the `pulumi preview` step must be exactly",
    ),
    (
        "preview without refresh",
        _replace_run("preview", "pulumi preview --refresh", "pulumi preview"),
        "preview: does not run `pulumi preview --refresh",
    ),
    (
        "shallow checkout in an apply",
        _set(_checkout("apply-prod") + "/fetch-depth", 1),
        "apply-prod: fetch-depth 1",
    ),
    ("no workflow concurrency", _delete("concurrency"), "concurrency: None"),
    ("runs on main cancelled", _set("concurrency/cancel-in-progress", True), "concurrency: {"),
    ("one concurrency group for every run", _set("concurrency/group", "stacks"), "concurrency: {"),
    ("no merge queue trigger", _delete("on/merge_group"), "on: ['pull_request', 'push', 'workflow_dispatch']"),
    ("no paths filter", _delete("on/push/paths"), "on.push.paths: None"),
    ("paths filter missing infra", lambda d: d["on"]["push"]["paths"].remove("infra/**"), "on.push.paths:"),
    ("paths filter on pull requests", _set("on/pull_request/paths", ["stacks/**"]), "on.pull_request: only a branches"),
    ("Dependabot previews", _set("jobs/preview/if", SAME_REPO_IF), "preview: must not run for Dependabot"),
    (
        "Dependabot comment",
        _set("jobs/comment/if", "${{ !cancelled() && " + SAME_REPO_IF + " }}"),
        "comment: must not run for Dependabot",
    ),
    (
        "deploy team in a plan",
        _edit_step("plan-prod", "pulumi/auth-actions", "scope", "team:${{ vars.PULUMI_DEPLOY_TEAM }}"),
        "plan-prod: Pulumi token scope",
    ),
    (
        "one hard-coded Pulumi team for every apply",
        _edit_step("apply-sandbox", "pulumi/auth-actions", "scope", "team:deployers"),
        "apply-sandbox: Pulumi token scope 'team:deployers'",
    ),
    ("preview outside its environment", _delete("jobs/preview/environment"), "preview: environment None"),
    ("plan outside its environment", _delete("jobs/plan-dev/environment"), "plan-dev: environment None"),
    ("environment on the offline diff", _set("jobs/diff/environment", "preview-prod"), "diff: environment"),
]


@functools.cache
def _round_trip() -> YAML:
    yaml = YAML()
    yaml.width = 4096
    return yaml


@functools.cache
def _stacks_document() -> Any:
    """stacks.yml parsed once with comments kept; each breakage works on a deep copy."""
    return _round_trip().load(text("stacks.yml"))


def _mutated(mutation: Mutation | TextEdit) -> tuple[dict[str, Any], str]:
    """The stacks workflow after one breakage, as parsed and as text (comments kept through a round trip)."""
    source = text("stacks.yml")
    if isinstance(mutation, TextEdit):
        result = mutation(source)
        return YAML(typ="safe").load(result), result
    yaml = _round_trip()
    doc = copy.deepcopy(_stacks_document())
    mutation(doc)
    out = io.StringIO()
    yaml.dump(doc, out)
    return YAML(typ="safe").load(out.getvalue()), out.getvalue()


def test_the_round_trip_alone_breaks_nothing() -> None:
    workflow, source = _mutated(lambda doc: None)
    assert check_stacks(workflow, source, STAGES, DEPLOY_PATHS) == []


@pytest.mark.parametrize(("mutation", "expected"), [(m, e) for _, m, e in MUTATIONS], ids=[i for i, _, _ in MUTATIONS])
def test_each_breakage_is_rejected(mutation: Mutation | TextEdit, expected: str) -> None:
    workflow, source = _mutated(mutation)
    problems = check_stacks(workflow, source, STAGES, DEPLOY_PATHS)
    assert any(expected in problem for problem in problems), problems


# --- The external linters `make lint` runs --------------------------------------------------------------------------


def _tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        found = shutil.which(name)
        assert found, f"{name} is not installed: `make setup` installs the dev extras"
        return found
    return str(path)


ZIZMOR = ("--offline", "--no-progress", "--persona=auditor")  # the persona `make lint-workflows` runs


def test_zizmor_auditor_finds_nothing() -> None:
    done = subprocess.run([_tool("zizmor"), *ZIZMOR, str(GITHUB)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No findings to report" in done.stdout


def test_workflows_and_dependabot_match_their_schemas() -> None:
    for schema, files in (
        ("vendor.github-workflows", sorted(WORKFLOWS.glob("*.yml"))),
        ("vendor.dependabot", [GITHUB / "dependabot.yml"]),
    ):
        done = subprocess.run(
            [_tool("check-jsonschema"), "--builtin-schema", schema, *map(str, files)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("mutation", "tool", "expected"),
    [
        (_rename_event("pull_request", "pull_requests"), "check-jsonschema", "pull_requests"),
        (_rename_event("pull_request", "pull_request_target"), "zizmor", "dangerous-triggers"),
        (_text(CHECKOUT, "actions/checkout@v7"), "zizmor", "unpinned-uses"),
        (_delete(_checkout("apply-prod") + "/persist-credentials"), "zizmor", "artipacked"),
        (_set("jobs/apply-prod/permissions", "write-all"), "zizmor", "excessive-permissions"),
        (_replace_run("diff", '"$BASE"', '"${{ github.head_ref }}"'), "zizmor", "template-injection"),
        (_set("permissions", "write-all"), "zizmor", "excessive-permissions"),
        (_set("jobs/diff/env", {"TOKEN": "${{ secrets.SOME_TOKEN }}"}), "zizmor", "secrets-outside-env"),
    ],
    ids=[
        "schema: misspelled event",
        "zizmor: pull_request_target",
        "zizmor: tag",
        "zizmor: credentials",
        "zizmor: write-all",
        "zizmor: injection",
        "zizmor auditor: write-all at the top",
        "zizmor auditor: a secret in a fork's job",
    ],
)
def test_the_linters_reject_breakages_too(
    tmp_path: Path, mutation: Mutation | TextEdit, tool: str, expected: str
) -> None:
    _, source = _mutated(mutation)
    target = tmp_path / ".github" / "workflows" / "stacks.yml"
    target.parent.mkdir(parents=True)
    target.write_text(source)
    if tool == "zizmor":
        command = [_tool("zizmor"), *ZIZMOR, str(target)]
    else:
        command = [_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(target)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode != 0
    assert expected in done.stdout + done.stderr


# --- ci.yml, promote.yml, dependabot --------------------------------------------------------------------------------


def test_ci_runs_the_ci_script_on_every_pull_request_merge_group_and_push() -> None:
    assert check_ci(load("ci.yml"), text("ci.yml")) == []


def _mutated_file(name: str, mutation: Mutation) -> tuple[dict[str, Any], str]:
    doc = _round_trip().load(text(name))
    mutation(doc)
    out = io.StringIO()
    _round_trip().dump(doc, out)
    return YAML(typ="safe").load(out.getvalue()), out.getvalue()


@pytest.mark.parametrize(
    ("mutation", "expected"),
    [
        (_set("jobs/test/concurrency/cancel-in-progress", True), "ci: concurrency"),
        (_set("jobs/test/concurrency/group", "ci"), "ci: concurrency"),
        (_delete("on/merge_group"), "ci: on"),
        (_set("on/pull_request", {"paths": ["cli/**"]}), "ci: on"),
        (_set("on/push/branches", ["main", "release"]), "ci: on"),
        (_set("jobs/test/steps/2/run", "bash .ci/run || true"), "ci: must run exactly `bash .ci/run`"),
        (_set("jobs/test/steps/2/continue-on-error", True), "continue-on-error"),
    ],
    ids=["cancels pushes", "one group", "no merge queue", "paths filter", "more branches", "|| true", "may fail"],
)
def test_ci_breakages_are_rejected(mutation: Mutation, expected: str) -> None:
    workflow, source = _mutated_file("ci.yml", mutation)
    assert any(expected in problem for problem in check_ci(workflow, source)), check_ci(workflow, source)


def test_promote_workflow() -> None:
    promote = load("promote.yml")
    on = triggers(promote)
    assert list(on) == ["workflow_dispatch"]
    inputs = on["workflow_dispatch"]["inputs"]
    assert list(inputs) == ["model", "stage", "version", "reason"]
    assert inputs["reason"]["required"] is True
    job = promote["jobs"]["promote"]
    assert job["concurrency"]["cancel-in-progress"] is False
    script = "\n".join(str(s.get("run", "")) for s in job["steps"])
    assert '.venv/bin/mlinfra "${args[@]}"' in script
    assert 'args=(promote "$MODEL" --to "$STAGE" --reason' in script
    credentials = next(s for s in job["steps"] if str(s.get("uses", "")).startswith("aws-actions/"))
    assert credentials["with"]["role-to-assume"] == "${{ vars.AWS_PROMOTION_ROLE }}"
    # Every stage a model can be promoted into (all but the entry stage, in order), and the App's token.
    assert check_promote(promote, text("promote.yml"), STAGES) == []


@pytest.mark.parametrize(
    ("mutation", "expected"),
    [
        (_set("jobs/promote/steps/5/env/GH_TOKEN", "${{ github.token }}"), "must get the App's token"),
        (_set("jobs/promote/permissions/contents", "write"), "promote: permissions"),
        (_set("jobs/promote/permissions/pull-requests", "write"), "promote: permissions"),
        (_delete("jobs/promote/steps/4/with/permission-pull-requests"), "promote: one step `id: app`"),
        (_set("jobs/promote/steps/4/with/private-key", "${{ secrets.OTHER_KEY }}"), "promote: one step `id: app`"),
        (_set("jobs/promote/steps/5/env/EXTRA", "${{ secrets.PULUMI_TOKEN }}"), "a stored secret is used"),
        (_delete("jobs/promote/environment"), "promote: must run in environment promote-<stage>"),
        (_set("jobs/promote/steps/5/run", '.venv/bin/mlinfra "${args[@]}" || true'), "swallows a failure"),
    ],
    ids=[
        "GITHUB_TOKEN",
        "contents write",
        "pull-requests write",
        "unscoped App token",
        "other key",
        "another secret",
        "no environment",
        "|| true",
    ],
)
def test_promote_breakages_are_rejected(mutation: Mutation, expected: str) -> None:
    workflow, source = _mutated_file("promote.yml", mutation)
    problems = check_promote(workflow, source, STAGES)
    assert any(expected in problem for problem in problems), problems


def test_dependabot_keeps_actions_and_python_dependencies_current() -> None:
    config = YAML(typ="safe").load((GITHUB / "dependabot.yml").read_text())
    ecosystems = {u["package-ecosystem"]: u for u in config["updates"]}
    assert set(ecosystems) == {"github-actions", "pip"}
    assert all(u["directory"] == "/" and u["schedule"]["interval"] for u in ecosystems.values())


def test_every_reviewed_action_is_used_at_a_node24_major() -> None:
    used = {
        line.split("uses:")[1].split("@")[0].strip()
        for path in WORKFLOWS.glob("*.yml")
        for line in path.read_text().splitlines()
        if "uses:" in line
    }
    assert used <= set(NODE24_MAJORS)


def test_no_static_aws_keys_anywhere() -> None:
    for path in WORKFLOWS.glob("*.yml"):
        source = path.read_text()
        for forbidden in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "aws-access-key-id", "aws-secret-access-key"):
            assert forbidden not in source, f"{path.name} mentions {forbidden}"


def test_readme_trust_policies_are_the_bootstrap_stacks_not_copies() -> None:

    section = (REPO / "docs" / "platform.md").read_text().split("**OIDC trust policies.**", 1)[1]
    section = section.split("**State backend.**")[0]
    # The trust is the bootstrap stack's (infra/bootstrap/), evaluated against sample OIDC claims in
    # tests/bootstrap/test_trust.py; the README points there instead of holding a copy that could drift.
    assert "```json" not in section
    assert "mlinfra bootstrap github --apply" in section and "bootstrap.md" in section
    # The variables a fork sets are listed, against the workflows, in docs/delivery.md (tested below).


def _delivery_doc() -> str:
    return (REPO / "docs" / "delivery.md").read_text()


def test_documented_trust_policies_bind_each_role_to_its_environment() -> None:
    """The page prints each trust policy from the bootstrap stack's render (no copy that could drift): the jq
    selections it gives name real roles, and their policies bind the role to its environment with `aud` checked."""
    import json
    import re

    from mlinfra.bootstrap import stack
    from mlinfra.stacks.project import Project

    section = _delivery_doc().split("## AWS: OIDC trust policies", 1)[1].split("## Pulumi Cloud")[0]
    assert "```json" not in section
    names = re.findall(
        r"jq -r '\.resources\[\] \| select\(\.name == \"([\w-]+)\"\) \| \.inputs\.assumeRolePolicy'", section
    )
    assert names == ["prod-ci-deploy", "prod-ci-preview"]
    rendered = stack.render(stack.load(Project(REPO)))
    subjects = []
    for name in names:
        (statement,) = json.loads(rendered.named(name).inputs["assumeRolePolicy"])["Statement"]
        assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
        assert statement["Principal"]["Federated"].endswith(":oidc-provider/token.actions.githubusercontent.com")
        condition = statement["Condition"]["StringEquals"]
        assert condition["token.actions.githubusercontent.com:aud"] == "sts.amazonaws.com"
        subjects.append(condition["token.actions.githubusercontent.com:sub"])
    # Deploy role: the stage's environment. Preview role: the stage's preview environment, never `pull_request`
    # (which any branch pusher's pull request would match, with its own copy of the workflow).
    repository = rendered.outputs["repository"]
    assert subjects == [f"repo:{repository}:environment:prod", f"repo:{repository}:environment:preview-prod"]


def test_every_variable_and_secret_the_workflows_read_is_documented() -> None:
    import re

    sources = "".join(p.read_text() for p in WORKFLOWS.glob("*.yml"))
    doc = _delivery_doc()
    variables = doc.split("**Variables**", 1)[1].split("**Secret**")[0]
    assert set(re.findall(r"vars\.([A-Z_]+)", sources)) == set(re.findall(r"`([A-Z_]{4,})`", variables))
    secrets = doc.split("**Secret**", 1)[1].split("**The promotion App.**")[0]
    assert set(re.findall(r"secrets\.([A-Z_]+)", sources)) == set(re.findall(r"`([A-Z_]{4,})`", secrets))
    environments = doc.split("**Environments**", 1)[1].split("**Variables**")[0]
    for stage in STAGES:
        assert f"`{stage}`" in environments and f"`preview-{stage}`" in environments
    for stage in STAGES[1:]:
        assert f"`promote-{stage}`" in environments
