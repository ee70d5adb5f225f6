"""A stage's model registry: artifacts, version records, the stage pointer, audit records and model packages.

Layout (infra/layout.py): content-addressed immutable artifacts, one JSON record per version, one pointer per model
updated with If-Match (no lost update), one immutable audit record per action. Every write that must not clobber
uses S3 conditional writes; every artifact carries a full-object SHA-256 checksum equal to its digest, so integrity
is checked with one metadata call and no download.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from mlinfra import records
from mlinfra.aws import StageAws, aws_errors, error_code
from mlinfra.errors import BadInputError, MlinfraError
from mlinfra.records import Stored
from mlinfra.registry.integrity import IntegrityError, checksum_of, require_checksum
from mlinfra_infra import layout, naming

if TYPE_CHECKING:
    from mlinfra_infra.config import StackConfig

PART_SIZE = 8 * 1024 * 1024  # S3 allows 10,000 parts: 80 GB artifacts; smaller parts keep memory low
MAX_PARTS_IN_FLIGHT = 4
COPY_LIMIT = 5 * 1024**3  # CopyObject's limit; larger artifacts would need a multipart copy
PACKAGE_DESCRIPTION = "mlinfra {model} {digest}"


class ConflictError(MlinfraError):
    """Raised when a conditional write loses a race (another promotion moved the pointer first)."""


class MissingRegistryError(MlinfraError):
    """Raised when a stage's registry bucket does not exist (the stack is not deployed or bootstrapped)."""


def s3_uri(bucket: str, key: str) -> str:
    """`s3://bucket/key`."""
    return f"s3://{bucket}/{key}"


@functools.cache
def _return_large_buffers_to_the_os() -> None:
    """Have glibc mmap every allocation of 1 MiB or more, so freed part buffers leave the process at once.

    glibc raises its mmap threshold after the first large free, after which multi-MiB part buffers come from
    per-thread heap arenas that keep freed memory: resident memory then grows far beyond what is in use. A fixed
    threshold keeps the upload's footprint at the parts in flight. Nothing happens on other C libraries.
    """
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        m_mmap_threshold = -3
        ctypes.CDLL("libc.so.6").mallopt(m_mmap_threshold, 1 << 20)


@dataclass
class MultipartSink:
    """Receives an artifact's bytes as they are produced and uploads them as S3 multipart parts.

    Parts (PART_SIZE or a little more: whole chunks) carry their own SHA-256 checksum (S3 verifies each); at most
    MAX_PARTS_IN_FLIGHT parts are buffered, so memory stays bounded whatever the artifact size. An artifact smaller
    than one part is sent as a single PUT.
    """

    s3: Any
    bucket: str
    key: str
    on_bytes: Any = None
    _chunks: list[bytes] = field(default_factory=list)
    _buffered: int = 0
    _upload_id: str | None = None
    _parts: list[Any] = field(default_factory=list)
    _pool: ThreadPoolExecutor | None = None
    _number: int = 0

    def write(self, chunk: bytes) -> None:
        """Accept the next bytes of the artifact (kept by reference until a part is full: one copy per part)."""
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        if self._buffered >= PART_SIZE:
            self._flush()

    def _flush(self) -> None:
        body = b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        self._send(body)

    def _send(self, body: bytes) -> None:
        if self._upload_id is None:
            _return_large_buffers_to_the_os()
            self._upload_id = self.s3.create_multipart_upload(
                Bucket=self.bucket, Key=self.key, ChecksumAlgorithm="SHA256"
            )["UploadId"]
            self._pool = ThreadPoolExecutor(MAX_PARTS_IN_FLIGHT)
        assert self._pool is not None  # noqa: S101 - set just above
        # Bound memory: wait for the oldest part before queueing more than MAX_PARTS_IN_FLIGHT.
        pending = [p for p in self._parts if not p.done()]
        if len(pending) >= MAX_PARTS_IN_FLIGHT:
            pending[0].result()
        self._number += 1
        number = self._number
        checksum = base64.b64encode(hashlib.sha256(body).digest()).decode()

        def upload() -> dict[str, Any]:
            response = self.s3.upload_part(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=body,
                ChecksumSHA256=checksum,
            )
            if self.on_bytes is not None:
                self.on_bytes(len(body))
            return {"PartNumber": number, "ETag": response["ETag"], "ChecksumSHA256": checksum}

        self._parts.append(self._pool.submit(upload))

    def close(self) -> None:
        """Send what is buffered and complete the upload."""
        if self._upload_id is None:
            body = b"".join(self._chunks)
            self.s3.put_object(
                Bucket=self.bucket,
                Key=self.key,
                Body=body,
                ChecksumSHA256=base64.b64encode(hashlib.sha256(body).digest()).decode(),
            )
            if self.on_bytes is not None:
                self.on_bytes(len(body))
            return
        if self._chunks:
            self._flush()
        parts = [p.result() for p in self._parts]
        assert self._pool is not None  # noqa: S101
        self._pool.shutdown()
        self.s3.complete_multipart_upload(
            Bucket=self.bucket, Key=self.key, UploadId=self._upload_id, MultipartUpload={"Parts": parts}
        )

    def abort(self) -> None:
        """Abandon the upload (the bucket's lifecycle rule also aborts incomplete uploads)."""
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
        if self._upload_id is not None:
            self.s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id)


def _copy_checksum_header(request: Any, **_: Any) -> None:
    algorithm = request.headers.get("x-amz-checksum-algorithm")
    if algorithm and "x-amz-sdk-checksum-algorithm" not in request.headers:
        request.headers["x-amz-sdk-checksum-algorithm"] = algorithm


class StageRegistry:
    """The registry of one stage, reached through that stage's AWS session."""

    def __init__(self, aws: StageAws) -> None:
        self.aws = aws
        self.config: StackConfig = aws.config
        self.stage = aws.config.stage

    @property
    def bucket(self) -> str:
        """The stage's registry bucket."""
        return self.aws.registry_bucket

    @property
    def s3(self) -> Any:
        """The S3 client acting on this stage."""
        client = self.aws.client("s3")
        if not getattr(client, "_mlinfra_copy_header", False):
            # CopyObject names its checksum algorithm in x-amz-checksum-algorithm only; writes into an Object Lock
            # bucket (prod) must also carry x-amz-sdk-checksum-algorithm (the emulator enforces it), so add it.
            client.meta.events.register("before-sign.s3.CopyObject", _copy_checksum_header)
            client._mlinfra_copy_header = True
        return client

    @property
    def sagemaker(self) -> Any:
        """The SageMaker client acting on this stage."""
        return self.aws.client("sagemaker")

    def package_group(self, model: str) -> str:
        """The model's package group in this stage."""
        return naming.package_group(self.config.project, self.stage, model)

    def retention(self) -> dict[str, Any]:
        """Object Lock arguments for an artifact or audit record written now (none without `registry.objectLock`).

        The bucket has no default retention (it would lock captured requests and stage pointers too); what must be
        immutable is locked one object at a time, as it is written.
        """
        lock = self.config.registry.object_lock
        if lock is None:
            return {}
        return {
            "ObjectLockMode": lock.mode,
            "ObjectLockRetainUntilDate": datetime.now(UTC) + timedelta(days=lock.days),
        }

    # JSON records ------------------------------------------------------------------------------------------------

    def read(self, key: str) -> Stored | None:
        """A JSON record and its ETag, or None if absent."""
        try:
            response = self.s3.get_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if error_code(exc) in {"NoSuchKey", "404"}:
                return None
            if error_code(exc) == "NoSuchBucket":
                raise MissingRegistryError(self._missing_bucket()) from None
            raise
        body = response["Body"].read()
        try:
            data = json.loads(body)
        except ValueError:
            raise MlinfraError(
                f"s3://{self.bucket}/{key}: corrupt record (not JSON); restore it from its earlier versions"
            ) from None
        return Stored(data=data, etag=str(response["ETag"]))

    def write(self, key: str, data: dict[str, Any], *, if_match: str | None = None, retain: bool = False) -> str:
        """Write a JSON record: create-only (If-None-Match) unless `if_match` gives the ETag to replace.

        `retain` locks the record for the stage's Object Lock retention (audit records). Raises ConflictError when
        the condition fails: the record exists (create) or changed (replace).
        """
        body = json.dumps(data, indent=2, sort_keys=True).encode()
        condition = {"IfMatch": if_match} if if_match is not None else {"IfNoneMatch": "*"}
        try:
            # A checksum on every write: S3 verifies the bytes, and Object Lock buckets (prod) require one.
            response = self.s3.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=body,
                ContentType="application/json",
                ChecksumAlgorithm="SHA256",
                **condition,
                **(self.retention() if retain else {}),
            )
        except Exception as exc:
            if error_code(exc) in {"PreconditionFailed", "ConditionalRequestConflict", "412"}:
                raise ConflictError(f"s3://{self.bucket}/{key} changed concurrently") from None
            if error_code(exc) == "NoSuchBucket":
                raise MissingRegistryError(self._missing_bucket()) from None
            raise
        return str(response["ETag"])

    def _missing_bucket(self) -> str:
        return f"registry bucket {self.bucket} of stage {self.stage} does not exist: {self._create_hint()}"

    def _create_hint(self) -> str:
        """How the stage's registry resources come to exist: the emulator's one step, or the stack's apply."""
        from mlinfra.aws import local_mode

        if local_mode():
            return "run `mlinfra local up` (it creates every stage's registry in the emulator)"
        return f"deploy the stack (`mlinfra up --stack {self.stage}`, or merge to main and let CI apply it)"

    # Versions ----------------------------------------------------------------------------------------------------

    def version(self, model: str, version: int) -> dict[str, Any] | None:
        """The metadata record of a version in this stage's registry (CorruptRecordError if of the wrong shape)."""
        key = layout.version_key(model, version)
        stored = self.read(key)
        return records.checked_version(stored.data, s3_uri(self.bucket, key), version) if stored else None

    def versions(self, model: str) -> list[int]:
        """Every version number with a record in this stage, ascending."""
        found: list[int] = []
        prefix = f"{layout.MODELS_PREFIX}{model}/versions/"
        for key in self.keys(prefix):
            name = key[len(prefix) :]
            if name.endswith(".json") and name[:-5].isdigit():
                found.append(int(name[:-5]))
        return sorted(found)

    def write_version(self, record: dict[str, Any]) -> None:
        """Create a version record; an existing one must describe the same digest (idempotent re-run)."""
        key = layout.version_key(record["model"], record["version"])
        try:
            self.write(key, record)
        except ConflictError:
            existing = self.version(record["model"], record["version"])
            if existing is None or existing.get("digest") != record["digest"]:
                raise MlinfraError(
                    f"s3://{self.bucket}/{key} already records a different artifact "
                    f"({(existing or {}).get('digest')}); versions are immutable"
                ) from None

    def require_version(self, model: str, version: int) -> dict[str, Any]:
        """A version's record, or BadInputError listing the versions this stage has."""
        record = self.version(model, version)
        if record is None:
            known = self.versions(model)
            listing = ", ".join(f"v{v}" for v in known[-10:]) or "none yet"
            raise BadInputError(f"{model} v{version} is not in {self.stage}'s registry (versions there: {listing})")
        return record

    # Artifacts ---------------------------------------------------------------------------------------------------

    def artifact_uri(self, model: str, digest: str) -> str:
        """Where this stage keeps the artifact of `digest`."""
        return s3_uri(self.bucket, layout.artifact_key(model, digest))

    def stored_checksum(self, model: str, digest: str) -> str | None:
        """The artifact's stored SHA-256 checksum (base64); None when absent, "" when stored without one.

        Every write mlinfra makes carries a SHA-256 checksum: an artifact without one was overwritten out of band.
        """
        try:
            attributes = self.s3.get_object_attributes(
                Bucket=self.bucket, Key=layout.artifact_key(model, digest), ObjectAttributes=["Checksum", "ObjectSize"]
            )
        except Exception as exc:
            if error_code(exc) in {"NoSuchKey", "404", "NotFound"}:
                return None
            raise
        found = attributes.get("Checksum", {}).get("ChecksumSHA256")
        return str(found) if found is not None else ""

    def verify_artifact(self, model: str, digest: str) -> None:
        """Check the stored artifact is exactly `digest` (S3's checksum; nothing downloaded)."""
        require_checksum(self.artifact_uri(model, digest), self.stored_checksum(model, digest), digest)

    def verify_copy_source(self, source: StageRegistry, model: str, digest: str) -> None:
        """Check `source`'s artifact is exactly `digest` with THIS stage's credentials, those the copy reads it with.

        A HEAD with checksum mode, authorised as s3:GetObject: the role a source stage lends reads no artifact.
        """
        key = layout.artifact_key(model, digest)
        try:
            found: str | None = str(
                self.s3.head_object(Bucket=source.bucket, Key=key, ChecksumMode="ENABLED").get("ChecksumSHA256") or ""
            )
        except Exception as exc:
            if error_code(exc) in {"403", "AccessDenied", "Forbidden"}:
                raise MlinfraError(
                    f"{source.artifact_uri(model, digest)}: access denied to {self.stage}'s identity "
                    f"({self.aws.role_arn or 'your credentials'}): {source.stage}'s `mlinfra:registry.readerRoleArns` "
                    "does not list it, or the artifact is missing (S3 answers 403 for a missing key without "
                    "s3:ListBucket)"
                ) from None
            if error_code(exc) not in {"NoSuchKey", "404", "NotFound"}:
                raise
            found = None
        require_checksum(source.artifact_uri(model, digest), found, digest)

    def put_artifact(self, model: str, digest: str, body: Any) -> None:
        """Store an artifact (at most 5 GiB) at its content address in one PUT carrying its SHA-256, then verify.

        S3 checks the bytes it receives against the SHA-256 sent with them (BadDigest: nothing is stored), so the
        object gets its full-object checksum without a copy. Replaces what is there (a corrupted artifact).
        """
        self.s3.put_object(
            Bucket=self.bucket,
            Key=layout.artifact_key(model, digest),
            Body=body,
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=checksum_of(digest),
            **self.retention(),
        )
        self.verify_artifact(model, digest)

    def finalize_upload(self, temp_key: str, model: str, digest: str) -> None:
        """Move an uploaded artifact to its content-addressed key (server-side copy with a full SHA-256), verify."""
        key = layout.artifact_key(model, digest)
        if self.stored_checksum(model, digest) != checksum_of(digest):
            self.s3.copy_object(
                Bucket=self.bucket,
                Key=key,
                CopySource={"Bucket": self.bucket, "Key": temp_key},
                ChecksumAlgorithm="SHA256",
                **self.retention(),
            )
        self.verify_artifact(model, digest)
        self.discard(temp_key)

    def discard(self, key: str) -> None:
        """Delete an object for good: its current version, not hidden behind a delete marker (buckets are versioned).

        Only for what mlinfra itself wrote and nobody else reads (temporary uploads).
        """
        try:
            head = self.s3.head_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if error_code(exc) in {"404", "NoSuchKey", "NotFound"}:
                return
            raise
        version = head.get("VersionId")
        if version and version != "null":
            try:
                self.s3.delete_object(Bucket=self.bucket, Key=key, VersionId=version)
                return
            except Exception as exc:
                if error_code(exc) != "AccessDenied":
                    raise
                # A role without s3:DeleteObjectVersion on uploads/: hide it; the uploads/ lifecycle rule expires it.
        self.s3.delete_object(Bucket=self.bucket, Key=key)

    def copy_artifact_from(self, source: StageRegistry, model: str, digest: str, size: int) -> None:
        """Copy an artifact from another stage's registry, server-side: no byte passes through this client."""
        if self.stored_checksum(model, digest) == checksum_of(digest):
            return  # already here (a re-run, or promoted before)
        if size > COPY_LIMIT:
            raise MlinfraError(f"{model} artifact is {size} bytes; promotion copies at most 5 GiB (CopyObject)")
        key = layout.artifact_key(model, digest)
        result = self.s3.copy_object(
            Bucket=self.bucket,
            Key=key,
            CopySource={"Bucket": source.bucket, "Key": key},
            ChecksumAlgorithm="SHA256",
            **self.retention(),
        )
        copied = result.get("CopyObjectResult", {}).get("ChecksumSHA256")
        if copied is not None and copied != checksum_of(digest):
            raise IntegrityError(f"digest mismatch while copying {model} {digest[:19]}... to {self.stage}")

    def copy_version_files_from(self, source: StageRegistry, model: str, version: int) -> int:
        """Copy the files stored with a version (baseline, model card) server-side; returns how many were copied.

        They travel with the version so that each stage's Model Monitor finds its baseline in its own registry.
        """
        copied = 0
        for key in source.keys(layout.version_prefix(model, version)):
            try:
                self.s3.head_object(Bucket=self.bucket, Key=key)
                continue  # already here: the files of a version never change
            except Exception as exc:
                if error_code(exc) not in {"404", "NoSuchKey", "NotFound"}:
                    raise
            self.s3.copy_object(
                Bucket=self.bucket,
                Key=key,
                CopySource={"Bucket": source.bucket, "Key": key},
                ChecksumAlgorithm="SHA256",
            )
            copied += 1
        return copied

    def temp_upload_key(self, model: str) -> str:
        """A fresh key under uploads/ for an artifact whose digest is not known yet."""
        return f"{layout.UPLOADS_PREFIX}{model}/{uuid.uuid4().hex}.tar.gz"

    # Stage pointer -----------------------------------------------------------------------------------------------

    def pointer(self, model: str) -> Stored | None:
        """The version this stage runs (`stages/<model>.json`) and its ETag (CorruptRecordError if malformed)."""
        key = layout.stage_key(model)
        stored = self.read(key)
        if stored is not None:
            records.checked_pointer(stored.data, s3_uri(self.bucket, key))
        return stored

    def move_pointer(self, model: str, data: dict[str, Any], expected: Stored | None) -> str:
        """Replace the pointer only if it is still `expected` (If-Match), or create it (If-None-Match)."""
        return self.write(layout.stage_key(model), data, if_match=expected.etag if expected else None)

    # Audit -------------------------------------------------------------------------------------------------------

    @staticmethod
    def audit_key(record: dict[str, Any]) -> str:
        """audit/<model>/<timestamp>-<version>.json for a record."""
        stamp = record["time"].replace("-", "").replace(":", "").replace(".", "")
        return f"{layout.audit_prefix(record['model'])}{stamp}-{record['version']}.json"

    def write_audit(self, record: dict[str, Any]) -> None:
        """Write an audit record once (re-writing the same record is a no-op)."""
        try:
            self.write(self.audit_key(record), record, retain=True)
        except ConflictError:
            stored = self.read(self.audit_key(record))
            if stored is None or stored.data.get("id") != record["id"]:
                raise

    def audit_records(self, model: str, *, version: int | None = None) -> list[dict[str, Any]]:
        """Every audit record of `model` in this stage (any order); only those of `version` when given."""
        keys = list(self.keys(layout.audit_prefix(model)))
        if version is not None:
            keys = [key for key in keys if key.endswith(f"-{version}.json")]
        if not keys:
            return []
        with ThreadPoolExecutor(8) as pool:
            stored = list(pool.map(self.read, keys))
        return [s.data for s in stored if s is not None]

    def keys(self, prefix: str) -> Iterator[str]:
        """Every key under `prefix` in this registry."""
        paginator = self.s3.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    yield str(item["Key"])
        except Exception as exc:
            if error_code(exc) == "NoSuchBucket":
                raise MissingRegistryError(self._missing_bucket()) from None
            raise

    # Model packages ----------------------------------------------------------------------------------------------

    def find_package(self, model: str, digest: str) -> dict[str, Any] | None:
        """The package of this stage's group registered for `digest` (matched by its description).

        When a retried CreateModelPackage left two packages for one digest (a service that does not honour the
        ClientToken), the oldest one (lowest version) is the digest's package, always: the duplicate is tolerated
        and never used.
        """
        wanted = PACKAGE_DESCRIPTION.format(model=model, digest=digest)
        paginator = self.sagemaker.get_paginator("list_model_packages")
        found: list[dict[str, Any]] = []
        try:
            for page in paginator.paginate(ModelPackageGroupName=self.package_group(model)):
                found += [
                    dict(s)
                    for s in page.get("ModelPackageSummaryList", [])
                    if s.get("ModelPackageDescription") == wanted
                ]
        except Exception as exc:
            if error_code(exc) in {"ValidationException", "ResourceNotFound"}:
                self.require_group(model)
            raise
        return min(found, key=lambda s: int(s.get("ModelPackageVersion") or 0)) if found else None

    def require_group(self, model: str) -> None:
        """MlinfraError unless the model's package group exists in this stage (checked before any upload)."""
        self._require_group(model)

    def _require_group(self, model: str) -> None:
        try:
            self.sagemaker.describe_model_package_group(ModelPackageGroupName=self.package_group(model))
        except Exception as exc:
            if error_code(exc) in {"ValidationException", "ResourceNotFound"}:
                raise MlinfraError(
                    f"model package group {self.package_group(model)} does not exist in {self.stage}: "
                    f"{self._create_hint()}"
                ) from None
            raise

    def create_package(
        self, model: str, digest: str, image: str, artifact: str, metadata: dict[str, str]
    ) -> dict[str, Any]:
        """Create (or find, on a re-run) the package of `digest`; returns its summary with arn and version."""
        existing = self.find_package(model, digest)
        if existing is not None:
            return existing
        self._require_group(model)
        response = self.sagemaker.create_model_package(
            ModelPackageGroupName=self.package_group(model),
            ModelPackageDescription=PACKAGE_DESCRIPTION.format(model=model, digest=digest),
            ModelApprovalStatus="PendingManualApproval",
            InferenceSpecification={
                "Containers": [{"Image": image, "ModelDataUrl": artifact}],
                "SupportedContentTypes": ["text/csv", "application/json"],
                "SupportedResponseMIMETypes": ["text/csv", "application/json"],
            },
            CustomerMetadataProperties={k: str(v)[:256] for k, v in metadata.items()},
        )
        # A retried request may have created two packages: the digest's package is the oldest, whichever this is.
        found = self.find_package(model, digest)
        if found is not None:
            return found
        described = self.sagemaker.describe_model_package(ModelPackageName=response["ModelPackageArn"])
        return {
            "ModelPackageArn": described["ModelPackageArn"],
            "ModelPackageVersion": described.get("ModelPackageVersion"),
            "ModelApprovalStatus": described.get("ModelApprovalStatus"),
        }

    def package_of(self, model: str, record: dict[str, Any]) -> dict[str, Any]:
        """Describe the package a version record names."""
        with aws_errors(f"reading {model} v{record['version']}'s model package in {self.stage}"):
            return dict(self.sagemaker.describe_model_package(ModelPackageName=record["packageArn"]))

    def approve_package(self, model: str, record: dict[str, Any], description: str) -> None:
        """Mark a version's package in this stage Approved."""
        with aws_errors(f"approving {model} v{record['version']} in {self.stage}"):
            self.sagemaker.update_model_package(
                ModelPackageArn=record["packageArn"],
                ModelApprovalStatus="Approved",
                ApprovalDescription=description[:1024],
            )
