"""Offline render: run the real Pulumi program under Pulumi's mock runtime and record every resource it declares.

No engine, no credentials, no network. Provider-computed fields (ARNs, ids, auto-names) are filled with
deterministic placeholders; the inputs recorded are exactly what the program sends the provider, under Pulumi's
wire names (e.g. `metadataOptions.httpTokens`). Config values that are Pulumi secrets never reach the render: they
arrive here as a placeholder and any input marked secret is masked.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlinfra.stacks.files import Stage

MASK = "[secret]"
MOCK_ACCOUNT = "123456789012"
IAM_KINDS = {
    "aws:iam/role:Role": "role",
    "aws:iam/policy:Policy": "policy",
    "aws:iam/instanceProfile:InstanceProfile": "instance-profile",
}
MOCK_AMI = "ami-0123456789abcdef0"
_SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d"
_SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"


@dataclass(frozen=True)
class RenderedResource:
    """One resource the program declared: its type token, logical name, parent's logical name and inputs."""

    type: str
    name: str
    parent: str | None
    inputs: dict[str, Any]
    custom: bool
    # Resource options that decide what an apply may do to it: Pulumi refuses to delete (or replace) a protected
    # resource; a retained one is left in the account when Pulumi deletes it.
    protect: bool = False
    retain_on_delete: bool = False
    # Logical names of the resources the engine orders it after (its `depends_on` and the owners of its inputs).
    depends_on: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The JSON shape `mlinfra preview --json` prints."""
        return {"type": self.type, "name": self.name, "parent": self.parent, "inputs": self.inputs}


@dataclass
class RenderedStack:
    """Every resource of one stack, in declaration order, and the stack outputs."""

    stack: str
    resources: list[RenderedResource] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)

    def of_type(self, type_token: str) -> list[RenderedResource]:
        """Resources whose type token is `type_token` (e.g. `aws:s3/bucket:Bucket`)."""
        return [r for r in self.resources if r.type == type_token]

    def one(self, type_token: str) -> RenderedResource:
        """The single resource of a type; raises AssertionError naming the type otherwise."""
        found = self.of_type(type_token)
        if len(found) != 1:
            raise AssertionError(f"expected one {type_token}, found {[r.name for r in found]}")
        return found[0]

    def named(self, name: str) -> RenderedResource:
        """The resource with logical name `name`."""
        for resource in self.resources:
            if resource.name == name:
                return resource
        raise KeyError(name)

    def children(self, parent: str) -> list[RenderedResource]:
        """Resources whose parent is the component with logical name `parent`."""
        return [r for r in self.resources if r.parent == parent]

    def to_json(self) -> dict[str, Any]:
        """The JSON shape `mlinfra preview --json` prints for one stack."""
        return {"stack": self.stack, "resources": [r.to_json() for r in self.resources]}


def short_type(type_token: str) -> str:
    """`aws:s3/bucket:Bucket` -> `s3:Bucket`; component tokens stay whole."""
    parts = type_token.split(":")
    if len(parts) == 3 and "/" in parts[1]:
        return f"{parts[1].split('/')[0]}:{parts[2]}"
    return type_token


def _clean(value: Any) -> Any:
    """Mask secrets and turn the wire format's doubles back into the integers they were."""
    if isinstance(value, Mapping):
        if value.get(_SECRET_SIG_KEY) == _SECRET_SIG:
            return MASK
        return {k: _clean(v) for k, v in value.items() if k != _SECRET_SIG_KEY}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if type(value).__name__ in {"FileAsset", "FileArchive"}:
        # A file the engine would upload (the drift job's code package): its name, which carries its digest.
        return {"file": PurePath(value.path).name}
    return value


def _tree_order(resources: list[RenderedResource]) -> list[RenderedResource]:
    """Parents before children, siblings by type then name: a stable order whatever the RPC timing."""
    by_parent: dict[str | None, list[RenderedResource]] = {}
    for resource in resources:
        by_parent.setdefault(resource.parent, []).append(resource)
    ordered: list[RenderedResource] = []

    def visit(parent: str | None) -> None:
        for resource in sorted(by_parent.get(parent, []), key=lambda r: (r.custom, r.type, r.name)):
            ordered.append(resource)
            visit(resource.name)

    visit(None)
    return ordered


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:7]


def mock_autoname(logical_name: str) -> str:
    """The physical name the mocks give a resource the program does not name (Pulumi would add a random suffix)."""
    return f"{logical_name}-{_short_hash(logical_name)}"


def mock_bucket(logical_name: str, inputs: Mapping[str, Any]) -> str:
    """A bucket's name under the mocks: its fixed name, its prefix and a deterministic suffix, or its auto-name."""
    prefix = inputs.get("bucketPrefix")
    return str(
        inputs.get("bucket") or (f"{prefix}{_short_hash(logical_name)}" if prefix else mock_autoname(logical_name))
    )


def _kms_key_id(logical_name: str) -> str:
    return f"{_short_hash(logical_name)}-0000-4000-8000-000000000000"


def mock_identities(type_token: str, logical_name: str, inputs: Mapping[str, Any]) -> set[str]:
    """Identifiers the mocks invent for a resource that a replacement would change (its auto-name, a key id).

    A resource named explicitly (`name`, or `bucket` for buckets) keeps its name and ARN when replaced; one the
    provider names gets a new name, so everything referring to it changes too.
    """
    found: set[str] = set()
    name_key = "bucket" if type_token == "aws:s3/bucket:Bucket" else "name"
    if not inputs.get(name_key):
        found.add(mock_autoname(logical_name))
    if type_token == "aws:kms/key:Key":
        found.add(_kms_key_id(logical_name))
    return found


def _make_mocks(region: str, account_id: str = MOCK_ACCOUNT) -> Any:
    import pulumi

    class Mocks(pulumi.runtime.Mocks):
        """Fills in what AWS would compute: ids, ARNs and auto-names, deterministically."""

        def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
            inputs = dict(args.inputs)
            token = args.typ
            module = token.split(":")[1].split("/")[0] if token.count(":") >= 2 else "x"
            autoname = mock_autoname(args.name)
            name = inputs.get("name") or autoname
            state: dict[str, Any] = {**inputs, "name": name}
            arn = f"arn:aws:{module}:{region}:{account_id}:{name}"
            if token == "aws:s3/bucket:Bucket":
                bucket = mock_bucket(args.name, inputs)
                state.update(bucket=bucket, arn=f"arn:aws:s3:::{bucket}")
                return bucket, state
            if token == "aws:kms/key:Key":
                key_id = _kms_key_id(args.name)
                state.update(keyId=key_id, arn=f"arn:aws:kms:{region}:{account_id}:key/{key_id}")
                return key_id, state
            if token in IAM_KINDS:  # IAM ARNs name no region, and carry the identity's path
                arn = f"arn:aws:iam::{account_id}:{IAM_KINDS[token]}{inputs.get('path') or '/'}{name}"
            elif token == "aws:lambda/function:Function":
                arn = f"arn:aws:lambda:{region}:{account_id}:function:{name}"
            elif token.startswith("aws:sagemaker/"):
                kind = token.rsplit(":", 1)[1]
                arn = f"arn:aws:sagemaker:{region}:{account_id}:{kind.lower()}/{name}"
            state.setdefault("arn", arn)
            return f"{name}-id", state

        def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
            if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
                return {
                    "accountId": account_id,
                    "arn": f"arn:aws:iam::{account_id}:user/preview",
                    "userId": "PREVIEW",
                    "id": account_id,
                }, []
            if args.token == "aws:ssm/getParameter:getParameter":
                return {"name": args.args.get("name"), "value": MOCK_AMI, "type": "String", "id": "ami"}, []
            if args.token == "aws:index/getRegion:getRegion":
                return {"name": region, "region": region, "id": region}, []
            if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
                return {"names": [f"{region}a", f"{region}b"], "zoneIds": ["z1", "z2"], "id": region}, []
            return {}, []

    return Mocks()


def _make_monitor(mocks: Any, stack: RenderedStack) -> Any:
    from pulumi.runtime import rpc
    from pulumi.runtime.mocks import MockMonitor

    lock = threading.Lock()
    names_by_urn: dict[str, str] = {}

    class RecordingMonitor(MockMonitor):
        """The mock monitor, also recording each registration with its parent."""

        def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (gRPC method name)
            response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
            if request.type == "pulumi:pulumi:Stack":
                return response
            inputs = _clean(rpc.deserialize_properties(request.object, keep_unknowns=False))
            with lock:
                names_by_urn[response.urn] = request.name
                stack.resources.append(
                    RenderedResource(
                        type=request.type,
                        name=request.name,
                        parent=names_by_urn.get(request.parent),
                        inputs=inputs,
                        custom=bool(request.custom),
                        protect=bool(request.protect),
                        retain_on_delete=bool(request.retainOnDelete),
                        depends_on=tuple(names_by_urn.get(urn, urn) for urn in request.dependencies),
                    )
                )
            return response

    return RecordingMonitor(mocks)


@contextlib.contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for one render; it runs again (with all the garbage) afterwards.

    A render keeps every resource, Output and asyncio future of the program alive until the program returns, so each
    full collection during it scans a heap that grows with the number of models, and the number of full collections
    grows with it too: the cost was quadratic in the models (measured: 40% of a 50-model render in 7 full
    collections). Reference counting still frees everything acyclic at once; the cycles wait for the end.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def engine_config(raw: Mapping[str, Any]) -> dict[str, str]:
    """Config as the Pulumi engine hands it to a program: strings, structured values as JSON text."""
    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in raw.items()}


def render_program(
    raw_config: Mapping[str, Any],
    *,
    project: str,
    stack: str,
    declare: Callable[[], Mapping[str, Any]],
    account_id: str = MOCK_ACCOUNT,
) -> RenderedStack:
    """Run `declare` (a Pulumi program's body, returning its outputs) under the mock runtime and record it.

    `raw_config` is what the engine would pass the program (read back through `pulumi.runtime.config`). Not
    thread-safe. Used for the stage stacks (`render`) and the bootstrap stack (`mlinfra bootstrap preview`).
    """
    import pulumi
    from pulumi.runtime import config as runtime_config
    from pulumi.runtime import settings as runtime_settings
    from pulumi.runtime.mocks import set_mocks
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    region = str(raw_config.get("aws:region") or "us-east-1")
    rendered = RenderedStack(stack=stack)
    mocks = _make_mocks(region, account_id)
    # A fresh root Stack resource per render, so stacks rendered in one process do not share a parent.
    runtime_settings.ROOT.set(None)
    set_mocks(mocks, project=project, stack=stack, preview=True, monitor=_make_monitor(mocks, rendered))
    runtime_config.set_all_config(engine_config(raw_config))
    outputs: dict[str, Any] = {}

    def run() -> None:
        declared = declare()
        resolved = _sync_await(pulumi.Output.from_input(declared).future())
        outputs.update(resolved or {})

    with _no_cyclic_gc():
        _sync_await(run_pulumi_func(run))
    rendered.resources = _tree_order(rendered.resources)
    rendered.outputs = _clean(outputs)
    return rendered


def render(
    raw_config: Mapping[str, Any], *, project: str, stage: str, source: str, account_id: str = MOCK_ACCOUNT
) -> RenderedStack:
    """Render one stack from its flat config (secrets already replaced by placeholders). Not thread-safe.

    The program validates the config itself, through the same path as under `pulumi up`; a ConfigError propagates.
    `account_id` is the account the caller identity reports and ARNs name (the emulator's, for local bootstrap).
    """
    from mlinfra_infra import program
    from mlinfra_infra.config import load_stack_config

    def declare() -> Mapping[str, Any]:
        cfg = load_stack_config(program.raw_config_from_engine(), project=project, stage=stage, source=source)
        return program.build(cfg)

    return render_program(raw_config, project=project, stack=stage, declare=declare, account_id=account_id)


def render_stage(
    stage: Stage, *, account_id: str = MOCK_ACCOUNT, raw: Mapping[str, Any] | None = None
) -> RenderedStack:
    """Render a loaded stage (or `raw`, its config changed).

    Config problems exit 2 (file and key), a failing program exits 1, in one line each.
    """
    from mlinfra.errors import BadInputError, MlinfraError
    from mlinfra_infra.config import ConfigError

    try:
        return render(
            stage.raw if raw is None else raw,
            project=stage.project.name,
            stage=stage.name,
            source=stage.source,
            account_id=account_id,
        )
    except ConfigError as exc:
        raise BadInputError(str(exc)) from None
    except Exception as exc:  # the program failed under the mock runtime: report it in one line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise MlinfraError(f"{stage.source}: rendering the program failed: {first}") from exc
