"""What GitHub must hold for the workflows to reach the bootstrap's roles: variables, environments, protection.

The plan is derived from two sources that must agree: the workflows (`.github/workflows/*.yml`: which job reads
which `vars.X`, in which environment) and the bootstrap stack's outputs (role ARNs, state backend, Pulumi teams).
A variable a workflow reads that the bootstrap cannot fill, or a job that assumes a stage's role outside the
environment that role trusts, is reported, so the fork's configuration cannot drift from the roles.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mlinfra.errors import BadInputError, MlinfraError, ToolMissingError
from mlinfra.stacks.yamlio import read_yaml

VAR = re.compile(r"\bvars\.([A-Za-z_][A-Za-z0-9_]*)")
GH_HINT = "install GitHub's CLI (`gh`) and run `gh auth login`, or set the printed values by hand"


@dataclass(frozen=True)
class JobUse:
    """One job of one workflow: the environment it runs in (None: none) and the variables it reads."""

    workflow: str
    job: str
    environments: tuple[str | None, ...]
    variables: frozenset[str]


@dataclass
class EnvironmentRules:
    """A GitHub environment and its protection rules."""

    name: str
    reviewers: list[str] = field(default_factory=list)
    prevent_self_review: bool = False
    branches: list[str] | None = None  # None: every branch may deploy; else only these

    def to_json(self) -> dict[str, Any]:
        """The JSON shape `mlinfra bootstrap github --json` prints."""
        return {
            "name": self.name,
            "reviewers": self.reviewers,
            "preventSelfReview": self.prevent_self_review,
            "deploymentBranches": self.branches if self.branches is not None else "all",
        }


@dataclass
class GitHubPlan:
    """Everything to set in the repository, and the inconsistencies found on the way."""

    repository: str
    repository_variables: dict[str, str]
    environment_variables: dict[str, dict[str, str]]
    environments: list[EnvironmentRules]
    unset: list[str]
    warnings: list[str]

    def to_json(self) -> dict[str, Any]:
        """The JSON shape `mlinfra bootstrap github --json` prints."""
        return {
            "repository": self.repository,
            "variables": {"repository": self.repository_variables, "environments": self.environment_variables},
            "environments": [env.to_json() for env in self.environments],
            "unset": self.unset,
            "warnings": self.warnings,
        }


def candidate_environments(stages: list[str]) -> list[str]:
    """Every environment the identity convention names, per stage: preview-<s>, <s>, promote-<s>."""
    from mlinfra_infra.bootstrap import names

    return [names.environment(stage, kind) for stage in stages for kind in names.ROLE_KINDS]


def _expression_values(expression: str, workflow: Any, job: dict[str, Any]) -> list[str] | None:
    """The values `${{ inputs.X }}` or `${{ matrix.X }}` can take (a dispatch input's options, the matrix's)."""
    inner = expression.removeprefix("${{").removesuffix("}}").strip()
    kind, _, name = inner.partition(".")
    if kind == "inputs":
        # YAML 1.1 readers turn the key `on` into True; ruamel's YAML 1.2 keeps it a string.
        triggers = workflow.get("on") or workflow.get(True) or {}
        for trigger in ("workflow_dispatch", "workflow_call"):
            spec = ((triggers.get(trigger) or {}).get("inputs") or {}).get(name) if isinstance(triggers, dict) else None
            if isinstance(spec, dict) and isinstance(spec.get("options"), list):
                return [str(option) for option in spec["options"]]
    if kind == "matrix":
        matrix = (job.get("strategy") or {}).get("matrix") or {}
        values = [str(v) for v in matrix.get(name) or []] if isinstance(matrix.get(name), list) else []
        values += [str(item[name]) for item in matrix.get("include") or [] if isinstance(item, dict) and name in item]
        return values or None
    return None


def _expand(environment: str, workflow: dict[str, Any], job: dict[str, Any], candidates: list[str]) -> tuple[str, ...]:
    """A job's environment names: expressions expanded to the values they can take, else matched to the convention."""
    parts = re.split(r"(\$\{\{.*?\}\})", environment)
    names = [""]
    for part in parts:
        if not part.startswith("${{"):
            names = [n + part for n in names]
            continue
        values = _expression_values(part, workflow, job)
        if values is None:
            pattern = re.compile("".join(".+" if p.startswith("${{") else re.escape(p) for p in parts))
            return tuple(env for env in candidates if pattern.fullmatch(env))
        names = [n + value for n in names for value in values]
    return tuple(names)


def scan_workflows(root: Path, stages: list[str]) -> list[JobUse]:
    """Every job of `.github/workflows/*.yml` that reads a repository or environment variable."""
    candidates = candidate_environments(stages)
    uses: list[JobUse] = []
    for path in sorted((root / ".github" / "workflows").glob("*.y*ml")):
        shown = str(path.relative_to(root))
        data = read_yaml(path, shown) or {}
        jobs = data.get("jobs") if isinstance(data, dict) else None
        if not isinstance(jobs, dict):
            continue
        outside = {k: v for k, v in data.items() if k != "jobs"}
        top_level = frozenset(VAR.findall(json.dumps(outside, default=str)))
        if top_level:
            uses.append(JobUse(shown, "(workflow)", (None,), top_level))
        for job_id, job in jobs.items():
            if not isinstance(job, dict):
                continue
            variables = frozenset(VAR.findall(json.dumps(job, default=str)))
            env = job.get("environment")
            if isinstance(env, dict):
                env = env.get("name")
            environments = _expand(str(env), data, job, candidates) if env else (None,)
            if variables:
                uses.append(JobUse(shown, str(job_id), environments or (None,), variables))
    return uses


def _stage_of_suffix(variable: str, prefix: str, stages: list[str]) -> str | None:
    if variable.startswith(prefix):
        stage = variable[len(prefix) :].lower()
        return stage if stage in stages else None
    return None


# Variables no AWS stack can know: the team sets them itself (bootstrap github names them, and docs/delivery.md says
# where each value comes from).
SET_BY_HAND = {
    "PROMOTION_APP_CLIENT_ID": "the client ID of the GitHub App that opens promotion pull requests, with its "
    "private key as the environment secret PROMOTION_APP_PRIVATE_KEY (docs/delivery.md, 'The promotion App')",
}


def resolve(  # noqa: PLR0911 - one branch per variable the workflows read
    variable: str, environment: str | None, outputs: dict[str, Any], config: Any
) -> tuple[bool, str | None]:
    """The value of `variable` for a job in `environment`: (known, value); value None means "leave it unset"."""
    from mlinfra_infra.bootstrap import names

    stages: list[str] = config.stage_names()
    roles: dict[str, dict[str, str]] = outputs.get("roles", {})
    env_stage: dict[str, tuple[str, str]] = {
        names.environment(stage, kind): (stage, kind) for stage in stages for kind in names.ROLE_KINDS
    }
    stage, kind = env_stage.get(environment or "", (None, None))
    cloud = config.backend.kind == "pulumi-cloud"
    if variable == "AWS_REGION":
        return True, config.region
    named = _stage_of_suffix(variable, "AWS_PREVIEW_ROLE_", stages)
    if named is not None:
        return True, roles[named]["preview"]
    wanted_kind = {"AWS_PREVIEW_ROLE": "preview", "AWS_DEPLOY_ROLE": "deploy", "AWS_PROMOTION_ROLE": "promotion"}
    if variable in wanted_kind:
        if stage is None or kind != wanted_kind[variable]:
            return True, None
        return True, roles[stage][wanted_kind[variable]]
    if variable == "PULUMI_BACKEND_URL":
        return True, None if cloud else outputs.get("stateBackendUrl")
    if variable == "PULUMI_ORG":
        return True, config.backend.organization if cloud else None
    if variable in SET_BY_HAND:
        return True, None
    teams: dict[str, Literal["preview", "deploy"]] = {"PULUMI_PREVIEW_TEAM": "preview", "PULUMI_DEPLOY_TEAM": "deploy"}
    team_kind = teams.get(variable)
    if team_kind is not None:
        if not cloud or stage is None:
            return True, None
        return True, names.pulumi_team(config.project, stage, team_kind)
    return False, None


def _role_warnings(uses: list[JobUse], config: Any) -> list[str]:
    """Jobs that read a stage's role outside the environment that role trusts (the role would refuse them)."""
    from mlinfra_infra.bootstrap import names

    stages: list[str] = config.stage_names()
    out = []
    for use in uses:
        for variable in sorted(use.variables):
            stage = _stage_of_suffix(variable, "AWS_PREVIEW_ROLE_", stages)
            if stage is None:
                continue
            trusted = names.environment(stage, "preview")
            if trusted not in use.environments:
                where = ", ".join(e or "no environment" for e in use.environments)
                out.append(
                    f"{use.workflow}: job {use.job} assumes {variable} in {where}; the role trusts only "
                    f"environment {trusted} (run the job in that environment)"
                )
    return out


def environment_rules(config: Any, used: set[str]) -> list[EnvironmentRules]:
    """Protection rules of every environment of the convention that the workflows use."""
    from mlinfra_infra.bootstrap import names

    main = [config.github.default_branch]
    reviewers = list(config.github.reviewers)
    out = []
    for stage in config.stage_names():
        protected = config.is_protected(stage)
        preview = config.preview_on_pull_requests(stage)
        rules = {
            "preview": EnvironmentRules(
                names.environment(stage, "preview"),
                reviewers=reviewers if preview == "reviewed" else [],
                prevent_self_review=preview == "reviewed",
                branches=main if preview == "never" else None,
            ),
            "deploy": EnvironmentRules(
                names.environment(stage, "deploy"),
                reviewers=reviewers if protected else [],
                prevent_self_review=protected,
                branches=main,
            ),
            "promotion": EnvironmentRules(
                names.environment(stage, "promotion"),
                reviewers=reviewers if protected else [],
                prevent_self_review=protected,
                branches=main,
            ),
        }
        out += [rule for rule in rules.values() if rule.name in used]
    return out


def plan(root: Path, outputs: dict[str, Any], config: Any) -> GitHubPlan:
    """The repository's variables and environments, from the workflows and the bootstrap outputs."""
    uses = scan_workflows(root, config.stage_names())
    repo_vars: dict[str, str] = {}
    env_vars: dict[str, dict[str, str]] = {}
    unset: set[str] = set()
    unknown: list[str] = []
    used_envs: set[str] = set()
    warnings: list[str] = []
    for use in uses:
        for env in use.environments:
            if env is not None:
                used_envs.add(env)
            for variable in sorted(use.variables):
                known, value = resolve(variable, env, outputs, config)
                if not known:
                    unknown.append(f"{use.workflow}: job {use.job} reads vars.{variable}")
                    continue
                if value is None:
                    unset.add(variable)
                    if variable in SET_BY_HAND:
                        where = f"environment {env}" if env else "the repository"
                        warnings.append(f"set vars.{variable} in {where} by hand: {SET_BY_HAND[variable]}")
                    elif variable in _per_environment(config):
                        where = f"environment {env}" if env else "no environment"
                        warnings.append(
                            f"{use.workflow}: job {use.job} reads vars.{variable} in {where}, where it has no value "
                            "(it is set per stage environment: run the job in its stage's environment)"
                        )
                elif env is None or _repository_wide(variable):
                    repo_vars[variable] = value
                else:
                    env_vars.setdefault(env, {})[variable] = value
    if unknown:
        raise BadInputError(
            f"{unknown[0]}, which the bootstrap stack does not provide"
            + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else "")
            + "; add it to mlinfra's bootstrap (cli/bootstrap/github.py) or remove it from the workflow"
        )
    # A variable set for the repository needs no environment copy; one unset everywhere stays unset.
    unset -= set(repo_vars) | {v for values in env_vars.values() for v in values}
    return GitHubPlan(
        repository=config.github.repository,
        repository_variables=dict(sorted(repo_vars.items())),
        environment_variables={env: dict(sorted(values.items())) for env, values in sorted(env_vars.items())},
        environments=environment_rules(config, used_envs),
        unset=sorted(unset),
        warnings=_role_warnings(uses, config) + sorted(set(warnings)),
    )


def _per_environment(config: Any) -> set[str]:
    """Variables whose value depends on the stage environment a job runs in."""
    found = {"AWS_PREVIEW_ROLE", "AWS_DEPLOY_ROLE", "AWS_PROMOTION_ROLE"}
    if config.backend.kind == "pulumi-cloud":
        found |= {"PULUMI_PREVIEW_TEAM", "PULUMI_DEPLOY_TEAM"}
    return found


def _repository_wide(variable: str) -> bool:
    """Variables with one value for the whole repository, wherever a job reads them."""
    return variable in {"AWS_REGION", "PULUMI_BACKEND_URL", "PULUMI_ORG"} or variable.startswith("AWS_PREVIEW_ROLE_")


# --- applying with gh ---------------------------------------------------------------------------------------------


def require_gh() -> str:
    """The path of GitHub's CLI; ToolMissingError (exit 1) otherwise."""
    found = shutil.which("gh")
    if found is None:
        raise ToolMissingError(f"the gh CLI is not installed (needed for --apply): {GH_HINT}")
    return found


def _gh(gh: str, args: list[str], stdin: str | None = None) -> str:
    result = subprocess.run([gh, *args], input=stdin, capture_output=True, text=True, check=False, timeout=60)
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or [f"exit {result.returncode}"])[-1]
        raise MlinfraError(f"gh {' '.join(args[:3])} failed: {reason} (what was set before stays; run again to finish)")
    return result.stdout


def _reviewer_ids(gh: str, repository: str, reviewers: list[str]) -> list[dict[str, Any]]:
    out = []
    org = repository.split("/", maxsplit=1)[0]
    for reviewer in reviewers:
        kind, _, name = reviewer.partition(":")
        path = f"orgs/{org}/teams/{name}" if kind == "team" else f"users/{name}"
        ident = _gh(gh, ["api", path, "--jq", ".id"]).strip()
        out.append({"type": "Team" if kind == "team" else "User", "id": int(ident)})
    return out


def apply(planned: GitHubPlan) -> list[str]:
    """Create or update each environment, its branch policy and the variables with `gh`; the lines done."""
    gh = require_gh()
    repo = planned.repository
    done = []
    for env in planned.environments:
        body = {
            "wait_timer": 0,
            "prevent_self_review": env.prevent_self_review,
            "reviewers": _reviewer_ids(gh, repo, env.reviewers),
            "deployment_branch_policy": (
                None if env.branches is None else {"protected_branches": False, "custom_branch_policies": True}
            ),
        }
        _gh(gh, ["api", "--method", "PUT", f"repos/{repo}/environments/{env.name}", "--input", "-"], json.dumps(body))
        for branch in env.branches or []:
            existing = _gh(
                gh,
                [
                    "api",
                    f"repos/{repo}/environments/{env.name}/deployment-branch-policies",
                    "--jq",
                    ".branch_policies[].name",
                ],
            ).split()
            if branch not in existing:
                _gh(
                    gh,
                    [
                        "api",
                        "--method",
                        "POST",
                        f"repos/{repo}/environments/{env.name}/deployment-branch-policies",
                        "-f",
                        f"name={branch}",
                        "-f",
                        "type=branch",
                    ],
                )
        done.append(f"environment {env.name}")
    for name, value in planned.repository_variables.items():
        _gh(gh, ["variable", "set", name, "--repo", repo, "--body", value])
        done.append(f"variable {name}")
    for env_name, values in planned.environment_variables.items():
        for name, value in values.items():
            _gh(gh, ["variable", "set", name, "--repo", repo, "--env", env_name, "--body", value])
            done.append(f"variable {name} ({env_name})")
    return done
