"""The bootstrap stack's typed config: validated in full before any resource is declared.

The stack file (infra/bootstrap/Pulumi.bootstrap.yaml) names the GitHub repository, the stages and their accounts,
the state backend and the package repository. Errors name the file, the key and what is allowed, like the stage
stacks' config (infra/config/).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, ValidationError, model_validator

from mlinfra_infra import naming
from mlinfra_infra.config import AccountId, ConfigError, Region, RoleArn, Settings, StageName, suggest

from . import names

NAMESPACE = "bootstrap"
PASSTHROUGH = ("aws", "pulumi")
TOP_LEVEL_KEYS = ("owner", "github", "stages", "toolingAccountId", "backend", "packages")
PROTECTED_BY_DEFAULT = frozenset({"staging", "prod"})

Repository = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$"),
]
Reviewer = Annotated[str, StringConstraints(pattern=r"^(?:team:[A-Za-z0-9._-]+|user:[A-Za-z0-9-]{1,39})$")]


class GitHubSettings(Settings):
    """The repository whose workflows assume the roles, and who reviews protected environments."""

    repository: Repository
    # Required reviewers of protected stages' environments: `team:<slug>` (of the repository's organisation) or
    # `user:<login>`.
    reviewers: list[Reviewer] = Field(default_factory=list)
    default_branch: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._/-]{1,255}$")] = "main"


class StageAccount(Settings):
    """Where one stage lives, and how its CI roles are reviewed."""

    account_id: AccountId
    # Protected stages: their deploy and promotion environments need a reviewer, and their preview environment
    # admits only the default branch (pull requests cannot use it) unless `previewOnPullRequests: reviewed`.
    protected: bool | None = None
    preview_on_pull_requests: Literal["open", "reviewed", "never"] | None = None
    # The registry bucket of the stage when its stack file names one (default: derived like the stage stack does).
    registry_bucket: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")] | None = None
    # In a multi-account layout: the role `mlinfra bootstrap up` assumes in this account from the tooling account
    # (default: AWS Organizations' OrganizationAccountAccessRole).
    admin_role_arn: RoleArn | None = None


class BackendSettings(Settings):
    """Where Pulumi keeps the stage stacks' state."""

    kind: Literal["self-managed", "pulumi-cloud"] = "self-managed"
    organization: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")] | None = None
    # Server access logs of the state bucket, and noncurrent state versions, are kept this long.
    log_retention_days: Annotated[int, Field(ge=1, le=3650)] = 365
    noncurrent_version_days: Annotated[int, Field(ge=1, le=3650)] = 90
    protect: bool = True

    @model_validator(mode="after")
    def _organization(self) -> BackendSettings:
        if self.kind == "pulumi-cloud" and self.organization is None:
            raise ValueError("kind pulumi-cloud needs organization: the Pulumi Cloud organization the stacks live in")
        if self.kind == "self-managed" and self.organization is not None:
            raise ValueError("organization is for kind pulumi-cloud; a self-managed backend has none")
        return self


class PackageSettings(Settings):
    """The CodeArtifact domain the team publishes its own packages to."""

    enabled: bool = True
    # The project's own Python package: only published versions may enter (public PyPI is blocked for it).
    own_packages: list[Annotated[str, StringConstraints(pattern=r"^[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?$")]] = Field(
        default_factory=lambda: ["mlinfra"]
    )


class BootstrapConfig(Settings):
    """Everything the bootstrap stack declares. Built by `load_bootstrap_config`, never by hand."""

    project: str
    region: Region
    owner: Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[\w .:/=+@-]+$")] = "ml-platform"
    github: GitHubSettings
    stages: dict[StageName, StageAccount]
    tooling_account_id: AccountId | None = None
    backend: BackendSettings = BackendSettings()
    packages: PackageSettings = PackageSettings()

    @model_validator(mode="after")
    def _check(self) -> BootstrapConfig:
        if not self.stages:
            raise ValueError("stages: name at least one stage and its account")
        for stage in self.stages:
            roles = [names.role(self.project, stage, kind) for kind in names.ROLE_KINDS]
            for role in [*roles, names.source_role(self.project, stage), names.approval_role(self.project, stage)]:
                if len(role) > 64:
                    raise ValueError(f"role name {role!r} is over IAM's 64 characters")
        return self

    @property
    def tooling_account(self) -> str:
        """The account holding the state backend and the package repository (default: the first stage's)."""
        return self.tooling_account_id or next(iter(self.stages.values())).account_id

    @property
    def accounts(self) -> list[str]:
        """Every account the stack touches: the tooling account first, then the stages' in order, once each."""
        seen = [self.tooling_account]
        for stage in self.stages.values():
            if stage.account_id not in seen:
                seen.append(stage.account_id)
        return seen

    @property
    def multi_account(self) -> bool:
        """Whether some stage lives outside the tooling account."""
        return len(self.accounts) > 1

    def is_protected(self, stage: str) -> bool:
        """Whether `stage`'s environments need a reviewer (default: staging and prod)."""
        value = self.stages[stage].protected
        return stage in PROTECTED_BY_DEFAULT if value is None else value

    def preview_on_pull_requests(self, stage: str) -> Literal["open", "reviewed", "never"]:
        """How pull requests reach `stage`'s preview role: open, after an environment review, or not at all."""
        value = self.stages[stage].preview_on_pull_requests
        if value is not None:
            return value
        return "never" if self.is_protected(stage) else "open"

    def registry_bucket(self, stage: str) -> str:
        """The registry bucket of `stage` (as the stage stack derives it unless the stack file names one)."""
        given = self.stages[stage].registry_bucket
        return given or naming.registry_bucket(self.project, stage, self.region, self.stages[stage].account_id)

    def admin_role(self, account: str) -> str | None:
        """The role assumed to manage `account` (None for the tooling account: the caller's own credentials)."""
        if account == self.tooling_account:
            return None
        for stage in self.stages.values():
            if stage.account_id == account and stage.admin_role_arn:
                return stage.admin_role_arn
        return names.role_arn(account, "OrganizationAccountAccessRole")

    def next_stage(self, stage: str) -> str | None:
        """The stage promoted into from `stage` (None for the last)."""
        order = self.stage_names()
        index = order.index(stage)
        return order[index + 1] if index + 1 < len(order) else None

    def has_source_roles(self, stage: str) -> bool:
        """Whether `stage` gets a source (read) and an approval role: the next stage lives in another account."""
        following = self.next_stage(stage)
        return following is not None and self.stages[following].account_id != self.stages[stage].account_id

    def source_role_arn(self, stage: str) -> str | None:
        """The ARN of `stage`'s source role (None when the next stage shares its account, or there is none)."""
        if not self.has_source_roles(stage):
            return None
        return names.role_arn(self.stages[stage].account_id, names.source_role(self.project, stage))

    def approval_role_arn(self, stage: str) -> str | None:
        """The ARN of `stage`'s approval role (None when it has none)."""
        if not self.has_source_roles(stage):
            return None
        return names.role_arn(self.stages[stage].account_id, names.approval_role(self.project, stage))

    def stage_names(self) -> list[str]:
        """The stages in promotion order."""
        return list(self.stages)


def _key(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc]
    if not parts:
        return f"{NAMESPACE}:"
    if parts[0] == "region":
        return "aws:region"
    return ".".join([f"{NAMESPACE}:{parts[0]}", *parts[1:]])


def load_bootstrap_config(raw: Mapping[str, Any], *, project: str, source: str) -> BootstrapConfig:
    """Validate flat Pulumi config (`bootstrap:stages` -> {...}, `aws:region` -> ...) into a BootstrapConfig.

    `project` is the stage stacks' Pulumi project name (the prefix of every role). Raises ConfigError naming the
    file and the first wrong key.
    """
    data: dict[str, Any] = {"project": project}
    for full_key, value in raw.items():
        namespace, sep, key = str(full_key).partition(":")
        if not sep:
            raise ConfigError(source, str(full_key), f"config keys need a namespace, e.g. {NAMESPACE}:{full_key}")
        if namespace == NAMESPACE:
            if key not in TOP_LEVEL_KEYS:
                raise ConfigError(source, str(full_key), "unknown key" + suggest(key, TOP_LEVEL_KEYS))
            data[key] = value
        elif namespace == "aws" and key == "region":
            data["region"] = value
        elif namespace not in PASSTHROUGH:
            raise ConfigError(
                source,
                str(full_key),
                f"unknown namespace {namespace!r}" + suggest(namespace, (NAMESPACE, *PASSTHROUGH)),
            )
    if "backend" in data and isinstance(data["backend"], str):
        data["backend"] = {"kind": data["backend"]}
    try:
        return BootstrapConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        if err["type"] == "missing":
            message = "required key is missing"
        else:
            message = str(err["msg"]).removeprefix("Value error, ")
            if err["type"].startswith(("literal_", "string_", "int_", "bool_", "greater", "less")):
                message += f" (got {err.get('input')!r})"
        raise ConfigError(source, _key(loc), message) from None
