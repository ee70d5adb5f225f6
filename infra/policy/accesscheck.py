"""The access contract evaluated against a rendered stack: every call each principal makes, allowed or denied.

For each principal the stack declares (its role and inline/attached policies found among the resources), every call
of the contract is instantiated for the stage (registry bucket, key, models) and decided by `iam.evaluate` against
the role's identity policies, the registry's bucket policy and, for KMS, the key policy (which must allow). Two rules
AWS enforces that the emulator does not are added here:

- S3 reads through KMS: a GetObject of an SSE-KMS object is also a `kms:Decrypt` of the registry key, a PutObject a
  `kms:GenerateDataKey`, both with `kms:ViaService` = S3 of the region.
- S3's 403 for a missing key: a GetObject or HeadObject the code expects may miss is answered 404 (NoSuchKey) only
  when the caller may `s3:ListBucket` the bucket for that key (evaluated with `s3:prefix` = the key); otherwise
  403 AccessDenied, which the code does not treat as "not there yet".

The rule `access-contract` (mandatory in every stage) reports every denied call; it runs in `mlinfra check` and in
the CrossGuard pack alike.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import contract as contract_module
from .contract import Call, Contract, instantiate, unresolved
from .engine import Context, Index, Resource, as_list, document, get, stack_rule
from .iam import Decision, PolicyError, Request, evaluate
from .tokens import BUCKET, BUCKET_POLICY, ENDPOINT, KEY, POLICY, ROLE, ROLE_POLICY, SCALING_TARGET, SSE

ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
ALIAS = "aws:kms/alias:Alias"
PACKAGE_GROUP = "aws:sagemaker/modelPackageGroup:ModelPackageGroup"
SCHEDULE = "aws:scheduler/schedule:Schedule"
FUNCTION = "aws:lambda/function:Function"
COMPONENT = "mlinfra:aws:"
CI_ROLES = {"ci-preview": "preview", "ci-deploy": "deploy", "ci-promotion": "promotion"}


@dataclass
class Found:
    """A principal as one stack declares it: its ARN, its identity policies and the models it acts for."""

    principal: str
    arn: str
    label: str
    policies: list[dict[str, Any]]
    models: list[str]
    unevaluated: list[str] = field(default_factory=list)
    boundary: list[dict[str, Any]] | None = None  # the permissions boundary, where the role has one
    trust: dict[str, Any] | None = None  # the role's trust policy, where the check assumes the role


@dataclass(frozen=True)
class CallResult:
    """One call of the contract in one stack, decided."""

    principal: str
    role: str
    call: Call
    action: str
    resource: str
    context: dict[str, Any]
    decision: Decision
    why: str = ""
    acting: str = ""  # the role the request is made as, when not the principal's own (a source stage's lent role)

    def to_json(self) -> dict[str, Any]:
        return {
            "principal": self.principal,
            "role": self.role,
            "caller": self.call.caller,
            "action": self.action,
            "resource": self.resource,
            "context": self.context,
            "allowed": self.decision.allowed,
            "decidedBy": self.decision.decided_by,
            "reason": self.decision.reason,
            "why": self.why,
            "actingAs": self.acting or None,
        }


@dataclass
class StackAccess:
    """Every principal of the contract in one stack: the calls decided, and the principals the stack lacks."""

    results: list[CallResult]
    absent: list[str]
    notes: list[str]

    @property
    def denied(self) -> list[CallResult]:
        return [r for r in self.results if not r.decision.allowed]


def _autoname(logical: str) -> str:
    return f"{logical}-{hashlib.sha256(logical.encode()).hexdigest()[:7]}"


def _role_ids(role: Resource) -> set[str]:
    """What a RolePolicy's `role` input may hold for this role: its name, or the offline render's mock id."""
    name = str(role.inputs.get("name") or _autoname(role.name))
    return {name, f"{name}-id", str(role.inputs.get("id") or name)}


@dataclass
class _Stack:
    index: Index
    types: dict[str, str]
    account: str
    region: str
    bucket: str
    key_arn: str
    bucket_policy: dict[str, Any]
    key_policy: dict[str, Any]
    project: str
    stage: str
    models: list[str]
    # Where roles are declared: the stack itself, or with the bootstrap stack's render added (CI roles, boundaries).
    identities: Index | None = None

    @property
    def roles(self) -> Index:
        return self.identities or self.index

    def parent_type(self, resource: Resource) -> str:
        return self.types.get(resource.parent or "", "")


_REGIONAL_ARN = re.compile(r"arn:aws[a-z-]*:[a-z0-9-]+:([a-z]{2}(?:-[a-z]+)+-\d):(\d{12}):")


def _region_account(index: Index, key_arn: str) -> tuple[str, str]:
    """The stack's region and account: from the registry key's ARN, else from any regional ARN its policies name."""
    found = _REGIONAL_ARN.match(key_arn)
    if found is None:
        for resource in (*index.of(ROLE_POLICY), *index.of(POLICY)):
            found = _REGIONAL_ARN.search(str(resource.inputs.get("policy", "")))
            if found is not None:
                break
    return (found.group(1), found.group(2)) if found is not None else ("", "")


def _registry(index: Index, ctx: Context) -> _Stack | None:
    """The stage's registry (bucket, key, their policies) and names; None when the stack declares no registry."""
    types = {r.name: r.type for r in index.resources}
    buckets = [b for b in index.of(BUCKET) if types.get(b.parent or "") == f"{COMPONENT}ModelRegistry"]
    registry = [b for b in buckets if b.inputs.get("bucket")]
    if not registry:
        return None
    bucket = str(registry[0].inputs["bucket"])
    key_arn = ""
    for sse in index.of(SSE):
        if sse.inputs.get("bucket") == bucket:
            key_arn = str(get(sse.inputs, "rules.0.applyServerSideEncryptionByDefault.kmsMasterKeyId", ""))
    region, account = _region_account(index, key_arn)
    bucket_policy = next((document(p.inputs.get("policy")) for p in index.of(BUCKET_POLICY)
                          if p.inputs.get("bucket") == bucket), {})  # fmt: skip
    keys = [k for k in index.of(KEY) if types.get(k.parent or "") == f"{COMPONENT}ModelRegistry"]
    key_policy = document(keys[0].inputs.get("policy")) if keys else {}
    groups = [(str(get(g.inputs, "tags.model", "")), str(g.inputs.get("modelPackageGroupName", "")))
              for g in index.of(PACKAGE_GROUP)]  # fmt: skip
    models = sorted(m for m, _ in groups if m)
    project = ""
    for model, group in groups:
        suffix = f"-{ctx.stage}-{model}"
        if model and group.endswith(suffix):
            project = group.removesuffix(suffix)
    return _Stack(index, types, account, region, bucket, key_arn, bucket_policy, key_policy, project, ctx.stage, models)


def _managed(stack: _Stack) -> dict[str, Resource]:
    return {str(p.inputs.get("name") or _autoname(p.name)): p for p in stack.roles.of(POLICY)}


def _boundary(stack: _Stack, role: Resource) -> tuple[list[dict[str, Any]] | None, list[str]]:
    """The role's permissions boundary as a policy document (None without one), or the ARN it could not find."""
    arn = role.inputs.get("permissionsBoundary")
    if not arn:
        return None, []
    policy = _managed(stack).get(str(arn).rsplit("/", 1)[-1])
    if policy is None:
        return None, [f"{arn} (permissions boundary)"]
    return [{**document(policy.inputs.get("policy")), "Id": policy.name}], []


def _identity_policies(stack: _Stack, role: Resource) -> tuple[list[dict[str, Any]], list[str]]:
    ids = _role_ids(role)
    policies: list[dict[str, Any]] = []
    unevaluated: list[str] = []
    for inline in stack.roles.of(ROLE_POLICY):
        if str(inline.inputs.get("role")) in ids:
            doc = document(inline.inputs.get("policy"))
            policies.append({**doc, "Id": inline.name})
    managed = _managed(stack)
    for attachment in stack.roles.of(ATTACHMENT):
        if str(attachment.inputs.get("role")) not in ids:
            continue
        arn = str(attachment.inputs.get("policyArn", ""))
        policy = managed.get(arn.rsplit("/", 1)[-1])
        if policy is not None:
            policies.append({**document(policy.inputs.get("policy")), "Id": policy.name})
        else:
            unevaluated.append(arn)
    return policies, unevaluated


def _role_arn(stack: _Stack, role: Resource) -> str:
    path = role.inputs.get("path") or "/"
    return f"arn:aws:iam::{stack.account}:role{path}{role.inputs.get('name') or _autoname(role.name)}"


def _drift_models(stack: _Stack, job_component: str) -> list[str]:
    for schedule in stack.index.of(SCHEDULE):
        if schedule.parent != job_component:
            continue
        spec = document(get(schedule.inputs, "target.input"))
        return sorted(str(m.get("model")) for m in as_list(spec.get("models")) if isinstance(m, Mapping))
    return []


def find_principals(stack: _Stack, contract: Contract) -> dict[str, list[Found]]:
    """Each principal of the contract that this stack declares, with its policies."""
    found: dict[str, list[Found]] = {}

    def add(principal: str, role: Resource, models: list[str]) -> None:
        policies, unevaluated = _identity_policies(stack, role)
        boundary, missing = _boundary(stack, role)
        found.setdefault(principal, []).append(
            Found(principal, _role_arn(stack, role), role.name, policies, models, unevaluated + missing, boundary)
        )

    for role in stack.roles.of(ROLE):
        kind = stack.parent_type(role).removeprefix(COMPONENT)
        name = role.name
        if kind == "DriftJob":
            if name.endswith("-scheduler-role"):
                add("scheduler", role, _drift_models(stack, role.parent or ""))
            elif name.endswith("-role"):
                add("drift-job", role, _drift_models(stack, role.parent or ""))
        elif kind == "ModelEndpoint" and name.endswith("-role"):
            add("endpoint", role, [str(get(role.inputs, "tags.model", ""))])
        elif kind == "SandboxVM" and name.endswith("-role") and not name.endswith("-stop-role"):
            add("sandbox-vm", role, stack.models)
        for principal, suffix in CI_ROLES.items():
            if str(role.inputs.get("name", "")) == f"{stack.project}-{stack.stage}-{suffix}":
                add(principal, role, stack.models)
    for policy in stack.index.of(POLICY):
        if policy.name.endswith("-analyst-access"):
            analyst = Found(
                "analyst",
                f"arn:aws:iam::{stack.account}:role/{stack.project}-{stack.stage}-analyst",
                policy.name,
                [{**document(policy.inputs.get("policy")), "Id": policy.name}],
                stack.models,
            )
            found.setdefault("analyst", []).append(analyst)
    return {p: v for p, v in found.items() if p in contract.principals}


_IMAGE = re.compile(r"(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/(?P<repo>[^:@]+)")
MODEL = "aws:sagemaker/model:Model"
ENDPOINT_CONFIG = "aws:sagemaker/endpointConfiguration:EndpointConfiguration"
REPOSITORY = "aws:codeartifact/repository:Repository"
QUEUE = "aws:sqs/queue:Queue"
MODEL_PLACEHOLDERS = {"model", "endpoint", "image_repository"}


def _stack_values(stack: _Stack) -> dict[str, str]:
    """Placeholder values every call of the stack shares."""
    values = {"bucket": stack.bucket, "project": stack.project, "stage": stack.stage}
    # Only what the stack says: a call naming a value the stack does not have is reported "not evaluated".
    values.update(
        {k: v for k, v in (("key", stack.key_arn), ("region", stack.region), ("account", stack.account)) if v}
    )
    for function in stack.index.of(FUNCTION):
        if function.inputs.get("name"):
            values["function"] = str(function.inputs["name"])
    for queue in stack.index.of(QUEUE):
        if stack.parent_type(queue) == f"{COMPONENT}DriftJob":
            name = queue.inputs.get("name") or _autoname(queue.name)
            values["dlq"] = f"arn:aws:sqs:{stack.region}:{stack.account}:{name}"
    for repository in stack.index.of(REPOSITORY):
        if repository.inputs.get("upstreams"):
            values["domain"] = str(repository.inputs.get("domain"))
            values["repository"] = str(repository.inputs.get("repository"))
    for policy in stack.index.of(POLICY):
        if policy.name.endswith("-analyst-access"):
            found = re.search(r"arn:aws:ec2:[^:]*:\d*:instance/([\w-]+)", json.dumps(policy.inputs.get("policy")))
            if found:
                values["instance"] = found.group(1)
    return values


def _model_values(stack: _Stack, model: str) -> dict[str, str]:
    values = {"model": model, "endpoint": f"{stack.project}-{stack.stage}-{model}"}
    for resource in stack.index.of(MODEL):
        if get(resource.inputs, "tags.model") == model:
            match = _IMAGE.match(str(get(resource.inputs, "primaryContainer.image", "")))
            if match:
                values["image_repository"] = (
                    f"arn:aws:ecr:{match['region']}:{match['account']}:repository/{match['repo']}"
                )
    return values


def _holds(stack: _Stack, when: str, model: str) -> bool:
    """A declared call's precondition in this stack (`capture`: the model's endpoint captures data)."""
    if when == "capture":
        return any(
            get(c.inputs, "tags.model") == model and get(c.inputs, "dataCaptureConfig.enableCapture") is True
            for c in stack.index.of(ENDPOINT_CONFIG)
        )
    return not when


# SageMaker and Application Auto Scaling ARNs -> the rendered type whose tags AWS reads as aws:ResourceTag/*.
_TAGGED = (
    (":model/", MODEL),
    (":endpoint-config/", ENDPOINT_CONFIG),
    (":endpoint/", ENDPOINT),
    (":model-package-group/", PACKAGE_GROUP),
    (":scalable-target/", SCALING_TARGET),
)


def _resource_keys(stack: _Stack, resource: str, model: str) -> dict[str, Any]:
    """The keys AWS adds for the resource: aws:ResourceAccount, and the tags the stack gives the model's resource."""
    keys: dict[str, Any] = {}
    arn = resource.split(":")
    if len(arn) > 4 and arn[4]:
        keys["aws:ResourceAccount"] = arn[4]
    elif resource.startswith(f"arn:aws:s3:::{stack.bucket}") and stack.account:
        keys["aws:ResourceAccount"] = stack.account  # the bucket's owner (S3 ARNs name no account)
    if stack.key_arn and resource == stack.key_arn:
        # KMS puts the key's aliases (kms:ResourceAliases) and tags in every request on it.
        aliases = [str(a.inputs.get("name")) for a in stack.index.of(ALIAS)
                   if str(a.inputs.get("targetKeyId", "-")) in resource]  # fmt: skip
        if aliases:
            keys["kms:ResourceAliases"] = sorted(aliases)
        for key in stack.index.of(KEY):
            if stack.parent_type(key) == f"{COMPONENT}ModelRegistry":
                keys.update({f"aws:ResourceTag/{k}": str(v) for k, v in (key.inputs.get("tags") or {}).items()})
    for marker, type_token in _TAGGED:
        if marker not in resource or not model:
            continue
        for declared in stack.index.of(type_token):
            tags = declared.inputs.get("tags") or {}
            if tags.get("model") == model or (type_token == SCALING_TARGET and model in str(declared.name)):
                keys.update({f"aws:ResourceTag/{k}": str(v) for k, v in tags.items()})
                break
    return keys


def _decide(
    owner: _Stack, found: Found, action: str, resource: str, context: dict[str, Any], *, role_account: str
) -> Decision:
    """One request as AWS decides it: in one account, or, when `owner` is another account, by both sides."""
    request = Request(action, resource, {"aws:SecureTransport": True, **context})
    resource_policies: list[dict[str, Any]] = []
    required = False
    if action.startswith("kms:") and resource == owner.key_arn:
        resource_policies, required = [owner.key_policy], True
    elif resource.startswith(f"arn:aws:s3:::{owner.bucket}") and owner.bucket_policy:
        resource_policies = [owner.bucket_policy]
    service = action.split(":", 1)[0]
    if owner.account and owner.account != role_account and not resource_policies:
        # No resource policy of the owner's account lets the caller in (CloudWatch has none; the stacks declare no
        # model package group policy): the request would go to the caller's own account.
        return Decision(
            False,
            "",
            f"{service} in account {owner.account} cannot be reached from account {role_account} without a role "
            f"there: {action} on {resource}",
        )
    try:
        if not owner.account or owner.account == role_account:
            return evaluate(
                request,
                found.policies,
                resource_policies,
                found.arn,
                boundary_policies=found.boundary,
                resource_policy_required=required,
            )
        # Across accounts the caller's own policies (and boundary) and the resource's policy must each allow.
        own = evaluate(request, found.policies, [], found.arn, boundary_policies=found.boundary)
        if not own.allowed:
            return own
        # The resource's policy must let the caller in: naming it, or naming its account (which then delegates to the
        # caller's own policies, already found to allow).
        return evaluate(
            request,
            found.policies,
            resource_policies,
            found.arn,
            boundary_policies=found.boundary,
            resource_policy_required=True,
        )
    except PolicyError as exc:
        return Decision(False, "", f"a policy could not be evaluated: {exc}")


def _requests(stack: _Stack, call: Call, values: Mapping[str, str]) -> Iterator[tuple[str, str, dict[str, Any], str]]:
    """(action, resource, context, why) of a call and of what AWS checks with it (KMS through S3, missing keys)."""
    resource = instantiate(call.resource, values)
    context: dict[str, Any] = {k: instantiate(v, values) for k, v in call.context}
    yield call.action, resource, context, ""
    on_registry = resource.startswith(f"arn:aws:s3:::{stack.bucket}/") and stack.key_arn
    via_s3 = {"kms:ViaService": f"s3.{stack.region}.amazonaws.com"}
    if on_registry and call.action in {"s3:GetObject", "s3:GetObjectVersion"}:
        yield "kms:Decrypt", stack.key_arn, via_s3, f"reading {resource} (SSE-KMS)"
    if call.action == "s3:GetObjectAttributes":
        # Without a version id S3 authorises GetObjectAttributes as s3:GetObject too (its API reference).
        yield "s3:GetObject", resource, context, f"GetObjectAttributes of {resource} is authorised as s3:GetObject too"
    if on_registry and call.action == "s3:PutObject":
        yield "kms:GenerateDataKey", stack.key_arn, via_s3, f"writing {resource} (SSE-KMS)"
    if call.missing_key:
        key = resource.removeprefix(f"arn:aws:s3:::{stack.bucket}/")
        why = f"S3 answers 403, not 404, for a missing {key} without s3:ListBucket"
        yield "s3:ListBucket", f"arn:aws:s3:::{stack.bucket}", {"s3:prefix": key}, why


SOURCE = "{source"  # placeholders of a call on the source stage's resources ({source_bucket}, {source}, ...)
# A read of the source registry made with the caller's own credentials, never a lent role: a server-side copy's read,
# and promote's check of the artifact it copies (HeadObject with checksum mode).
COPY_SOURCE = "{copy_source_bucket}"


def _source_values(source: _Stack, model: str) -> dict[str, str]:
    values = {"source_bucket": source.bucket, "source": source.stage, "source_account": source.account}
    values["copy_source_bucket"] = source.bucket
    if source.key_arn:
        values["source_key"] = source.key_arn
    if model:
        values["source_endpoint"] = f"{source.project}-{source.stage}-{model}"
    return values


# The one write a command makes on its source stage; across accounts it goes through the source's approval role.
APPROVAL_ACTIONS = frozenset({"sagemaker:UpdateModelPackage"})
ROLE_PLACEHOLDERS = {"source": "source_role", "approval": "approval_role"}


def _lent_roles(stack: _Stack, lent: Mapping[str, str], notes: list[str]) -> dict[str, Found]:
    """The source stage's source and approval roles (`lent`: purpose -> ARN, its stage file's settings).

    Found among the identities; a role the identities lack is noted, and calls through it are not evaluated.
    """
    by_name = {str(r.inputs.get("name", "")): r for r in stack.roles.of(ROLE)}
    out: dict[str, Found] = {}
    for purpose, arn in lent.items():
        role = by_name.get(arn.rsplit("/", 1)[-1])
        if role is None:
            notes.append(f"{arn} ({purpose} role of the source stage) is not among the rendered roles: not evaluated")
            continue
        policies, unevaluated = _identity_policies(stack, role)
        trust = {**document(role.inputs.get("assumeRolePolicy")), "Id": f"{role.name} (trust)"}
        out[purpose] = Found(purpose, arn, role.name, policies, [], unevaluated, None, trust)
    return out


def _decide_assume(caller: Found, role: Found, context: dict[str, Any]) -> Decision:
    """sts:AssumeRole of `role` by `caller`: the caller's identity policy (and boundary) and the role's trust."""
    request = Request("sts:AssumeRole", role.arn, {"aws:SecureTransport": True, **context})
    try:
        own = evaluate(request, caller.policies, [], caller.arn, boundary_policies=caller.boundary)
        if not own.allowed:
            return own
        return evaluate(request, [], [role.trust or {}], caller.arn, resource_policy_required=True)
    except PolicyError as exc:
        return Decision(False, "", f"a policy could not be evaluated: {exc}")


def _decide_call(
    stack: _Stack, owner: _Stack, caller: Found, request: Request, *, acting: Found | None, lent: Mapping[str, Found]
) -> tuple[Decision, str]:
    """One request of a call: an AssumeRole of a lent role, a call made as a lent role, or as the caller itself."""
    action, resource, context = request.action, request.resource, dict(request.context)
    assumed = next((r for r in lent.values() if action == "sts:AssumeRole" and resource == r.arn), None)
    if assumed is not None:
        return _decide_assume(caller, assumed, context), f"assumed by {caller.arn}"
    if acting is not None:
        return _decide(owner, acting, action, resource, context, role_account=owner.account), f"as {acting.arn}"
    return _decide(owner, caller, action, resource, context, role_account=stack.account), ""


def evaluate_stack(
    resources: Sequence[Resource],
    ctx: Context,
    contract: Contract | None = None,
    *,
    identities: Sequence[Resource] = (),
    source: tuple[Sequence[Resource], Context] | None = None,
    source_roles: Mapping[str, str] | None = None,
) -> StackAccess:
    """Decide every call of every principal this stack declares.

    `identities`: more resources declaring roles for this stage (the bootstrap stack's CI roles and the boundaries
    of every role). `source`: the rendered stage versions come from, for calls on its resources (promote's reads,
    the gate re-check); without it those calls are listed as not evaluated. `source_roles`: the source stage's
    `access.sourceRoleArn` and `approvalRoleArn` ({"source": ARN, "approval": ARN}): the calls on the source are
    then made as those roles (found among `identities`) in the source's account, and their sts:AssumeRole by the
    calling role is decided by its identity policy and the role's trust policy.
    """
    chosen = contract if contract is not None else contract_module.load()
    stack = _registry(Index(resources), ctx)
    if stack is None:
        return StackAccess([], sorted(chosen.principals), ["the stack declares no model registry"])
    if identities:
        stack.identities = Index([*resources, *identities])
        stack.types = {**{r.name: r.type for r in identities}, **stack.types}
    source_stack = _registry(Index(source[0]), source[1]) if source is not None else None
    found = find_principals(stack, chosen)
    shared = _stack_values(stack)
    results: list[CallResult] = []
    notes: list[str] = []
    lent = _lent_roles(stack, source_roles, notes) if source_roles and source_stack is not None else {}
    shared.update({ROLE_PLACEHOLDERS[purpose]: role.arn for purpose, role in lent.items()})
    for principal in chosen.principals:
        for one in found.get(principal, []):
            notes += [f"{one.label}: {arn} not evaluated" for arn in one.unevaluated]
            for call in chosen.calls_of(principal):
                placeholders = set(unresolved(call.resource + json.dumps(dict(call.context))))
                per_model = bool(placeholders & MODEL_PLACEHOLDERS or call.when)
                on_source = SOURCE in call.resource + json.dumps(dict(call.context))
                copied = COPY_SOURCE in call.resource
                owner = source_stack if (on_source or copied) and source_stack is not None else stack
                for model in one.models if per_model else [""]:
                    if model and not _holds(stack, call.when, model):
                        continue
                    values = {**shared, **(_model_values(stack, model) if model else {})}
                    if (on_source or copied) and source_stack is not None:
                        values.update(_source_values(source_stack, model))
                    # Through the source's own role (same account as its resources), where it lends one.
                    through = "approval" if call.action in APPROVAL_ACTIONS else "source"
                    acting = lent.get(through) if on_source else None
                    if on_source and source_roles and acting is None:
                        notes.append(f"{one.label}: {call.action} on {call.resource} not evaluated (no {through} role)")
                        continue
                    for action, resource, asked, checked in _requests(owner, call, values):
                        missing = unresolved(resource + json.dumps(asked))
                        if missing:
                            notes.append(
                                f"{one.label}: {action} on {call.resource} not evaluated (no {missing[0]} here)"
                            )
                            continue
                        context = {**_resource_keys(owner, resource, model), **asked}
                        request = Request(action, resource, context)
                        decision, how = _decide_call(stack, owner, one, request, acting=acting, lent=lent)
                        why = "; ".join(part for part in (checked, how) if part)
                        made_as = acting.arn if acting is not None and action != "sts:AssumeRole" else ""
                        results.append(
                            CallResult(principal, one.label, call, action, resource, context, decision, why, made_as)
                        )
    absent = [p for p in chosen.principals if p not in found]
    return StackAccess(_unique(results), absent, sorted(set(notes)))


def _unique(results: list[CallResult]) -> list[CallResult]:
    seen: set[str] = set()
    out = []
    for result in results:
        key = json.dumps(
            [result.principal, result.role, result.acting, result.action, result.resource, result.context],
            sort_keys=True,
        )
        if key not in seen:
            seen.add(key)
            out.append(result)
    return out


@stack_rule(
    "access-contract",
    "Every AWS call mlinfra's code makes (the access contract, infra/policy/access-contract.json) is allowed for the "
    "principal that makes it by the stack's identity, bucket and key policies, under AWS's evaluation logic.",
    level="mandatory",
)
def access_contract(resources: Sequence[Resource], ctx: Context) -> Iterator[tuple[str, str]]:
    try:
        contract = contract_module.load()
    except (OSError, ValueError) as exc:
        yield "access-contract", f"the access contract could not be loaded: {exc}"
        return
    for result in evaluate_stack(resources, ctx, contract).denied:
        why = f" ({result.why})" if result.why else ""
        yield (
            result.role,
            f"{result.principal} ({result.call.caller}) is denied {result.action} on {result.resource}{why}: "
            f"{result.decision.reason}",
        )
