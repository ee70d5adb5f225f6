"""PackageRepository: the CodeArtifact domain the team publishes its own packages to, with origin controls."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from mlinfra_infra.components.common import TYPE_PREFIX

from .. import backend_policies, names
from .common import child, tags, to_json

PYPI_CONNECTION = "public:pypi"


def package_group_pattern(package: str) -> str:
    """CodeArtifact's package group pattern matching exactly one PyPI package (no namespace): /pypi//<name>$."""
    return f"/pypi//{package}$"


def package_group_template(domain: str, owner: str, packages: list[str]) -> dict[str, object]:
    """A CloudFormation template with one AWS::CodeArtifact::PackageGroup per own package.

    Origin controls: the package may be published to the domain, and never fetched from public PyPI
    (EXTERNAL_UPSTREAM: BLOCK), so `pip install <package>` through the domain can only return what the team
    published, even when a stranger's package of that name exists upstream. pulumi-aws has no package group
    resource; CloudFormation's is AWS's own (AWS::CodeArtifact::PackageGroup).
    """
    resources = {}
    for index, package in enumerate(packages):
        resources[f"OwnPackage{index}"] = {
            "Type": "AWS::CodeArtifact::PackageGroup",
            "Properties": {
                "DomainName": domain,
                "DomainOwner": owner,
                "Pattern": package_group_pattern(package),
                "Description": f"{package}: only versions the team publishes; public PyPI blocked",
                "OriginConfiguration": {
                    "Restrictions": {
                        "Publish": {"RestrictionMode": "ALLOW"},
                        "ExternalUpstream": {"RestrictionMode": "BLOCK"},
                        "InternalUpstream": {"RestrictionMode": "ALLOW"},
                    }
                },
            },
        }
    return {"AWSTemplateFormatVersion": "2010-09-09", "Resources": resources}


@dataclass
class PackageRepositoryArgs:
    """Names, the tooling account, the team's own package names and the stage accounts that install from it."""

    project: str
    account: str
    region: str
    owner: str
    own_packages: list[str]
    stage_accounts: list[str] = field(default_factory=list)
    provider: pulumi.ProviderResource | None = None


class PackageRepository(pulumi.ComponentResource):
    """A domain and one repository (public PyPI behind it) where the team's own package names are origin-controlled.

    Stage accounts other than the tooling account may get a token and read; publishing stays in the tooling account.
    """

    domain: str
    repository: str

    def __init__(self, name: str, args: PackageRepositoryArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(f"{TYPE_PREFIX}:PackageRepository", name, None, opts)
        provider, base_tags = args.provider, tags(args.owner)
        self.domain = names.codeartifact_domain(args.project)
        self.repository = names.codeartifact_repository(args.project)
        domain = aws.codeartifact.Domain(
            f"{name}-domain", domain=self.domain, tags=base_tags, opts=child(self, provider)
        )
        # The package groups exist before the repository can fetch anything from PyPI.
        groups = aws.cloudformation.Stack(
            f"{name}-origin-controls",
            name=f"{self.domain}-origin-controls",
            template_body=json.dumps(package_group_template(self.domain, args.account, args.own_packages)),
            tags=base_tags,
            opts=child(self, provider, depends_on=[domain]),
        )
        repository = aws.codeartifact.Repository(
            f"{name}-repository",
            repository=self.repository,
            domain=domain.domain,
            description="The team's own packages (published here only); public PyPI behind it for the rest",
            external_connections={"external_connection_name": PYPI_CONNECTION},
            tags=base_tags,
            opts=child(self, provider, depends_on=[groups]),
        )
        arn_prefix = f"arn:aws:codeartifact:{args.region}:{args.account}"
        domain_arn = f"{arn_prefix}:domain/{self.domain}"
        repository_arn = f"{arn_prefix}:repository/{self.domain}/{self.repository}"
        others = [account for account in args.stage_accounts if account != args.account]
        if others:
            aws.codeartifact.DomainPermissions(
                f"{name}-domain-policy",
                domain=domain.domain,
                policy_document=to_json(backend_policies.package_domain_policy(domain_arn, others)),
                opts=child(self, provider),
            )
            aws.codeartifact.RepositoryPermissionsPolicy(
                f"{name}-repository-policy",
                domain=domain.domain,
                repository=repository.repository,
                policy_document=to_json(backend_policies.package_repository_policy(repository_arn, others)),
                opts=child(self, provider),
            )
        self.register_outputs({"domain": self.domain, "repository": self.repository, "domainArn": domain_arn})
