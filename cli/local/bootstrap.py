"""Local bootstrap: create in the emulator what each stack's offline render declares.

`bootstrap` renders each stack offline (the same render as `mlinfra preview`, with the emulator's account id) and
creates in the emulator the registry resources the render declares, with the names and settings taken from the
render: KMS keys and aliases, the registry buckets and their settings, SNS topics and SageMaker model package groups.
Everything else is listed as skipped, with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from mlinfra.aws import (
    LOCAL_ENV,
    StageAws,
    aws_errors,
    enter_local_mode,
    error_code,
    local_endpoint,
)
from mlinfra.errors import MlinfraError
from mlinfra.stacks.render import render_stage, short_type

if TYPE_CHECKING:
    from mlinfra.stacks.project import Project
    from mlinfra.stacks.render import RenderedResource, RenderedStack

# Hosts that are AWS itself: bootstrap refuses them even if they answer like an emulator would.
_AWS_HOST_SUFFIXES = (".amazonaws.com", ".amazonaws.com.cn", ".api.aws")


# Bootstrap -------------------------------------------------------------------------------------------------------

KEY = "aws:kms/key:Key"
ALIAS = "aws:kms/alias:Alias"
BUCKET = "aws:s3/bucket:Bucket"
VERSIONING = "aws:s3/bucketVersioning:BucketVersioning"
ENCRYPTION = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
PUBLIC_ACCESS = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
OWNERSHIP = "aws:s3/bucketOwnershipControls:BucketOwnershipControls"
OBJECT_LOCK = "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration"
TOPIC = "aws:sns/topic:Topic"
PACKAGE_GROUP = "aws:sagemaker/modelPackageGroup:ModelPackageGroup"

# Declared by the render but deliberately not created, with the reason shown; other types are "not emulated".
SKIP_REASONS = {
    "aws:s3/bucketPolicy:BucketPolicy": "its TLS-only policy cannot hold over the emulator's plain HTTP",
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": "lifecycle expiry never runs in the emulator",
    "aws:sns/topicPolicy:TopicPolicy": "the emulator does not enforce topic policies",
    "aws:sns/topicSubscription:TopicSubscription": "notifications are not delivered from the emulator",
}
NOT_EMULATED = "not emulated: bootstrap creates keys, registry buckets, topics and package groups only"


@dataclass
class StageBootstrap:
    """What bootstrap did in one stage: resources created, updated (present but different), existing, skipped."""

    stage: str
    region: str
    account_id: str
    created: list[dict[str, str]] = field(default_factory=list)
    updated: list[dict[str, str]] = field(default_factory=list)
    existing: list[dict[str, str]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def record(self, outcome: str, type_token: str, name: str) -> None:
        """Record `outcome` ("created", "updated" or "existing") for a resource."""
        entries: list[dict[str, str]] = getattr(self, outcome)
        entries.append({"type": short_type(type_token), "name": name})

    def skip(self, resource: RenderedResource, reason: str) -> None:
        """Record a declared resource bootstrap does not create, and why."""
        self.skipped.append({"type": short_type(resource.type), "name": resource.name, "reason": reason})

    def counts(self) -> dict[str, int]:
        """How many resources per outcome."""
        return {
            "created": len(self.created),
            "updated": len(self.updated),
            "existing": len(self.existing),
            "skipped": len(self.skipped),
        }

    def to_json(self) -> dict[str, Any]:
        """The shape `mlinfra local bootstrap --json` prints per stage."""
        return {
            "stage": self.stage,
            "region": self.region,
            "accountId": self.account_id,
            "counts": self.counts(),
            "created": self.created,
            "updated": self.updated,
            "existing": self.existing,
            "skipped": self.skipped,
        }


@dataclass
class BootstrapResult:
    """The emulator bootstrapped and what happened in each stage."""

    endpoint: str
    stages: list[StageBootstrap]

    def to_json(self) -> dict[str, Any]:
        """The shape `mlinfra local bootstrap --json` prints."""
        return {"endpoint": self.endpoint, "stages": [stage.to_json() for stage in self.stages]}


def _refuse_real_aws(url: str) -> None:
    host = (urlsplit(url).hostname or "").lower()
    if host.endswith(_AWS_HOST_SUFFIXES) or host in {s.lstrip(".") for s in _AWS_HOST_SUFFIXES}:
        raise MlinfraError(
            f"local bootstrap: {url} is an AWS endpoint, not an emulator; bootstrap only creates resources in the "
            "local emulator (unset AWS_ENDPOINT_URL or point it at `mlinfra local start`)"
        )


def bootstrap(project: Project, stages: Sequence[str], endpoint_account_id: str | None = None) -> BootstrapResult:
    """Create in the local emulator what each stage's offline render declares; idempotent.

    Always runs against the emulator: enters local mode itself and fails (exit 1) when no emulator answers, or when
    the endpoint is AWS itself. Each stage is rendered with the account its session runs as in the emulator
    (`endpoint_account_id` overrides it), so bucket names match what the CLI derives in local mode. Every stage is
    loaded and rendered before anything is created, so a config error changes nothing.
    """
    from mlinfra.stacks.files import load_stage

    _refuse_real_aws(local_endpoint(project.root))
    url = enter_local_mode(project.root)
    os.environ[LOCAL_ENV] = "1"  # every session from here on is a local-mode one
    loaded = [load_stage(project, name) for name in stages]
    planned: list[tuple[StageAws, RenderedStack, StageBootstrap]] = []
    for stage in loaded:
        aws = StageAws(stage.config, project.root)
        account = endpoint_account_id or aws.account_id
        report = StageBootstrap(stage=stage.name, region=stage.config.region, account_id=account)
        planned.append((aws, render_stage(stage, account_id=account), report))
    for aws, rendered, report in planned:
        _StageBootstrapper(aws, rendered, report).run()
    from mlinfra.stacks.workspace import after_bootstrap

    after_bootstrap(
        project.root,
        project.real_stacks_dir,
        {report.stage: any(e["type"] == "s3:Bucket" for e in report.created) for _, _, report in planned},
    )
    return BootstrapResult(endpoint=url, stages=[report for _, _, report in planned])


def _tag_list(tags: Any, key: str = "Key", value: str = "Value") -> list[dict[str, str]]:
    if not isinstance(tags, dict):
        return []
    return [{key: str(k), value: str(v)} for k, v in sorted(tags.items())]


class _StageBootstrapper:
    """Creates one stage's rendered registry resources in the emulator, in dependency order."""

    def __init__(self, aws: StageAws, rendered: RenderedStack, report: StageBootstrap) -> None:
        self.aws = aws
        self.rendered = rendered
        self.report = report
        self.region = aws.region
        self.handled: set[str] = set()
        self.created_buckets: set[str] = set()
        # Every way the render refers to a key (placeholder id and ARN, alias name) -> the emulator key's ARN.
        self.key_arns: dict[str, str] = {}

    def run(self) -> None:
        """Keys and aliases, buckets and their settings, topics, package groups; skip everything else."""
        self._keys()
        for resource in self.rendered.of_type(BUCKET):
            self._bucket(resource)
        # Each kind of bucket setting, applied once the buckets exist.
        bucket_settings: dict[str, Callable[[RenderedResource], None]] = {
            VERSIONING: self._versioning,
            ENCRYPTION: self._encryption,
            PUBLIC_ACCESS: self._public_access,
            OWNERSHIP: self._ownership,
            OBJECT_LOCK: self._object_lock,
        }
        named = {r.inputs.get("bucket") for r in self.rendered.of_type(BUCKET)} - {None}
        # In this order: Object Lock is switched on for a bucket that is already versioned.
        for kind, apply in bucket_settings.items():
            for resource in self.rendered.of_type(kind):
                # Settings of an auto-named bucket (the registry's access-log bucket) go with it: not emulated.
                if resource.inputs.get("bucket") in named:
                    apply(resource)
                    self.handled.add(resource.name)
        for resource in self.rendered.of_type(TOPIC):
            self._topic(resource)
        for resource in self.rendered.of_type(PACKAGE_GROUP):
            self._package_group(resource)
        for resource in self.rendered.resources:
            if resource.custom and resource.name not in self.handled:
                self.report.skip(resource, SKIP_REASONS.get(resource.type, NOT_EMULATED))

    # Helpers ---------------------------------------------------------------------------------------------------

    def client(self, service: str) -> Any:
        """The stage's client for `service` (pointed at the emulator)."""
        return self.aws.client(service)

    def doing(self, what: str) -> str:
        """How an AWS error message starts: the stage and the step."""
        return f"local bootstrap of {self.report.stage}: {what}"

    def call(self, what: str, function: Callable[..., Any], **kwargs: Any) -> Any:
        """Call one AWS API; failures become one-line MlinfraErrors naming the stage and step."""
        with aws_errors(self.doing(what)):
            return function(**kwargs)

    def fetch(self, what: str, missing: Sequence[str], function: Callable[..., Any], **kwargs: Any) -> Any:
        """Like `call`, but None when AWS answers with one of the `missing` error codes (it does not exist)."""
        from botocore.exceptions import ClientError

        with aws_errors(self.doing(what)):
            try:
                return function(**kwargs)
            except ClientError as exc:
                if error_code(exc) in missing:
                    return None
                raise

    def converge(
        self, resource: RenderedResource, name: str, current: Any, desired: Any, put: Callable[[], Any]
    ) -> None:
        """Apply `put` unless `current` already equals `desired`; record created, updated or existing.

        Settings of a bucket this run created count as created, even those its creation implied (Object Lock on
        creation turns versioning on).
        """
        new = name in self.created_buckets
        if current == desired:
            if new:
                self.report.record("created", resource.type, name)
                return
            self.report.record("existing", resource.type, name)
            return
        with aws_errors(self.doing(f"configuring {short_type(resource.type)} {name}")):
            put()
        self.report.record("created" if current is None or new else "updated", resource.type, name)

    def key_arn(self, reference: Any) -> str:
        """The emulator key's ARN for a key reference taken from the render (passed through when not ours)."""
        return self.key_arns.get(str(reference), str(reference))

    # KMS -------------------------------------------------------------------------------------------------------

    def _placeholder_key(self, resource: RenderedResource) -> tuple[str, str]:
        """The id and ARN the offline render gave a key: asked of the render's own mocks, so they always agree."""
        from pulumi.runtime import MockResourceArgs

        from mlinfra.stacks.render import _make_mocks

        mocks = _make_mocks(self.region, self.report.account_id)
        key_id, state = mocks.new_resource(MockResourceArgs(typ=KEY, name=resource.name, inputs={}, custom=True))
        return str(key_id), str(state["arn"])

    def _existing_aliases(self) -> dict[str, str]:
        """Alias name -> target key id, of every alias in the emulator's account and region."""
        found: dict[str, str] = {}
        with aws_errors(self.doing("listing KMS aliases")):
            for page in self.client("kms").get_paginator("list_aliases").paginate():
                for entry in page.get("Aliases", []):
                    if "TargetKeyId" in entry:
                        found[str(entry["AliasName"])] = str(entry["TargetKeyId"])
        return found

    def _keys(self) -> None:
        """Each rendered key with its aliases; a key is found again by its alias (keys have no name)."""
        kms = self.client("kms")
        aliases = self.rendered.of_type(ALIAS)
        existing = self._existing_aliases()
        for key in self.rendered.of_type(KEY):
            self.handled.add(key.name)
            placeholder_id, placeholder_arn = self._placeholder_key(key)
            mine = [a for a in aliases if a.inputs.get("targetKeyId") in (placeholder_id, placeholder_arn)]
            names = [str(a.inputs["name"]) for a in mine]
            if not names:
                self.report.skip(key, "a key without an alias could not be found again by a second bootstrap")
                continue
            shown = names[0]
            key_id = next((existing[n] for n in names if n in existing), None)
            if key_id is None:
                metadata = self.call(f"creating the KMS key for {shown}", kms.create_key, **self._key_args(key))
                key_id = str(metadata["KeyMetadata"]["KeyId"])
                key_arn = str(metadata["KeyMetadata"]["Arn"])
                outcome = "created"
            else:
                described = self.call(f"describing the KMS key of {shown}", kms.describe_key, KeyId=key_id)
                key_arn = str(described["KeyMetadata"]["Arn"])
                outcome = "existing"
            if key.inputs.get("enableKeyRotation"):
                rotation = self.call(f"reading key rotation of {shown}", kms.get_key_rotation_status, KeyId=key_id)
                if not rotation.get("KeyRotationEnabled"):
                    self.call(f"enabling key rotation of {shown}", kms.enable_key_rotation, KeyId=key_id)
                    outcome = "created" if outcome == "created" else "updated"
            self.report.record(outcome, KEY, shown)
            for reference in (placeholder_id, placeholder_arn, *names):
                self.key_arns[reference] = key_arn
            for alias, name in zip(mine, names, strict=True):
                self.handled.add(alias.name)
                self.key_arns[f"arn:aws:kms:{self.region}:{self.report.account_id}:{name}"] = key_arn
                self._alias(name, key_id, existing.get(name))

    def _key_args(self, key: RenderedResource) -> dict[str, Any]:
        """CreateKey's arguments from a rendered key's inputs."""
        inputs = key.inputs
        args: dict[str, Any] = {"Description": str(inputs.get("description", ""))}
        if isinstance(inputs.get("policy"), str):
            args["Policy"] = inputs["policy"]
        if inputs.get("keyUsage"):
            args["KeyUsage"] = inputs["keyUsage"]
        if inputs.get("customerMasterKeySpec"):
            args["KeySpec"] = inputs["customerMasterKeySpec"]
        if tags := _tag_list(inputs.get("tags"), "TagKey", "TagValue"):
            args["Tags"] = tags
        return args

    def _alias(self, name: str, key_id: str, current_target: str | None) -> None:
        kms = self.client("kms")
        if current_target == key_id:
            self.report.record("existing", ALIAS, name)
        elif current_target is None:
            self.call(f"creating alias {name}", kms.create_alias, AliasName=name, TargetKeyId=key_id)
            self.report.record("created", ALIAS, name)
        else:
            self.call(f"pointing alias {name} at its key", kms.update_alias, AliasName=name, TargetKeyId=key_id)
            self.report.record("updated", ALIAS, name)

    # S3 --------------------------------------------------------------------------------------------------------

    def _bucket(self, resource: RenderedResource) -> None:
        s3 = self.client("s3")
        name = resource.inputs.get("bucket")
        if not name:
            self.report.skip(resource, "no bucket name in the render (auto-named)")
            self.handled.add(resource.name)
            return
        self.handled.add(resource.name)
        if self.fetch(f"looking up bucket {name}", ("404", "NoSuchBucket"), s3.head_bucket, Bucket=name) is not None:
            self.report.record("existing", BUCKET, name)
            return
        kwargs: dict[str, Any] = {"Bucket": name}
        if self.region != "us-east-1":  # us-east-1 rejects an explicit location constraint
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        if resource.inputs.get("objectLockEnabled"):
            kwargs["ObjectLockEnabledForBucket"] = True
        self.call(f"creating bucket {name}", s3.create_bucket, **kwargs)
        if tags := _tag_list(resource.inputs.get("tags")):
            self.call(f"tagging bucket {name}", s3.put_bucket_tagging, Bucket=name, Tagging={"TagSet": tags})
        self.created_buckets.add(name)
        self.report.record("created", BUCKET, name)

    def _versioning(self, resource: RenderedResource) -> None:
        s3, bucket = self.client("s3"), str(resource.inputs["bucket"])
        desired = str(resource.inputs.get("versioningConfiguration", {}).get("status", "Enabled"))
        current = self.call(f"reading versioning of {bucket}", s3.get_bucket_versioning, Bucket=bucket).get("Status")
        self.converge(
            resource,
            bucket,
            current,
            desired,
            lambda: s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": desired}),
        )

    def _encryption(self, resource: RenderedResource) -> None:
        s3, bucket = self.client("s3"), str(resource.inputs["bucket"])
        desired: list[dict[str, Any]] = []
        for rule in resource.inputs.get("rules", []):
            by_default = rule.get("applyServerSideEncryptionByDefault", {})
            default: dict[str, Any] = {"SSEAlgorithm": by_default.get("sseAlgorithm", "aws:kms")}
            if by_default.get("kmsMasterKeyId"):
                default["KMSMasterKeyID"] = self.key_arn(by_default["kmsMasterKeyId"])
            desired.append(
                {"ApplyServerSideEncryptionByDefault": default, "BucketKeyEnabled": bool(rule.get("bucketKeyEnabled"))}
            )
        found = self.fetch(
            f"reading default encryption of {bucket}",
            ("ServerSideEncryptionConfigurationNotFoundError",),
            s3.get_bucket_encryption,
            Bucket=bucket,
        )
        current = None
        if found is not None:
            current = [
                {
                    "ApplyServerSideEncryptionByDefault": {
                        k: v
                        for k, v in rule.get("ApplyServerSideEncryptionByDefault", {}).items()
                        if k in ("SSEAlgorithm", "KMSMasterKeyID")
                    },
                    "BucketKeyEnabled": bool(rule.get("BucketKeyEnabled")),
                }
                for rule in found["ServerSideEncryptionConfiguration"].get("Rules", [])
            ]
        self.converge(
            resource,
            bucket,
            current,
            desired,
            lambda: s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": desired}),
        )

    def _public_access(self, resource: RenderedResource) -> None:
        s3, bucket = self.client("s3"), str(resource.inputs["bucket"])
        wire = {
            "BlockPublicAcls": "blockPublicAcls",
            "IgnorePublicAcls": "ignorePublicAcls",
            "BlockPublicPolicy": "blockPublicPolicy",
            "RestrictPublicBuckets": "restrictPublicBuckets",
        }
        desired = {api: bool(resource.inputs.get(name)) for api, name in wire.items()}
        found = self.fetch(
            f"reading the public access block of {bucket}",
            ("NoSuchPublicAccessBlockConfiguration",),
            s3.get_public_access_block,
            Bucket=bucket,
        )
        current = None if found is None else {k: bool(found["PublicAccessBlockConfiguration"].get(k)) for k in wire}
        self.converge(
            resource,
            bucket,
            current,
            desired,
            lambda: s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=desired),
        )

    def _ownership(self, resource: RenderedResource) -> None:
        s3, bucket = self.client("s3"), str(resource.inputs["bucket"])
        desired = [{"ObjectOwnership": str(resource.inputs.get("rule", {}).get("objectOwnership"))}]
        found = self.fetch(
            f"reading ownership controls of {bucket}",
            ("OwnershipControlsNotFoundError",),
            s3.get_bucket_ownership_controls,
            Bucket=bucket,
        )
        current = None if found is None else found["OwnershipControls"].get("Rules")
        self.converge(
            resource,
            bucket,
            current,
            desired,
            lambda: s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls={"Rules": desired}),
        )

    def _object_lock(self, resource: RenderedResource) -> None:
        s3, bucket = self.client("s3"), str(resource.inputs["bucket"])
        retention = resource.inputs.get("rule", {}).get("defaultRetention", {})
        wanted = {"Mode": retention.get("mode"), "Days": retention.get("days"), "Years": retention.get("years")}
        desired: dict[str, Any] = {"ObjectLockEnabled": str(resource.inputs.get("objectLockEnabled") or "Enabled")}
        if any(wanted.values()):
            desired["Rule"] = {"DefaultRetention": {k: v for k, v in wanted.items() if v}}
        found = self.fetch(
            f"reading the object lock configuration of {bucket}",
            ("ObjectLockConfigurationNotFoundError",),
            s3.get_object_lock_configuration,
            Bucket=bucket,
        )
        current = None
        if found is not None:
            config = found["ObjectLockConfiguration"]
            current = {"ObjectLockEnabled": config.get("ObjectLockEnabled")}
            if config.get("Rule", {}).get("DefaultRetention"):
                current["Rule"] = {
                    "DefaultRetention": {k: v for k, v in config["Rule"]["DefaultRetention"].items() if v}
                }
        self.converge(
            resource,
            bucket,
            current,
            desired,
            lambda: s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration=desired),
        )

    # SNS and SageMaker -----------------------------------------------------------------------------------------

    def _topic_arn(self, name: str) -> str | None:
        sns = self.client("sns")
        with aws_errors(self.doing("listing SNS topics")):
            for page in sns.get_paginator("list_topics").paginate():
                for topic in page.get("Topics", []):
                    if str(topic["TopicArn"]).rsplit(":", 1)[-1] == name:
                        return str(topic["TopicArn"])
        return None

    def _topic(self, resource: RenderedResource) -> None:
        sns = self.client("sns")
        self.handled.add(resource.name)
        name = resource.inputs.get("name")
        if not name:
            self.report.skip(resource, "no topic name in the render (auto-named)")
            return
        attributes: dict[str, str] = {}
        if resource.inputs.get("kmsMasterKeyId"):
            attributes["KmsMasterKeyId"] = self.key_arn(resource.inputs["kmsMasterKeyId"])
        if resource.inputs.get("fifoTopic"):
            attributes["FifoTopic"] = "true"
        arn = self._topic_arn(str(name))
        if arn is None:
            kwargs: dict[str, Any] = {"Name": name, "Attributes": attributes}
            if tags := _tag_list(resource.inputs.get("tags")):
                kwargs["Tags"] = tags
            self.call(f"creating topic {name}", sns.create_topic, **kwargs)
            self.report.record("created", TOPIC, str(name))
            return
        current = self.call(f"reading topic {name}", sns.get_topic_attributes, TopicArn=arn)["Attributes"]
        wanted = attributes.get("KmsMasterKeyId")
        if wanted and current.get("KmsMasterKeyId") != wanted:
            self.call(
                f"encrypting topic {name}",
                sns.set_topic_attributes,
                TopicArn=arn,
                AttributeName="KmsMasterKeyId",
                AttributeValue=wanted,
            )
            self.report.record("updated", TOPIC, str(name))
        else:
            self.report.record("existing", TOPIC, str(name))

    def _package_group(self, resource: RenderedResource) -> None:
        sagemaker = self.client("sagemaker")
        self.handled.add(resource.name)
        name = str(resource.inputs["modelPackageGroupName"])
        # SageMaker answers ValidationException for a group that does not exist.
        found = self.fetch(
            f"looking up model package group {name}",
            ("ValidationException", "ResourceNotFound"),
            sagemaker.describe_model_package_group,
            ModelPackageGroupName=name,
        )
        if found is not None:
            self.report.record("existing", PACKAGE_GROUP, name)
            return
        kwargs: dict[str, Any] = {"ModelPackageGroupName": name}
        if resource.inputs.get("modelPackageGroupDescription"):
            kwargs["ModelPackageGroupDescription"] = resource.inputs["modelPackageGroupDescription"]
        if tags := _tag_list(resource.inputs.get("tags")):
            kwargs["Tags"] = tags
        self.call(f"creating model package group {name}", sagemaker.create_model_package_group, **kwargs)
        self.report.record("created", PACKAGE_GROUP, name)
