"""The bootstrap stack under Pulumi's mock runtime: what it declares, how it is secured, how its config fails."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mlinfra.bootstrap import stack
from mlinfra.stacks.render import RenderedResource, RenderedStack
from mlinfra_infra.bootstrap import names
from mlinfra_infra.bootstrap.components.package_repository import package_group_pattern
from mlinfra_infra.bootstrap.config import load_bootstrap_config
from mlinfra_infra.config import ConfigError

Shipped = tuple[stack.Bootstrap, RenderedStack]
STAGES = ("sandbox", "dev", "staging", "prod")
ACCOUNTS = {"sandbox": "111111111111", "dev": "111111111111", "staging": "222222222222", "prod": "333333333333"}
REPO = "example-org/mlinfra"


def doc(resource: RenderedResource, key: str = "policy") -> dict[str, Any]:
    return json.loads(resource.inputs[key])


def roles(rendered: RenderedStack) -> dict[str, RenderedResource]:
    return {r.inputs["name"]: r for r in rendered.of_type("aws:iam/role:Role")}


def test_one_github_oidc_provider_per_account_without_thumbprints(shipped: Shipped) -> None:
    _, rendered = shipped
    providers = rendered.of_type("aws:iam/openIdConnectProvider:OpenIdConnectProvider")
    assert len(providers) == len(set(ACCOUNTS.values())) == 3
    for provider in providers:
        assert provider.inputs["url"] == "https://token.actions.githubusercontent.com"
        assert provider.inputs["clientIdLists"] == ["sts.amazonaws.com"]
        # IAM verifies GitHub's JWKS certificate against its trusted CAs; no thumbprint is pinned.
        assert "thumbprintLists" not in provider.inputs
    assert rendered.outputs["oidcProviders"] == {
        account: f"arn:aws:iam::{account}:oidc-provider/token.actions.githubusercontent.com"
        for account in sorted(set(ACCOUNTS.values()))
    }


@pytest.mark.parametrize("stage", STAGES)
def test_three_roles_per_stage_each_trusting_exactly_one_environment_with_aud(shipped: Shipped, stage: str) -> None:
    _, rendered = shipped
    found = roles(rendered)
    account = ACCOUNTS[stage]
    for kind, env in (("preview", f"preview-{stage}"), ("deploy", stage), ("promotion", f"promote-{stage}")):
        role = found[f"mlinfra-{stage}-{kind}"]
        trust = doc(role, "assumeRolePolicy")
        [statement] = trust["Statement"]
        assert statement["Effect"] == "Allow"
        assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
        assert statement["Principal"] == {"Federated": names.oidc_provider_arn(account)}
        assert statement["Condition"] == {
            "StringEquals": {
                "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
                "token.actions.githubusercontent.com:sub": f"repo:{REPO}:environment:{env}",
            }
        }
        assert rendered.outputs["roles"][stage][kind] == f"arn:aws:iam::{account}:role/mlinfra-{stage}-{kind}"
    # Only the deploy role runs under a boundary (the most it can ever do); the others hold less than it.
    assert (
        found[f"mlinfra-{stage}-deploy"]
        .inputs["permissionsBoundary"]
        .endswith(f":policy/mlinfra-{stage}-deploy-boundary")
    )
    assert "permissionsBoundary" not in found[f"mlinfra-{stage}-preview"].inputs


def test_deploy_policies_fit_iams_limits_and_are_attached(shipped: Shipped) -> None:
    _, rendered = shipped
    parts = [
        p for p in rendered.of_type("aws:iam/policy:Policy") if p.inputs["name"].startswith("mlinfra-prod-deploy-")
    ]
    managed = [p for p in parts if not p.inputs["name"].endswith("boundary")]
    assert len(managed) >= 2, "the deploy policy is larger than one inline policy may be"
    for part in managed:
        assert len(json.dumps(doc(part), separators=(",", ":"))) <= 6144, part.name
    attachments = [
        a for a in rendered.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment") if a.parent == "prod-ci"
    ]
    assert len(attachments) == len(managed)
    for inline in rendered.of_type("aws:iam/rolePolicy:RolePolicy"):
        assert len(json.dumps(doc(inline), separators=(",", ":"))) <= 10240, inline.name


def test_state_backend_is_versioned_encrypted_tls_only_logged_and_private(shipped: Shipped) -> None:
    _, rendered = shipped
    bucket_name = "mlinfra-pulumi-state-111111111111-eu-west-1"
    children = rendered.children("state")
    by_type: dict[str, list[RenderedResource]] = {}
    for child in children:
        by_type.setdefault(child.type, []).append(child)
    buckets = {b.inputs["bucket"] for b in by_type["aws:s3/bucket:Bucket"]}
    assert buckets == {bucket_name, "mlinfra-pulumi-state-logs-111111111111-eu-west-1"}
    [versioning] = by_type["aws:s3/bucketVersioning:BucketVersioning"]
    assert versioning.inputs["versioningConfiguration"]["status"] == "Enabled"
    encryption = {
        e.name: e.inputs["rules"][0]
        for e in by_type["aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"]
    }
    state_rule = encryption["state-encryption"]
    assert state_rule["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "aws:kms"
    assert state_rule["bucketKeyEnabled"] is False  # per-object encryption context, so per-stage key grants
    assert encryption["state-logs-encryption"]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "AES256"
    for block in by_type["aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"]:
        assert all(
            block.inputs[k]
            for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
        )
    for ownership in by_type["aws:s3/bucketOwnershipControls:BucketOwnershipControls"]:
        assert ownership.inputs["rule"]["objectOwnership"] == "BucketOwnerEnforced"
    [logging] = by_type["aws:s3/bucketLogging:BucketLogging"]
    assert logging.inputs["targetPrefix"] == "state/"
    policy = doc(rendered.named("state-policy"))
    tls = next(s for s in policy["Statement"] if s["Sid"] == "TlsOnly")
    assert tls["Effect"] == "Deny" and tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    [key] = by_type["aws:kms/key:Key"]
    assert key.inputs["enableKeyRotation"] is True
    assert rendered.outputs["stateBackendUrl"] == f"s3://{bucket_name}?region=eu-west-1"


def test_each_stage_reaches_only_its_own_state_objects(shipped: Shipped) -> None:
    _, rendered = shipped
    policy = doc(rendered.named("state-policy"))
    for stage in STAGES:
        deploy = next(s for s in policy["Statement"] if s["Sid"] == f"{stage.capitalize()}DeployWritesItsState")
        assert deploy["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNTS[stage]}:role/mlinfra-{stage}-deploy"}
        assert all(f"/mlinfra/{stage}" in r for r in deploy["Resource"]), deploy["Resource"]
    key_policy = doc(rendered.named("state-key"))
    preview = next(s for s in key_policy["Statement"] if s["Sid"] == "ProdPreviewThroughS3")
    assert preview["Action"] == ["kms:Decrypt"]
    assert all("/mlinfra/prod" in arn for arn in preview["Condition"]["StringLike"]["kms:EncryptionContext:aws:s3:arn"])


def test_one_secrets_key_per_stage_in_its_account(shipped: Shipped) -> None:
    _, rendered = shipped
    aliases = {a.inputs["name"] for a in rendered.of_type("aws:kms/alias:Alias")}
    for stage in STAGES:
        assert f"alias/mlinfra-{stage}-pulumi-secrets" in aliases
        assert rendered.outputs["secretsProviders"][stage] == (
            f"awskms://alias/mlinfra-{stage}-pulumi-secrets?region=eu-west-1"
        )
    keys = [k for k in rendered.of_type("aws:kms/key:Key") if k.name.endswith("-secrets-key")]
    assert len(keys) == len(STAGES) and all(k.inputs["enableKeyRotation"] for k in keys)


def test_package_repository_blocks_public_pypi_for_the_projects_own_package(shipped: Shipped) -> None:
    _, rendered = shipped
    domain = rendered.one("aws:codeartifact/domain:Domain")
    assert domain.inputs["domain"] == "mlinfra-packages"
    repository = rendered.one("aws:codeartifact/repository:Repository")
    assert repository.inputs["externalConnections"]["externalConnectionName"] == "public:pypi"
    template = json.loads(rendered.one("aws:cloudformation/stack:Stack").inputs["templateBody"])
    [group] = template["Resources"].values()
    assert group["Type"] == "AWS::CodeArtifact::PackageGroup"
    assert group["Properties"]["Pattern"] == package_group_pattern("mlinfra") == "/pypi//mlinfra$"
    restrictions = group["Properties"]["OriginConfiguration"]["Restrictions"]
    assert restrictions["ExternalUpstream"] == {"RestrictionMode": "BLOCK"}
    assert restrictions["Publish"] == {"RestrictionMode": "ALLOW"}
    # Stage accounts outside the tooling account may get a token and read; nothing else.
    domain_policy = doc(rendered.one("aws:codeartifact/domainPermissions:DomainPermissions"), "policyDocument")
    [grant] = domain_policy["Statement"]
    assert grant["Action"] == ["codeartifact:GetAuthorizationToken"]
    assert sorted(grant["Principal"]["AWS"]) == ["arn:aws:iam::222222222222:root", "arn:aws:iam::333333333333:root"]


def test_every_account_has_a_provider_that_refuses_other_accounts(shipped: Shipped) -> None:
    _, rendered = shipped
    providers = {p.name: p.inputs for p in rendered.of_type("pulumi:providers:aws")}
    assert set(providers) == {f"account-{a}" for a in set(ACCOUNTS.values())}
    for name, inputs in providers.items():
        account = name.removeprefix("account-")
        assert (
            json.loads(inputs["allowedAccountIds"]) == [account]
            if isinstance(inputs["allowedAccountIds"], str)
            else inputs["allowedAccountIds"] == [account]
        )
    # The tooling account runs with the caller's credentials; stage accounts through an assumed admin role.
    assert "assumeRoles" not in providers["account-111111111111"]
    assert "OrganizationAccountAccessRole" in json.dumps(providers["account-333333333333"]["assumeRoles"])


def test_every_taggable_resource_is_tagged_and_every_child_has_a_parent(shipped: Shipped) -> None:
    _, rendered = shipped
    components = {r.name for r in rendered.resources if r.type.startswith("mlinfra:aws:")}
    for resource in rendered.resources:
        if resource.type.startswith(("pulumi:providers:", "mlinfra:aws:")):
            continue
        assert resource.parent in components, f"{resource.name} has no component parent"
        if "tags" in resource.inputs:
            tags = resource.inputs["tags"]
            assert tags["managed-by"] == "mlinfra-bootstrap" and tags["owner"], resource.name


def test_pulumi_cloud_backend_needs_an_organization() -> None:
    raw = {
        "aws:region": "eu-west-1",
        "bootstrap:github": {"repository": REPO},
        "bootstrap:stages": {"dev": {"accountId": "111111111111"}},
        "bootstrap:backend": "pulumi-cloud",
    }
    with pytest.raises(ConfigError) as error:
        load_bootstrap_config(raw, project="mlinfra", source="infra/bootstrap/Pulumi.bootstrap.yaml")
    assert str(error.value) == (
        "infra/bootstrap/Pulumi.bootstrap.yaml: bootstrap:backend: kind pulumi-cloud needs organization: the Pulumi "
        "Cloud organization the stacks live in"
    )


@pytest.mark.parametrize(
    ("change", "key", "message"),
    [
        ({"bootstrap:github": {"repository": "not a repo"}}, "bootstrap:github.repository", "String should match"),
        ({"bootstrap:stages": {"dev": {"accountId": "123"}}}, "bootstrap:stages.dev.accountId", "12-digit"),
        ({"bootstrap:stagez": {}}, "bootstrap:stagez", "did you mean 'stages'"),
        ({"aws:region": "eu-west-9"}, "aws:region", "eu-west-9"),
    ],
)
def test_config_errors_name_the_key(change: dict[str, Any], key: str, message: str) -> None:
    raw = {
        "aws:region": "eu-west-1",
        "bootstrap:github": {"repository": REPO},
        "bootstrap:stages": {"dev": {"accountId": "111111111111"}},
        **change,
    }
    with pytest.raises(ConfigError) as error:
        load_bootstrap_config(raw, project="mlinfra", source="f.yaml")
    assert error.value.key == key and message in error.value.message, str(error.value)


@pytest.fixture(scope="module")
def cloud(shipped: Shipped) -> tuple[Any, RenderedStack]:
    from mlinfra.stacks.render import render_program
    from mlinfra_infra.bootstrap import program

    loaded, _ = shipped
    raw = {**loaded.raw, "bootstrap:backend": {"kind": "pulumi-cloud", "organization": "acme"}}
    config = load_bootstrap_config(raw, project="mlinfra", source="f.yaml")
    rendered = render_program(
        raw, project="mlinfra-bootstrap", stack="bootstrap", declare=lambda: program.build(config)
    )
    return config, rendered


def test_pulumi_cloud_backend_has_two_teams_per_stage_each_on_its_own_stack(cloud: tuple[Any, RenderedStack]) -> None:
    _, rendered = cloud
    assert not rendered.of_type("mlinfra:aws:StateBackend") and "stateBackendUrl" not in rendered.outputs
    teams = {t.inputs["name"] for t in rendered.of_type("pulumiservice:index:Team")}
    assert teams == {f"mlinfra-{s}-{k}" for s in STAGES for k in ("preview", "deploy")}
    grants = {
        (g.inputs["stack"], g.inputs["permission"], g.name.rsplit("-", 2)[-2])
        for g in rendered.of_type("pulumiservice:index:TeamStackPermission")
    }
    assert grants == {(s, 101, "preview") for s in STAGES} | {(s, 102, "deploy") for s in STAGES}  # read, edit
    assert all(g.inputs["project"] == "mlinfra" for g in rendered.of_type("pulumiservice:index:TeamStackPermission"))


def test_pulumi_cloud_tokens_only_for_each_teams_environment(cloud: tuple[Any, RenderedStack]) -> None:
    _, rendered = cloud
    issuer = rendered.one("pulumiservice:index:OidcIssuer")
    assert issuer.inputs["url"] == "https://token.actions.githubusercontent.com"
    rules = {p["teamName"]: p["rules"] for p in issuer.inputs["policies"]}
    assert all(p["decision"] == "allow" and p["tokenType"] == "team" for p in issuer.inputs["policies"])
    assert rules["mlinfra-prod-deploy"] == {"aud": "urn:pulumi:org:acme", "sub": f"repo:{REPO}:environment:prod"}
    assert rules["mlinfra-prod-preview"] == {
        "aud": "urn:pulumi:org:acme",
        "sub": f"repo:{REPO}:environment:preview-prod",
    }
    assert len(rules) == 2 * len(STAGES)


def test_the_engine_entry_point_declares_the_same_stack(shipped: Shipped, monkeypatch: pytest.MonkeyPatch) -> None:
    """infra/bootstrap/__main__.py's path: config as the engine hands it (JSON text), the project from Pulumi.yaml."""
    from pathlib import Path

    from mlinfra.stacks.render import render_program
    from mlinfra_infra.bootstrap import program

    loaded, rendered = shipped
    monkeypatch.chdir(Path(__file__).resolve().parents[2] / "infra" / "bootstrap")  # where the engine runs it
    assert program.stage_project_name(Path.cwd()) == "mlinfra"

    def declare() -> dict[str, Any]:
        program.main()
        return {}

    engine = render_program(loaded.raw, project="mlinfra-bootstrap", stack="bootstrap", declare=declare)
    assert [(r.type, r.name) for r in engine.resources] == [(r.type, r.name) for r in rendered.resources]


def _taggable(type_token: str) -> bool:
    import importlib
    import inspect

    package, module_path, class_name = type_token.split(":")
    if package != "aws":
        return False
    module = importlib.import_module(f"pulumi_aws.{module_path.split('/')[0]}")
    return "tags" in inspect.signature(getattr(module, class_name)._internal_init).parameters


def test_every_resource_that_takes_tags_has_them(shipped: Shipped) -> None:
    _, rendered = shipped
    taggable = [r for r in rendered.resources if r.custom and _taggable(r.type)]
    assert len(taggable) >= 20
    for resource in taggable:
        tags = resource.inputs.get("tags") or {}
        assert tags.get("managed-by") == "mlinfra-bootstrap" and tags.get("owner") == "ml-platform", resource.name


def test_every_component_registers_its_outputs_once_and_every_one_is_used(
    shipped: Shipped, cloud: tuple[Any, RenderedStack], monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib
    import inspect
    from collections import Counter
    from pathlib import Path

    import pulumi

    from mlinfra.stacks.render import render_program
    from mlinfra_infra.bootstrap import components, program

    calls: Counter[str] = Counter()
    original = pulumi.ComponentResource.register_outputs

    def counting(self: pulumi.ComponentResource, outputs_: Any) -> None:
        calls[self._name] += 1
        original(self, outputs_)

    monkeypatch.setattr(pulumi.ComponentResource, "register_outputs", counting)
    loaded, _ = shipped
    rendered = render_program(
        loaded.raw, project="mlinfra-bootstrap", stack="bootstrap", declare=lambda: program.build(loaded.config)
    )
    names_ = {r.name for r in rendered.resources if not r.custom}
    assert {name: calls[name] for name in names_} == dict.fromkeys(names_, 1)
    declared = set()
    for module_info in Path(components.__file__).parent.glob("*.py"):
        module = importlib.import_module(f"mlinfra_infra.bootstrap.components.{module_info.stem}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, pulumi.ComponentResource) and cls.__module__ == module.__name__:
                declared.add(cls.__name__)
    used = {r.type.rsplit(":", 1)[1] for stack in (rendered, cloud[1]) for r in stack.resources if not r.custom}
    assert declared == used
