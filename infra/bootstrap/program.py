"""The bootstrap program: typed config first, then GitHub's OIDC trust, CI roles, state backend and packages.

Resources live in the tooling account (state backend, package repository) and in each stage's account (OIDC
provider, CI roles, secrets key), each through a provider that refuses any other account.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws

from mlinfra_infra.config import ConfigError

from . import names
from .components.github_oidc import GitHubOidcProvider, GitHubOidcProviderArgs
from .components.package_repository import PackageRepository, PackageRepositoryArgs
from .components.source_roles import SourceStageRoles, SourceStageRolesArgs
from .components.stage_roles import StageCiRoles, StageCiRolesArgs
from .components.state_backend import StateBackend, StateBackendArgs
from .config import NAMESPACE, BootstrapConfig, load_bootstrap_config
from .policies import StageScope

STACK = "bootstrap"
SOURCE = "infra/bootstrap/Pulumi.bootstrap.yaml"
STRUCTURED_KEYS = ("github", "stages", "backend", "packages")

# Stack output names, shared with `mlinfra bootstrap github` and the tests.
OUT_ROLES = "roles"
OUT_OIDC = "oidcProviders"
OUT_SECRETS = "secretsProviders"
OUT_BACKEND = "stateBackendUrl"
OUT_PACKAGES = "packageRepository"
OUT_PULUMI_TEAMS = "pulumiTeams"
OUT_REGION = "region"
OUT_REPOSITORY = "repository"
OUT_SOURCE_ROLES = "sourceRoles"


def scopes(cfg: BootstrapConfig) -> list[StageScope]:
    """What each stage's policies need, in promotion order."""
    order = cfg.stage_names()
    out = []
    for index, stage in enumerate(order):
        source = order[index - 1] if index > 0 else None
        following = cfg.next_stage(stage)
        out.append(
            StageScope(
                project=cfg.project,
                stage=stage,
                stages=tuple(order),
                account=cfg.stages[stage].account_id,
                region=cfg.region,
                repository=cfg.github.repository,
                tooling_account=cfg.tooling_account,
                registry_bucket=cfg.registry_bucket(stage),
                source_stage=source,
                source_account=cfg.stages[source].account_id if source else None,
                source_registry_bucket=cfg.registry_bucket(source) if source else None,
                self_managed_state=cfg.backend.kind == "self-managed",
                next_stage=following,
                next_account=cfg.stages[following].account_id if following else None,
            )
        )
    return out


def _providers(cfg: BootstrapConfig) -> dict[str, aws.Provider]:
    """One AWS provider per account, each refusing to run in any other account; stage accounts by assumed role."""
    providers = {}
    for account in cfg.accounts:
        role = cfg.admin_role(account)
        assume = [aws.ProviderAssumeRoleArgs(role_arn=role, session_name=f"{cfg.project}-bootstrap")] if role else None
        providers[account] = aws.Provider(
            f"account-{account}",
            region=cfg.region,
            allowed_account_ids=[account],
            assume_roles=assume,
        )
    return providers


def build(cfg: BootstrapConfig) -> dict[str, Any]:
    """Declare every resource of the bootstrap stack; return its outputs."""
    providers = _providers(cfg)
    stage_scopes = scopes(cfg)
    oidc: dict[str, GitHubOidcProvider] = {}
    for scope in stage_scopes:
        if scope.account not in oidc:
            oidc[scope.account] = GitHubOidcProvider(
                f"github-oidc-{scope.account}",
                GitHubOidcProviderArgs(account=scope.account, owner=cfg.owner, provider=providers[scope.account]),
            )

    ci_roles_of: dict[str, list[str]] = {}
    boundaries_of: dict[str, list[str]] = {}
    for scope in stage_scopes:
        ci_roles_of.setdefault(scope.account, []).extend(
            names.role(cfg.project, scope.stage, kind) for kind in names.ROLE_KINDS
        )
        if scope.has_source_roles:  # the deploy roles' boundary keeps them off these too
            ci_roles_of[scope.account] += [
                names.source_role(cfg.project, scope.stage),
                names.approval_role(cfg.project, scope.stage),
            ]
        boundaries_of.setdefault(scope.account, []).extend(
            [
                names.deploy_boundary(cfg.project, scope.stage),
                names.workload_boundary(cfg.project, scope.stage),
                names.role(cfg.project, scope.stage, "deploy") + "-*",  # the deploy role's own managed policies
            ]
        )
    roles: dict[str, StageCiRoles] = {}
    for scope in stage_scopes:
        roles[scope.stage] = StageCiRoles(
            f"{scope.stage}-ci",
            StageCiRolesArgs(
                scope=scope,
                owner=cfg.owner,
                oidc_provider=oidc[scope.account],
                account_ci_roles=ci_roles_of[scope.account],
                account_boundaries=boundaries_of[scope.account],
                provider=providers[scope.account],
            ),
        )
    lent: dict[str, SourceStageRoles] = {}
    for scope in stage_scopes:
        if scope.has_source_roles and scope.next_stage:
            lent[scope.stage] = SourceStageRoles(
                f"{scope.stage}-source",
                SourceStageRolesArgs(
                    scope=scope,
                    owner=cfg.owner,
                    next_stage_roles=[roles[scope.next_stage]],
                    provider=providers[scope.account],
                ),
            )

    exported: dict[str, Any] = {
        OUT_REGION: cfg.region,
        OUT_REPOSITORY: cfg.github.repository,
        OUT_OIDC: {account: provider.arn for account, provider in oidc.items()},
        OUT_ROLES: {stage: dict(component.role_arns) for stage, component in roles.items()},
        OUT_SECRETS: {stage: component.secrets_provider for stage, component in roles.items()},
        # Per source stage in another account than the next: the role the next stage reads it through, and the
        # one its promotion role approves through (each stage file's mlinfra:access.sourceRoleArn and
        # approvalRoleArn).
        OUT_SOURCE_ROLES: {stage: dict(component.role_arns) for stage, component in lent.items()},
    }
    tooling = providers[cfg.tooling_account]
    if cfg.backend.kind == "self-managed":
        backend = StateBackend(
            "state",
            StateBackendArgs(
                project=cfg.project,
                account=cfg.tooling_account,
                region=cfg.region,
                owner=cfg.owner,
                scopes=stage_scopes,
                log_retention_days=cfg.backend.log_retention_days,
                noncurrent_version_days=cfg.backend.noncurrent_version_days,
                protect=cfg.backend.protect,
                roles=list(roles.values()),
                provider=tooling,
            ),
        )
        exported[OUT_BACKEND] = backend.url
    else:
        # pulumi-pulumiservice (the `bootstrap` extra) is needed only for this backend.
        from .components.pulumi_cloud import PulumiCloudAccess, PulumiCloudAccessArgs  # noqa: PLC0415

        cloud = PulumiCloudAccess(
            "pulumi-cloud",
            PulumiCloudAccessArgs(
                project=cfg.project,
                organization=cfg.backend.organization or "",
                repository=cfg.github.repository,
                stages=cfg.stage_names(),
            ),
        )
        exported[OUT_PULUMI_TEAMS] = cloud.teams
    if cfg.packages.enabled:
        packages = PackageRepository(
            "packages",
            PackageRepositoryArgs(
                project=cfg.project,
                account=cfg.tooling_account,
                region=cfg.region,
                owner=cfg.owner,
                own_packages=cfg.packages.own_packages,
                stage_accounts=[stage.account_id for stage in cfg.stages.values()],
                provider=tooling,
            ),
        )
        exported[OUT_PACKAGES] = {
            "domain": packages.domain,
            "domainOwner": cfg.tooling_account,
            "repository": packages.repository,
        }
    return exported


def decode_engine_config(raw: dict[str, Any]) -> dict[str, Any]:
    """Config as the engine hands it (structured values as JSON text), structured values decoded."""
    structured = {f"{NAMESPACE}:{key}" for key in STRUCTURED_KEYS}
    out: dict[str, Any] = {}
    for key, value in raw.items():
        decode = key in structured and isinstance(value, str) and value[:1] in "{["
        out[key] = json.loads(value) if decode else value
    return out


def stage_project_name(start: Path) -> str:
    """The stage stacks' project name: `name:` of the first Pulumi.yaml above the bootstrap project's directory."""
    from ruamel.yaml import YAML  # noqa: PLC0415 - only under the engine

    for candidate in start.resolve().parents:
        path = candidate / "Pulumi.yaml"
        if path.is_file():
            data = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
            return str(data["name"])
    raise ConfigError(SOURCE, "project", "no Pulumi.yaml of the stage stacks above infra/bootstrap/")


def main() -> None:
    """Entry point under the Pulumi engine (infra/bootstrap/Pulumi.yaml): validate config first, then declare."""
    from pulumi.runtime import config as runtime_config  # noqa: PLC0415 - engine internals, only under the engine

    raw = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    try:
        cfg = load_bootstrap_config(decode_engine_config(raw), project=stage_project_name(Path.cwd()), source=SOURCE)
    except ConfigError as exc:
        raise pulumi.RunError(str(exc)) from None
    for name, value in build(cfg).items():
        pulumi.export(name, value)
