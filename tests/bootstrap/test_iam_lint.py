"""parliament on every policy the bootstrap stack renders: clean, but for findings each explained here.

parliament lints identity policies. For the other kinds it is run too, and the findings that only say "this is not
an identity policy" are accepted by kind: a trust policy has no Resource and a federated principal parliament's list
predates; a key policy's "*" is the key itself; a permissions boundary's Allow is a ceiling, not a grant. Other
accepted findings are parliament's IAM data being older than AWS's (each checked against AWS's service
authorization reference), or inherent to a deployer (named below). Anything else fails.
"""

from __future__ import annotations

import json

import pytest
from parliament import analyze_policy_string

from mlinfra.bootstrap import stack
from mlinfra.stacks.render import RenderedResource, RenderedStack

Shipped = tuple[stack.Bootstrap, RenderedStack]

# (issue, text in the detail): parliament's IAM data is older than AWS's.
DATA_GAPS = {
    # kms:ResourceAliases is a condition key of KMS's key operations (Encrypt, Decrypt, GenerateDataKey, ...).
    ("UNKNOWN_CONDITION_FOR_ACTION", "kms:ResourceAliases"),
    # Public SSM parameters (AMI ids) have no account in their ARN: arn:aws:ssm:<region>::parameter/aws/service/...
    ("RESOURCE_MISMATCH", "ssm:GetParameter"),
    # GetObjectAttributes acts on objects.
    ("RESOURCE_MISMATCH", "s3:GetObjectAttributes"),
    # CreateDomain and CreateRepository take the domain and repository ARNs.
    ("RESOURCE_MISMATCH", "codeartifact:CreateDomain"),
    # AWS authorizes an action that names several resources per resource, each type under its own statement and
    # condition (RunInstances: instance and volume by the request's tags, subnet and security group by theirs, the
    # public image unconditionally; CreateAlias: the alias by name, the key by its tags); parliament wants every
    # type in each statement.
    ("RESOURCE_MISMATCH", "ec2:RunInstances"),
    ("RESOURCE_MISMATCH", "kms:CreateAlias"),
    # s3:TlsVersion is numeric and AWS's own examples write "1.2"; parliament accepts only integers.
    ("MISMATCHED_TYPE", "s3:TlsVersion"),
    # s3:TlsVersion applies to every S3 action; parliament lists it for some only.
    ("UNKNOWN_CONDITION_FOR_ACTION", "s3:TlsVersion"),
    # iam:PermissionsBoundary is compared with StringEquals in AWS's documented examples.
    ("MISMATCHED_TYPE_BUT_USABLE", "StringNotEquals requires a value of type String but given Arn"),
    ("MISMATCHED_TYPE_BUT_USABLE", "StringEquals requires a value of type String but given Arn"),
}
# A deployer manages its stage's bucket policies and lifecycle rules, so it could grant itself (or expire) the stage's
# objects: it is the stage's deployer. Its boundary keeps it to its stage's buckets.
DEPLOYER = {
    ("RESOURCE_POLICY_PRIVILEGE_ESCALATION", "s3:PutBucketPolicy"),
    ("RESOURCE_POLICY_PRIVILEGE_ESCALATION", "s3:PutLifecycleConfiguration"),
}
BY_KIND = {
    "trust": {
        ("UNKNOWN_FEDERATION_SOURCE", "oidc-provider/token.actions.githubusercontent.com"),
        ("MALFORMED", "neither Resource nor NotResource"),
    },
    "key": {("RESOURCE_STAR", "kms:")},
    "boundary": {("RESOURCE_STAR", "")},
}


def policies(rendered: RenderedStack) -> list[tuple[str, RenderedResource, str]]:
    """(kind, resource, document) for every policy document in the render."""
    out = []
    for resource in rendered.resources:
        if resource.type == "aws:iam/role:Role":
            out.append(("trust", resource, resource.inputs["assumeRolePolicy"]))
        elif resource.type == "aws:kms/key:Key":
            out.append(("key", resource, resource.inputs["policy"]))
        elif resource.type == "aws:iam/policy:Policy" and resource.inputs["name"].endswith("-boundary"):
            out.append(("boundary", resource, resource.inputs["policy"]))
        elif "policy" in resource.inputs or "policyDocument" in resource.inputs:
            out.append(("identity", resource, resource.inputs.get("policy") or resource.inputs["policyDocument"]))
    return out


def unexplained(kind: str, name: str, document: str) -> list[str]:
    accepted = DATA_GAPS | BY_KIND.get(kind, set()) | (DEPLOYER if "-deploy-" in name else set())
    findings = analyze_policy_string(document, include_community_auditors=False).findings
    return [
        f"{f.issue}: {f.detail}"
        for f in findings
        if not any(issue == f.issue and text in str(f.detail) for issue, text in accepted)
    ]


def test_every_policy_is_parliament_clean_but_for_explained_findings(shipped: Shipped) -> None:
    _, rendered = shipped
    found = policies(rendered)
    kinds = {kind for kind, _, _ in found}
    assert kinds == {"trust", "key", "boundary", "identity"}
    assert len(found) >= 40
    problems = {r.name: unexplained(kind, r.name, doc) for kind, r, doc in found}
    assert {name: p for name, p in problems.items() if p} == {}


def test_the_lint_catches_a_wildcard_grant(shipped: Shipped) -> None:
    _, rendered = shipped
    preview = rendered.named("prod-ci-preview-policy")
    document = json.loads(preview.inputs["policy"])
    document["Statement"].append({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"})
    assert unexplained("identity", preview.name, json.dumps(document)), "a Resource * grant must be reported"


@pytest.mark.parametrize("stage", ["sandbox", "prod"])
def test_preview_roles_read_no_data(shipped: Shipped, stage: str) -> None:
    _, rendered = shipped
    document = json.loads(rendered.named(f"{stage}-ci-preview-policy").inputs["policy"])
    actions = {a for s in document["Statement"] for a in s["Action"]}
    writes = {a for a in actions if a.split(":")[1].startswith(("Put", "Create", "Delete", "Update"))}
    assert writes == set()
    object_reads = [r for s in document["Statement"] if "s3:GetObject" in s["Action"] for r in s["Resource"]]
    allowed = ("/.pulumi/", "/stages/*", "/audit/*", "/models/*/versions/*", "/code/*")
    assert object_reads and all(any(a in r for a in allowed) for r in object_reads), object_reads
    assert not [r for r in object_reads if "sha256" in r or r.endswith("/models/*")], "never a model artifact"
