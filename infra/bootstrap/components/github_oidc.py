"""GitHubOidcProvider: the IAM OIDC identity provider for GitHub Actions in one account."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from mlinfra_infra.components.common import TYPE_PREFIX

from .. import names
from .common import child, tags


@dataclass
class GitHubOidcProviderArgs:
    """The account the provider lives in and the owner tag."""

    account: str
    owner: str
    provider: pulumi.ProviderResource | None = None


class GitHubOidcProvider(pulumi.ComponentResource):
    """GitHub's token issuer, trusted for the audience `sts.amazonaws.com` only.

    No thumbprint: for GitHub's issuer IAM verifies the JWKS endpoint's certificate against its own library of
    trusted root CAs and ignores configured thumbprints, and the thumbprint list is optional in
    CreateOpenIDConnectProvider (botocore's IAM model; pulumi-aws's `thumbprint_lists`). A pinned thumbprint would
    only be one more thing to rotate.
    """

    arn: pulumi.Output[str]

    def __init__(self, name: str, args: GitHubOidcProviderArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(f"{TYPE_PREFIX}:GitHubOidcProvider", name, None, opts)
        provider = aws.iam.OpenIdConnectProvider(
            f"{name}-provider",
            url=names.GITHUB_ISSUER,
            client_id_lists=[names.STS_AUDIENCE],
            tags=tags(args.owner),
            opts=child(self, args.provider),
        )
        # The ARN is known from the account alone; deriving it from the resource keeps the dependency.
        self.arn = provider.url.apply(lambda _: names.oidc_provider_arn(args.account))
        self.register_outputs({"arn": self.arn})
