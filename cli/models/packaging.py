"""Reproducible model.tar.gz packing and safe inspection of user-supplied archives, streamed in bounded memory.

The artifact format is SageMaker's `model.tar.gz`: a gzip-compressed tar whose root holds the model files. The
registry addresses artifacts by the sha256 of these bytes, so `pack` makes them a pure function of the directory's
relative paths, file contents and execute bits: entries sorted by path, every header normalised (mtime 0, owner 0,
no user or group names, modes 0o644/0o755), a gzip header without time or file name.

The bytes are written here rather than by `tarfile`/`gzip`, whose output has changed between CPython patch
releases (device fields of regular-file headers, the gzip header's OS byte), which would change every digest on a
Python upgrade. The tar is GNU format (long names in `././@LongLink` records, sizes of 8 GiB and more in base-256),
which carries no timestamps and no pax records. Deflate is done in independent 512 KiB blocks, each primed with the
previous 32 KiB and ended with a sync flush (as pigz does), so blocks compress in parallel threads while the output
stays one ordinary gzip member that does not depend on the number of threads. The digest still depends on the
compression level and on zlib's deflate implementation (zlib-ng, used by some distributions, emits other bytes);
`archives.inspect_archive` and the registry never recompress, so an uploaded artifact keeps its digest.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import stat
import struct
import tarfile
import zlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from mlinfra.errors import BadInputError, MlinfraError

__all__ = [
    "CHUNK",
    "DEFAULT_LEVEL",
    "Packed",
    "Sink",
    "collect_files",
    "input_size",
    "is_archive",
    "pack",
]

CHUNK = 1 << 20
# The level for blocks that compress (text-like files: JSON trees, vocabularies), where level 1 is ~3x faster than 6
# for ~20% larger output; blocks of weights, which barely compress, are stored (see `_compresses`). The level and
# that rule are part of the digest: change either and every re-packed model gets a new digest.
DEFAULT_LEVEL = 1
MAX_THREADS = 4

Sink = Callable[[bytes], object]
"""Receives the archive's bytes in order, in pieces of a few hundred KiB at most, which it may keep (`file.write`)."""

_BLOCK = 512
_RECORD = 20 * _BLOCK  # tar writers pad the archive to whole records of 20 blocks
_WINDOW = 32 * 1024  # deflate's window: how much of the previous block primes the next
_SAMPLE = 8 * 1024  # bytes per sample when deciding whether a block is worth deflating
# Files are read straight into deflate blocks; blocks in flight on the thread pool dominate memory (~1.3 MiB each).
_DEFLATE_BLOCK = CHUNK // 2
_SLICE = CHUNK // 4  # how much of a block zlib compresses per call
_GNU_MAGIC = b"ustar  \0"
_GZIP_OS_UNKNOWN = 255
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # newline, tab and the other control characters


@dataclass(frozen=True, slots=True)
class Packed:
    """A model.tar.gz: its content address ("sha256:<hex>"), its size in bytes and how many regular files it holds."""

    digest: str
    size: int
    files: int
    empty: tuple[str, ...] = ()  # the regular files of 0 bytes, by their path in the archive


# --- choosing the input ------------------------------------------------------------------------------------------


def is_archive(path: str | os.PathLike[str]) -> bool:
    """Whether `path` is a model.tar.gz (True) or a model directory to pack (False); BadInputError for anything else."""
    target = Path(path)
    if target.is_dir():
        return False
    if target.is_file() and target.name.lower().endswith(_ARCHIVE_SUFFIXES):
        return True
    if not target.exists() and not target.is_symlink():
        raise BadInputError(f"{target} does not exist; pass the model directory or its model.tar.gz")
    raise BadInputError(
        f"{target} is neither a model directory nor a model.tar.gz; pass a directory of model files or a .tar.gz/.tgz"
    )


# --- packing ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Entry:
    name: bytes  # the tar name: relative POSIX path as UTF-8 (undecodable bytes kept), directories end in "/"
    path: Path
    is_dir: bool
    executable: bool
    ino: int
    dev: int


def pack(
    directory: str | os.PathLike[str],
    sink: Sink,
    *,
    level: int = DEFAULT_LEVEL,
    threads: int | None = None,
    skip: Callable[[str, bool], bool] | None = None,
) -> Packed:
    """Pack a model directory reproducibly into a model.tar.gz streamed to `sink`; its digest, size and file count.

    Every file is read once, in pieces of up to CHUNK / 2, and the sha256 and size are taken from the bytes as they
    are handed to `sink` (see Sink), so nothing is held or read back. Memory stays under (1.5 x threads + 1) x CHUNK
    whatever the size of the model (under 8 MiB with 4 threads). `threads` (default: the CPU count, at most 4) only
    changes the speed, never the bytes. Symlinks, hard links, sockets, FIFOs, devices and a directory without files
    are refused (BadInputError); a file that cannot be read or changes while it is packed fails (MlinfraError).
    `skip(relative_path, is_dir)` leaves entries out (a skipped directory is not descended into).
    """
    if not 1 <= level <= 9:
        raise BadInputError(f"compression level must be between 1 and 9, got {level}")
    workers = threads if threads is not None else min(MAX_THREADS, _cpus())
    if workers < 1:
        raise BadInputError(f"threads must be at least 1, got {workers}")
    root = Path(directory)
    entries = _collect(root, skip)
    output = _Output(sink)
    deflater = _ParallelDeflate(level, workers, output)
    try:
        tar = _TarWriter(deflater)
        for entry in entries:
            if entry.is_dir:
                tar.header(entry.name, 0o755, 0, tarfile.DIRTYPE)
            else:
                _pack_file(tar, entry)
        tar.finish()
        deflater.finish()
    finally:
        deflater.close()
    return Packed(
        digest=f"sha256:{output.sha256.hexdigest()}", size=output.size, files=tar.files, empty=tuple(tar.empty)
    )


def _cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the platform has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def collect_files(root: Path, skip: Callable[[str, bool], bool] | None = None) -> list[tuple[str, Path]]:
    """The regular files `pack` would write, as (path in the archive, path on disk), in archive order."""
    return [
        (entry.name.decode("utf-8", "surrogateescape"), entry.path)
        for entry in _collect(root, skip)
        if not entry.is_dir
    ]


def _collect(root: Path, skip: Callable[[str, bool], bool] | None = None) -> list[_Entry]:
    """Every entry below `root`, sorted by POSIX path (byte order); refuses what a model.tar.gz must not hold."""
    if not root.is_dir():
        raise BadInputError(f"{root} is not a directory; pass the directory that holds the model files")
    entries: list[_Entry] = []
    pending: list[tuple[Path, str]] = [(root, "")]
    while pending:
        directory, prefix = pending.pop()
        try:
            with os.scandir(directory) as listing:
                children = list(listing)
        except OSError as exc:
            raise _read_error(directory, exc) from None
        for child in children:
            path = Path(child.path)
            relative = prefix + child.name
            try:
                info = child.stat(follow_symlinks=False)
            except OSError as exc:
                raise _read_error(path, exc) from None
            if skip is not None and skip(relative, stat.S_ISDIR(info.st_mode)):
                continue
            if _CONTROL.search(child.name):
                raise BadInputError(
                    f"{str(path)!r}: its name holds a control character (a newline or a tab); tools that list, "
                    "extract or serve the archive read such names wrongly: rename it"
                )
            if stat.S_ISDIR(info.st_mode):
                pending.append((path, relative + "/"))
                name = relative + "/"
            elif stat.S_ISREG(info.st_mode):
                if info.st_nlink > 1:
                    raise BadInputError(
                        f"{path}: is a hard link ({info.st_nlink} names for one file); a model directory must hold "
                        "plain files, so give it its own copy (cp -p PATH PATH.tmp && mv PATH.tmp PATH)"
                    )
                name = relative
            else:
                raise BadInputError(f"{path}: {_refusal(info.st_mode)}")
            entries.append(
                _Entry(
                    name=name.encode("utf-8", "surrogateescape"),
                    path=path,
                    is_dir=stat.S_ISDIR(info.st_mode),
                    executable=bool(info.st_mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)),
                    ino=info.st_ino,
                    dev=info.st_dev,
                )
            )
    if not any(not entry.is_dir for entry in entries):
        raise BadInputError(f"{root}: the model directory holds no files; put the model files in it and retry")
    # The member names, directories with their "/", sorted as bytes ("a-b" < "a.txt" < "a/" < "a/x"): `tar tzf` lists
    # them as `LC_ALL=C sort` would, and a directory precedes its contents because its name is their prefix.
    entries.sort(key=lambda entry: entry.name)
    return entries


def _refusal(mode: int) -> str:
    """Why an entry that is neither a regular file nor a directory cannot be packed, and what to do."""
    if stat.S_ISLNK(mode):
        return (
            "is a symlink; a model.tar.gz must be self-contained, so replace the link with the file or directory "
            "it points to (cp --dereference)"
        )
    kinds = {stat.S_ISSOCK: "a socket", stat.S_ISFIFO: "a FIFO", stat.S_ISCHR: "a character device"}
    kind = next((name for test, name in kinds.items() if test(mode)), "a block device")
    return f"is {kind}, not a regular file; remove it from the model directory"


def _read_error(path: Path, exc: OSError) -> MlinfraError:
    """A one-line error for a file or directory that cannot be read."""
    if isinstance(exc, PermissionError):
        return BadInputError(f"{path}: permission denied; make it readable (chmod u+r) or pack another directory")
    return MlinfraError(f"{path}: cannot read it: {exc.strerror or exc}")


def _pack_file(tar: _TarWriter, entry: _Entry) -> None:
    """Write one regular file: its header, then its bytes read straight into the deflate blocks."""
    # O_NOFOLLOW and the inode check refuse a file swapped for a link or another file since the walk; O_NONBLOCK keeps
    # a FIFO swapped in from blocking the open.
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(entry.path, flags)
    except OSError as exc:
        raise _read_error(entry.path, exc) from None
    with io.FileIO(fd, "r") as handle:

        def readinto(buffer: memoryview) -> int:
            # Only read errors are reported as such: whatever the sink raises (called from `tar.copy`) passes through.
            try:
                return handle.readinto(buffer) or 0
            except OSError as exc:
                raise _read_error(entry.path, exc) from None

        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or (info.st_ino, info.st_dev) != (entry.ino, entry.dev):
            raise _changed(entry.path)
        tar.header(entry.name, 0o755 if entry.executable else 0o644, info.st_size, tarfile.REGTYPE)
        if tar.copy(readinto, info.st_size) != info.st_size or readinto(memoryview(bytearray(1))):
            raise _changed(entry.path)
    tar.files += 1
    if info.st_size == 0:
        tar.empty.append(entry.name.decode("utf-8", "surrogateescape"))


def _changed(path: Path) -> MlinfraError:
    return MlinfraError(f"{path}: changed while it was being packed; pack again once nothing writes to it")


def _number(value: int, digits: int) -> bytes:
    """A tar header number: octal, or GNU base-256 when it does not fit (sizes of 8 GiB and more)."""
    if value < 8 ** (digits - 1):
        return b"%0*o\0" % (digits - 1, value)
    return b"\x80" + value.to_bytes(digits - 1, "big")


def _header(name: bytes, mode: int, size: int, kind: bytes) -> bytes:
    """One normalised GNU tar header block: owner 0, no user or group name, mtime 0, no device numbers."""
    block = b"".join(
        (
            name[:100].ljust(100, b"\0"),
            _number(mode, 8),
            _number(0, 8),  # uid
            _number(0, 8),  # gid
            _number(size, 12),
            _number(0, 12),  # mtime
            b" " * 8,  # checksum, computed over the block with these 8 bytes as spaces
            kind,
            b"\0" * 100,  # link name
            _GNU_MAGIC,
            b"\0" * 32,  # user name
            b"\0" * 32,  # group name
            b"\0" * 8,  # device major
            b"\0" * 8,  # device minor
        )
    ).ljust(_BLOCK, b"\0")
    return block[:148] + b"%06o\0 " % sum(block) + block[156:]


class _TarWriter:
    """Writes tar entries into the deflater, which sees one uninterrupted tar stream."""

    def __init__(self, deflater: _ParallelDeflate) -> None:
        self.deflater = deflater
        self.offset = 0
        self.files = 0
        self.empty: list[str] = []

    def header(self, name: bytes, mode: int, size: int, kind: bytes) -> None:
        """The header of one entry, preceded by a GNU long-name record when the name exceeds 100 bytes."""
        if len(name) > 100:
            long_name = name + b"\0"
            self._write(_header(b"././@LongLink", 0, len(long_name), tarfile.GNUTYPE_LONGNAME))
            self._write(long_name)
            self._pad()
        self._write(_header(name, mode, size, kind))

    def copy(self, readinto: Callable[[memoryview], int], size: int) -> int:
        """A file's `size` bytes, padded to a whole block; how many it had (fewer if it shrank since its header)."""
        copied = self.deflater.read_from(readinto, size)
        self.offset += copied
        self._pad()
        return copied

    def finish(self) -> None:
        """The end-of-archive marker (two zero blocks), padded to a whole record as tar writers do."""
        self._write(b"\0" * 2 * _BLOCK)
        self._write(b"\0" * (-self.offset % _RECORD))

    def _write(self, data: bytes) -> None:
        self.deflater.write(data)
        self.offset += len(data)

    def _pad(self) -> None:
        self._write(b"\0" * (-self.offset % _BLOCK))


def _compresses(block: bytearray) -> bool:
    """Whether a block is worth deflating: samples from its start, middle and end shrink by at least 10% at level 1.

    Model weights are close to incompressible, and deflate crawls through them (about 30 MB/s here, whatever the
    level) to save a few percent (float32 weights: ~7%); such blocks are stored instead (level 0, several hundred
    MB/s), which costs less in upload time than deflating saves. The choice depends
    on the block's bytes alone, so packing stays reproducible.
    """
    size = len(block)
    if size <= 3 * _SAMPLE:
        sample = bytes(block)
    else:
        middle = size // 2
        sample = bytes(block[:_SAMPLE]) + bytes(block[middle : middle + _SAMPLE]) + bytes(block[-_SAMPLE:])
    return len(zlib.compress(sample, 1)) < 0.9 * len(sample)


def _deflate_block(block: bytearray, primer: bytes | None, level: int, last: bool) -> list[bytes]:
    """Raw deflate of one block, primed with the previous block's tail; sync-flushed (byte-aligned) unless last.

    Blocks that do not compress are stored (level 0, see `_compresses`). The block is fed in slices so that zlib's
    output buffers, which it copies once more when they are done, stay a fraction of the block; how the input is
    sliced does not change the output.
    """
    level = level if _compresses(block) else 0
    if primer:
        compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, zlib.DEF_MEM_LEVEL, 0, primer)
    else:
        compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, zlib.DEF_MEM_LEVEL, 0)
    with memoryview(block) as view:
        parts = [compressor.compress(view[start : start + _SLICE]) for start in range(0, len(view), _SLICE)]
    parts.append(compressor.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH))
    return parts


class _ParallelDeflate:
    """Cuts the tar stream into 512 KiB blocks, deflates them on a thread pool and emits one gzip member in order."""

    def __init__(self, level: int, threads: int, output: _Output) -> None:
        self.level = level
        self.output = output
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="mlinfra-deflate") if threads > 1 else None
        self.window = threads
        self.in_flight: deque[Future[list[bytes]]] = deque()
        self.block = bytearray(_DEFLATE_BLOCK)
        self.filled = 0
        self.primer: bytes | None = None
        self.crc = 0
        self.length = 0
        # RFC 1952 header: deflate, no flags (no file name), mtime 0, XFL as gzip sets it, OS unknown.
        extra_flags = {1: 4, 9: 2}.get(level, 0)
        output.write(struct.pack("<BBBBIBB", 0x1F, 0x8B, 8, 0, 0, extra_flags, _GZIP_OS_UNKNOWN))

    def write(self, data: bytes) -> None:
        """Append bytes (headers, padding) to the tar stream."""
        view = memoryview(data)
        while view:
            count = min(_DEFLATE_BLOCK - self.filled, len(view))
            self.block[self.filled : self.filled + count] = view[:count]
            self.filled += count
            view = view[count:]
            if self.filled == _DEFLATE_BLOCK:
                self._submit(last=False)

    def read_from(self, readinto: Callable[[memoryview], int], size: int) -> int:
        """Append up to `size` bytes of a file, read straight into the block buffer; how many there were."""
        remaining = size
        while remaining:
            room = min(_DEFLATE_BLOCK - self.filled, remaining)
            with memoryview(self.block) as view:
                got = readinto(view[self.filled : self.filled + room])
            if not got:
                break
            self.filled += got
            remaining -= got
            if self.filled == _DEFLATE_BLOCK:
                self._submit(last=False)
        return size - remaining

    def finish(self) -> None:
        """Deflate the last block, drain the pool and write the gzip trailer (CRC-32 and size modulo 2**32)."""
        self._submit(last=True)
        while self.in_flight:
            self.output.write(*self.in_flight.popleft().result())
        self.output.write(struct.pack("<II", self.crc, self.length & 0xFFFFFFFF))

    def close(self) -> None:
        """Stop the workers (after a failure, without waiting for blocks nobody needs)."""
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def _submit(self, *, last: bool) -> None:
        block = self.block
        if self.filled < _DEFLATE_BLOCK:
            del block[self.filled :]
        self.crc = zlib.crc32(block, self.crc)
        self.length += len(block)
        primer, self.primer = self.primer, bytes(block[-_WINDOW:])
        self.block, self.filled = bytearray(_DEFLATE_BLOCK), 0
        if self.pool is None:
            self.output.write(*_deflate_block(block, primer, self.level, last))
            return
        while len(self.in_flight) >= self.window:
            self.output.write(*self.in_flight.popleft().result())
        self.in_flight.append(self.pool.submit(_deflate_block, block, primer, self.level, last))


class _Output:
    """Hashes and counts the archive's bytes on their way to the sink (without copying or holding them)."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, *parts: bytes) -> None:
        for data in parts:
            if data:
                self.sha256.update(data)
                self.size += len(data)
                self.sink(data)


def input_size(path: str | os.PathLike[str], skip: Callable[[str, bool], bool] | None = None) -> int:
    """The bytes a progress bar can count against: an archive's size, or the size of a directory's files.

    For a directory this approximates the packed size (model weights barely compress). Nothing is validated here
    and what cannot be read counts as 0: is_archive, pack and archives.inspect_archive report problems.
    """
    target = Path(path)
    if not target.is_dir():
        with contextlib.suppress(OSError):
            return target.stat().st_size
        return 0
    total = 0
    for parent, dirs, files in os.walk(target):
        prefix = os.path.relpath(parent, target).replace(os.sep, "/")
        prefix = "" if prefix == "." else prefix + "/"
        if skip is not None:
            dirs[:] = [d for d in dirs if not skip(prefix + d, True)]
            files = [f for f in files if not skip(prefix + f, False)]  # noqa: PLW2901 - filtered in place of the walk's
        for name in files:
            with contextlib.suppress(OSError):
                info = os.lstat(os.path.join(parent, name))  # noqa: PTH118 - os.walk hands out strings
                total += info.st_size if stat.S_ISREG(info.st_mode) else 0
    return total
