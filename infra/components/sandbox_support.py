"""What the analyst VM needs around it: a private package source, logged sessions, S3 reached only for its buckets.

Helpers of SandboxVM (infra/components/sandbox.py), declared as its children:

- A CodeArtifact domain (encrypted with the registry key) with two repositories: `pypi-store`, connected to public
  PyPI, and `mlinfra`, where the platform team publishes the mlinfra wheel, with `pypi-store` upstream. pip on the
  VM reaches it through the `codeartifact.api` and `codeartifact.repositories` interface endpoints; Python packages
  need no S3 access (CodeArtifact serves them itself).
  https://docs.aws.amazon.com/codeartifact/latest/ug/create-s3-gateway-endpoint.html
- A Session Manager session document that streams every shell session to an encrypted CloudWatch log group.
- The S3 gateway endpoint's policy: the stage's registry, Amazon Linux 2023's package repositories and the SSM
  agent's own buckets in this region, nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from mlinfra_infra import naming

from .common import policy_document, statement

PYPI_STORE = "pypi-store"
PACKAGE_REPOSITORY = "mlinfra"
PYPI_CONNECTION = "public:pypi"
# Amazon Linux 2023 serves its dnf repositories from this bucket in every region.
AL2023_REPOS_BUCKET = "al2023-repos-{region}-de612dc2"
# Buckets the SSM agent reads for its own updates and documents in the region
# (https://docs.aws.amazon.com/systems-manager/latest/userguide/ssm-agent-minimum-s3-permissions.html).
SSM_AGENT_BUCKETS = ("aws-ssm-{region}", "amazon-ssm-{region}", "amazon-ssm-packages-{region}")
SESSION_IDLE_MINUTES = 60


@dataclass
class PackageSource:
    """The CodeArtifact domain and repository the VM installs from, and the resources that must exist first."""

    domain: str
    repository: str
    domain_arn: pulumi.Output[str]
    repository_arn: pulumi.Output[str]
    ready: list[pulumi.Resource]


def package_source(
    parent: pulumi.Resource,
    name: str,
    *,
    project: str,
    stage: str,
    region: str,
    account_id: pulumi.Input[str],
    key_arn: pulumi.Input[str],
    tags: dict[str, str],
) -> PackageSource:
    """Declare the CodeArtifact domain, the PyPI store and the mlinfra repository behind which it sits."""
    child = pulumi.ResourceOptions(parent=parent)
    domain_name = naming.codeartifact_domain(project, stage)
    domain = aws.codeartifact.Domain(
        f"{name}-packages", domain=domain_name, encryption_key=key_arn, tags=tags, opts=child
    )
    store = aws.codeartifact.Repository(
        f"{name}-packages-pypi",
        repository=PYPI_STORE,
        domain=domain.domain,
        description="Public PyPI, cached for the analyst VM (which has no internet route)",
        external_connections={"external_connection_name": PYPI_CONNECTION},
        tags=tags,
        opts=child,
    )
    repository = aws.codeartifact.Repository(
        f"{name}-packages-mlinfra",
        repository=PACKAGE_REPOSITORY,
        domain=domain.domain,
        description="The mlinfra CLI and the platform's own packages; PyPI behind it",
        upstreams=[{"repository_name": store.repository}],
        tags=tags,
        opts=child,
    )
    # ARNs spelled out from the names (arn:...:domain/<d>, repository/<d>/<r>), so IAM policies can be checked
    # offline against each action's resource format.
    prefix = pulumi.Output.concat(f"arn:aws:codeartifact:{region}:", account_id)
    return PackageSource(
        domain=domain_name,
        repository=PACKAGE_REPOSITORY,
        domain_arn=pulumi.Output.concat(prefix, f":domain/{domain_name}"),
        repository_arn=pulumi.Output.concat(prefix, f":repository/{domain_name}/{PACKAGE_REPOSITORY}"),
        ready=[domain, store, repository],
    )


def session_logging(
    parent: pulumi.Resource,
    name: str,
    *,
    project: str,
    stage: str,
    key_arn: pulumi.Input[str],
    retention_days: int,
    tags: dict[str, str],
) -> tuple[aws.cloudwatch.LogGroup, aws.ssm.Document]:
    """Declare the encrypted session log group and the Session Manager document that streams shells into it.

    Analysts start sessions with `--document-name <document>`; their IAM policy (the stack's analyst policy) allows
    no other shell document, so every shell session is logged. Port-forwarding sessions (Jupyter) carry no shell
    and Session Manager logs nothing of their traffic; their start and end are in CloudTrail.
    """
    child = pulumi.ResourceOptions(parent=parent)
    log_group = aws.cloudwatch.LogGroup(
        f"{name}-session-logs",
        name=naming.session_log_group(project, stage),
        retention_in_days=retention_days,
        kms_key_id=key_arn,
        tags=tags,
        opts=child,
    )
    document = aws.ssm.Document(
        f"{name}-session-document",
        name=naming.session_document(project, stage),
        document_type="Session",
        document_format="JSON",
        content=log_group.name.apply(
            lambda group: json.dumps(
                {
                    "schemaVersion": "1.0",
                    "description": f"mlinfra {stage} analyst shell, logged to CloudWatch",
                    "sessionType": "Standard_Stream",
                    "inputs": {
                        "cloudWatchLogGroupName": group,
                        "cloudWatchEncryptionEnabled": True,
                        "cloudWatchStreamingEnabled": True,
                        "s3BucketName": "",
                        "idleSessionTimeout": str(SESSION_IDLE_MINUTES),
                        "runAsEnabled": False,
                        "shellProfile": {"linux": "cd ~ && exec bash -l"},
                    },
                }
            )
        ),
        tags=tags,
        opts=child,
    )
    return log_group, document


def s3_endpoint_policy(region: str, registry_bucket_arn: pulumi.Input[str]) -> pulumi.Output[str]:
    """The S3 gateway endpoint's policy: the stage's registry, AL2023's repositories, the SSM agent's buckets."""
    registry = pulumi.Output.from_input(registry_bucket_arn)
    system_buckets = [AL2023_REPOS_BUCKET.format(region=region)] + [b.format(region=region) for b in SSM_AGENT_BUCKETS]
    return policy_document(
        statement(
            "TheStagesRegistry",
            ["s3:*"],
            [registry, pulumi.Output.concat(registry, "/*")],
            principal={"AWS": "*"},
        ),
        statement(
            "OperatingSystemPackagesAndSsmAgent",
            ["s3:GetObject"],
            [f"arn:aws:s3:::{bucket}/*" for bucket in system_buckets],
            principal={"AWS": "*"},
        ),
    )


def analyst_policy_document(
    region: str,
    account_id: pulumi.Input[str],
    instance_arn: pulumi.Input[str],
    document_name: pulumi.Input[str],
    key_arn: pulumi.Input[str],
) -> pulumi.Output[str]:
    """What an analyst needs to use the VM: start it, open a logged shell or a port forward to Jupyter, end it."""
    account = pulumi.Output.from_input(account_id)
    documents: Sequence[pulumi.Input[str]] = [
        pulumi.Output.concat(f"arn:aws:ssm:{region}:", account, ":document/", document_name),
        f"arn:aws:ssm:{region}::document/AWS-StartPortForwardingSession",
    ]
    return policy_document(
        *start_statements(instance_arn, key_arn),
        # DescribeInstances and DescribeInstanceStatus take no resource-level permission: "*" only.
        statement("SeeTheVMsState", ["ec2:DescribeInstances", "ec2:DescribeInstanceStatus"], ["*"]),
        # The shell document that logs, or port forwarding; SessionDocumentAccessCheck refuses the default shell.
        statement(
            "LoggedSessionsOnTheVM",
            ["ssm:StartSession"],
            [instance_arn, *documents],
            condition={"BoolIfExists": {"ssm:SessionDocumentAccessCheck": "true"}},
        ),
        statement(
            "OwnSessionsOnly",
            ["ssm:TerminateSession", "ssm:ResumeSession"],
            [pulumi.Output.concat(f"arn:aws:ssm:{region}:", account, ":session/${aws:userid}-*")],
        ),
    )


def start_statements(instance_arn: pulumi.Input[str], key_arn: pulumi.Input[str]) -> list[dict[str, Any]]:
    """What starting the VM takes: StartInstances, and a grant on the key of its encrypted root volume.

    EC2 attaches a customer-key-encrypted volume at start with the caller's permission to create a grant on the key;
    without it the instance goes from pending straight back to stopped. DescribeKey stays out of the grant statement
    (kms:GrantIsForAWSResource only applies to grant operations).
    """
    return [
        statement("StartTheSandboxVM", ["ec2:StartInstances"], [instance_arn]),
        statement(
            "AttachTheEncryptedRootVolume",
            ["kms:CreateGrant"],
            [key_arn],
            condition={"Bool": {"kms:GrantIsForAWSResource": "true"}},
        ),
        statement("ReadTheRootVolumeKey", ["kms:DescribeKey"], [key_arn]),
    ]
