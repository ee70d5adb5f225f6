"""Fetching a registered version's model.tar.gz and unpacking it safely, for `mlinfra serve --version/--stage`.

The artifact is downloaded once per digest into `.mlinfra/serve/<model>/<hex>/`, hashed while it streams (a digest
mismatch is refused and nothing is kept), checked by archives.inspect_archive (no absolute paths, `..`, links or
devices; one read), and extracted with tarfile's `data` filter as a second guard, into a temporary folder that is
renamed into place only when complete: a cached folder is always a whole, verified artifact.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlinfra.errors import BadInputError, MlinfraError
from mlinfra.registry.integrity import IntegrityError
from mlinfra.registry.store import StageRegistry
from mlinfra.stacks.project import STATE_DIR, Project
from mlinfra_infra import layout

CACHE_DIR = "serve"
_CHUNK = 1 << 20


@dataclass
class Fetched:
    """A version unpacked on this machine: where, its record, and the stage whose registry it came from."""

    model_dir: Path
    record: dict[str, Any]
    stage: str
    cached: bool


def cache_dir(project: Project, model: str, digest: str) -> Path:
    """Where a digest's unpacked artifact lives in this checkout."""
    return project.root / STATE_DIR / CACHE_DIR / model / digest.removeprefix("sha256:")


def download(registry: StageRegistry, model: str, digest: str, target: Path, progress: Callable[[int], None]) -> None:
    """Stream an artifact from the registry into `target`, hashing it; IntegrityError if it is not `digest`."""
    key = layout.artifact_key(model, digest)
    response = registry.s3.get_object(Bucket=registry.bucket, Key=key)
    sha256 = hashlib.sha256()
    body = response["Body"]
    try:
        with target.open("wb") as out:
            for chunk in iter(lambda: body.read(_CHUNK), b""):
                sha256.update(chunk)
                out.write(chunk)
                progress(len(chunk))
    finally:
        body.close()
    found = f"sha256:{sha256.hexdigest()}"
    if found != digest:
        raise IntegrityError(
            f"digest mismatch: {registry.artifact_uri(model, digest)} is {found[:19]}..., its record says "
            f"{digest[:19]}...; do not serve it, investigate and re-register"
        )


def unpack(archive: Path, destination: Path) -> None:
    """Validate a model.tar.gz (archives.inspect_archive) and extract it into `destination` (must not exist)."""
    from mlinfra.models.archives import inspect_archive

    inspect_archive(archive)
    staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=destination.parent))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(staging, filter="data")
        staging.replace(destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def fetch(
    project: Project,
    registry: StageRegistry,
    model: str,
    record: dict[str, Any],
    progress: Callable[[int], None] | None = None,
) -> Fetched:
    """The unpacked artifact of a version record: from the cache, or downloaded, verified and extracted now."""
    digest = str(record["digest"])
    destination = cache_dir(project, model, digest)
    if destination.is_dir():
        return Fetched(destination, record, registry.stage, cached=True)
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=".download-", suffix=".tar.gz", dir=destination.parent)
    archive = Path(name)
    try:
        with open(handle, "wb"):  # noqa: PTH123 - closes the descriptor mkstemp opened
            pass
        download(registry, model, digest, archive, progress or (lambda n: None))
        try:
            unpack(archive, destination)
        except OSError as exc:
            if destination.is_dir():  # another `serve` unpacked the same digest meanwhile
                return Fetched(destination, record, registry.stage, cached=True)
            raise MlinfraError(f"unpacking {model} {digest[:19]}... into {destination} failed: {exc}") from None
        except BadInputError as exc:
            raise MlinfraError(f"the registered artifact of {model} is not a safe model.tar.gz: {exc}") from None
    finally:
        with contextlib.suppress(OSError):
            archive.unlink()
    return Fetched(destination, record, registry.stage, cached=False)
