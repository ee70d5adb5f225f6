"""What a security review checks in the stacks workflow, as functions returning the problems found (empty = sound).

The checks read the stage list from the project (stacks/ and Pulumi.yaml's `mlinfra:stages`), never from the
workflow, so a workflow that drifts from the project fails. Expression contexts are checked against GitHub's context
availability table (docs.github.com/en/actions/reference/workflows-and-actions/contexts#context-availability).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

SHA_PIN = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
VERSION_COMMENT = re.compile(r"uses:\s*(\S+)\s+#\s*v(\d+)(\.\d+){0,2}\s*$")
EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)
STRING_LITERAL = re.compile(r"'(?:[^']|'')*'")
IDENTIFIER = re.compile(r"(?<![\w.\-])([A-Za-z_][\w-]*)")
PR_NUMBER = "github.event.pull_request.number"
SAME_REPO = "github.event.pull_request.head.repo.full_name == github.repository"
NOT_DEPENDABOT = "github.actor != 'dependabot[bot]'"  # GitHub gives runs Dependabot starts no OIDC token
ON_MAIN = "github.ref == 'refs/heads/main'"
PUSH_OR_DISPATCH = "(github.event_name == 'push' || github.event_name == 'workflow_dispatch')"
OIDC_ACTIONS = ("aws-actions/configure-aws-credentials", "pulumi/auth-actions")
READ_ONLY_SCOPES = {"contents": "read"}
CHAINED = "!cancelled() && !failure() && "

# Guards, compared exactly: a guard widened by `|| ...` or narrowed by a typo is a different string.
DIFF_IF = "github.event_name == 'pull_request' || github.event_name == 'merge_group'"
PREVIEW_IF = f"github.event_name == 'pull_request' && {SAME_REPO} && {NOT_DEPENDABOT}"
COMMENT_IF = f"!cancelled() && {PREVIEW_IF}"
WORKFLOW_CONCURRENCY = {
    "group": "stacks-${{ github.event.pull_request.number || github.ref }}",
    "cancel-in-progress": "${{ github.event_name == 'pull_request' }}",
}

# Commands, compared exactly (a `|| true` appended, a flag dropped or a stage hard-coded is a different script).
DIFF_RUN = (
    '.venv/bin/mlinfra preview --diff --all --base "$BASE" --markdown > diff.md\n'
    'cat diff.md >> "$GITHUB_STEP_SUMMARY"\n'
)
OFFLINE_CHECK_RUN = ".venv/bin/mlinfra check --all --offline"
FORWARD_RUN = (
    "git fetch --quiet --no-tags origin main\n"
    '.venv/bin/python .ci/forward.py --commit "$GITHUB_SHA" --head FETCH_HEAD\n'
)
FORWARD_ENV = {
    "GH_TOKEN": "${{ github.token }}",
    "GIT_CONFIG_COUNT": "1",
    "GIT_CONFIG_KEY_0": "credential.https://github.com.helper",
    "GIT_CONFIG_VALUE_0": "!gh auth git-credential",
}
GATES_RUN = '.venv/bin/mlinfra check --stack "$STAGE"'
PLAN_RUN = (
    'stack="$STAGE"; if [ -z "$PULUMI_BACKEND_URL" ]; then stack="$PULUMI_ORG/$STAGE"; fi\n'
    'pulumi preview --refresh --stack "$stack" --non-interactive --json > plan.json\n'
    '.venv/bin/python .ci/changes.py plan.json --stage "$STAGE" --event "$EVENT" --summary "$GITHUB_STEP_SUMMARY"'
    ' >> "$GITHUB_OUTPUT"\n'
)
UP_RUN = (
    "# Stack names resolve in the Pulumi Cloud organization (a self-managed backend has none).\n"
    'if [ -z "$PULUMI_BACKEND_URL" ]; then pulumi org set-default "$PULUMI_ORG"; fi\n'
    '.venv/bin/mlinfra up --stack "$STAGE" --yes\n'
)
RECORD_RUN = '.venv/bin/mlinfra record-deployment --stack "$STAGE" --commit "$GITHUB_SHA" --run-url "$RUN_URL"'
PREVIEW_DIFF_LINE = (
    '.venv/bin/mlinfra preview --diff --stack "$STAGE" --base "origin/$BASE_REF" --markdown > "preview-$STAGE.md"'
)
PREVIEW_LINE = (
    'pulumi preview --refresh --stack "$stack" --diff --non-interactive --color never > pulumi.txt 2>&1 || status=$?'
)
SWALLOWED = re.compile(r"\|\|\s*(?:true\b|:(?!\S)|exit 0\b)|\bset \+e\b")

# The first major version of each action that runs on Node 24 (GitHub removed Node 20 from its runners).
NODE24_MAJORS = {
    "actions/checkout": 5,
    "actions/setup-python": 6,
    "actions/upload-artifact": 6,
    "actions/download-artifact": 7,
    "aws-actions/configure-aws-credentials": 5,
    "pulumi/actions": 7,
    "pulumi/auth-actions": 2,
    "actions/create-github-app-token": 2,
}

# GitHub's context availability, per workflow key (the subset these workflows use).
_STEP = {"github", "needs", "strategy", "matrix", "job", "runner", "env", "vars", "secrets", "steps", "inputs"}
CONTEXTS = {
    "job.if": {"github", "needs", "vars", "inputs"},
    "job.name": {"github", "needs", "strategy", "matrix", "vars", "inputs"},
    "job.runs-on": {"github", "needs", "strategy", "matrix", "vars", "inputs"},
    "job.environment": {"github", "needs", "strategy", "matrix", "vars", "inputs"},
    "job.concurrency": {"github", "needs", "strategy", "matrix", "vars", "inputs"},
    "job.strategy": {"github", "needs", "vars", "inputs"},
    "job.timeout-minutes": {"github", "needs", "strategy", "matrix", "vars", "inputs"},
    "job.outputs": _STEP,
    "job.env": {"github", "needs", "strategy", "matrix", "vars", "secrets", "inputs"},
    "step.if": _STEP - {"secrets"},
    "step.name": _STEP,
    "step.env": _STEP,
    "step.with": _STEP,
    "step.run": _STEP,
}
STATUS_FUNCTIONS = {"always", "cancelled", "success", "failure"}
FUNCTIONS = {"contains", "startsWith", "endsWith", "format", "join", "toJSON", "fromJSON", "hashFiles"}
LITERALS = {"true", "false", "null"}


def jobs(workflow: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The workflow's jobs by id."""
    return dict(workflow.get("jobs") or {})


def needs_of(job: dict[str, Any]) -> list[str]:
    """A job's `needs` as a list."""
    needs = job.get("needs") or []
    return [needs] if isinstance(needs, str) else list(needs)


def steps_of(job: dict[str, Any]) -> list[dict[str, Any]]:
    """A job's steps."""
    return list(job.get("steps") or [])


def uses(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    """The steps of a job that use `action` (owner/repo)."""
    return [s for s in steps_of(job) if str(s.get("uses", "")).split("@")[0] == action]


def uses_run(job: dict[str, Any], command: str) -> dict[str, Any] | None:
    """The first step of a job whose script contains `command`."""
    return next((s for s in steps_of(job) if command in str(s.get("run", ""))), None)


def runs(job: dict[str, Any]) -> str:
    """Every `run:` script of a job, joined."""
    return "\n".join(str(s.get("run", "")) for s in steps_of(job))


def condition(job: dict[str, Any]) -> str:
    """A job's `if`, without the `${{ }}` wrapper, whitespace collapsed."""
    text = str(job.get("if", ""))
    match = re.fullmatch(r"\s*\$\{\{(.*)\}\}\s*", text, re.DOTALL)
    return " ".join((match.group(1) if match else text).split())


def triggers(workflow: dict[str, Any]) -> dict[str, Any]:
    """The `on:` block as a mapping (YAML 1.1 loaders read the key `on` as True)."""
    on = workflow.get("on", workflow.get(True))
    if isinstance(on, str):
        return {on: None}
    if isinstance(on, list):
        return dict.fromkeys(on)
    return dict(on or {})


# --- The stacks workflow --------------------------------------------------------------------------------------------


def check_triggers(workflow: dict[str, Any], stages: list[str], paths: list[str]) -> Iterator[str]:
    """Pull requests, merge queues, pushes to main touching what deploys, a dispatch of one stage; nothing else."""
    on = triggers(workflow)
    if set(on) != {"pull_request", "merge_group", "push", "workflow_dispatch"}:
        yield f"on: {sorted(map(str, on))}, expected pull_request, merge_group, push and workflow_dispatch only"
    for event in ("pull_request", "push"):
        branches = (on.get(event) or {}).get("branches")
        if branches != ["main"]:
            yield f"on.{event}.branches: {branches}, expected [main]"
    if on.get("merge_group") is not None:
        yield f"on.merge_group: {on.get('merge_group')!r}, expected no filter"
    if set(on.get("pull_request") or {}) != {"branches"}:
        yield "on.pull_request: only a branches filter (a paths filter would leave required checks pending)"
    push_paths = (on.get("push") or {}).get("paths")
    if push_paths != paths:
        yield f"on.push.paths: {push_paths}, expected {paths}"
    dispatch = on.get("workflow_dispatch") or {}
    stage_input = (dispatch.get("inputs") or {}).get("stage") or {}
    if stage_input.get("type") != "choice" or stage_input.get("options") != stages:
        yield f"on.workflow_dispatch.inputs.stage: options {stage_input.get('options')}, expected {stages}"


def check_concurrency(workflow: dict[str, Any]) -> Iterator[str]:
    """One run at a time per pull request (superseded runs cancelled) and on main (never cancelled)."""
    if workflow.get("concurrency") != WORKFLOW_CONCURRENCY:
        yield f"concurrency: {workflow.get('concurrency')!r}, expected {WORKFLOW_CONCURRENCY!r}"


def check_scripts(workflow: dict[str, Any]) -> Iterator[str]:
    """No step hides a failure: no `|| true`, `|| :`, `|| exit 0`, `set +e` or continue-on-error."""
    for name, job in jobs(workflow).items():
        if "continue-on-error" in job:
            yield f"{name}: continue-on-error hides a failed job"
        for step in steps_of(job):
            if "continue-on-error" in step:
                yield f"{name}: continue-on-error on step {step.get('name') or step.get('uses')!r}"
            if SWALLOWED.search(str(step.get("run", ""))):
                yield f"{name}: a script swallows a failure ({SWALLOWED.search(str(step.get('run', ''))).group(0)})"


def _exact_step(name: str, job: dict[str, Any], command: str, expected: str) -> Iterator[str]:
    """The step whose script contains `command` must be exactly `expected`."""
    step = uses_run(job, command)
    if step is None:
        yield f"{name}: no step runs `{command}`"
    elif step.get("run") != expected:
        yield f"{name}: the `{command}` step must be exactly {expected!r} (got {step.get('run')!r})"


def check_permissions(workflow: dict[str, Any]) -> Iterator[str]:
    """None at the top; per job the least it needs: id-token where OIDC is used, pull-requests for the comment."""
    if workflow.get("permissions") != {}:
        yield f"permissions at the top: {workflow.get('permissions')!r}, expected {{}}"
    for name, job in jobs(workflow).items():
        permissions = job.get("permissions")
        if not isinstance(permissions, dict):
            yield f"{name}: no job-level permissions mapping"
            continue
        oidc = any(uses(job, action) for action in OIDC_ACTIONS)
        yield from _check_scopes(name, permissions, oidc=oidc)
        if oidc and permissions.get("id-token") != "write":
            yield f"{name}: uses OIDC but lacks id-token: write"
        if name == "comment" and (permissions.get("pull-requests") != "write" or oidc):
            yield "comment: needs pull-requests: write and no cloud credentials"


def _check_scopes(name: str, permissions: dict[str, Any], *, oidc: bool) -> Iterator[str]:
    for scope, level in permissions.items():
        if scope == "id-token":
            if level != "write" or not oidc:
                yield f"{name}: id-token: {level} without an OIDC step"
        elif scope == "pull-requests":
            if name != "comment":
                yield f"{name}: pull-requests: {level}; only the comment job writes to pull requests"
        elif READ_ONLY_SCOPES.get(scope) != level:
            yield f"{name}: {scope}: {level} is more than the job needs"


def check_pull_request_jobs(workflow: dict[str, Any], stages: list[str]) -> Iterator[str]:
    """Every pull request gets the offline diff; only this repository's pull requests get credentials."""
    all_jobs = jobs(workflow)
    for name in ("diff", "preview", "comment"):
        if name not in all_jobs:
            yield f"{name}: job missing"
            continue
        job = all_jobs[name]
        expected_if = {"diff": DIFF_IF, "preview": PREVIEW_IF, "comment": COMMENT_IF}[name]
        if condition(job) != expected_if:
            yield f"{name}: if must be exactly `{expected_if}` (got {condition(job)!r})"
        group = str((job.get("concurrency") or {}).get("group", ""))
        if PR_NUMBER not in group or (job.get("concurrency") or {}).get("cancel-in-progress") is not True:
            yield f"{name}: needs a per-pull-request concurrency group that cancels superseded runs"
    if "diff" in all_jobs:
        diff = all_jobs["diff"]
        if any(uses(diff, action) for action in OIDC_ACTIONS) or SAME_REPO in condition(diff):
            yield "diff: the offline diff must run for forks too, with no credentials"
        yield from _exact_step("diff", diff, "mlinfra preview --diff --all", DIFF_RUN)
        yield from _exact_step("diff", diff, "mlinfra check", OFFLINE_CHECK_RUN)
    comment_stages = str(
        ((uses_run(all_jobs.get("comment", {}), "gh pr comment") or {}).get("env") or {}).get("STAGES")
    )
    if comment_stages.split() != stages:
        yield f"comment: STAGES {comment_stages!r}, expected {' '.join(stages)!r}"
    for name in ("preview", "comment"):
        if name in all_jobs and SAME_REPO not in condition(all_jobs[name]):
            yield f"{name}: must not run for pull requests from forks (if lacks `{SAME_REPO}`)"
        if name in all_jobs and NOT_DEPENDABOT not in condition(all_jobs[name]):
            yield f"{name}: must not run for Dependabot (if lacks `{NOT_DEPENDABOT}`; it gets no OIDC token)"
    if "preview" in all_jobs:
        yield from _check_preview(all_jobs["preview"], stages)


def _check_preview(preview: dict[str, Any], stages: list[str]) -> Iterator[str]:
    matrix = (preview.get("strategy") or {}).get("matrix") or {}
    listed = [row.get("stage") for row in matrix.get("include") or []] or matrix.get("stage")
    if listed != stages:
        yield f"preview: matrix stages {listed}, expected {stages}"
    script = runs(preview).splitlines()
    if (
        '.venv/bin/mlinfra preview --diff --stack "$STAGE" --base "origin/$BASE_REF" --markdown > "preview-$STAGE.md"'
        not in script
    ):
        yield 'preview: does not run `mlinfra preview --diff --stack "$STAGE"` exactly'
    if PREVIEW_LINE not in script:
        yield f"preview: does not run `{PREVIEW_LINE}` (a refreshed preview) exactly"
    if preview.get("environment") != "preview-${{ matrix.stage }}":
        yield f"preview: environment {preview.get('environment')!r}, expected 'preview-${{{{ matrix.stage }}}}'"
    yield from _check_pulumi_team("preview", preview, "PULUMI_PREVIEW_TEAM")
    for step in uses(preview, "aws-actions/configure-aws-credentials"):
        if step.get("with", {}).get("role-to-assume") != "${{ matrix.role }}":
            yield "preview: must assume the stage's read-only preview role (matrix.role)"
    for row in matrix.get("include") or []:
        if row.get("role") != f"${{{{ vars.AWS_PREVIEW_ROLE_{str(row.get('stage')).upper()} }}}}":
            yield f"preview: stage {row.get('stage')} does not use its own read-only preview role"


def check_stage_chain(workflow: dict[str, Any], stages: list[str]) -> Iterator[str]:
    """plan-S then apply-S per stage, each stage needing the previous stage's apply, in the project's order."""
    all_jobs = jobs(workflow)
    previous: str | None = None
    for stage in stages:
        plan, apply = all_jobs.get(f"plan-{stage}"), all_jobs.get(f"apply-{stage}")
        if plan is None or apply is None:
            yield f"{stage}: jobs plan-{stage} and apply-{stage} expected"
            previous = stage
            continue
        expected = [f"apply-{previous}"] if previous else []
        if needs_of(plan) != expected:
            yield f"plan-{stage}: needs {needs_of(plan)}, expected {expected}"
        if needs_of(apply) != [f"plan-{stage}"]:
            yield f"apply-{stage}: needs {needs_of(apply)}, expected ['plan-{stage}']"
        yield from _check_plan(stage, plan, first=previous is None)
        yield from _check_apply(stage, apply)
        previous = stage
    # Walking `needs` from the first stage must meet the stages in the project's order.
    order, current = [], next((j for j, v in all_jobs.items() if j.startswith("plan-") and not needs_of(v)), None)
    while current is not None:
        order.append(current.removeprefix("plan-"))
        current = next((j for j, v in all_jobs.items() if needs_of(v) == [f"apply-{order[-1]}"]), None)
    if order != stages:
        yield f"stage order through needs: {order}, expected {stages}"
    extra = {j for j in all_jobs if j.startswith(("plan-", "apply-"))} - {
        f"{kind}-{s}" for s in stages for kind in ("plan", "apply")
    }
    if extra:
        yield f"jobs for stages the project does not have: {sorted(extra)}"


def _check_pulumi_team(name: str, job: dict[str, Any], variable: str) -> Iterator[str]:
    for step in uses(job, "pulumi/auth-actions"):
        scope = (step.get("with") or {}).get("scope")
        if scope != f"team:${{{{ vars.{variable} }}}}":
            yield f"{name}: Pulumi token scope {scope!r}, expected the environment's team (vars.{variable})"


def _check_forward(name: str, job: dict[str, Any], before: str) -> Iterator[str]:
    """The job checks main's head (exactly FORWARD_RUN with FORWARD_ENV) before any cloud credential or `before`."""
    all_steps = steps_of(job)
    forward = next((i for i, s in enumerate(all_steps) if ".ci/forward.py" in str(s.get("run", ""))), None)
    if forward is None:
        yield f"{name}: does not refuse a commit that is no longer main's head (.ci/forward.py)"
        return
    step = all_steps[forward]
    if step.get("run") != FORWARD_RUN or step.get("env") != FORWARD_ENV:
        yield f"{name}: the main's-head step must be exactly {FORWARD_RUN!r} with env {FORWARD_ENV!r}"
    later = [
        i
        for i, s in enumerate(all_steps)
        if before in str(s.get("run", "")) or str(s.get("uses", "")).split("@")[0] in OIDC_ACTIONS
    ]
    if any(i < forward for i in later):
        yield f"{name}: checks main's head after taking credentials or running `{before}`"


def _check_plan(stage: str, plan: dict[str, Any], *, first: bool) -> Iterator[str]:
    text = condition(plan)
    dispatch = f"(github.event_name == 'workflow_dispatch' && inputs.stage == '{stage}')"
    guard = f"{ON_MAIN} && (github.event_name == 'push' || {dispatch})"
    expected = guard if first else CHAINED + guard
    if text != expected:
        yield f"plan-{stage}: if must be exactly `{expected}` (got {text!r})"
    if "changes" not in (plan.get("outputs") or {}):
        yield f"plan-{stage}: has no `changes` output"
    if plan.get("environment") != f"preview-{stage}":
        yield f"plan-{stage}: environment {plan.get('environment')!r}, expected 'preview-{stage}'"
    yield from _check_forward(f"plan-{stage}", plan, "pulumi preview")
    yield from _exact_step(f"plan-{stage}", plan, "mlinfra check", GATES_RUN)
    yield from _exact_step(f"plan-{stage}", plan, "pulumi preview", PLAN_RUN)
    script = runs(plan)
    if script.find("mlinfra check") > script.find("pulumi preview"):
        yield f"plan-{stage}: must re-check the gates (mlinfra check) before deciding from `pulumi preview`"
    for step in uses(plan, "aws-actions/configure-aws-credentials"):
        if step.get("with", {}).get("role-to-assume") != f"${{{{ vars.AWS_PREVIEW_ROLE_{stage.upper()} }}}}":
            yield f"plan-{stage}: must use the read-only preview role of {stage}"
    yield from _check_pulumi_team(f"plan-{stage}", plan, "PULUMI_PREVIEW_TEAM")


def longest_deployment_minutes() -> int:
    """The longest blue/green deployment a stack may configure (DeploymentSettings.timeout_minutes' upper bound)."""
    from mlinfra_infra.config import DeploymentSettings

    field = DeploymentSettings.model_fields["timeout_minutes"]
    return max(int(getattr(m, "le", 0) or 0) for m in field.metadata)


def _check_apply(stage: str, apply: dict[str, Any]) -> Iterator[str]:
    text = condition(apply)
    timeout = apply.get("timeout-minutes")
    if isinstance(timeout, int) and timeout <= longest_deployment_minutes():
        yield f"apply-{stage}: timeout-minutes {timeout} would kill `pulumi up` during a long blue/green deployment"
    guard = f"{CHAINED}{ON_MAIN} && {PUSH_OR_DISPATCH} && needs.plan-{stage}.outputs.changes == 'true'"
    if text != guard:
        yield f"apply-{stage}: if must be exactly `{guard}` (got {text!r})"
    environment = apply.get("environment")
    name = environment.get("name") if isinstance(environment, dict) else environment
    if name != stage:
        yield f"apply-{stage}: environment {name!r}, expected {stage!r}"
    concurrency = apply.get("concurrency") or {}
    if concurrency.get("group") != f"stacks-apply-{stage}" or concurrency.get("cancel-in-progress") is not False:
        yield f"apply-{stage}: concurrency must be group stacks-apply-{stage} with cancel-in-progress: false"
    for step in uses(apply, "aws-actions/configure-aws-credentials"):
        if step.get("with", {}).get("role-to-assume") != "${{ vars.AWS_DEPLOY_ROLE }}":
            yield f"apply-{stage}: must assume the deploy role of its environment (vars.AWS_DEPLOY_ROLE)"
    script = runs(apply)
    up, record = script.find("mlinfra up --stack"), script.find("mlinfra record-deployment --stack")
    if up < 0 or record < up:
        yield f"apply-{stage}: must run `mlinfra up` (pulumi up and mlinfra's pre-steps), then record the deployment"
    yield from _check_forward(f"apply-{stage}", apply, "mlinfra up")
    yield from _exact_step(f"apply-{stage}", apply, "mlinfra up --stack", UP_RUN)
    yield from _exact_step(f"apply-{stage}", apply, "mlinfra record-deployment", RECORD_RUN)
    yield from _check_pulumi_team(f"apply-{stage}", apply, "PULUMI_DEPLOY_TEAM")


def check_environments(workflow: dict[str, Any]) -> Iterator[str]:
    """The environment is each job's OIDC subject: apply-S in S, plan-S in preview-S, the preview in preview-<stage>.

    The offline diff and the comment hold no cloud credentials and run in no environment.
    """
    for name, job in jobs(workflow).items():
        environment = job.get("environment")
        if name.startswith("apply-"):
            expected: str | None = name.removeprefix("apply-")
        elif name.startswith("plan-"):
            expected = "preview-" + name.removeprefix("plan-")
        elif name == "preview":
            expected = "preview-${{ matrix.stage }}"
        else:
            expected = None
        if environment != expected:
            yield f"{name}: environment {environment!r}, expected {expected!r}"


def check_jobs_common(workflow: dict[str, Any], *, history: set[str]) -> Iterator[str]:
    """Timeouts, pinned Node 24 actions, no persisted credentials, history where a job needs it, locked installs."""
    for name, job in jobs(workflow).items():
        timeout = job.get("timeout-minutes")
        if not isinstance(timeout, int) or not 0 < timeout <= (360 if name.startswith("apply-") else 60):
            yield f"{name}: timeout-minutes {timeout!r}, expected 1..60 (apply jobs: up to GitHub's 360)"
        for step in steps_of(job):
            action = str(step.get("uses", ""))
            if action and not SHA_PIN.match(action):
                yield f"{name}: {action} is not pinned to a full commit SHA"
            if action.startswith("actions/checkout@"):
                options = step.get("with") or {}
                if options.get("persist-credentials") is not False:
                    yield f"{name}: checkout without persist-credentials: false"
                needs_history = name in history or "--diff" in runs(job)
                if needs_history and options.get("fetch-depth") != 0:
                    yield f"{name}: fetch-depth {options.get('fetch-depth')!r}; the diff needs history (0)"
            if action.startswith("pulumi/actions@") and (step.get("with") or {}).get("pulumi-version-file") != (
                ".pulumi-version"
            ):
                yield f"{name}: the Pulumi CLI version must come from .pulumi-version"
        script = runs(job)
        if ("mlinfra" in script or "pulumi " in script) and "make ci-install" not in script:
            yield f"{name}: installs without the hash-checked lock (make ci-install)"
        if re.search(r"\bpip install\b", script):
            yield f"{name}: pip install outside make ci-install"


def check_version_comments(text: str) -> Iterator[str]:
    """Every `uses:` line carries its version as a comment, at a major version that runs on Node 24."""
    for line in text.splitlines():
        if "uses:" not in line or line.strip().startswith("#"):
            continue
        match = VERSION_COMMENT.search(line)
        if not match:
            yield f"no version comment: {line.strip()}"
            continue
        action, major = match.group(1).split("@")[0], int(match.group(2))
        minimum = NODE24_MAJORS.get(action)
        if minimum is None:
            yield f"{action}: not a reviewed action (add it with its first Node 24 major)"
        elif major < minimum:
            yield f"{action}: v{major} predates Node 24 (v{minimum}+)"


def check_no_stored_credentials(workflow: dict[str, Any], text: str, *, allowed: tuple[str, ...] = ()) -> Iterator[str]:
    """No secrets (but the `allowed` expressions): AWS and Pulumi Cloud by OIDC only; no expression in a script."""
    rest = text
    for expression in allowed:
        rest = rest.replace(expression, "", 1)
    if "secrets." in rest or "secrets[" in rest:
        yield "a stored secret is used; AWS and Pulumi access must be OIDC only"
    for name, job in jobs(workflow).items():
        for step in steps_of(job):
            if "${{" in str(step.get("run", "")):
                yield f"{name}: an expression inside run: (pass it through env: instead)"


def _expressions(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield from (m.group(1) for m in EXPRESSION.finditer(value))
    elif isinstance(value, dict):
        for item in value.values():
            yield from _expressions(item)
    elif isinstance(value, list):
        for item in value:
            yield from _expressions(item)


def _roots(expression: str) -> Iterator[tuple[str, str, str]]:
    """(name, what follows, the dotted path) of every identifier that starts a context path or calls a function."""
    code = STRING_LITERAL.sub("''", expression)
    for match in IDENTIFIER.finditer(code):
        rest = code[match.end() :]
        path = re.match(r"(\.[\w-]+|\[[^\]]*\])*", rest)
        yield match.group(1), rest.lstrip()[:1], match.group(1) + (path.group(0) if path else "")


def _syntax(expression: str) -> Iterator[str]:
    """What GitHub's expression parser rejects: double-quoted strings, a lone `=`, `&` or `|`, unbalanced brackets."""
    code = STRING_LITERAL.sub("''", expression)
    if '"' in code:
        yield "a double-quoted string (expressions take 'single quotes')"
    if re.search(r"(?<![=!<>])=(?!=)", code):
        yield "a lone = (comparison is ==)"
    if re.search(r"(?<!&)&(?!&)|(?<!\|)\|(?!\|)", code):
        yield "a lone & or | (logical operators are && and ||)"
    depth = 0
    for char in code:
        depth += {"(": 1, "[": 1, ")": -1, "]": -1}.get(char, 0)
        if depth < 0:
            break
    if depth != 0:
        yield "unbalanced brackets"


def check_expressions(workflow: dict[str, Any]) -> Iterator[str]:
    """Each expression uses only contexts and functions GitHub allows where it sits, and names what exists."""
    inputs = set(((triggers(workflow).get("workflow_dispatch") or {}).get("inputs") or {}).keys())
    all_jobs = jobs(workflow)
    for name, job in all_jobs.items():
        if str(job.get("if", "")).lstrip().startswith("!"):
            yield f"{name}: an `if` starting with ! must be wrapped in ${{{{ }}}} (YAML reads ! as a tag)"
        matrix = (job.get("strategy") or {}).get("matrix") or {}
        matrix_keys = {k for k in matrix if k != "include"} | {k for row in matrix.get("include") or [] for k in row}
        every_step = [str(step["id"]) for step in steps_of(job) if "id" in step]  # job outputs see them all
        places: list[tuple[str, Any, list[str]]] = [
            (key, job[key[4:]], every_step) for key in CONTEXTS if key.startswith("job.") and key[4:] in job
        ]
        ids: list[str] = []
        for step in steps_of(job):
            for key in ("if", "name", "env", "with", "run"):
                if key in step:
                    places.append((f"step.{key}", step[key], list(ids)))
            if "id" in step:
                ids.append(str(step["id"]))
        for where, value, earlier_steps in places:
            # An `if` is an expression with or without the ${{ }} wrapper.
            bare_if = where.endswith(".if") and isinstance(value, str) and "${{" not in value
            for expression in _expressions("${{ " + value + " }}" if bare_if else value):
                yield from _check_expression(name, where, expression, all_jobs, job, inputs, matrix_keys, earlier_steps)


def _check_expression(
    name: str,
    where: str,
    expression: str,
    all_jobs: dict[str, dict[str, Any]],
    job: dict[str, Any],
    inputs: set[str],
    matrix_keys: set[str],
    earlier_steps: list[str],
) -> Iterator[str]:
    allowed = CONTEXTS[where]
    yield from (f"{name}: {problem} in {where}: ${{{{{expression}}}}}" for problem in _syntax(expression))
    for root, following, path in _roots(expression):
        if root in LITERALS:
            continue
        if following == "(":
            if root in STATUS_FUNCTIONS and not where.endswith(".if"):
                yield f"{name}: {root}() outside an if ({where})"
            elif root not in STATUS_FUNCTIONS | FUNCTIONS:
                yield f"{name}: unknown function {root}() in {where}"
            continue
        if root not in allowed:
            yield f"{name}: context `{root}` is not available in {where} (allowed: {', '.join(sorted(allowed))})"
            continue
        parts = re.findall(r"[\w-]+", path)
        if root == "needs" and len(parts) > 1:
            if parts[1] not in needs_of(job):
                yield f"{name}: {path} refers to a job it does not need"
            elif len(parts) > 3 and parts[3] not in (all_jobs.get(parts[1], {}).get("outputs") or {}):
                yield f"{name}: {path}: {parts[1]} has no output {parts[3]!r}"
        elif root == "steps" and len(parts) > 1 and parts[1] not in earlier_steps:
            yield f"{name}: {path} refers to no earlier step"
        elif root == "inputs" and len(parts) > 1 and parts[1] not in inputs:
            yield f"{name}: {path} is not a workflow_dispatch input"
        elif root == "matrix" and len(parts) > 1 and parts[1] not in matrix_keys:
            yield f"{name}: {path} is not in the job's matrix"


def check_stacks(workflow: dict[str, Any], text: str, stages: list[str], paths: list[str]) -> list[str]:
    """Every problem the review finds in stacks.yml (parsed and as text); `paths`: what an apply deploys."""
    return [
        *check_triggers(workflow, stages, paths),
        *check_concurrency(workflow),
        *check_scripts(workflow),
        *check_permissions(workflow),
        *check_pull_request_jobs(workflow, stages),
        *check_stage_chain(workflow, stages),
        *check_environments(workflow),
        *check_jobs_common(
            workflow, history={"diff", "preview", *(f"{kind}-{s}" for s in stages for kind in ("plan", "apply"))}
        ),
        *check_version_comments(text),
        *check_no_stored_credentials(workflow, text),
        *check_expressions(workflow),
    ]


# --- ci.yml and promote.yml -----------------------------------------------------------------------------------------

CI_TRIGGERS = {"pull_request": None, "merge_group": None, "push": {"branches": ["main"]}}
CI_CONCURRENCY = {
    "group": "ci-${{ github.event.pull_request.number || github.sha }}",
    "cancel-in-progress": "${{ github.event_name == 'pull_request' }}",
}


def check_ci(workflow: dict[str, Any], text: str) -> list[str]:
    """ci.yml: every pull request, merge group and push to main runs `.ci/run`; only pull requests cancel."""
    problems = []
    if triggers(workflow) != CI_TRIGGERS:
        problems.append(f"ci: on {triggers(workflow)!r}, expected {CI_TRIGGERS!r}")
    test = jobs(workflow).get("test") or {}
    if test.get("concurrency") != CI_CONCURRENCY:
        problems.append(f"ci: concurrency {test.get('concurrency')!r}, expected {CI_CONCURRENCY!r}")
    if [s.get("run") for s in steps_of(test) if "run" in s] != ["bash .ci/run"]:
        problems.append("ci: must run exactly `bash .ci/run`")
    if workflow.get("permissions") != {} or test.get("permissions") != {"contents": "read"}:
        problems.append("ci: permissions must be {} at the top and contents: read on the job")
    problems += check_scripts(workflow)
    problems += check_jobs_common(workflow, history=set())
    problems += check_version_comments(text)
    problems += check_expressions(workflow)
    problems += check_no_stored_credentials(workflow, text)
    return problems


APP_TOKEN_ACTION = "actions/create-github-app-token"
APP_KEY = "${{ secrets.PROMOTION_APP_PRIVATE_KEY }}"
APP_TOKEN_WITH = {
    "client-id": "${{ vars.PROMOTION_APP_CLIENT_ID }}",
    "private-key": APP_KEY,
    "permission-contents": "write",
    "permission-pull-requests": "write",
}


def check_promote(workflow: dict[str, Any], text: str, stages: list[str]) -> list[str]:
    """promote.yml: the App's token (never GITHUB_TOKEN) opens the pull request; nothing else is stored."""
    problems = []
    job = jobs(workflow).get("promote") or {}
    if job.get("permissions") != {"contents": "read", "id-token": "write"}:
        problems.append(f"promote: permissions {job.get('permissions')!r}, expected contents: read, id-token: write")
    if job.get("environment") != "promote-${{ inputs.stage }}":
        problems.append("promote: must run in environment promote-<stage> (the role's OIDC subject, the App's key)")
    options = (((triggers(workflow).get("workflow_dispatch") or {}).get("inputs") or {}).get("stage") or {}).get(
        "options"
    )
    if options != stages[1:]:
        problems.append(f"promote: stage options {options}, expected {stages[1:]}")
    app = uses(job, APP_TOKEN_ACTION)
    if len(app) != 1 or app[0].get("with") != APP_TOKEN_WITH or app[0].get("id") != "app":
        problems.append(f"promote: one step `id: app` using {APP_TOKEN_ACTION} with exactly {APP_TOKEN_WITH!r}")
    step = uses_run(job, "mlinfra")
    if step is None or (step.get("env") or {}).get("GH_TOKEN") != "${{ steps.app.outputs.token }}":
        problems.append("promote: `mlinfra promote` must get the App's token (GH_TOKEN: steps.app.outputs.token)")
    if "github.token" in text or "secrets.GITHUB_TOKEN" in text:
        problems.append("promote: GITHUB_TOKEN must not push or open the pull request (no workflow would run on it)")
    problems += check_scripts(workflow)
    problems += check_jobs_common(workflow, history={"promote"})
    problems += check_version_comments(text)
    problems += check_expressions(workflow)
    problems += check_no_stored_credentials(workflow, text, allowed=(APP_KEY,))
    return problems
