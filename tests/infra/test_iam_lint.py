"""parliament on every IAM policy the shipped stacks render: identity policies clean, except its known data gaps."""

from __future__ import annotations

from pathlib import Path

import pytest
from parliament import analyze_policy_string

from mlinfra.stacks.files import raw_config
from mlinfra.stacks.project import Project
from mlinfra.stacks.render import RenderedStack, render
from tests.builders import merge, pin

REPO = Project(Path(__file__).resolve().parents[2])
IDENTITY_POLICIES = ("aws:iam/rolePolicy:RolePolicy", "aws:iam/policy:Policy")
# Findings where parliament's bundled IAM data is older than AWS's (each checked against the service reference):
# GetObjectAttributes acts on objects; ssm:SessionDocumentAccessCheck is StartSession's documented condition key.
KNOWN_DATA_GAPS = {
    ("RESOURCE_MISMATCH", "s3:GetObjectAttributes"),
    ("UNKNOWN_CONDITION_FOR_ACTION", "ssm:SessionDocumentAccessCheck"),
}
# Model Monitor's role (being removed with Model Monitor, issue 7) still pairs DescribeKey with a grant condition.
LEGACY = {"monitoring-churn-role-policy"}


@pytest.fixture(scope="module")
def stacks() -> dict[str, RenderedStack]:
    out = {}
    for stage in ("sandbox", "dev", "staging", "prod"):
        raw = merge(raw_config(REPO, stage), {"mlinfra:models": {"churn": {"pinned": pin(stage=stage)}}})
        out[stage] = render(raw, project=REPO.name, stage=stage, source=f"stacks/Pulumi.{stage}.yaml")
    return out


def _known_gap(finding: object) -> bool:
    detail = str(getattr(finding, "detail", ""))
    return any(issue == getattr(finding, "issue", None) and token in detail for issue, token in KNOWN_DATA_GAPS)


@pytest.mark.parametrize("stage", ["sandbox", "dev", "staging", "prod"])
def test_identity_policies_have_no_parliament_findings(stacks: dict[str, RenderedStack], stage: str) -> None:
    checked = 0
    for resource in stacks[stage].resources:
        if resource.type not in IDENTITY_POLICIES or resource.name in LEGACY:
            continue
        analysis = analyze_policy_string(resource.inputs["policy"], include_community_auditors=False)
        findings = [f"{f.issue}: {f.detail}" for f in analysis.findings if not _known_gap(f)]
        assert findings == [], f"{stage}: {resource.name}: {findings}"
        checked += 1
    assert checked >= 1


def test_describe_key_never_shares_a_grant_statement(stacks: dict[str, RenderedStack]) -> None:
    # parliament's UNKNOWN_CONDITION_FOR_ACTION: kms:GrantIsForAWSResource only applies to grant operations.
    doc = stacks["sandbox"].named("sandbox-analyst-access").inputs["policy"]
    findings = analyze_policy_string(doc, include_community_auditors=False).findings
    assert not [f for f in findings if "GrantIsForAWSResource" in str(f.detail)]
    broken = doc.replace('"Action": ["kms:CreateGrant"]', '"Action": ["kms:CreateGrant", "kms:DescribeKey"]')
    assert broken != doc
    findings = analyze_policy_string(broken, include_community_auditors=False).findings
    assert [f for f in findings if "GrantIsForAWSResource" in str(f.detail)], "the lint must catch the finding"
