"""`pack` of a 256 MiB model directory against tarfile + gzip at the same level (limit 1.15x), and sha256 alone.

The weights are random bytes: incompressible, like real weights (float weights deflate by ~7%), and the worst case
for deflate's speed. `pack` also normalises headers and hashes its output, but it stores blocks that do not
compress (see `packaging._compresses`) where the tarfile baseline deflates everything, and it compresses on up to
4 threads; sha256 of the raw files is the floor any packer pays for the digest.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import tempfile
from pathlib import Path

from bench.common import median_seconds, report

MIB = 1 << 20
SHARDS_MIB = (64, 64, 64, 63)
REPEAT = 3


def _make_model(root: Path) -> int:
    """A 256 MiB model directory: four weight shards of random bytes, a config and a handler; its size in bytes."""
    (root / "code").mkdir(parents=True)
    for index, mib in enumerate(SHARDS_MIB, start=1):
        with (root / f"model-{index:05d}-of-{len(SHARDS_MIB):05d}.safetensors").open("wb") as handle:
            for _ in range(mib):
                handle.write(os.urandom(MIB))
    (root / "config.json").write_text('{"architectures": ["Bench"], "hidden_size": 4096}\n' * 1000)
    (root / "code" / "inference.py").write_text("def model_fn(model_dir):\n    return model_dir\n" * 200)
    return sum(path.stat().st_size for path in root.rglob("*") if path.is_file())


def _tarfile_gzip(root: Path, level: int) -> None:
    with tarfile.open(os.devnull, "w:gz", compresslevel=level) as tar:
        tar.add(root, arcname=".")


def _sha256(root: Path) -> None:
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest = hashlib.sha256()
        with path.open("rb", buffering=0) as handle:
            while chunk := handle.read(MIB):
                digest.update(chunk)


def main() -> bool:
    from mlinfra.models.packaging import DEFAULT_LEVEL, pack

    with tempfile.TemporaryDirectory(prefix="mlinfra-bench-pack-") as tmp:
        root = Path(tmp) / "model"
        total = _make_model(root)

        def mbps(seconds: float) -> str:
            return f"{total / seconds / 1e6:.0f} MB/s"

        packed_size = pack(root, lambda _chunk: None).size  # also warms the page cache
        baseline = median_seconds(lambda: _tarfile_gzip(root, DEFAULT_LEVEL), REPEAT)
        hashing = median_seconds(lambda: _sha256(root), REPEAT)
        single = median_seconds(lambda: pack(root, lambda _chunk: None, threads=1), REPEAT)
        default = median_seconds(lambda: pack(root, lambda _chunk: None), REPEAT)

    print(
        f"model directory: {total / MIB:.0f} MiB, packed at level {DEFAULT_LEVEL}: {packed_size / MIB:.1f} MiB; "
        f"{os.cpu_count()} CPUs"
    )
    print(
        f"throughput: pack {mbps(default)}, pack (1 thread) {mbps(single)}, "
        f"tarfile+gzip {mbps(baseline)}, sha256 of the files {mbps(hashing)}"
    )
    print(f"sha256 of the files alone: {hashing:.3f}s, {hashing / default:.0%} of pack's time")
    ok = report(f"pack, 1 thread (median of {REPEAT})", single, "tarfile+gzip to /dev/null", baseline, 1.15)
    return report(f"pack (median of {REPEAT})", default, "tarfile+gzip to /dev/null", baseline, 1.15) and ok


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
