"""The registry bucket's layout: where artifacts, version records, stage pointers, audit and capture live.

Shared by the Pulumi program (IAM scopes, lifecycle rules, the drift job) and the CLI (register, promote),
so a prefix is spelled once. See ARCHITECTURE.md, "Registry and promotion".
"""

from __future__ import annotations

MODELS_PREFIX = "models/"
STAGES_PREFIX = "stages/"
AUDIT_PREFIX = "audit/"
CAPTURE_PREFIX = "capture/"
MONITORING_PREFIX = "monitoring/"
CODE_PREFIX = "code/"  # the drift job's Lambda code packages, content-addressed (code/drift-job-<sha256>.zip)
UPLOADS_PREFIX = "uploads/"  # artifacts being registered, before their digest (hence their key) is known
ARTIFACT_NAME = "model.tar.gz"


def artifact_key(model: str, digest: str) -> str:
    """Content-addressed, immutable artifact: models/<model>/sha256/<hex>/model.tar.gz."""
    return f"{MODELS_PREFIX}{model}/sha256/{digest.removeprefix('sha256:')}/{ARTIFACT_NAME}"


def version_key(model: str, version: int) -> str:
    """A version's metadata record: models/<model>/versions/<n>.json."""
    return f"{MODELS_PREFIX}{model}/versions/{version}.json"


def version_prefix(model: str, version: int) -> str:
    """Files stored with a version (model card, baseline): models/<model>/versions/<n>/."""
    return f"{MODELS_PREFIX}{model}/versions/{version}/"


def stage_key(model: str) -> str:
    """The stage pointer: stages/<model>.json, updated with If-Match."""
    return f"{STAGES_PREFIX}{model}.json"


def audit_prefix(model: str) -> str:
    """Where a model's audit records live: audit/<model>/."""
    return f"{AUDIT_PREFIX}{model}/"


def capture_prefix(model: str) -> str:
    """Where SageMaker writes a model's data capture: capture/<model>."""
    return f"{CAPTURE_PREFIX}{model}"


def capture_endpoint_prefix(model: str, endpoint: str, variant: str) -> str:
    """Where SageMaker puts one variant's capture files: capture/<model>/<endpoint>/<variant>/yyyy/mm/dd/hh/*.jsonl."""
    return f"{capture_prefix(model)}/{endpoint}/{variant}/"


def monitoring_prefix(model: str) -> str:
    """The drift job's checkpoint and reports of a model: monitoring/<model>/."""
    return f"{MONITORING_PREFIX}{model}/"
