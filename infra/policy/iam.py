"""AWS's policy evaluation logic, offline: identity, resource (bucket, key, trust) and boundary policies.

Used by the access contract (every call the code makes, by principal, against the rendered policies) and by the
trust checks of the bootstrap roles (OIDC claims against `sts:AssumeRoleWithWebIdentity` trust policies). No
maintained evaluator on PyPI covers what these need (NotAction/NotResource, the condition operators with IfExists
and set qualifiers, resource policies that name principals, key policies that must allow): moto's checks actions
only and treats a failed condition as a deny, principalmapper is unmaintained. This one follows the IAM user
guide's "Policy evaluation logic" and "Condition operators" pages and is tested against their examples
(tests/infra/test_iam_eval.py).

What it decides, in AWS's order:

1. An explicit `Deny` that applies (action, resource, principal for resource policies, every condition) in any of
   the policies denies.
2. An `Allow` in a resource policy that names the caller (its role, its session, a service, a federated provider or
   `*`) allows: same-account resource policies grant on their own.
3. An `Allow` in an identity policy allows (with boundaries: only if a boundary allows too). A resource policy
   statement that names the caller's *account* (`"AWS": "111122223333"` or `...:root`) delegates to IAM: it does
   not grant on its own.
4. Otherwise the request is implicitly denied.

`resource_policy_required` is for KMS key policies and role trust policies, which must allow the caller themselves
(directly, or by naming the account and then also through an identity policy).

Not modelled (none of mlinfra's policies use them): SCPs, session policies, `BinaryEquals`, ARN-typed context values
other than strings. Across accounts both sides must allow: the caller (mlinfra_infra.policy.accesscheck) evaluates
the caller's policies and the resource's policy separately. An operator this module does not
know raises `PolicyError`: a policy it cannot read is never taken as allowing or denying.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any, Literal

__all__ = [
    "Decision",
    "PolicyError",
    "Request",
    "assume_role_with_web_identity",
    "evaluate",
    "matches_action",
    "matches_arn",
    "web_identity_request",
]

ContextValue = str | bool | int | float | Sequence[str]
Outcome = Literal["allow", "explicit-deny", "implicit-deny"]


class PolicyError(ValueError):
    """A policy this evaluator cannot read (unknown operator, malformed statement): never guessed around."""


@dataclass(frozen=True)
class Request:
    """One authorisation request: an action on a resource ARN, with its request context.

    `context` keys are condition keys (`s3:prefix`, `aws:SecureTransport`, `kms:ViaService`,
    `token.actions.githubusercontent.com:sub`); they compare case-insensitively, their values case-sensitively. A
    list is a multivalued key (for `ForAnyValue:`/`ForAllValues:`).
    """

    action: str
    resource: str = "*"
    context: Mapping[str, ContextValue] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    """The outcome, the statement that decided it (`Sid`, or `policy[i].Statement[j]`) and why, in one line."""

    allowed: bool
    decided_by: str
    reason: str
    outcome: Outcome = "implicit-deny"

    def __bool__(self) -> bool:
        return self.allowed


# ---------------------------------------------------------------------------------------------------------------
# Matching of actions, resources and principals.


@cache
def _glob(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    """IAM's wildcards: `*` any run of characters, `?` any one character; everything else literal."""
    parts = ["(?s)"]
    for char in pattern:
        parts.append(".*" if char == "*" else "." if char == "?" else re.escape(char))
    return re.compile("".join(parts), re.IGNORECASE if ignore_case else 0)


def _glob_match(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    return _glob(pattern, ignore_case).fullmatch(value) is not None


def matches_action(pattern: str, action: str) -> bool:
    """`s3:Get*` matches `s3:GetObject`; service prefix and action compare case-insensitively; `*` matches all."""
    return _glob_match(pattern, action, ignore_case=True)


def matches_arn(pattern: str, arn: str) -> bool:
    """ArnLike: each of the six colon-separated components matched on its own.

    Wildcards do not cross a colon, except in the last component (the resource, which may contain colons itself).
    `*` alone matches anything.
    """
    if pattern == "*":
        return True
    pattern_parts = pattern.split(":", 5)
    arn_parts = arn.split(":", 5)
    if len(pattern_parts) != 6 or len(arn_parts) != 6:
        return _glob_match(pattern, arn)
    return all(_glob_match(p, a) for p, a in zip(pattern_parts, arn_parts, strict=True))


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


_VARIABLE = re.compile(r"\$\{([^}]+)\}")


def _substitute(text: str, context: Mapping[str, ContextValue]) -> str | None:
    """Policy variables (`${aws:username}`, `${*}`...) replaced from the context; None when one is missing.

    A variable whose key is absent makes the element match nothing (AWS treats it as not matching).
    """
    missing = False

    def replace(match: re.Match[str]) -> str:
        nonlocal missing
        name = match.group(1)
        if name in {"*", "?", "$"}:
            return name
        key, _, default = name.partition(",")
        value = _lookup(context, key.strip())
        if value is None or isinstance(value, list | tuple):
            if default:
                return default.strip().strip("'")
            missing = True
            return ""
        return _string(value)

    out = _VARIABLE.sub(replace, text)
    return None if missing else out


def _string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _lookup(context: Mapping[str, ContextValue], key: str) -> ContextValue | None:
    lowered = key.lower()
    for name, value in context.items():
        if name.lower() == lowered:
            return value
    return None


def _principal_account(principal: str) -> str:
    parts = principal.split(":")
    return parts[4] if len(parts) > 5 and parts[0] == "arn" else ""


def _role_of_session(principal: str) -> str:
    """`arn:aws:sts::111122223333:assumed-role/name/session` -> `arn:aws:iam::111122223333:role/name`."""
    match = re.fullmatch(r"arn:(aws[a-z-]*):sts::(\d{12}):assumed-role/([^/]+)/.+", principal)
    if match is None:
        return principal
    return f"arn:{match[1]}:iam::{match[2]}:role/{match[3]}"


# "session": the statement names the caller's role session ARN itself; "direct": the caller otherwise (its role ARN,
# "*", a service); "account": the caller's account, which delegates to the caller's own identity policies.
PrincipalMatch = Literal["session", "direct", "account", "none"]


def _match_principal(element: Any, principal: str) -> PrincipalMatch:
    """Whether a statement's Principal covers the caller: directly, through the caller's account, or not."""
    if element == "*":
        return "direct"
    if not isinstance(element, Mapping):
        raise PolicyError(f"Principal must be '*' or an object, not {element!r}")
    best: PrincipalMatch = "none"
    role = _role_of_session(principal)
    account = _principal_account(principal)
    for kind, values in element.items():
        for value in _as_list(values):
            if not isinstance(value, str):
                raise PolicyError(f"Principal {kind} value {value!r} is not a string")
            if kind == "AWS":
                if value == principal and role != principal:
                    return "session"
                if value == "*" or value in {principal, role}:
                    return "direct"
                if account and value in {account, f"arn:aws:iam::{account}:root"}:
                    best = "account"
            elif kind in {"Service", "Federated", "CanonicalUser"} and value == principal:
                return "direct"
    return best


# ---------------------------------------------------------------------------------------------------------------
# Conditions.

_NEGATED = {
    "StringNotEquals": "StringEquals",
    "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
    "StringNotLike": "StringLike",
    "NumericNotEquals": "NumericEquals",
    "DateNotEquals": "DateEquals",
    "NotIpAddress": "IpAddress",
    "ArnNotEquals": "ArnEquals",
    "ArnNotLike": "ArnLike",
}
_POSITIVE = {
    "StringEquals",
    "StringEqualsIgnoreCase",
    "StringLike",
    "NumericEquals",
    "NumericLessThan",
    "NumericLessThanEquals",
    "NumericGreaterThan",
    "NumericGreaterThanEquals",
    "DateEquals",
    "DateLessThan",
    "DateLessThanEquals",
    "DateGreaterThan",
    "DateGreaterThanEquals",
    "Bool",
    "IpAddress",
    "ArnEquals",
    "ArnLike",
}
_SUBSTITUTES = {"StringEquals", "StringEqualsIgnoreCase", "StringLike", "Bool", "ArnEquals", "ArnLike"}


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise PolicyError(f"{value!r} is not a number") from None


def _date(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    text = str(value)
    if re.fullmatch(r"-?\d+(\.\d+)?", text):
        return float(text)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise PolicyError(f"{value!r} is not a date (ISO 8601 or epoch seconds)") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def _one(base: str, request_value: Any, policy_value: Any) -> bool:  # noqa: PLR0911 - one branch per operator family
    """A positive operator on one request value and one policy value."""
    if base == "StringEquals":
        return _string(request_value) == _string(policy_value)
    if base == "StringEqualsIgnoreCase":
        return _string(request_value).lower() == _string(policy_value).lower()
    if base == "StringLike":
        return _glob_match(_string(policy_value), _string(request_value))
    if base in {"ArnEquals", "ArnLike"}:
        return matches_arn(_string(policy_value), _string(request_value))
    if base == "Bool":
        return _string(request_value).lower() == _string(policy_value).lower()
    if base == "IpAddress":
        try:
            return ipaddress.ip_address(_string(request_value)) in ipaddress.ip_network(
                _string(policy_value), strict=False
            )
        except ValueError:
            return False
    if base.startswith("Numeric"):
        left, right = _number(request_value), _number(policy_value)
    elif base.startswith("Date"):
        left, right = _date(request_value), _date(policy_value)
    else:  # pragma: no cover - _POSITIVE lists every base handled above
        raise PolicyError(f"unsupported condition operator {base}")
    comparison = base.removeprefix("Numeric").removeprefix("Date")
    return {
        "Equals": left == right,
        "LessThan": left < right,
        "LessThanEquals": left <= right,
        "GreaterThan": left > right,
        "GreaterThanEquals": left >= right,
    }[comparison]


def _condition_holds(operator: str, key: str, policy_values: Any, context: Mapping[str, ContextValue]) -> bool:
    """One operator on one key: AWS's rules for absent keys, IfExists, Null, negation and the set qualifiers."""
    qualifier, _, name = operator.rpartition(":")
    if qualifier not in {"", "ForAnyValue", "ForAllValues"}:
        raise PolicyError(f"unknown condition set operator {qualifier!r} in {operator!r}")
    if_exists = name.endswith("IfExists") and name != "IfExists"
    if if_exists:
        name = name.removesuffix("IfExists")
    value = _lookup(context, key)
    wanted = _as_list(policy_values)

    if name == "Null":
        if if_exists or qualifier:
            raise PolicyError(f"{operator} is not a valid condition operator")
        is_null = value is None or (isinstance(value, list | tuple) and not value)
        return any(is_null == (_string(w).lower() == "true") for w in wanted)

    negated = name in _NEGATED
    base = _NEGATED.get(name, name)
    if base not in _POSITIVE:
        raise PolicyError(f"unknown condition operator {operator!r}")
    if base in _SUBSTITUTES:
        resolved = [_substitute(w, context) if isinstance(w, str) else w for w in wanted]
        wanted = [w for w in resolved if w is not None]

    values: list[Any]
    if value is None:
        values = []
    elif isinstance(value, list | tuple):
        values = list(value)
    else:
        values = [value]

    def passes(one: Any) -> bool:
        positive = any(_one(base, one, w) for w in wanted)
        return not positive if negated else positive

    if qualifier == "ForAllValues":
        return all(passes(v) for v in values)  # true for an absent key or an empty set, as AWS documents
    if qualifier == "ForAnyValue":
        return any(passes(v) for v in values)  # false for an absent key
    if not values:
        # Absent key: no match, so positive operators fail and negated ones hold; IfExists holds either way.
        return if_exists or negated
    # A single-valued operator given several request values: every value must pass (AWS asks for a set operator).
    return all(passes(v) for v in values)


def _conditions_hold(condition: Any, context: Mapping[str, ContextValue]) -> bool:
    if condition is None:
        return True
    if not isinstance(condition, Mapping):
        raise PolicyError(f"Condition must be an object, not {condition!r}")
    for operator, block in condition.items():
        if not isinstance(block, Mapping):
            raise PolicyError(f"Condition operator {operator} must map keys to values")
        for key, values in block.items():
            if not _condition_holds(str(operator), str(key), values, context):
                return False
    return True


# ---------------------------------------------------------------------------------------------------------------
# Statements and policies.


@dataclass(frozen=True)
class _Match:
    effect: Literal["Allow", "Deny"]
    label: str
    kind: Literal["identity", "resource", "boundary"]
    principal: PrincipalMatch


def _label(statement: Mapping[str, Any], policy_name: str, index: int) -> str:
    sid = statement.get("Sid")
    return f"{policy_name} statement {sid}" if sid else f"{policy_name} Statement[{index}]"


def _statements(policy: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    if not isinstance(policy, Mapping):
        raise PolicyError(f"a policy must be a JSON object, not {type(policy).__name__}")
    found = _as_list(policy.get("Statement"))
    for statement in found:
        if not isinstance(statement, Mapping):
            raise PolicyError(f"a statement must be an object, not {statement!r}")
    return found


def _applies(  # noqa: PLR0912 - one branch per element of a statement
    statement: Mapping[str, Any], request: Request, *, principal: str, resource_policy: bool
) -> PrincipalMatch:
    """Whether a statement applies to the request ("none" when not); for resource policies, how it names the caller."""
    effect = statement.get("Effect")
    if effect not in {"Allow", "Deny"}:
        raise PolicyError(f"Effect must be Allow or Deny, not {effect!r}")
    if ("Action" in statement) == ("NotAction" in statement):
        raise PolicyError("a statement needs exactly one of Action and NotAction")
    if "Action" in statement:
        if not any(matches_action(str(a), request.action) for a in _as_list(statement["Action"])):
            return "none"
    elif any(matches_action(str(a), request.action) for a in _as_list(statement["NotAction"])):
        return "none"

    if "Resource" in statement or "NotResource" in statement:
        key = "Resource" if "Resource" in statement else "NotResource"
        patterns = [_substitute(str(r), request.context) for r in _as_list(statement[key])]
        hit = any(p is not None and matches_arn(p, request.resource) for p in patterns)
        if hit != (key == "Resource"):
            return "none"
    elif not resource_policy:
        raise PolicyError("an identity policy statement needs Resource or NotResource")

    how: PrincipalMatch = "direct"
    if resource_policy:
        if "Principal" in statement:
            how = _match_principal(statement["Principal"], principal)
        elif "NotPrincipal" in statement:
            how = "none" if _match_principal(statement["NotPrincipal"], principal) == "direct" else "direct"
        else:
            raise PolicyError("a resource policy statement needs Principal or NotPrincipal")
        if how == "none":
            return "none"
    if not _conditions_hold(statement.get("Condition"), request.context):
        return "none"
    return how


def _matching(
    policies: Iterable[Mapping[str, Any]],
    kind: Literal["identity", "resource", "boundary"],
    request: Request,
    principal: str,
) -> list[_Match]:
    found = []
    for i, policy in enumerate(policies):
        name = str(policy.get("Id") or f"{kind} policy {i}")
        for j, statement in enumerate(_statements(policy)):
            how = _applies(statement, request, principal=principal, resource_policy=kind == "resource")
            if how != "none":
                found.append(_Match(statement["Effect"], _label(statement, name, j), kind, how))
    return found


def _with_principal_keys(request: Request, principal: str) -> Request:
    """Add the global keys AWS puts in every request from the caller (aws:PrincipalArn, aws:PrincipalAccount)."""
    if not re.match(r"arn:aws[a-z-]*:(iam::\d{12}:(role|user)/|sts::\d{12}:assumed-role/)", principal):
        return request
    context = dict(request.context)
    lowered = {k.lower() for k in context}
    if "aws:principalarn" not in lowered:
        context["aws:PrincipalArn"] = _role_of_session(principal)
    if "aws:principalaccount" not in lowered and _principal_account(principal):
        context["aws:PrincipalAccount"] = _principal_account(principal)
    return Request(request.action, request.resource, context)


def evaluate(  # noqa: PLR0911 - one return per outcome of the evaluation logic
    request: Request,
    identity_policies: Sequence[Mapping[str, Any]],
    resource_policies: Sequence[Mapping[str, Any]] = (),
    principal: str = "",
    *,
    boundary_policies: Sequence[Mapping[str, Any]] | None = None,
    resource_policy_required: bool = False,
) -> Decision:
    """Decide one request for one principal, as AWS does within one account.

    `principal` is the caller as resource policies name it: a role ARN (or its session ARN), a service
    (`lambda.amazonaws.com`) or an OIDC provider ARN. `boundary_policies`, when given, cap what identity policies
    grant. `resource_policy_required`: a KMS key policy or a role trust policy, which must itself allow the caller.
    """
    request = _with_principal_keys(request, principal)
    identity = _matching(identity_policies, "identity", request, principal)
    resource = _matching(resource_policies, "resource", request, principal)
    boundary = _matching(boundary_policies or (), "boundary", request, principal)
    what = f"{request.action} on {request.resource}"

    for match in (*resource, *identity, *boundary):
        if match.effect == "Deny":
            return Decision(False, match.label, f"explicit deny of {what}", "explicit-deny")

    resource_allows = [m for m in resource if m.effect == "Allow"]
    session = [m for m in resource_allows if m.principal == "session"]
    direct = [m for m in resource_allows if m.principal == "direct"]
    delegated = [m for m in resource_allows if m.principal == "account"]
    identity_allows = [m for m in identity if m.effect == "Allow"]
    boundary_ok = boundary_policies is None or any(m.effect == "Allow" for m in boundary)

    # A resource policy naming the role session itself is not limited by the role's boundary; one naming the role
    # ARN (or "*") is (IAM user guide, policy evaluation within a single account: resource-based policies).
    if session:
        return Decision(True, session[0].label, f"the resource policy allows {what} to {principal}", "allow")
    if direct and boundary_ok:
        return Decision(True, direct[0].label, f"the resource policy allows {what} to {principal}", "allow")
    if direct:
        return Decision(False, "", f"the permissions boundary does not allow {what}")
    if resource_policy_required and not delegated:
        return Decision(False, "", f"no statement of the resource policy allows {what} to {principal}")
    if identity_allows and boundary_ok:
        return Decision(True, identity_allows[0].label, f"an identity policy allows {what}", "allow")
    if identity_allows:
        return Decision(False, "", f"the permissions boundary does not allow {what}")
    return Decision(False, "", f"no statement allows {what}")


# ---------------------------------------------------------------------------------------------------------------
# OIDC trust (GitHub Actions' `sts:AssumeRoleWithWebIdentity`).


def web_identity_request(role_arn: str, issuer: str, claims: Mapping[str, ContextValue]) -> Request:
    """The request STS evaluates against a role's trust policy for an OIDC token: each claim as `<issuer>:<claim>`.

    `issuer` is the provider's host and path without `https://` (`token.actions.githubusercontent.com`). STS adds
    the `sub`, `aud`/`azp`, `amr` and, for GitHub's provider, the other claims under the issuer's prefix.
    """
    host = issuer.removeprefix("https://").rstrip("/")
    context: dict[str, ContextValue] = {f"{host}:{name}": value for name, value in claims.items()}
    return Request("sts:AssumeRoleWithWebIdentity", role_arn, context)


def assume_role_with_web_identity(
    trust_policy: Mapping[str, Any], role_arn: str, provider_arn: str, claims: Mapping[str, ContextValue]
) -> Decision:
    """Whether a token with `claims` from the OIDC provider `provider_arn` may assume the role.

    The provider ARN ends with the issuer:
    `arn:aws:iam::111122223333:oidc-provider/token.actions.githubusercontent.com`.
    """
    issuer = provider_arn.split(":oidc-provider/", 1)[-1]
    request = web_identity_request(role_arn, issuer, claims)
    return evaluate(request, [], [trust_policy], provider_arn, resource_policy_required=True)
