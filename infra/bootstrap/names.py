"""Names of everything the bootstrap stack creates, and the GitHub identities that may use them.

One place spells the identity convention the workflows, the trust policies and `mlinfra bootstrap github` share:
preview jobs run in GitHub environment `preview-<stage>` with role `<project>-<stage>-preview`, apply jobs in
environment `<stage>` with `<project>-<stage>-deploy`, and promote.yml in `promote-<stage>` with
`<project>-<stage>-promotion`. Each role trusts exactly its environment's OIDC subject.
"""

from __future__ import annotations

from typing import Literal

from mlinfra_infra import naming

GITHUB_ISSUER_HOST = "token.actions.githubusercontent.com"
GITHUB_ISSUER = f"https://{GITHUB_ISSUER_HOST}"
STS_AUDIENCE = "sts.amazonaws.com"  # what aws-actions/configure-aws-credentials asks GitHub for

# The bootstrap's own resources are tagged `managed-by: mlinfra-bootstrap`, never `mlinfra`: no deploy role's tag
# condition matches them.
MANAGED_BY = "mlinfra-bootstrap"

RoleKind = Literal["preview", "deploy", "promotion"]
ROLE_KINDS: tuple[RoleKind, ...] = ("preview", "deploy", "promotion")


def role(project: str, stage: str, kind: RoleKind) -> str:
    """The IAM role a CI job of `kind` assumes for `stage` (64 characters at most, IAM's limit)."""
    return f"{project}-{stage}-{kind}"


def source_role(project: str, stage: str) -> str:
    """The role the next stage's preview and promotion roles assume to read `stage` as their source.

    It lives in `stage`'s account and exists when the next stage is in another account: records, artifacts'
    metadata, model packages and alarm states.
    """
    return f"{project}-{stage}-source"


def approval_role(project: str, stage: str) -> str:
    """The role only the next stage's promotion role assumes, to approve a version's model package in `stage`.

    `mlinfra approve`'s one write on a source stage, kept out of the read role.
    """
    return f"{project}-{stage}-approval"


def environment(stage: str, kind: RoleKind) -> str:
    """The GitHub environment a job of `kind` runs in for `stage`; its OIDC subject names it."""
    return {"preview": f"preview-{stage}", "deploy": stage, "promotion": f"promote-{stage}"}[kind]


def subject(repository: str, env: str) -> str:
    """The `sub` claim GitHub puts in the OIDC token of a job running in environment `env` of `repository`."""
    return f"repo:{repository}:environment:{env}"


def role_arn(account: str, name: str, partition: str = "aws") -> str:
    """The ARN of role `name` in `account`."""
    return f"arn:{partition}:iam::{account}:role/{name}"


def oidc_provider_arn(account: str, partition: str = "aws") -> str:
    """The ARN IAM gives GitHub's OIDC provider in `account` (one per account and issuer URL)."""
    return f"arn:{partition}:iam::{account}:oidc-provider/{GITHUB_ISSUER_HOST}"


def deploy_boundary(project: str, stage: str) -> str:
    """The permissions boundary of a stage's deploy role: the most it can ever do, whatever it is granted."""
    return f"{project}-{stage}-deploy-boundary"


def workload_boundary(project: str, stage: str) -> str:
    """The boundary every role the stage's stack creates must carry (the deploy role may create no other)."""
    return naming.workload_boundary(project, stage)


def policy_arn(account: str, name: str, partition: str = "aws") -> str:
    """The ARN of customer-managed policy `name` in `account`."""
    return f"arn:{partition}:iam::{account}:policy/{name}"


def state_bucket(project: str, account: str, region: str) -> str:
    """The self-managed Pulumi state bucket (globally unique by account and region)."""
    return f"{project}-pulumi-state-{account}-{region}".lower()


def state_log_bucket(project: str, account: str, region: str) -> str:
    """Where the state bucket's server access logs go."""
    return f"{project}-pulumi-state-logs-{account}-{region}".lower()


def state_key_alias(project: str) -> str:
    """The KMS key encrypting the state bucket's objects."""
    return f"alias/{project}-pulumi-state"


def secrets_key_alias(project: str, stage: str) -> str:
    """One KMS key per stage for Pulumi's secrets provider, so a stage's roles decrypt only that stage's secrets."""
    return f"alias/{project}-{stage}-pulumi-secrets"


def codeartifact_domain(project: str) -> str:
    """The CodeArtifact domain the team publishes its own packages to (tooling account)."""
    return f"{project}-packages".lower()


def codeartifact_repository(project: str) -> str:
    """The repository in that domain: the team's own packages, with public PyPI behind it for everything else."""
    return f"{project}".lower()


def pulumi_team(project: str, stage: str, kind: Literal["preview", "deploy"]) -> str:
    """The Pulumi Cloud team whose token a job of `kind` gets for `stage` (read on, or write to, that stack only)."""
    return f"{project}-{stage}-{kind}"


# Where the Pulumi diy backend keeps a stack's files in the state bucket (pkg/backend/diy in pulumi/pulumi):
# .pulumi/stacks/<project>/<stack>.json[.gz|.zst], history, backups and journals per project and stack, and
# locks under .pulumi/locks/organization/<project>/<stack>/.
STATE_PREFIX = ".pulumi/"


def state_paths(project: str, stage: str) -> dict[str, str]:
    """The object key patterns of one stack's state, by purpose."""
    return {
        "checkpoint": f".pulumi/stacks/{project}/{stage}.json*",
        "history": f".pulumi/history/{project}/{stage}/*",
        "backups": f".pulumi/backups/{project}/{stage}/*",
        "journal": f".pulumi/journal/{project}/{stage}/*",
        "locks": f".pulumi/locks/organization/{project}/{stage}/*",
    }
