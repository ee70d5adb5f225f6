"""Safe inspection of user-supplied model.tar.gz archives: validated in one streaming read, never extracted.

The raw bytes are hashed (and can be handed to an upload) as they are read, and inflated in bounded memory; members
that could write outside an extraction directory, or that are not plain files or directories, are refused. The
registry never recompresses an archive, so an uploaded artifact keeps the digest computed here.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
import tarfile
import zlib
from pathlib import Path
from typing import IO, TYPE_CHECKING, cast

from mlinfra.errors import BadInputError
from mlinfra.models.packaging import CHUNK, Packed, _read_error

if TYPE_CHECKING:
    import os

    from mlinfra.models.packaging import Sink

__all__ = ["inspect_archive", "stream_archive"]

_MEMBER_KINDS = {
    tarfile.SYMTYPE: "a symlink",
    tarfile.LNKTYPE: "a hard link",
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a FIFO",
}


def inspect_archive(path: str | os.PathLike[str], sink: Sink | None = None) -> Packed:
    """Validate a user-supplied model.tar.gz without extracting it, in one read; its digest, size and file count.

    The raw bytes are hashed (and handed to `sink`, if given, in CHUNK pieces) as they are read, and inflated in
    bounded memory; the gzip CRC and length are checked. With a sink, a refusal can come after some bytes were
    handed over: the caller discards them (e.g. aborts the multipart upload).
    Refused (BadInputError): anything that is not a gzip-compressed tar, a corrupt or truncated one, data after the
    gzip stream other than zero padding, an archive without files, and members with an absolute path, a `..`
    component, a name that leaves the root, or a type other than file or directory (links, devices, FIFOs).
    """
    archive = Path(path)
    try:
        raw = archive.open("rb", buffering=0)
    except FileNotFoundError:
        raise BadInputError(f"{archive}: no such file; pass the path of a model.tar.gz") from None
    except OSError as exc:
        raise _read_error(archive, exc) from None
    with raw:
        reader = _GunzipReader(raw, archive, sink)
        files = 0
        empty: list[str] = []
        try:
            # Stream mode ("r|") only ever calls read(): no seeking, so the file is read exactly once.
            with tarfile.open(fileobj=cast("IO[bytes]", reader), mode="r|", bufsize=CHUNK) as tar:
                while (member := tar.next()) is not None:
                    # Stream mode remembers every member; forget them so a header-only bomb stays in bounded memory.
                    tar.members.clear()  # type: ignore[attr-defined]  # (set in TarFile.__init__; not in the stubs)
                    _check_member(archive, member)
                    files += member.isreg()
                    if member.isreg() and member.size == 0:
                        empty.append(member.name.removeprefix("./"))
            while reader.read(CHUNK):  # the tar's end marker is not the end of the file: check and hash the rest
                pass
        except (tarfile.TarError, zlib.error, EOFError) as exc:
            raise _not_a_tar(archive, exc) from None
    if files == 0:
        raise BadInputError(f"{archive}: the archive holds no files; a model.tar.gz needs the model files at its root")
    return Packed(digest=f"sha256:{reader.sha256.hexdigest()}", size=reader.size, files=files, empty=tuple(empty))


def stream_archive(path: str | os.PathLike[str], sink: Sink) -> Packed:
    """Hand a user-supplied model.tar.gz to `sink` as it is validated (see inspect_archive), reading it once."""
    return inspect_archive(path, sink)


def _check_member(archive: Path, member: tarfile.TarInfo) -> None:
    """Refuse a member that could write outside the extraction directory or is not a plain file or directory."""
    name = member.name

    def refuse(why: str) -> BadInputError:
        return BadInputError(
            f"{archive}: member {name!r} {why}; rebuild the archive from a directory of plain files, "
            "or pass that directory and let mlinfra pack it"
        )

    if member.type in _MEMBER_KINDS:
        raise refuse(f"is {_MEMBER_KINDS[member.type]}")
    if not (member.isreg() or member.isdir()):
        raise refuse(f"has unsupported type {member.type!r}")
    if not name:
        raise refuse("has an empty name")  # what tarfile makes of a directory named "/"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise refuse("has a control character (a newline or a tab) in its name")
    if name.startswith("/"):
        raise refuse("has an absolute path")
    if ".." in name.split("/"):
        raise refuse("has a '..' component")
    normal = posixpath.normpath(name)
    if normal == ".." or normal.startswith("../") or posixpath.isabs(normal):
        raise refuse("escapes the archive root")


def _not_a_tar(archive: Path, exc: BaseException) -> BadInputError:
    detail = str(exc) or type(exc).__name__
    return BadInputError(
        f"{archive}: not a gzip-compressed tar, or a corrupt or truncated one ({detail}); "
        "create it with `tar czf model.tar.gz -C MODEL_DIR .` or pass the model directory"
    )


class _GunzipReader:
    """A file-like `read` over the inflated contents of a gzip file, hashing the raw bytes as it reads them once."""

    def __init__(self, raw: io.FileIO, archive: Path, sink: Sink | None) -> None:
        self.raw = raw
        self.archive = archive
        self.sink = sink
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip wrapper: header, CRC and length checked
        self.buffer = b""
        self.done = False

    def read(self, size: int = CHUNK) -> bytes:
        """Up to `size` inflated bytes (b"" at the end of the gzip stream)."""
        size = CHUNK if size < 0 else size
        while not self.buffer and not self.done:
            self.buffer = self._inflate(size)
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def _raw(self) -> bytes:
        try:
            data = self.raw.read(CHUNK) or b""
        except OSError as exc:
            raise _read_error(self.archive, exc) from None
        self.sha256.update(data)
        self.size += len(data)
        if data and self.sink is not None:
            self.sink(data)
        return data

    def _inflate(self, size: int) -> bytes:
        inflater = self.inflater
        if not inflater.eof:
            if inflater.unconsumed_tail:  # (after the end of a stream it holds its unused data too: check eof first)
                return inflater.decompress(inflater.unconsumed_tail, size)
            data = self._raw()
            if not data:
                raise EOFError("the file ends inside the gzip stream")
            return inflater.decompress(data, size)
        # A gzip member ended: what follows may be another member (concatenated gzip is valid), zero padding or
        # the end of the file; anything else makes `gunzip`, and so `tar xzf`, fail.
        rest = inflater.unused_data
        while len(rest) < 2:
            more = self._raw()
            if not more:
                break
            rest += more
        if rest[:2] == b"\x1f\x8b":
            self.inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            return self.inflater.decompress(rest, size)
        while rest:
            if rest.count(0) != len(rest):
                raise EOFError("data follows the gzip stream")
            rest = self._raw()
        self.done = True
        return b""
