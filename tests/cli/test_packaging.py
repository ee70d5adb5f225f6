"""`mlinfra.models.packaging`: reproducible model.tar.gz packing and the safety checks on user-supplied archives."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import stat
import tarfile
import tracemalloc
from pathlib import Path

import pytest

from mlinfra.errors import BadInputError, MlinfraError
from mlinfra.models.archives import inspect_archive, stream_archive
from mlinfra.models.packaging import (
    CHUNK,
    Packed,
    _header,
    input_size,
    is_archive,
    pack,
)


def packed_bytes(directory: Path, **kwargs: int) -> tuple[bytes, Packed]:
    out = io.BytesIO()
    result = pack(directory, out.write, **kwargs)
    return out.getvalue(), result


def digest(directory: Path) -> str:
    return pack(directory, lambda _chunk: None).digest


@pytest.fixture
def model(tmp_path: Path) -> Path:
    """A small model directory: weights larger than one block, an executable handler, a nested and an empty dir."""
    root = tmp_path / "model"
    (root / "code").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "weights.bin").write_bytes(os.urandom(1000) * 2500)  # 2.5 MB: several deflate blocks
    (root / "code" / "inference.py").write_text("def model_fn(model_dir):\n    return None\n")
    (root / "code" / "inference.py").chmod(0o700)
    (root / "config.json").write_text('{"labels": 2}\n')
    return root


def single_line(exc: pytest.ExceptionInfo[BadInputError]) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


# --- reproducibility ------------------------------------------------------------------------------------------


def test_same_directory_gives_identical_bytes(model: Path) -> None:
    first, packed = packed_bytes(model)
    second, again = packed_bytes(model)
    assert first == second
    assert packed == again


def test_digest_ignores_times_group_bits_and_location(model: Path, tmp_path: Path) -> None:
    before = digest(model)
    for path in [model, *model.rglob("*")]:
        os.utime(path, (1_000_000, 2_000_000))
    (model / "config.json").chmod(0o664)
    (model / "code" / "inference.py").chmod(0o750)
    assert digest(model) == before
    copy = tmp_path / "elsewhere" / "copy-of-model"
    shutil.copytree(model, copy)
    assert digest(copy) == before


def test_one_changed_byte_or_an_added_empty_file_changes_the_digest(model: Path) -> None:
    before = digest(model)
    weights = model / "weights.bin"
    data = bytearray(weights.read_bytes())
    data[1_234_567] ^= 1
    weights.write_bytes(bytes(data))
    changed = digest(model)
    assert changed != before
    (model / "empty" / "README").touch()
    assert digest(model) not in {before, changed}


def test_an_execute_bit_changes_the_digest(model: Path) -> None:
    before = digest(model)
    (model / "config.json").chmod(0o744)
    assert digest(model) != before


def test_thread_count_and_level_default_do_not_matter_but_the_level_does(model: Path) -> None:
    one, _ = packed_bytes(model, threads=1)
    three, _ = packed_bytes(model, threads=3)
    assert one == three
    level9, _ = packed_bytes(model, level=9)
    assert level9 != one


# --- what is produced -------------------------------------------------------------------------------------------


def test_digest_and_size_describe_the_bytes_handed_to_the_sink(model: Path) -> None:
    data, packed = packed_bytes(model)
    assert packed.digest == "sha256:" + hashlib.sha256(data).hexdigest()
    assert packed.size == len(data)
    assert packed.files == 3


def test_archive_holds_sorted_normalised_members(model: Path, tmp_path: Path) -> None:
    data, _ = packed_bytes(model)
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(data)
    with tarfile.open(archive, "r:gz") as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == ["code", "code/inference.py", "config.json", "empty", "weights.bin"]
        assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, 0, "", "")}
        assert {m.name: stat.S_IMODE(m.mode) for m in members} == {
            "code": 0o755,
            "code/inference.py": 0o755,
            "config.json": 0o644,
            "empty": 0o755,
            "weights.bin": 0o644,
        }
        weights = tar.extractfile("weights.bin")
        assert weights is not None
        assert weights.read() == (model / "weights.bin").read_bytes()
    with gzip.open(archive) as unzipped:  # the gzip CRC and length check out
        assert len(unzipped.read()) % (20 * 512) == 0


def test_gzip_header_has_no_time_and_no_file_name(model: Path) -> None:
    data, _ = packed_bytes(model)
    assert data[:3] == b"\x1f\x8b\x08"
    assert data[3] == 0  # no FNAME, FCOMMENT or other flag
    assert data[4:8] == b"\0\0\0\0"  # mtime


def test_paths_sort_as_whole_posix_paths(tmp_path: Path) -> None:
    root = tmp_path / "m"
    (root / "a").mkdir(parents=True)
    for name in ["a/x", "a-b", "a.txt", "B", "b"]:
        (root / name).write_text(name)
    data, _ = packed_bytes(root)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        assert tar.getnames() == ["B", "a-b", "a.txt", "a", "a/x", "b"]


def test_long_names_and_non_ascii_names_round_trip(tmp_path: Path) -> None:
    root = tmp_path / "m"
    deep = root / ("d" * 120) / "é"
    deep.mkdir(parents=True)
    (deep / ("f" * 150)).write_bytes(b"x")
    data, _ = packed_bytes(root)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz", encoding="utf-8") as tar:
        assert tar.getnames()[-1] == f"{'d' * 120}/é/{'f' * 150}"


def test_sizes_beyond_eight_gib_use_base_256() -> None:
    size = 9 << 30
    info = tarfile.TarInfo.frombuf(_header(b"big.bin", 0o644, size, tarfile.REGTYPE), "utf-8", "strict")
    assert (info.name, info.size, info.mode) == ("big.bin", size, 0o644)


def test_sink_gets_bounded_pieces_it_may_keep(model: Path) -> None:
    (model / "weights.bin").write_bytes(os.urandom(3 * CHUNK))  # incompressible: about 3 MiB of output
    chunks: list[bytes] = []
    pack(model, chunks.append)
    assert sum(map(len, chunks)) > 3 * CHUNK
    assert max(map(len, chunks)) < CHUNK // 2  # a slice of a deflate block, plus what zlib had buffered
    assert all(type(chunk) is bytes for chunk in chunks)


def test_errors_raised_by_the_sink_pass_through(model: Path) -> None:
    def full_disk(_chunk: bytes) -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left on device") as exc:
        pack(model, full_disk)
    assert type(exc.value) is OSError


# --- refused directories ------------------------------------------------------------------------------------------


def test_refuses_a_symlink(model: Path) -> None:
    link = model / "code" / "latest.bin"
    link.symlink_to(model / "weights.bin")
    with pytest.raises(BadInputError) as exc:
        pack(model, lambda _chunk: None)
    assert single_line(exc).startswith(f"{link}: is a symlink; a model.tar.gz must be self-contained")


def test_refuses_a_fifo(model: Path) -> None:
    fifo = model / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(BadInputError) as exc:
        pack(model, lambda _chunk: None)
    assert single_line(exc) == f"{fifo}: is a FIFO, not a regular file; remove it from the model directory"


def test_refuses_a_hard_link(model: Path) -> None:
    os.link(model / "config.json", model / "code" / "config.json")
    with pytest.raises(BadInputError, match=r"is a hard link \(2 names for one file\)") as exc:
        pack(model, lambda _chunk: None)
    assert single_line(exc).startswith(str(model))


@pytest.mark.parametrize("subdirs", [[], ["only/empty/dirs"]])
def test_refuses_a_directory_without_files(tmp_path: Path, subdirs: list[str]) -> None:
    root = tmp_path / "model"
    root.mkdir()
    for sub in subdirs:
        (root / sub).mkdir(parents=True)
    with pytest.raises(BadInputError) as exc:
        pack(root, lambda _chunk: None)
    assert single_line(exc) == f"{root}: the model directory holds no files; put the model files in it and retry"


def test_refuses_a_missing_directory_and_a_bad_level(tmp_path: Path, model: Path) -> None:
    with pytest.raises(BadInputError, match="is not a directory"):
        pack(tmp_path / "missing", lambda _chunk: None)
    with pytest.raises(BadInputError, match="compression level must be between 1 and 9, got 0"):
        pack(model, lambda _chunk: None, level=0)


def test_unreadable_file_is_bad_input(model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = model / "config.json"
    real_open = os.open

    def denying_open(path: str | os.PathLike[str], flags: int, *args: int, **kwargs: int) -> int:
        if Path(path) == secret:  # as `chmod 0` would for anyone but root
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", denying_open)
    with pytest.raises(BadInputError) as exc:
        pack(model, lambda _chunk: None)
    assert single_line(exc) == f"{secret}: permission denied; make it readable (chmod u+r) or pack another directory"


def test_a_file_that_shrinks_while_it_is_packed_fails(tmp_path: Path) -> None:
    root = tmp_path / "model"
    root.mkdir()
    weights = root / "weights.bin"
    weights.write_bytes(os.urandom(3 * CHUNK))
    calls = 0

    def truncating_sink(_chunk: bytes) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:  # after the gzip header and the first block: the file is being read
            os.truncate(weights, CHUNK)

    with pytest.raises(MlinfraError) as exc:
        pack(root, truncating_sink, threads=1)
    assert str(exc.value) == f"{weights}: changed while it was being packed; pack again once nothing writes to it"


@pytest.mark.parametrize("threads", [1, 4])
def test_memory_stays_bounded_for_a_large_file(tmp_path: Path, threads: int) -> None:
    root = tmp_path / "big"
    root.mkdir()
    block = os.urandom(CHUNK)
    with (root / "weights.bin").open("wb") as handle:
        for _ in range(64):
            handle.write(block)
    del block
    tracemalloc.start()
    try:
        packed = pack(root, lambda _chunk: None, threads=threads)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert packed.size > 64 * CHUNK
    assert peak < 8 * CHUNK, f"peak {peak / CHUNK:.1f} MiB"


# --- inspecting archives --------------------------------------------------------------------------------------


def build_archive(path: Path, *members: tuple[tarfile.TarInfo, bytes | None]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, (b"payload" if kind == tarfile.REGTYPE else None)


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        (member("/etc/cron.d/evil"), "has an absolute path"),
        (member("../evil"), "has a '..' component"),
        (member("a/../../evil"), "has a '..' component"),
        (member("code/link", tarfile.SYMTYPE, "/etc/passwd"), "is a symlink"),
        (member("code/hard", tarfile.LNKTYPE, "model.bin"), "is a hard link"),
        (member("dev/tty", tarfile.CHRTYPE), "is a character device"),
        (member("dev/sda", tarfile.BLKTYPE), "is a block device"),
        (member("pipe", tarfile.FIFOTYPE), "is a FIFO"),
    ],
)
def test_inspect_refuses_unsafe_members(tmp_path: Path, bad: tuple[tarfile.TarInfo, bytes | None], why: str) -> None:
    archive = build_archive(tmp_path / "model.tar.gz", member("model.bin"), bad)
    with pytest.raises(BadInputError) as exc:
        inspect_archive(archive)
    assert single_line(exc) == (
        f"{archive}: member {bad[0].name!r} {why}; rebuild the archive from a directory of plain files, "
        "or pass that directory and let mlinfra pack it"
    )


def test_inspect_refuses_a_text_file_an_uncompressed_tar_and_an_empty_file(tmp_path: Path) -> None:
    text = tmp_path / "notes.tar.gz"
    text.write_text("these are not the weights you are looking for\n")
    plain = tmp_path / "plain.tar.gz"
    info = tarfile.TarInfo("model.bin")
    info.size = 7
    with tarfile.open(plain, "w") as tar:
        tar.addfile(info, io.BytesIO(b"payload"))
    empty = tmp_path / "empty.tgz"
    empty.touch()
    for archive in (text, plain, empty):
        with pytest.raises(BadInputError) as exc:
            inspect_archive(archive)
        assert single_line(exc).startswith(f"{archive}: not a gzip-compressed tar, or a corrupt or truncated one (")


@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_inspect_refuses_a_truncated_archive(model: Path, tmp_path: Path, keep: float) -> None:
    data, _ = packed_bytes(model)
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(BadInputError, match="not a gzip-compressed tar, or a corrupt or truncated one"):
        inspect_archive(archive)


def test_inspect_refuses_a_corrupted_byte_and_trailing_garbage(model: Path, tmp_path: Path) -> None:
    data, _ = packed_bytes(model)
    archive = tmp_path / "model.tar.gz"
    corrupt = bytearray(data)
    corrupt[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(corrupt))
    with pytest.raises(BadInputError, match="corrupt or truncated"):
        inspect_archive(archive)
    archive.write_bytes(data + b"garbage")
    with pytest.raises(BadInputError, match=r"\(data follows the gzip stream\)"):
        inspect_archive(archive)


def test_inspect_refuses_an_archive_without_files(tmp_path: Path) -> None:
    archive = build_archive(tmp_path / "model.tar.gz", member("code", tarfile.DIRTYPE))
    with pytest.raises(BadInputError, match="the archive holds no files"):
        inspect_archive(archive)


def test_inspect_accepts_a_good_archive_and_returns_its_sha256(tmp_path: Path) -> None:
    archive = build_archive(
        tmp_path / "model.tar.gz",
        member("./", tarfile.DIRTYPE),
        member("./code", tarfile.DIRTYPE),
        member("./model.bin"),
    )
    data = archive.read_bytes()
    assert inspect_archive(archive) == Packed(
        digest="sha256:" + hashlib.sha256(data).hexdigest(), size=len(data), files=1
    )


def test_inspect_agrees_with_pack_and_accepts_zero_padding_and_concatenated_members(
    model: Path, tmp_path: Path
) -> None:
    data, packed = packed_bytes(model)
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(data)
    assert inspect_archive(archive) == packed
    archive.write_bytes(data + b"\0" * 1000)
    assert inspect_archive(archive).size == len(data) + 1000
    # gzip -c a b > ab.gz: the tar stream split across two gzip members is still one valid archive.
    raw = gzip.decompress(data)
    archive.write_bytes(gzip.compress(raw[:700_000]) + gzip.compress(raw[700_000:]))
    assert inspect_archive(archive).files == 3


def test_stream_archive_hands_over_the_file_as_it_validates_it(model: Path, tmp_path: Path) -> None:
    data, packed = packed_bytes(model)
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(data)
    chunks: list[bytes] = []
    assert stream_archive(archive, chunks.append) == packed
    assert b"".join(chunks) == data
    assert max(map(len, chunks)) <= CHUNK


# --- choosing the input -------------------------------------------------------------------------------------------


def test_is_archive(tmp_path: Path, model: Path) -> None:
    for name in ("model.tar.gz", "MODEL.TGZ"):
        (tmp_path / name).write_bytes(b"")
        assert is_archive(tmp_path / name) is True
    assert is_archive(model) is False
    other = tmp_path / "model.zip"
    other.write_bytes(b"")
    with pytest.raises(BadInputError) as exc:
        is_archive(other)
    assert single_line(exc).startswith(f"{other} is neither a model directory nor a model.tar.gz; ")
    for missing in (tmp_path / "missing.tar.gz", tmp_path / "no-such-dir"):
        with pytest.raises(BadInputError) as exc:
            is_archive(missing)
        assert single_line(exc) == f"{missing} does not exist; pass the model directory or its model.tar.gz"


def test_input_size(tmp_path: Path, model: Path) -> None:
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(b"x" * 1234)
    assert input_size(archive) == 1234
    assert input_size(model) == sum(p.stat().st_size for p in model.rglob("*") if p.is_file())
