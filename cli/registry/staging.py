"""The artifact `register` hashes, kept on local disk so that its upload is one verified PUT and no copy.

The hashing pass has to produce the artifact's bytes anyway (the digest is the SHA-256 of the model.tar.gz). Writing
them to a private temporary file under `.mlinfra/staging/` instead of discarding them lets a new digest be stored
with one PutObject at its content address, carrying its SHA-256 (which S3 checks against the bytes it receives,
refusing a mismatch with BadDigest): the artifact gets its full-object checksum without the server-side copy a
multipart upload needs (multipart objects carry only a composite SHA-256). The model is read once instead of twice.

When the artifact would exceed what one PUT takes (5 GiB), or the disk has no room for it, nothing is kept and
register falls back to streaming a second packing pass as a multipart upload, then copying it into place.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SINGLE_PUT_LIMIT = 5 * 1024**3  # PutObject's largest object
ROOM = 2 * 1024**3  # disk space left free beyond the staged artifact


@dataclass(frozen=True)
class Staged:
    """The hashed artifact (`packed`: digest, size, files) and, when kept, the file holding exactly its bytes."""

    packed: Any
    file: Path | None


@contextlib.contextmanager
def staged(path: Path, *, archive: bool, state_dir: Path, size_hint: int) -> Iterator[Staged]:
    """Hash the artifact of `path`, keeping its bytes in a private temporary file when one PUT can store them.

    `size_hint` is the input's size (a directory's files, or the archive): the artifact is about as large.
    The file is removed when the block ends, whatever happens.
    """
    from mlinfra.models import archives, packaging
    from mlinfra.models import directory as modeldir

    def produce(sink: Callable[[bytes], object] | None) -> Any:
        if archive:
            return archives.stream_archive(path, sink) if sink is not None else archives.inspect_archive(path)
        return packaging.pack(path, sink or (lambda _chunk: None), skip=modeldir.skipper(path))

    folder = state_dir / "staging"
    if not _fits(folder, size_hint):
        yield Staged(produce(None), None)
        return
    folder.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=folder, prefix="artifact-", suffix=".tar.gz")  # mode 0600
    file = Path(name)
    try:
        try:
            with os.fdopen(handle, "wb") as out:
                packed = produce(out.write)
            kept: Path | None = file if packed.size <= SINGLE_PUT_LIMIT else None
        except OSError:  # the disk filled up meanwhile (reading the model raises mlinfra's own errors): hash only
            file.unlink(missing_ok=True)
            packed, kept = produce(None), None
        yield Staged(packed, kept)
    finally:
        file.unlink(missing_ok=True)


def _fits(folder: Path, size: int) -> bool:
    if size > SINGLE_PUT_LIMIT:
        return False
    probe = folder if folder.exists() else folder.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return shutil.disk_usage(probe).free > size + ROOM
    except OSError:
        return False


class ProgressReader:
    """A file read by botocore (possibly twice: signing, then sending) that reports each byte once."""

    def __init__(self, handle: Any, on_bytes: Callable[[int], None] | None) -> None:
        self.handle = handle
        self.on_bytes = on_bytes
        self.reported = 0

    def read(self, size: int = -1) -> bytes:
        """Read, reporting bytes beyond the furthest point read so far."""
        data: bytes = self.handle.read(size)
        position = self.handle.tell()
        if self.on_bytes is not None and position > self.reported:
            self.on_bytes(position - self.reported)
            self.reported = position
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        """Move in the file (botocore rewinds after signing, and to retry)."""
        return int(self.handle.seek(offset, whence))

    def tell(self) -> int:
        """The position in the file."""
        return int(self.handle.tell())
