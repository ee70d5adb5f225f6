"""Resource policies of the tooling account's shared pieces: the state bucket, its key, the package domain.

Each stage's roles get exactly their own stage's state objects: the bucket policy by object key, the key policy by
S3's encryption context (the object's ARN; the bucket key is off so the context is per object). Stage roles in
other accounts need these grants (cross-account access needs the resource's side as well as the role's).
"""

from __future__ import annotations

from .policies import READ_STATE, WRITE_STATE, Policy, StageScope, allow, document, state_objects


def _principal(statement: Policy, arns: list[str]) -> Policy:
    statement["Principal"] = {"AWS": arns if len(arns) > 1 else arns[0]}
    return statement


def _title(stage: str) -> str:
    return stage.capitalize()


def state_bucket_policy(scopes: list[StageScope], bucket: str, partition: str = "aws") -> Policy:
    """TLS 1.2+ only, and per stage: its deploy role reads and writes its state, its preview role reads it."""
    bucket_arn = f"arn:{partition}:s3:::{bucket}"
    statements = [
        {
            "Sid": "TlsOnly",
            "Effect": "Deny",
            "Principal": {"AWS": "*"},
            "Action": "s3:*",
            "Resource": [bucket_arn, f"{bucket_arn}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        },
        {
            "Sid": "Tls12OrLater",
            "Effect": "Deny",
            "Principal": {"AWS": "*"},
            "Action": "s3:*",
            "Resource": [bucket_arn, f"{bucket_arn}/*"],
            "Condition": {"NumericLessThan": {"s3:TlsVersion": "1.2"}},
        },
    ]
    for scope in scopes:
        deploy_role, preview_role = scope.role_arn("deploy"), scope.role_arn("preview")
        title = _title(scope.stage)
        statements += [
            _principal(
                allow(
                    f"{title}DeployWritesItsState",
                    ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                    state_objects(scope, WRITE_STATE),
                ),
                [deploy_role],
            ),
            _principal(
                allow(f"{title}PreviewReadsItsState", ["s3:GetObject"], state_objects(scope, READ_STATE)),
                [preview_role],
            ),
            _principal(
                allow(f"{title}ReadBackendMeta", ["s3:GetObject"], [f"{bucket_arn}/.pulumi/meta.yaml"]),
                [deploy_role, preview_role],
            ),
            _principal(
                allow(
                    f"{title}ListState", ["s3:ListBucket"], [bucket_arn], {"StringLike": {"s3:prefix": [".pulumi/*"]}}
                ),
                [deploy_role, preview_role],
            ),
        ]
    return document(*statements)


def state_key_policy(scopes: list[StageScope], tooling_account: str, region: str, partition: str = "aws") -> Policy:
    """The tooling account administers the key; each stage's roles use it through S3 for their own objects only."""
    statements: list[Policy] = [
        _principal(
            allow("ToolingAccountAdministersKey", ["kms:*"], ["*"]),
            [f"arn:{partition}:iam::{tooling_account}:root"],
        )
    ]
    via_s3 = {"kms:ViaService": f"s3.{region}.amazonaws.com"}
    for scope in scopes:
        title = _title(scope.stage)
        statements += [
            _principal(
                allow(
                    f"{title}DeployThroughS3",
                    ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"],
                    ["*"],
                    {
                        "StringEquals": via_s3,
                        "StringLike": {"kms:EncryptionContext:aws:s3:arn": state_objects(scope, WRITE_STATE)},
                    },
                ),
                [scope.role_arn("deploy")],
            ),
            _principal(
                allow(
                    f"{title}PreviewThroughS3",
                    ["kms:Decrypt"],
                    ["*"],
                    {
                        "StringEquals": via_s3,
                        "StringLike": {"kms:EncryptionContext:aws:s3:arn": state_objects(scope, READ_STATE)},
                    },
                ),
                [scope.role_arn("preview")],
            ),
        ]
    return document(*statements)


def secrets_key_policy(account: str, partition: str = "aws") -> Policy:
    """A stage's secrets key: its account administers it; the stage's roles use it through their own policies."""
    return document(
        _principal(allow("AccountAdministersKey", ["kms:*"], ["*"]), [f"arn:{partition}:iam::{account}:root"])
    )


def package_domain_policy(domain_arn: str, stage_accounts: list[str], partition: str = "aws") -> Policy:
    """Stage accounts may get a token for the domain (to install the team's packages); nothing else."""
    return document(
        _principal(
            allow("StageAccountsGetTokens", ["codeartifact:GetAuthorizationToken"], [domain_arn]),
            [f"arn:{partition}:iam::{account}:root" for account in stage_accounts],
        )
    )


def package_repository_policy(repository_arn: str, stage_accounts: list[str], partition: str = "aws") -> Policy:
    """Stage accounts may read (install from) the repository; publishing stays in the tooling account."""
    return document(
        _principal(
            allow(
                "StageAccountsRead",
                ["codeartifact:GetRepositoryEndpoint", "codeartifact:ReadFromRepository"],
                [repository_arn],
            ),
            [f"arn:{partition}:iam::{account}:root" for account in stage_accounts],
        )
    )
