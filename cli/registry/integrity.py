"""An artifact's integrity: S3's SHA-256 checksum of a digest, and the check of a stored checksum against it."""

from __future__ import annotations

import base64

from mlinfra.errors import MlinfraError


class IntegrityError(MlinfraError):
    """Raised when an artifact's stored checksum does not match the digest its records promise."""


def checksum_of(digest: str) -> str:
    """S3's base64 SHA-256 checksum for a `sha256:<hex>` digest."""
    return base64.b64encode(bytes.fromhex(digest.removeprefix("sha256:"))).decode()


def require_checksum(uri: str, found: str | None, digest: str) -> None:
    """IntegrityError unless `found` (the stored SHA-256; None: absent, "": none stored) is `digest`'s."""
    if found is None:
        raise IntegrityError(f"{uri} is missing: the registry lost the artifact")
    changed = "(changed behind the registry's back); do not promote it, investigate and re-register"
    if not found:
        raise IntegrityError(
            f"digest mismatch: {uri} was overwritten without a SHA-256 checksum, so its bytes are no longer the "
            f"registered {digest[:19]}... {changed}"
        )
    if found != checksum_of(digest):
        raise IntegrityError(f"digest mismatch: {uri} no longer matches {digest[:19]}... {changed}")
