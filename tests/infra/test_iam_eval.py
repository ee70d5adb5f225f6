"""The offline IAM evaluator against the examples of AWS's IAM user guide (policy evaluation logic, NotAction,
NotResource, condition operators, multivalued conditions) and the OIDC trust GitHub Actions relies on."""

from __future__ import annotations

from typing import Any

import pytest

from mlinfra_infra.policy.iam import (
    PolicyError,
    Request,
    assume_role_with_web_identity,
    evaluate,
    matches_arn,
)

CARLOS = "arn:aws:iam::123456789012:user/carlossalazar"


def policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


# "Example identity-based and resource-based policy evaluation" (reference_policies_evaluation-logic).
CARLOS_IDENTITY = policy(
    {
        "Sid": "AllowS3ListRead",
        "Effect": "Allow",
        "Action": ["s3:GetBucketLocation", "s3:GetAccountPublicAccessBlock", "s3:ListAccessPoints",
                   "s3:ListAllMyBuckets"],
        "Resource": "arn:aws:s3:::*",
    },
    {
        "Sid": "AllowS3Self",
        "Effect": "Allow",
        "Action": "s3:*",
        "Resource": ["arn:aws:s3:::carlossalazar/*", "arn:aws:s3:::carlossalazar"],
    },
    {"Sid": "DenyS3Logs", "Effect": "Deny", "Action": "s3:*", "Resource": "arn:aws:s3:::*log*"},
)  # fmt: skip
CARLOS_BUCKET = policy(
    {
        "Effect": "Allow",
        "Principal": {"AWS": CARLOS},
        "Action": "s3:*",
        "Resource": ["arn:aws:s3:::carlossalazar/*", "arn:aws:s3:::carlossalazar"],
    }
)


def test_carlos_is_denied_the_logs_bucket_by_the_explicit_deny() -> None:
    decision = evaluate(
        Request("s3:PutObject", "arn:aws:s3:::carlossalazar-logs/file.txt"), [CARLOS_IDENTITY], [], CARLOS
    )
    assert not decision.allowed
    assert decision.outcome == "explicit-deny"
    assert "DenyS3Logs" in decision.decided_by


def test_carlos_may_save_to_his_own_bucket_allowed_by_both_policies() -> None:
    request = Request("s3:PutObject", "arn:aws:s3:::carlossalazar/file.txt")
    assert evaluate(request, [CARLOS_IDENTITY], [CARLOS_BUCKET], CARLOS).allowed
    # "If one of the policy types allows the request and the other doesn't, the request is still allowed."
    assert evaluate(request, [CARLOS_IDENTITY], [], CARLOS).allowed
    assert evaluate(request, [], [CARLOS_BUCKET], CARLOS).allowed
    # Someone else is named by neither.
    other = "arn:aws:iam::123456789012:user/someone"
    assert not evaluate(request, [], [CARLOS_BUCKET], other).allowed


# "The difference between explicit and implicit denies".
GET_LIST = policy(
    {"Sid": "AllowGetList", "Effect": "Allow", "Action": ["iam:Get*", "iam:List*"], "Resource": "*"},
    {"Sid": "DenyReports", "Effect": "Deny", "Action": "iam:*Report", "Resource": "*"},
)


@pytest.mark.parametrize(
    ("action", "outcome"),
    [
        ("iam:GetRole", "allow"),
        ("iam:ListUsers", "allow"),
        ("iam:CreatePolicy", "implicit-deny"),
        ("iam:GetOrganizationsAccessReport", "explicit-deny"),
        ("IAM:getrole", "allow"),  # action names are case-insensitive
    ],
)
def test_explicit_and_implicit_denies(action: str, outcome: str) -> None:
    assert evaluate(Request(action, "*"), [GET_LIST]).outcome == outcome


def test_notaction_with_allow_is_scoped_by_resource() -> None:
    # Everything in S3 except DeleteBucket, on S3 resources; ListAllMyBuckets needs "*", other services don't apply.
    doc = policy({"Effect": "Allow", "NotAction": "s3:DeleteBucket", "Resource": "arn:aws:s3:::*"})
    assert evaluate(Request("s3:GetObject", "arn:aws:s3:::b/k"), [doc]).allowed
    assert not evaluate(Request("s3:DeleteBucket", "arn:aws:s3:::b"), [doc]).allowed
    assert not evaluate(Request("s3:ListAllMyBuckets", "*"), [doc]).allowed
    assert not evaluate(Request("ec2:RunInstances", "arn:aws:ec2:us-east-1:1:instance/*"), [doc]).allowed
    everything_but_iam = policy({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"})
    assert evaluate(Request("sagemaker:CreateModel", "*"), [everything_but_iam]).allowed
    assert not evaluate(Request("iam:CreateUser", "*"), [everything_but_iam]).allowed


def test_notaction_with_deny_and_bool_if_exists_mfa() -> None:
    deny = policy(
        {
            "Sid": "DenyAllUsersNotUsingMFA",
            "Effect": "Deny",
            "NotAction": "iam:*",
            "Resource": "*",
            "Condition": {"BoolIfExists": {"aws:MultiFactorAuthPresent": "false"}},
        }
    )
    allow_all = policy({"Sid": "All", "Effect": "Allow", "Action": "*", "Resource": "*"})
    no_mfa = Request("s3:GetObject", "arn:aws:s3:::b/k", {"aws:MultiFactorAuthPresent": False})
    with_mfa = Request("s3:GetObject", "arn:aws:s3:::b/k", {"aws:MultiFactorAuthPresent": True})
    access_keys = Request("s3:GetObject", "arn:aws:s3:::b/k")  # long-term keys: the key is absent
    assert evaluate(no_mfa, [allow_all, deny]).outcome == "explicit-deny"
    assert evaluate(with_mfa, [allow_all, deny]).allowed
    assert evaluate(access_keys, [allow_all, deny]).outcome == "explicit-deny"  # BoolIfExists: absent -> true
    assert evaluate(Request("iam:ListUsers", "*"), [allow_all, deny]).allowed
    # The deny grants nothing by itself.
    assert evaluate(with_mfa, [deny]).outcome == "implicit-deny"


def test_notresource_with_deny_hr_payroll() -> None:
    deny = policy(
        {
            "Effect": "Deny",
            "Action": "s3:*",
            "NotResource": ["arn:aws:s3:::HRBucket/Payroll", "arn:aws:s3:::HRBucket/Payroll/*"],
        }
    )
    allow = policy({"Effect": "Allow", "Action": ["s3:*", "ec2:*"], "Resource": "*"})
    assert evaluate(Request("s3:GetObject", "arn:aws:s3:::HRBucket/Payroll/jan.csv"), [allow, deny]).allowed
    assert not evaluate(Request("s3:GetObject", "arn:aws:s3:::HRBucket/Other/a"), [allow, deny]).allowed
    # "If the action also included Amazon EC2 actions, then the policy would not deny access to any EC2 resources."
    assert evaluate(Request("ec2:StartInstances", "arn:aws:ec2:us-east-1:1:instance/i-1"), [allow, deny]).allowed
    # The deny does not grant access to Payroll either.
    assert not evaluate(Request("s3:GetObject", "arn:aws:s3:::HRBucket/Payroll/jan.csv"), [deny]).allowed


def test_string_equals_on_an_absent_key_does_not_match() -> None:
    doc = policy(
        {
            "Effect": "Allow",
            "Action": "iam:*AccessKey*",
            "Resource": "arn:aws:iam::123456789012:user/*",
            "Condition": {"StringEquals": {"aws:PrincipalTag/job-category": "iamuser-admin"}},
        }
    )
    resource = "arn:aws:iam::123456789012:user/bob"
    assert evaluate(
        Request("iam:CreateAccessKey", resource, {"aws:PrincipalTag/job-category": "iamuser-admin"}), [doc]
    ).allowed
    assert not evaluate(Request("iam:CreateAccessKey", resource), [doc]).allowed
    # Keys compare case-insensitively, values case-sensitively.
    assert evaluate(
        Request("iam:CreateAccessKey", resource, {"AWS:PrincipalTag/job-category": "iamuser-admin"}), [doc]
    ).allowed
    assert not evaluate(
        Request("iam:CreateAccessKey", resource, {"aws:PrincipalTag/job-category": "IAMUSER-ADMIN"}), [doc]
    ).allowed


HOME = policy(
    {"Effect": "Allow", "Action": ["s3:ListAllMyBuckets", "s3:GetBucketLocation"], "Resource": "arn:aws:s3:::*"},
    {
        "Effect": "Allow",
        "Action": "s3:ListBucket",
        "Resource": "arn:aws:s3:::BUCKET-NAME",
        "Condition": {"StringLike": {"s3:prefix": ["", "home/", "home/${aws:username}/"]}},
    },
    {
        "Effect": "Allow",
        "Action": "s3:*",
        "Resource": ["arn:aws:s3:::BUCKET-NAME/home/${aws:username}",
                     "arn:aws:s3:::BUCKET-NAME/home/${aws:username}/*"],
    },
)  # fmt: skip


def test_home_directory_with_policy_variables() -> None:
    def list_(prefix: str) -> bool:
        ctx = {"aws:username": "janedoe", "s3:prefix": prefix}
        return evaluate(Request("s3:ListBucket", "arn:aws:s3:::BUCKET-NAME", ctx), [HOME]).allowed

    assert list_("") and list_("home/") and list_("home/janedoe/")
    assert not list_("home/johndoe/")
    own = Request("s3:GetObject", "arn:aws:s3:::BUCKET-NAME/home/janedoe/a.txt", {"aws:username": "janedoe"})
    other = Request("s3:GetObject", "arn:aws:s3:::BUCKET-NAME/home/johndoe/a.txt", {"aws:username": "janedoe"})
    assert evaluate(own, [HOME]).allowed
    assert not evaluate(other, [HOME]).allowed
    # Without the variable's key the statement matches nothing.
    assert not evaluate(Request("s3:GetObject", "arn:aws:s3:::BUCKET-NAME/home/janedoe/a.txt"), [HOME]).allowed


def test_numeric_less_than_equals_max_keys() -> None:
    doc = policy(
        {
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": "arn:aws:s3:::example_bucket",
            "Condition": {"NumericLessThanEquals": {"s3:max-keys": "10"}},
        }
    )
    resource = "arn:aws:s3:::example_bucket"
    assert evaluate(Request("s3:ListBucket", resource, {"s3:max-keys": "10"}), [doc]).allowed
    assert evaluate(Request("s3:ListBucket", resource, {"s3:max-keys": 3}), [doc]).allowed
    assert not evaluate(Request("s3:ListBucket", resource, {"s3:max-keys": "11"}), [doc]).allowed
    assert not evaluate(Request("s3:ListBucket", resource), [doc]).allowed


def test_date_and_null_token_issue_time() -> None:
    dated = policy(
        {
            "Effect": "Allow",
            "Action": "iam:*AccessKey*",
            "Resource": "*",
            "Condition": {"DateGreaterThan": {"aws:TokenIssueTime": "2020-01-01T00:00:01Z"}},
        }
    )
    assert evaluate(Request("iam:ListAccessKeys", "*", {"aws:TokenIssueTime": "2021-05-01T10:00:00Z"}), [dated])
    assert not evaluate(Request("iam:ListAccessKeys", "*", {"aws:TokenIssueTime": "2019-05-01T10:00:00Z"}), [dated])
    assert not evaluate(Request("iam:ListAccessKeys", "*"), [dated]).allowed
    null = policy(
        {"Effect": "Allow", "Action": "ec2:*", "Resource": "*", "Condition": {"Null": {"aws:TokenIssueTime": "true"}}}
    )
    assert evaluate(Request("ec2:DescribeInstances", "*"), [null]).allowed
    assert not evaluate(Request("ec2:DescribeInstances", "*", {"aws:TokenIssueTime": "2021-05-01T10:00:00Z"}), [null])


def test_bool_secure_transport_deny_in_a_bucket_policy() -> None:
    bucket = policy(
        {
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": {"AWS": "*"},
            "Action": "s3:*",
            "Resource": ["arn:aws:s3:::b", "arn:aws:s3:::b/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }
    )
    identity = policy({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"})
    role = "arn:aws:iam::123456789012:role/r"
    tls = Request("s3:GetObject", "arn:aws:s3:::b/k", {"aws:SecureTransport": True})
    plain = Request("s3:GetObject", "arn:aws:s3:::b/k", {"aws:SecureTransport": False})
    assert evaluate(tls, [identity], [bucket], role).allowed
    decision = evaluate(plain, [identity], [bucket], role)
    assert decision.outcome == "explicit-deny" and "DenyInsecureTransport" in decision.decided_by


def test_ip_address_ranges() -> None:
    doc = policy(
        {
            "Effect": "Allow",
            "Action": "someservice:*",
            "Resource": "*",
            "Condition": {"IpAddress": {"aws:SourceIp": ["203.0.113.0/24", "2001:DB8:1234:5678::/64"]}},
        }
    )
    assert evaluate(Request("someservice:Do", "*", {"aws:SourceIp": "203.0.113.7"}), [doc]).allowed
    assert evaluate(Request("someservice:Do", "*", {"aws:SourceIp": "2001:db8:1234:5678::1"}), [doc]).allowed
    assert not evaluate(Request("someservice:Do", "*", {"aws:SourceIp": "198.51.100.1"}), [doc]).allowed


def test_arn_like_matches_component_by_component_unlike_string_like() -> None:
    pattern = "arn:aws:someservice:*:111122223333:finance/*"
    value = "arn:aws:someservice:us-east-2:999999999999:store/abc:111122223333:finance/document.txt"
    assert not matches_arn(pattern, value)

    def allowed(operator: str) -> bool:
        doc = policy(
            {"Effect": "Allow", "Action": "x:Y", "Resource": "*", "Condition": {operator: {"aws:SourceArn": pattern}}}
        )
        return evaluate(Request("x:Y", "*", {"aws:SourceArn": value}), [doc]).allowed

    assert allowed("StringLike")
    assert not allowed("ArnLike")


def test_arn_equals_sns_to_sqs_queue_policy() -> None:
    queue = policy(
        {
            "Effect": "Allow",
            "Principal": {"Service": "sns.amazonaws.com"},
            "Action": "SQS:SendMessage",
            "Resource": "arn:aws:sqs:us-east-1:123456789012:QUEUE-ID",
            "Condition": {"ArnEquals": {"aws:SourceArn": "arn:aws:sns:us-east-1:123456789012:TOPIC-ID"}},
        }
    )
    send = "arn:aws:sqs:us-east-1:123456789012:QUEUE-ID"
    ok = Request("sqs:SendMessage", send, {"aws:SourceArn": "arn:aws:sns:us-east-1:123456789012:TOPIC-ID"})
    other = Request("sqs:SendMessage", send, {"aws:SourceArn": "arn:aws:sns:us-east-1:123456789012:OTHER"})
    assert evaluate(ok, [], [queue], "sns.amazonaws.com").allowed
    assert not evaluate(other, [], [queue], "sns.amazonaws.com").allowed
    assert not evaluate(ok, [], [queue], "events.amazonaws.com").allowed


def test_string_like_if_exists_instance_type() -> None:
    doc = policy(
        {
            "Effect": "Allow",
            "Action": "ec2:RunInstances",
            "Resource": "*",
            "Condition": {"StringLikeIfExists": {"ec2:InstanceType": ["t1.*", "t2.*", "m3.*"]}},
        }
    )
    assert evaluate(Request("ec2:RunInstances", "*", {"ec2:InstanceType": "t2.micro"}), [doc]).allowed
    assert not evaluate(Request("ec2:RunInstances", "*", {"ec2:InstanceType": "p4d.24xlarge"}), [doc]).allowed
    assert evaluate(Request("ec2:RunInstances", "*"), [doc]).allowed  # a resource without the key


def test_negated_operator_on_an_absent_key_holds() -> None:
    # "If the policy condition requires that the key is not matched, such as StringNotLike or ArnNotLike, and the
    # right key is not present, the condition is true."
    deny = policy(
        {
            "Effect": "Deny",
            "Action": "s3:PutObject",
            "Resource": "*",
            "Condition": {"StringNotEquals": {"s3:x-amz-server-side-encryption": "aws:kms"}},
        }
    )
    allow = policy({"Effect": "Allow", "Action": "s3:PutObject", "Resource": "*"})
    assert evaluate(Request("s3:PutObject", "arn:aws:s3:::b/k"), [allow, deny]).outcome == "explicit-deny"
    ok = Request("s3:PutObject", "arn:aws:s3:::b/k", {"s3:x-amz-server-side-encryption": "aws:kms"})
    assert evaluate(ok, [allow, deny]).allowed
    # IfExists does not soften a negated operator: an absent key still makes the condition true ("If the key is not
    # present, evaluate the condition element as true"), so a Deny with StringNotEqualsIfExists refuses an upload
    # without the header. The code must send it.
    if_exists = policy(
        {
            "Effect": "Deny",
            "Action": "s3:PutObject",
            "Resource": "*",
            "Condition": {"StringNotEqualsIfExists": {"s3:x-amz-server-side-encryption": "aws:kms"}},
        }
    )
    assert evaluate(Request("s3:PutObject", "arn:aws:s3:::b/k"), [allow, if_exists]).outcome == "explicit-deny"
    assert evaluate(ok, [allow, if_exists]).allowed
    bad = Request("s3:PutObject", "arn:aws:s3:::b/k", {"s3:x-amz-server-side-encryption": "AES256"})
    assert evaluate(bad, [allow, if_exists]).outcome == "explicit-deny"
    # Several policy values under a negated operator: the value must match none of them (a logical AND).
    two = policy(
        {
            "Effect": "Deny",
            "Action": "*",
            "Resource": "*",
            "Condition": {"StringNotEquals": {"aws:PrincipalAccount": ["111111111111", "222222222222"]}},
        }
    )
    all_ = policy({"Effect": "Allow", "Action": "*", "Resource": "*"})
    assert evaluate(Request("x:Y", "*", {"aws:PrincipalAccount": "222222222222"}), [all_, two]).allowed
    assert not evaluate(Request("x:Y", "*", {"aws:PrincipalAccount": "333333333333"}), [all_, two]).allowed


THREAD = "arn:aws:dynamodb:us-east-1:123456789012:table/Thread"


def test_for_all_values_dynamodb_attributes() -> None:
    doc = policy(
        {
            "Effect": "Allow",
            "Action": "dynamodb:GetItem",
            "Resource": "arn:aws:dynamodb:*:*:table/Thread",
            "Condition": {"ForAllValues:StringEquals": {"dynamodb:Attributes": ["PostDateTime", "Message", "Tags"]}},
        }
    )

    def get(attributes: list[str] | None) -> bool:
        ctx = {} if attributes is None else {"dynamodb:Attributes": attributes}
        return evaluate(Request("dynamodb:GetItem", THREAD, ctx), [doc]).allowed

    assert get(["Message", "Tags"])
    assert not get(["PostDateTime", "UserName"])
    # "It also returns true if there are no keys in the request."
    assert get(None) and get([])


def test_for_any_value_deny_dynamodb_attributes() -> None:
    deny = policy(
        {
            "Effect": "Deny",
            "Action": "dynamodb:PutItem",
            "Resource": "arn:aws:dynamodb:*:*:table/Thread",
            "Condition": {"ForAnyValue:StringEquals": {"dynamodb:Attributes": ["ID", "PostDateTime"]}},
        }
    )
    allow = policy({"Effect": "Allow", "Action": "dynamodb:*", "Resource": "*"})

    def put(attributes: list[str] | None) -> str:
        ctx = {} if attributes is None else {"dynamodb:Attributes": attributes}
        return evaluate(Request("dynamodb:PutItem", THREAD, ctx), [allow, deny]).outcome

    assert put(["PostDateTime", "Message"]) == "explicit-deny"
    assert put(["UserName"]) == "allow"
    assert put(None) == "allow"  # ForAnyValue: no key, no match


def test_resource_policy_naming_the_account_delegates_to_iam() -> None:
    key_policy = policy(
        {"Sid": "AccountAdministersKey", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
         "Action": "kms:*", "Resource": "*"},
    )  # fmt: skip
    role = "arn:aws:sts::123456789012:assumed-role/job/session-1"
    decrypt = Request(
        "kms:Decrypt", "arn:aws:kms:us-east-1:123456789012:key/k", {"kms:ViaService": "s3.us-east-1.amazonaws.com"}
    )
    identity = policy(
        {"Sid": "UseKey", "Effect": "Allow", "Action": "kms:Decrypt",
         "Resource": "arn:aws:kms:us-east-1:123456789012:key/k",
         "Condition": {"StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}}},
    )  # fmt: skip
    assert evaluate(decrypt, [identity], [key_policy], role, resource_policy_required=True).allowed
    # The key policy's account grant does not grant on its own ...
    assert not evaluate(decrypt, [], [key_policy], role, resource_policy_required=True).allowed
    # ... and a key whose policy does not name the account refuses whatever IAM says.
    other = policy({"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::999999999999:root"}, "Action": "kms:*",
                    "Resource": "*"})  # fmt: skip
    decision = evaluate(decrypt, [identity], [other], role, resource_policy_required=True)
    assert not decision.allowed and "resource policy" in decision.reason
    # A role named directly (by its role ARN) covers its sessions.
    direct = policy({"Sid": "Job", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:role/job"},
                     "Action": "kms:Decrypt", "Resource": "*"})  # fmt: skip
    assert evaluate(decrypt, [], [direct], role, resource_policy_required=True).decided_by.endswith("statement Job")


def test_permissions_boundary_caps_identity_policies() -> None:
    identity = policy({"Effect": "Allow", "Action": ["iam:*", "s3:*"], "Resource": "*"})
    boundary = policy({"Effect": "Allow", "Action": "s3:*", "Resource": "*"})
    assert evaluate(Request("s3:GetObject", "arn:aws:s3:::b/k"), [identity], boundary_policies=[boundary]).allowed
    decision = evaluate(Request("iam:CreateRole", "*"), [identity], boundary_policies=[boundary])
    assert not decision.allowed and "boundary" in decision.reason


def test_a_resource_policy_naming_the_role_is_capped_by_its_boundary_one_naming_the_session_is_not() -> None:
    """The IAM user guide (policy evaluation within a single account, resource-based policies): a resource policy
    that names the role's ARN does not lift the role's permissions boundary; one that names the role session does."""
    role = "arn:aws:iam::123456789012:role/job"
    session = "arn:aws:sts::123456789012:assumed-role/job/run-1"
    boundary = policy({"Effect": "Allow", "Action": "sqs:*", "Resource": "*"})
    get = Request("s3:GetObject", "arn:aws:s3:::b/k")

    def bucket(who: str) -> dict[str, Any]:
        return policy({"Effect": "Allow", "Principal": {"AWS": who}, "Action": "s3:GetObject", "Resource": "*"})

    by_role = evaluate(get, [], [bucket(role)], session, boundary_policies=[boundary])
    assert not by_role.allowed and "boundary" in by_role.reason
    assert evaluate(get, [], [bucket(session)], session, boundary_policies=[boundary]).allowed
    assert evaluate(get, [], [bucket(role)], session).allowed  # no boundary: the resource policy alone allows


GITHUB = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"
DEPLOY_TRUST = policy(
    {
        "Sid": "GitHubProdEnvironment",
        "Effect": "Allow",
        "Principal": {"Federated": GITHUB},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {
            "StringEquals": {
                "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
                "token.actions.githubusercontent.com:sub": "repo:acme/ml:environment:prod",
            }
        },
    }
)
ROLE = "arn:aws:iam::123456789012:role/ml-prod-deploy"


@pytest.mark.parametrize(
    ("claims", "allowed"),
    [
        ({"sub": "repo:acme/ml:environment:prod", "aud": "sts.amazonaws.com"}, True),
        ({"sub": "repo:acme/ml:ref:refs/heads/main", "aud": "sts.amazonaws.com"}, False),
        ({"sub": "repo:acme/ml:pull_request", "aud": "sts.amazonaws.com"}, False),
        ({"sub": "repo:fork/ml:environment:prod", "aud": "sts.amazonaws.com"}, False),
        ({"sub": "repo:acme/ml:environment:prod", "aud": "other"}, False),
        ({"sub": "repo:acme/ml:environment:prod"}, False),
    ],
)
def test_github_oidc_trust(claims: dict[str, str], allowed: bool) -> None:
    assert assume_role_with_web_identity(DEPLOY_TRUST, ROLE, GITHUB, claims).allowed is allowed


PREVIEW_WORKFLOW = "acme/ml/.github/workflows/preview.yml@refs/heads/main"


def test_oidc_trust_names_only_its_provider_and_other_claims_are_keys() -> None:
    other_provider = "arn:aws:iam::123456789012:oidc-provider/token.example.com"
    claims = {"sub": "repo:acme/ml:environment:prod", "aud": "sts.amazonaws.com"}
    assert not assume_role_with_web_identity(DEPLOY_TRUST, ROLE, other_provider, claims).allowed
    by_workflow = policy(
        {
            "Effect": "Allow",
            "Principal": {"Federated": GITHUB},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {
                "StringEquals": {"token.actions.githubusercontent.com:aud": "sts.amazonaws.com"},
                "StringLike": {"token.actions.githubusercontent.com:job_workflow_ref": PREVIEW_WORKFLOW},
            },
        }
    )
    ok = {"aud": "sts.amazonaws.com", "job_workflow_ref": PREVIEW_WORKFLOW}
    branch = {**ok, "job_workflow_ref": "acme/ml/.github/workflows/preview.yml@refs/heads/evil"}
    assert assume_role_with_web_identity(by_workflow, ROLE, GITHUB, ok).allowed
    assert not assume_role_with_web_identity(by_workflow, ROLE, GITHUB, branch).allowed


@pytest.mark.parametrize(
    "bad",
    [
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Condition": {"StringSortOf": {"k": "v"}}},
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Condition": {"ForSomeValues:StringEquals": {"k": "v"}}},
        {"Effect": "Maybe", "Action": "s3:*", "Resource": "*"},
        {"Effect": "Allow", "Resource": "*"},
        {"Effect": "Allow", "Action": "s3:*"},
    ],
)
def test_a_policy_it_cannot_read_raises(bad: dict[str, Any]) -> None:
    with pytest.raises(PolicyError):
        evaluate(Request("s3:GetObject", "arn:aws:s3:::b/k", {"k": "v"}), [policy(bad)])
