"""The library version a model file was written with, and the framework image that can load it.

A framework container loads the model with its own library: a scikit-learn model pickled by 1.9 and unpickled by the
1.2 image fails at start-up (or, worse, loads and predicts differently), an XGBoost model saved by 3.2 may not load in
1.7. Both libraries record their version in what they save, and it is read here without loading anything:

- scikit-learn: every fitted estimator pickles `_sklearn_version` with its state; the pickle stream (a joblib or
  pickle file, uncompressed) is scanned for it, nothing is unpickled.
- XGBoost: a model saved as JSON holds `"version": [major, minor, patch]` at its top level.
- PyTorch: a TorchScript archive records only its format version, not torch's: `--framework-version` decides.

SageMaker's image versions carry the library's major.minor (`1.9-0` is scikit-learn 1.9, `3.2-0` XGBoost 3.2,
`2.6.0` PyTorch 2.6): an image fits a model when they agree.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from mlinfra.errors import BadInputError

# `_sklearn_version` followed, within a few pickle opcode bytes (memo, string opcode and length), by the version.
_SKLEARN = re.compile(rb"_sklearn_version.{0,12}?(\d+\.\d+(?:\.\d+)?(?:(?:a|b|rc|\.post|\.dev)\d+)?)", re.DOTALL)
_PICKLES = (".joblib", ".pkl", ".pickle")
_CHUNK = 1 << 20
LIBRARY_TITLES = {"sklearn": "scikit-learn", "xgboost": "XGBoost", "pytorch": "PyTorch"}

Opener = Callable[[], IO[bytes]]


@dataclass(frozen=True)
class Recorded:
    """A library version found in a model file: which file, which version."""

    file: str
    version: str

    @property
    def major_minor(self) -> str:
        return ".".join(self.version.split(".")[:2])


def _scan(stream: IO[bytes], pattern: re.Pattern[bytes]) -> str | None:
    """The first match of `pattern` in a stream read in chunks (matches may straddle two chunks)."""
    tail = b""
    while chunk := stream.read(_CHUNK):
        window = tail + chunk
        found = pattern.search(window)
        if found is not None:
            return found.group(1).decode("ascii")
        tail = window[-64:]
    return None


def _sklearn(files: Iterable[tuple[str, Opener]]) -> Iterator[Recorded]:
    for name, opener in files:
        if name.lower().endswith(_PICKLES):
            with opener() as stream:
                version = _scan(stream, _SKLEARN)
            if version is not None:
                yield Recorded(name, version)


def _xgboost(files: Iterable[tuple[str, Opener]]) -> Iterator[Recorded]:
    for name, opener in files:
        if not name.lower().endswith(".json") or name.startswith("code/"):
            continue
        try:
            with opener() as stream:
                document = json.load(stream)
        except (ValueError, UnicodeDecodeError):
            continue
        version = document.get("version") if isinstance(document, dict) and "learner" in document else None
        if isinstance(version, list) and len(version) >= 2 and all(isinstance(v, int) for v in version):
            yield Recorded(name, ".".join(str(v) for v in version))


_READERS: dict[str, Callable[[Iterable[tuple[str, Opener]]], Iterator[Recorded]]] = {
    "sklearn": _sklearn,
    "xgboost": _xgboost,
}


def recorded_version(framework: str, files: Iterable[tuple[str, Opener]]) -> Recorded | None:
    """The library version the model's files were written with (None: the framework records none, or no file).

    Two files written by different minor versions are refused: no single image can load both.
    """
    reader = _READERS.get(framework)
    return None if reader is None else _consistent(framework, list(reader(files)))


def _consistent(framework: str, found: list[Recorded]) -> Recorded | None:
    """The one library version of the files found (None for none); refused when they disagree in major.minor."""
    if not found:
        return None
    minors = {r.major_minor for r in found}
    if len(minors) > 1:
        listed = ", ".join(f"{r.file} ({r.version})" for r in found)
        raise BadInputError(
            f"the model's files were written by different {LIBRARY_TITLES[framework]} versions ({listed}); no one "
            "image loads them all: save them again with one version"
        )
    return found[0]


def image_library(version: str) -> str:
    """The library major.minor an image version stands for (`1.9-0` -> 1.9, `2.6.0` -> 2.6, `0.90-1` -> 0.90)."""
    numbers = re.match(r"(\d+)\.(\d+)", version)
    return f"{numbers.group(1)}.{numbers.group(2)}" if numbers else version


def _numeric(major_minor: str) -> tuple[int, int]:
    major, _, minor = major_minor.partition(".")
    return int(major), int(minor or 0)


def fitting_images(major_minor: str, supported: list[str]) -> list[str]:
    """The image versions (oldest first) whose library is `major_minor`."""
    return [v for v in supported if _numeric(image_library(v)) == _numeric(major_minor)]


def nearest_images(major_minor: str, supported: list[str]) -> list[str]:
    """The newest image version of the closest library version on each side, when none fits."""
    wanted = _numeric(major_minor)
    below = [v for v in supported if _numeric(image_library(v)) < wanted]
    above = [v for v in supported if _numeric(image_library(v)) > wanted]
    return [*(below[-1:]), *(above[:1])]


def choose_version(
    framework: str, recorded: Recorded | None, requested: str | None, supported: list[str], default: str
) -> str:
    """The image version to register with: the one asked for if it fits the model, else the newest that fits.

    BadInputError (exit 2) names both versions and the image to use when the asked-for image's library differs in
    major.minor from the one that wrote the model, or when no image fits it.
    """
    title = LIBRARY_TITLES.get(framework, framework)
    if recorded is None:
        return requested if requested is not None else default
    fitting = fitting_images(recorded.major_minor, supported)
    # Prefer the plain version over a variant of it (1.4-2 over 1.4-2-py312) among the same build.
    best = fitting[-1] if fitting else None
    if requested is not None and _numeric(image_library(requested)) == _numeric(recorded.major_minor):
        return requested
    if best is None:
        near = " or ".join(f"{v} ({title} {image_library(v)})" for v in nearest_images(recorded.major_minor, supported))
        raise BadInputError(
            f"{recorded.file} was written by {title} {recorded.version}, and SageMaker has no {title} "
            f"{recorded.major_minor} image; retrain and save it with the library of an image that exists"
            + (f", nearest: {near}" if near else "")
        )
    if requested is not None:
        raise BadInputError(
            f"{recorded.file} was written by {title} {recorded.version}, but --framework-version {requested} is "
            f"{title} {image_library(requested)}: the container could not load it; use --framework-version {best} "
            "(or leave it out: register picks it)"
        )
    return best


@dataclass(frozen=True)
class ImageChoice:
    """The image a model registers with, and why: the version asked for or picked, the library found in the files."""

    image: str
    framework_version: str | None
    library: Recorded | None

    def to_json(self) -> dict[str, str | None]:
        return {
            "image": self.image,
            "frameworkVersion": self.framework_version,
            "libraryVersion": self.library.version if self.library else None,
            "libraryFile": self.library.file if self.library else None,
        }


def _wheel_metadata(stream: IO[bytes]) -> str:
    """The METADATA of a wheel (a zip; read whole, wheels vendored for a handler are small)."""
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(stream.read())) as wheel:
            name = next((n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")), None)
            return wheel.read(name).decode("utf-8", errors="replace") if name else ""
    except zipfile.BadZipFile:
        return ""


def _opener(path: Path) -> Opener:
    def open_file() -> IO[bytes]:
        return path.open("rb")

    return open_file


def _directory_files(root: Path, skip: Callable[[str, bool], bool] | None) -> Iterator[tuple[str, Opener]]:
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if path.is_file() and not path.is_symlink() and not (skip and skip(relative, False)):
            yield relative, _opener(path)


def _archive_files(archive: Path) -> Iterator[tuple[str, Opener]]:
    """The regular members of a model.tar.gz, each readable while the stream is at it (one pass, nothing extracted)."""
    try:
        with tarfile.open(archive, mode="r|gz") as tar:
            for info in tar:
                if not info.isreg():
                    continue
                name = info.name.removeprefix("./")

                def opener(info: tarfile.TarInfo = info) -> IO[bytes]:
                    extracted = tar.extractfile(info)
                    return extracted if extracted is not None else io.BytesIO()

                yield name, opener
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BadInputError(f"{archive}: not a readable gzip-compressed tar ({exc})") from None


def model_files(path: Path, *, archive: bool, skip: Callable[[str, bool], bool] | None) -> Iterator[tuple[str, Opener]]:
    """The files of a model directory (as register packs them) or archive, with a way to read each."""
    return _archive_files(path) if archive else _directory_files(path, skip)


def choose_image(
    path: Path,
    framework: str | None,
    framework_version: str | None,
    image: str | None,
    region: str,
    *,
    archive: bool,
    skip: Callable[[str, bool], bool] | None = None,
    vendor: bool = False,
) -> ImageChoice:
    """The image `register` (and `register --dry-run`) pins, checked against the model before anything is uploaded.

    --image is taken as given. With --framework, the library version the model was written with decides: the
    asked-for --framework-version must agree with it in major.minor, and without one the newest fitting image is
    picked (the framework's default when the files record no version). Then the container's offline start-up
    install is checked (mlinfra.models.startup); with `vendor` (a directory only), the wheels it lacks are first
    downloaded into code/wheels/ for the chosen image.
    """
    from mlinfra.models import frameworks, images, startup

    if image is not None:
        images.check_uri(image)
    if image is not None and framework is None:
        return ImageChoice(image, framework_version, None)
    if framework is None:
        raise BadInputError("give --framework (its image is picked to fit the model) or --image")
    if vendor and archive:
        raise BadInputError(f"{path}: --vendor writes wheels into a model directory's code/; pass the directory")
    code = f"{frameworks.HANDLER_DIRECTORY}/"
    reader = _READERS.get(framework)
    found: list[Recorded] = []
    install = _Install()
    for name, opener in model_files(path, archive=archive, skip=skip):
        if not install.take(name, opener, code) and reader is not None:
            found.extend(reader([(name, opener)]))
    recorded = _consistent(framework, found)
    if image is not None:
        version = framework_version
        chosen = image
    else:
        supported = images.supported_versions(framework)
        default = frameworks.get(framework).default_version
        version = choose_version(framework, recorded, framework_version, supported, default)
        chosen = images.resolve_image(framework, version, region)
    if vendor and startup.vendor(path, framework, version or "", code=frameworks.HANDLER_DIRECTORY):
        install = _Install()
        for name, opener in model_files(path, archive=False, skip=skip):
            install.take(name, opener, code)
    where = str(path / code / frameworks.REQUIREMENTS) if not archive else f"{path}:{code}{frameworks.REQUIREMENTS}"
    startup.check(
        framework, version or "", install.requirements, install.wheels, where, wheel_requires=install.wheel_requires
    )
    return ImageChoice(chosen, version, recorded)


class _Install:
    """What the container's start-up install reads from code/: requirements.txt and the vendored wheels."""

    def __init__(self) -> None:
        self.requirements: str | None = None
        self.wheels: list[str] = []
        self.wheel_requires: dict[str, list[str]] = {}

    def take(self, name: str, opener: Opener, code: str) -> bool:
        """Record `name` if the install reads it; whether it did."""
        from mlinfra.models import frameworks, startup

        if name == f"{code}{frameworks.REQUIREMENTS}":
            with opener() as stream:
                self.requirements = stream.read(1 << 20).decode("utf-8", errors="replace")
            return True
        if name.startswith(f"{code}{startup.WHEELS}/"):
            self.wheels.append(name)
            if name.endswith(".whl"):
                with opener() as stream:
                    self.wheel_requires[name] = startup.wheel_dependencies(_wheel_metadata(stream))
            return True
        return False
