"""The drift job's Lambda code package: mlinfra's own drift engine plus its wheels for the Lambda platform.

Built by the Pulumi program on every render, deterministically: the same sources and the same locked wheels give
the same bytes (entries sorted, every timestamp 1980-01-01, fixed permissions, one compression level), so a
render that changes nothing uploads nothing. The wheels come from PyPI through pip (`--require-hashes`,
`--only-binary=:all:` for the target's Python and platform, no resolver: `drift_job_requirements.txt` lists every
package) into a cache, and the finished zip is cached by a key over everything that goes into it, so only the first
render on a machine downloads (about 55 MB) and zips (a few seconds).

Why bundled wheels and not an AWS-managed layer: AWS publishes no layer with scipy for current runtimes (the AWS SDK
for pandas layer has numpy but not scipy, and its ARN is per region and version), and the job must run exactly the
numpy/scipy the tests run. The package (48 MB zipped, 156 MB unpacked) sits at the edge of Lambda's 50 MB limit for
a direct upload, which the next numpy or scipy release could cross, so the program puts it in the registry bucket
and the function points at it (the limit through S3 is on the unpacked size); Lambda's 250 MB limit for the
unpacked code is checked here. Test directories of numpy and scipy are left out (25 MB unpacked).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

BUILDER_VERSION = "1"  # bump when the layout of the zip changes, so cached packages are rebuilt
REQUIREMENTS = Path(__file__).with_name("drift_job_requirements.txt")
HANDLER = "mlinfra_drift.job.handler"
# Lambda's documented quotas: 50 MB for a zip uploaded directly, 250 MB unpacked for the function and its layers.
DIRECT_UPLOAD_MAX_BYTES = 50 * 1024 * 1024
UNPACKED_MAX_BYTES = 250 * 1024 * 1024
# What the job imports from the project: the drift engine and the report template (nothing of the CLI or program).
PROJECT_PACKAGES = ("mlinfra_drift",)
TEMPLATE_PACKAGE = "mlinfra_templates"
TEMPLATE_FILES = ("__init__.py", "reports")
# Left out of the wheels: their own test suites, never imported at run time.
STRIPPED_DIRS = frozenset({"tests"})
STRIPPED_TOP = frozenset({"numpy", "scipy"})
_EPOCH = (1980, 1, 1, 0, 0, 0)
_COMPRESSION_LEVEL = 6


class PackageBuildError(RuntimeError):
    """Raised when the drift job's package cannot be built (no wheels, a hash mismatch, a package over limits)."""


@dataclass(frozen=True)
class Target:
    """The platform a package is built for: a CPython version and a Linux architecture."""

    python: str = "3.13"
    arch: str = "x86_64"

    @property
    def runtime(self) -> str:
        """The Lambda runtime identifier, e.g. python3.13."""
        return f"python{self.python}"

    @property
    def platforms(self) -> tuple[str, ...]:
        """Pip platform tags: pip does not widen an explicit --platform, so every accepted manylinux tag is named."""
        return (*(f"manylinux_2_{minor}_{self.arch}" for minor in (28, 27, 17)), f"manylinux2014_{self.arch}")


LAMBDA_TARGET = Target()


def host_target() -> Target:
    """The running interpreter's target (tests build for it to import the package in a clean interpreter)."""
    return Target(python=f"{sys.version_info.major}.{sys.version_info.minor}", arch=os.uname().machine)


@dataclass(frozen=True)
class JobPackage:
    """A built package: the zip on disk, its SHA-256 and sizes."""

    path: Path
    sha256: str
    size: int
    unpacked_size: int
    target: Target

    @property
    def key_name(self) -> str:
        """Content-addressed object name, e.g. drift-job-<sha256>.zip."""
        return f"drift-job-{self.sha256}.zip"


def cache_dir() -> Path:
    """Where wheels and built packages are kept: $MLINFRA_CACHE_DIR, else $XDG_CACHE_HOME/mlinfra, else ~/.cache."""
    explicit = os.environ.get("MLINFRA_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mlinfra"


def _package_dir(name: str) -> Path:
    module = __import__(name)
    return Path(module.__file__).parent  # type: ignore[arg-type]


def project_files() -> list[tuple[str, Path]]:
    """(archive name, source path) of every project file the package holds, sorted by archive name."""
    found: list[tuple[str, Path]] = []
    for package in PROJECT_PACKAGES:
        root = _package_dir(package)
        found += [(f"{package}/{p.relative_to(root).as_posix()}", p) for p in _source_files(root)]
    templates = _package_dir(TEMPLATE_PACKAGE)
    for entry in TEMPLATE_FILES:
        path = templates / entry
        files = _source_files(path) if path.is_dir() else [path]
        found += [(f"{TEMPLATE_PACKAGE}/{p.relative_to(templates).as_posix()}", p) for p in files]
    return sorted(found)


def _source_files(root: Path) -> list[Path]:
    return sorted(
        p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix not in {".pyc", ".pyo"}
    )


def cache_key(target: Target) -> str:
    """A digest of everything that goes into the package: builder, target, locked wheels and project sources."""
    digest = hashlib.sha256()
    for part in (BUILDER_VERSION, target.python, target.arch, REQUIREMENTS.read_text()):
        digest.update(part.encode() + b"\0")
    for name, path in project_files():
        digest.update(name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def download_wheels(target: Target, into: Path) -> list[Path]:
    """Fetch the locked wheels for `target` with pip (hash-checked); return them sorted. Cached in `into`."""
    into.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--disable-pip-version-check",
        "--no-deps",
        "--only-binary=:all:",
        "--require-hashes",
        "--implementation",
        "cp",
        "--python-version",
        target.python,
        *[arg for platform in target.platforms for arg in ("--platform", platform)],
        "--requirement",
        str(REQUIREMENTS),
        "--dest",
        str(into),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")] or [result.stderr.strip()]
        raise PackageBuildError(
            f"cannot fetch the drift job's wheels for {target.runtime} {target.arch} from PyPI: {errors[-1][:300]} "
            f"(pip needs network access to PyPI once; wheels are then cached in {into})"
        )
    wanted = _locked_names()
    wheels = sorted(p for p in into.glob("*.whl") if _wheel_matches(p.name, target) and _dist_name(p.name) in wanted)
    missing = wanted - {_dist_name(p.name) for p in wheels}
    if missing:
        raise PackageBuildError(f"pip left no wheel for {', '.join(sorted(missing))} in {into}")
    return wheels


def _locked_names() -> set[str]:
    names = set()
    for line in REQUIREMENTS.read_text().splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            names.add(line.split("==")[0].strip().lower().replace("_", "-"))
    return names


def _dist_name(wheel: str) -> str:
    return wheel.split("-", maxsplit=1)[0].lower().replace("_", "-")


def _wheel_matches(wheel: str, target: Target) -> bool:
    python_tag = wheel.removesuffix(".whl").split("-")[-3]
    abi = "cp" + target.python.replace(".", "")
    return python_tag in {"py3", abi} or python_tag.startswith("py3")


def _wheel_entries(wheel: Path) -> Iterator[tuple[str, bytes, bool]]:
    """(archive name, bytes, executable) of a wheel's files as installed into site-packages, tests left out."""
    with zipfile.ZipFile(wheel) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            name = info.filename
            parts = PurePosixPath(name).parts
            if parts[0].endswith(".data"):
                # purelib/platlib land in site-packages; scripts and headers have no place in a Lambda package.
                if len(parts) < 3 or parts[1] not in {"purelib", "platlib"}:
                    continue
                name = "/".join(parts[2:])
                parts = PurePosixPath(name).parts
            if parts[0] in STRIPPED_TOP and STRIPPED_DIRS.intersection(parts[1:-1]):
                continue
            if "__pycache__" in parts:
                continue
            executable = bool((info.external_attr >> 16) & 0o111) or name.endswith(".so") or ".so." in name
            yield name, archive.read(info), executable


def _zip_info(name: str, executable: bool) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3  # Unix, so the permission bits below are honoured when Lambda unpacks
    info.external_attr = ((0o100755 if executable else 0o100644) & 0xFFFF) << 16
    return info


def write_zip(entries: dict[str, tuple[bytes, bool]], path: Path) -> int:
    """Write `entries` (name -> (bytes, executable)) to `path` deterministically; return the unpacked size."""
    unpacked = 0
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=_COMPRESSION_LEVEL) as archive:
        for name in sorted(entries):
            data, executable = entries[name]
            archive.writestr(_zip_info(name, executable), data, compresslevel=_COMPRESSION_LEVEL)
            unpacked += len(data)
    return unpacked


def assemble(target: Target, root: Path) -> dict[str, tuple[bytes, bool]]:
    """Every file of the package (name -> (bytes, executable)): the locked wheels' contents and the project's files."""
    wheels = download_wheels(
        target, root / "drift-job" / "wheels" / f"cp{target.python.replace('.', '')}-{target.arch}"
    )
    entries: dict[str, tuple[bytes, bool]] = {}
    for wheel in wheels:
        for name, data, executable in _wheel_entries(wheel):
            entries[name] = (data, executable)
    for name, path in project_files():
        if name in entries:
            raise PackageBuildError(f"{name} is both a project file and in a wheel")
        entries[name] = (path.read_bytes(), False)
    return entries


def build(target: Target = LAMBDA_TARGET, *, cache: Path | None = None) -> JobPackage:
    """Build (or reuse from the cache) the drift job's package for `target`."""
    root = cache or cache_dir()
    key = cache_key(target)
    packages = root / "drift-job" / "packages"
    zip_path = packages / f"{key}.zip"
    meta_path = packages / f"{key}.meta"
    if zip_path.is_file() and meta_path.is_file():
        return _cached(zip_path, meta_path, target)
    packages.mkdir(parents=True, exist_ok=True)
    # One builder at a time per cache (parallel test workers, two renders): pip must not write a wheel twice at once.
    with (packages / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if zip_path.is_file() and meta_path.is_file():
            return _cached(zip_path, meta_path, target)
        return _build(target, root, zip_path, meta_path)


def _cached(zip_path: Path, meta_path: Path, target: Target) -> JobPackage:
    cached_sha256, size, unpacked_size = meta_path.read_text().split()
    return JobPackage(zip_path, cached_sha256, int(size), int(unpacked_size), target)


def _build(target: Target, root: Path, zip_path: Path, meta_path: Path) -> JobPackage:
    packages = zip_path.parent
    entries = assemble(target, root)
    packages.mkdir(parents=True, exist_ok=True)
    # Written beside the target and renamed into place, so concurrent renders never see half a zip.
    with tempfile.NamedTemporaryFile(dir=packages, suffix=".tmp", delete=False) as handle:
        temporary = Path(handle.name)
    try:
        unpacked = write_zip(entries, temporary)
        if unpacked > UNPACKED_MAX_BYTES:
            raise PackageBuildError(
                f"the drift job's package unpacks to {unpacked / 2**20:.0f} MiB, over Lambda's "
                f"{UNPACKED_MAX_BYTES / 2**20:.0f} MiB limit (check {REQUIREMENTS.name} for a new heavy dependency)"
            )
        data = temporary.read_bytes()
        sha256 = hashlib.sha256(data).hexdigest()
        temporary.replace(zip_path)
    finally:
        temporary.unlink(missing_ok=True)
    meta_path.write_text(f"{sha256} {len(data)} {unpacked}\n")
    return JobPackage(zip_path, sha256, len(data), unpacked, target)
