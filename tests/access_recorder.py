"""Records every AWS call the code under test makes (botocore event hooks) as access-contract calls.

Installed by tests/conftest.py for the whole test session: every botocore client created from then on gets three
handlers — `before-parameter-build` (the API parameters), `before-sign` (the final headers, including conditional
and encryption headers some code adds itself) and `after-call` (a 404 on a read: the code handled a missing key).

Who made a call is decided when it is made: the drift job's Lambda handler (`mlinfra_drift.job` on the stack), else
the `mlinfra` command running (click's context, or the one that created the client for calls from worker threads).
Calls made by the tests themselves (seeding the emulator) belong to no caller and are not recorded.

`make access-contract` runs the emulator suites with MLINFRA_ACCESS_RECORD=<dir> and merges what they saw into
infra/policy/access-contract.json (`python -m tests.access_recorder merge <dir>`); otherwise each test fails when
the code made a call the contract lacks (tests/conftest.py).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from mlinfra_infra.policy.contract import Call, Contract, key_template, load, save

# botocore's endpoint prefix -> IAM's service prefix, where they differ.
IAM_PREFIX = {"monitoring": "cloudwatch", "api.sagemaker": "sagemaker", "runtime.sagemaker": "sagemaker"}
# Operations authorised as another action (or as none).
ACTION = {
    "s3:HeadObject": "s3:GetObject",
    "s3:ListObjectsV2": "s3:ListBucket",
    "s3:ListObjects": "s3:ListBucket",
    "s3:HeadBucket": "s3:ListBucket",
    "s3:ListObjectVersions": "s3:ListBucketVersions",
    "s3:GetObjectAttributes": "s3:GetObjectAttributes",
    "s3:CreateMultipartUpload": "s3:PutObject",
    "s3:UploadPart": "s3:PutObject",
    "s3:CompleteMultipartUpload": "s3:PutObject",
    "s3:UploadPartCopy": "s3:PutObject",
    "s3:GetBucketLocation": "s3:GetBucketLocation",
    "sagemaker:InvokeEndpoint": "sagemaker:InvokeEndpoint",
    "cloudwatch:GetMetricData": "cloudwatch:GetMetricData",
}
NO_PERMISSION = {"sts:GetCallerIdentity"}
SCALABLE_TARGET_ACTIONS = {
    "RegisterScalableTarget",
    "DeregisterScalableTarget",
    "PutScalingPolicy",
    "DeleteScalingPolicy",
}
# A call on another stage's resources than the one the command acts for (promote's source stage, check's gate
# re-check): its template names the source stage, so it is evaluated against that stage's bucket and names.
SOURCE_PLACEHOLDERS = {
    "{bucket}": "{source_bucket}",
    "{stage}": "{source}",
    "{account}": "{source_account}",
    "{key}": "{source_key}",
    "{endpoint}": "{source_endpoint}",
}
# Request headers S3 turns into condition keys.
S3_HEADERS = {
    "if-none-match": "s3:if-none-match",
    "if-match": "s3:if-match",
    "x-amz-server-side-encryption": "s3:x-amz-server-side-encryption",
    "x-amz-server-side-encryption-aws-kms-key-id": "s3:x-amz-server-side-encryption-aws-kms-key-id",
    "x-amz-object-lock-mode": "s3:object-lock-mode",
    "x-amz-object-lock-retain-until-date": "s3:object-lock-retain-until-date",
}

# The drift job's entry points: the Lambda handler and the run it drives (a test may call either).
DRIFT_JOB_ENTRIES = {"handler", "run", "run_model"}
_local = threading.local()
_lock = threading.Lock()
RECORDED: list[Call] = []


def current_caller() -> str | None:
    """The drift job, the running `mlinfra` command, or None (a test's own call)."""
    inherited = getattr(_local, "caller", None)
    if inherited is not None:
        return str(inherited)
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_globals.get("__name__") == "mlinfra_drift.job" and frame.f_code.co_name in DRIFT_JOB_ENTRIES:
            return "drift-job"
        if frame.f_globals.get("__name__") == "mlinfra.registry.declare":
            return "mlinfra local declare"  # local mode only (it refuses outside): never a call in an account
        frame = frame.f_back  # type: ignore[assignment]
    try:
        import click
    except ImportError:  # pragma: no cover
        return None
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return None
    names = []
    while ctx is not None and ctx.parent is not None:
        names.append(ctx.info_name or "")
        ctx = ctx.parent
    return " ".join(["mlinfra", *reversed(names)]) if names else None


def _arn_of(service: str, params: dict[str, Any], op: str = "") -> str:  # noqa: PLR0911
    bucket, key = params.get("Bucket"), params.get("Key")
    if service == "s3":
        if bucket and key:
            return f"arn:aws:s3:::{{bucket}}/{key_template(str(key))}"
        return "arn:aws:s3:::{bucket}" if bucket else "*"
    sagemaker = "arn:aws:sagemaker:{region}:{account}"
    if service == "sagemaker":
        for param, kind in (
            ("ModelPackageGroupName", "model-package-group"),
            ("EndpointName", "endpoint"),
            ("EndpointConfigName", "endpoint-config"),
            ("ModelName", "model"),
        ):
            if param in params:
                return f"{sagemaker}:{kind}/{_sm_name(str(params[param]))}"
        package = params.get("ModelPackageName") or params.get("ModelPackageArn")
        if package:
            name = str(package).rsplit(":model-package/", 1)[-1]
            group = name.split("/", 1)[0]
            return f"{sagemaker}:model-package/{_sm_name(group)}/{{n}}"
        return "*"
    if service == "cloudwatch":
        # DescribeAlarms by name acts on those alarms (mlinfra names them <project>-<stage>-<model>-<kind>);
        # GetMetricStatistics and PutMetricData take no resource ("*").
        names = params.get("AlarmNames") or []
        return f"arn:aws:cloudwatch:{{region}}:{{account}}:alarm:{_alarm(str(names[0]))}" if names else "*"
    if service == "sts" and params.get("RoleArn"):
        # The role a stage's config names for mlinfra to assume (a cross-account stage).
        return "{stage_role}"
    if service == "lambda":
        return f"arn:aws:lambda:{{region}}:{{account}}:function:{params.get('FunctionName', '*')}"
    if service == "application-autoscaling" and op in SCALABLE_TARGET_ACTIONS:
        # The service authorization reference: these act on a scalable target, whose ARN ends in an id AWS
        # generates (scalable-target/<id>), so any target of the account; the Describe* calls take "*".
        return "arn:aws:application-autoscaling:{region}:{account}:scalable-target/*"
    return "*"


def _alarm(name: str) -> str:
    """`mlinfra-prod-churn-5xx` -> `{project}-{stage}-{model}-5xx`; other names are kept."""
    from mlinfra_infra import naming

    for kind in sorted(naming.ALARM_KINDS, key=len, reverse=True):
        if name.endswith(f"-{kind}") and name.count("-") >= 3:
            return "{project}-{stage}-{model}-" + kind
    return name


def _sm_name(name: str) -> str:
    """`<project>-<stage>-<model>[-<n>]` -> `{project}-{stage}-{model}`: mlinfra names its SageMaker resources so."""
    import re

    suffix = re.search(r"-([cm])-[0-9a-f]{7}$", name)
    if suffix:  # an auto-named model or endpoint config behind an endpoint
        return "{endpoint}-" + suffix.group(1) + "-*"
    parts = name.split("-")
    return "{project}-{stage}-{model}" if len(parts) >= 3 else name


def _context(service: str, op: str, params: dict[str, Any], headers: dict[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    if service == "s3":
        for header, key in S3_HEADERS.items():
            value = headers.get(header)
            if value is not None:
                out[key] = {"if-match": "{etag}", "x-amz-object-lock-retain-until-date": "{time}"}.get(
                    header, str(value)
                )
        if "Prefix" in params and op.startswith("ListObjects"):
            out["s3:prefix"] = key_template(str(params["Prefix"]))
        if op == "CopyObject":
            source = params.get("CopySource")
            if isinstance(source, dict):
                out["s3:x-amz-copy-source"] = f"{{bucket}}/{key_template(str(source.get('Key', '')))}"
    # sagemaker:ModelApprovalStatus: a condition key of CreateModelPackage and UpdateModelPackage (the service
    # authorization reference), the status the request sets.
    approving = op in {"CreateModelPackage", "UpdateModelPackage"}
    if service == "sagemaker" and approving and "ModelApprovalStatus" in params:
        out["sagemaker:ModelApprovalStatus"] = str(params["ModelApprovalStatus"])
    # cloudwatch:namespace is a condition key of PutMetricData only (the service authorization reference).
    if service == "cloudwatch" and op == "PutMetricData" and "Namespace" in params:
        out["cloudwatch:namespace"] = str(params["Namespace"])
    return out


def _normalise_kms_key(context: dict[str, str]) -> dict[str, str]:
    name = "s3:x-amz-server-side-encryption-aws-kms-key-id"
    if name in context:
        context[name] = "{key}"
    return context


def _hooks(client: Any, created_by: str | None, client_stage: str | None, purpose: str = "stage") -> None:
    model = client.meta.service_model
    prefix = IAM_PREFIX.get(model.endpoint_prefix, model.endpoint_prefix)

    def before_build(params: dict[str, Any], model: Any, **_: Any) -> None:
        elsewhere = client_stage is not None and command_stage() not in (None, client_stage)
        # A stage's own client on another stage's registry (promote's check of the artifact it copies): made with
        # the caller's own credentials, like the copy's read: {copy_source_bucket}.
        owner = _stage_of_bucket(params.get("Bucket")) if prefix == "s3" and client_stage is not None else None
        foreign = not elsewhere and owner not in (None, client_stage)
        _local.pending = (model.name, dict(params), current_caller() or created_by, elsewhere, foreign)

    def before_sign(request: Any, operation_name: str, **_: Any) -> None:
        pending = getattr(_local, "pending", None)
        if pending is None or pending[0] != operation_name:
            return
        op, params, caller, elsewhere, foreign = pending
        _local.pending = None
        _local.last = None
        if caller is None:
            return
        headers = {k.lower(): v for k, v in request.headers.items()}
        _record(prefix, op, params, headers, caller, source_stage=elsewhere, purpose=purpose, foreign_bucket=foreign)

    def after_call(http_response: Any, model: Any, **_: Any) -> None:
        if prefix == "s3" and model.name in {"GetObject", "HeadObject"} and http_response.status_code == 404:
            last = getattr(_local, "last", None)
            if last is not None and last.action == "s3:GetObject":
                with _lock:
                    RECORDED.append(Call(last.caller, last.action, last.resource, last.context, missing_key=True))

    client.meta.events.register("before-parameter-build", before_build)
    client.meta.events.register("before-sign", before_sign)
    client.meta.events.register("after-call", after_call)


def _record(
    prefix: str,
    op: str,
    params: dict[str, Any],
    headers: dict[str, str],
    caller: str,
    *,
    source_stage: bool = False,
    purpose: str = "stage",
    foreign_bucket: bool = False,
) -> None:
    action = ACTION.get(f"{prefix}:{op}", f"{prefix}:{op}")
    if action in NO_PERMISSION:
        _local.last = None
        return
    context = _normalise_kms_key(_context(prefix, op, params, headers))
    calls = []
    if prefix == "s3" and op == "CopyObject":
        source = params.get("CopySource")
        if isinstance(source, dict):
            from_bucket, key = source.get("Bucket"), source.get("Key")
        else:
            from_bucket, _, key = unquote(urlsplit(str(source)).path).lstrip("/").partition("/")
        # A server-side copy from another bucket (promote's, from the source stage's registry) reads it with the
        # caller's own credentials, not through the source stage's session: {copy_source_bucket}.
        copied = "{bucket}" if from_bucket in (None, params.get("Bucket")) else "{copy_source_bucket}"
        calls.append(Call(caller, "s3:GetObject", f"arn:aws:s3:::{copied}/{key_template(str(key))}"))
        context.pop("s3:x-amz-copy-source", None)
        action = "s3:PutObject"
    resource = _arn_of(prefix, params, op)
    if foreign_bucket and resource.startswith("arn:aws:s3:::{bucket}"):
        resource = resource.replace("{bucket}", "{copy_source_bucket}", 1)
    if resource == "{stage_role}" and purpose != "stage":
        # The source stage's source or approval role, assumed by the next stage's job (mlinfra.aws.StageAws).
        resource = f"{{{purpose}_role}}"
    main = Call(caller, action, resource, tuple(sorted(context.items())))
    calls.append(main)
    for name in (params.get("AlarmNames") or [])[1:]:
        calls.append(Call(caller, action, _arn_of(prefix, {"AlarmNames": [name]})))
    if source_stage:
        main = _on_source_stage(main)
        calls = [_on_source_stage(c) for c in calls]
    _local.last = main
    with _lock:
        RECORDED.extend(calls)


def _on_source_stage(call: Call) -> Call:
    """The call with its stage placeholders naming the source stage (`{bucket}` -> `{source_bucket}`, ...)."""

    def moved(text: str) -> str:
        for own, source in SOURCE_PLACEHOLDERS.items():
            text = text.replace(own, source)
        return text

    context = tuple((k, moved(v)) for k, v in call.context)
    return Call(call.caller, call.action, moved(call.resource), context, call.missing_key, call.when, call.source)


def command_stage() -> str | None:
    """The stage the running `mlinfra` command acts for: promote's `--to`, else `--stack` (None with `--all`)."""
    try:
        import click
    except ImportError:  # pragma: no cover
        return None
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return None
    stage = ctx.params.get("to") if ctx.info_name == "promote" else ctx.params.get("stage", ctx.params.get("stack"))
    return stage if isinstance(stage, str) else None


def _client_stage() -> tuple[str | None, str]:
    """The stage a client is created for and why (`mlinfra.aws.StageAws`'s purpose), if a StageAws creates it."""
    frame = sys._getframe(2)
    while frame is not None:
        owner = frame.f_locals.get("self")
        if type(owner).__name__ == "StageAws" and type(owner).__module__ == "mlinfra.aws":
            purpose = str(getattr(owner, "purpose", "stage"))
            if not getattr(owner, "lent_role_arn", None):
                purpose = "stage"  # no role lent for that purpose: the acting stage's own session
            _OWNERS.add(owner)
            return str(owner.config.stage), purpose
        frame = frame.f_back  # type: ignore[assignment]
    return None, "stage"


# The StageAws instances that created clients: which stage a registry bucket belongs to (once one has derived it).
_OWNERS: weakref.WeakSet[Any] = weakref.WeakSet()


def _stage_of_bucket(bucket: object) -> str | None:
    """The stage whose registry `bucket` is, among the StageAws that derived their bucket already."""
    for owner in list(_OWNERS):
        if owner.__dict__.get("registry_bucket") == bucket:
            return str(owner.config.stage)
    return None


_installed = False


def install() -> None:
    """Hook every botocore client created from now on (idempotent)."""
    global _installed  # noqa: PLW0603
    if _installed:
        return
    from botocore.client import ClientCreator

    original = ClientCreator.create_client

    def create_client(self: Any, *args: Any, **kwargs: Any) -> Any:
        client = original(self, *args, **kwargs)
        _hooks(client, current_caller(), *_client_stage())
        return client

    ClientCreator.create_client = create_client  # type: ignore[method-assign]

    # Work handed to a thread pool (the drift job's prefetch, parallel copies) keeps the caller that submitted it.
    from concurrent.futures import ThreadPoolExecutor

    submit = ThreadPoolExecutor.submit

    def submit_with_caller(self: Any, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        caller = current_caller()

        def run(*a: Any, **k: Any) -> Any:
            previous = getattr(_local, "caller", None)
            _local.caller = caller
            try:
                return fn(*a, **k)
            finally:
                _local.caller = previous

        return submit(self, run, *args, **kwargs)

    ThreadPoolExecutor.submit = submit_with_caller  # type: ignore[method-assign]
    _installed = True


def drain() -> list[Call]:
    """The calls recorded since the last drain."""
    with _lock:
        out = list(RECORDED)
        RECORDED.clear()
    return out


def problems(calls: Iterable[Call]) -> list[str]:
    """What the contract lacks for these calls: callers it maps to no principal, calls it does not list."""
    contract = load()
    known = contract.known_callers() | set(contract.ignored_callers)
    out = [
        f"caller {c!r} runs as no principal of the access contract" for c in sorted({c.caller for c in calls} - known)
    ]
    out += [
        f"the access contract lacks {c.caller}: {c.action} {c.resource} {dict(c.context)}"
        + (" (a missing key)" if c.missing_key else "")
        for c in contract.missing(calls)
    ]
    return out


def write(calls: Iterable[Call], directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with (directory / f"calls-{worker}.jsonl").open("a") as out:
        for call in sorted(set(calls)):
            out.write(json.dumps(call.to_json()) + "\n")


def merge(directory: Path, *, replace: bool = False) -> Contract:
    """Add the calls the recorded runs wrote to `directory` to the contract's recorded calls.

    `replace` (a run of every suite, `make access-contract`): they replace the recorded calls, so calls the code no
    longer makes leave the contract.
    """
    observed = []
    for path in sorted(directory.glob("calls-*.jsonl")):
        observed += [Call.from_json(json.loads(line)) for line in path.read_text().splitlines() if line.strip()]
    contract = load()
    if not replace:
        observed += [c for c in contract.calls if c.source == "recorded"]
    updated = contract.with_recorded(observed)
    save(updated)
    return updated


if __name__ == "__main__":  # python -m tests.access_recorder merge [--replace] <dir>
    args = sys.argv[1:]
    replace_all = "--replace" in args
    args = [a for a in args if a != "--replace"]
    if len(args) != 2 or args[0] != "merge":
        sys.exit("usage: python -m tests.access_recorder merge [--replace] <directory>")
    result = merge(Path(args[1]), replace=replace_all)
    print(f"access contract: {len(result.calls)} calls")
