"""What the framework container's start-up pip install needs, checked before anything is uploaded.

At start-up the scikit-learn and XGBoost containers copy the handler's directory to /opt/ml/code, write a setup.py
and run `pip install . -r requirements.txt` there (sagemaker-containers' modules.import_module); the PyTorch toolkit
runs `pip install -r code/requirements.txt`. Staging and prod endpoints run with network isolation: that pip reaches
no index, so every requirement must already be in the image or come from the archive. ModelEndpoint sets
PIP_NO_BUILD_ISOLATION=0 so that building the handler's own package uses the image's setuptools instead of
downloading one (tests/conformance runs that install without an index).

A requirement passes when the image installs the package (unpinned: the image's version is used) or when a wheel of it
is vendored in `<handler dir>/wheels/` and requirements.txt points pip there (`--no-index` and `--find-links wheels`).
Anything else is refused with the reason and the command that vendors it. The image's packages are those its
Dockerfile installs, read from the container's source (aws/sagemaker-scikit-learn-container,
aws/sagemaker-xgboost-container, the PyTorch deep learning container and its inference toolkit).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mlinfra.errors import BadInputError

WHEELS = "wheels"
_SERVING = {
    "boto3", "botocore", "certifi", "cryptography", "flask", "gevent", "gunicorn", "multi-model-server", "numpy",
    "pandas", "protobuf", "psutil", "python-dateutil", "pyyaml", "retrying", "scipy", "setuptools", "six", "urllib3",
    "werkzeug", "wheel", "sagemaker-containers", "sagemaker-inference", "pyarrow", "requests",
}  # fmt: skip
IMAGE_PACKAGES: dict[str, frozenset[str]] = {
    "sklearn": frozenset(_SERVING | {"scikit-learn", "joblib", "threadpoolctl", "narwhals", "sagemaker-training"}),
    "xgboost": frozenset(_SERVING | {"xgboost", "scikit-learn", "joblib", "dask", "matplotlib", "numba", "pillow"}),
    "pytorch": frozenset(
        _SERVING | {"torch", "torchvision", "torchaudio", "torchserve", "sagemaker-pytorch-inference", "pillow"}
    ),
}
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)$")


def canonical(name: str) -> str:
    """A distribution name as pip compares them (PEP 503: lowercase, runs of -_. as one -)."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Requirement:
    """One line of requirements.txt that installs something."""

    line: int
    text: str
    name: str
    pinned: bool


def parse(text: str, where: str) -> tuple[list[Requirement], set[str]]:
    """(requirements, pip options) of a requirements file; BadInputError for a line pip would need a network for."""
    requirements: list[Requirement] = []
    options: set[str] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            flag, _, value = line.partition(" ")
            value = value.strip()
            if flag in ("--no-index",):
                options.add("no-index")
            elif flag in ("-f", "--find-links") and value.rstrip("/") == WHEELS:
                options.add("find-links")
            else:
                raise BadInputError(
                    f"{where}:{number}: {line!r}: mlinfra accepts only --no-index and --find-links {WHEELS} as "
                    "options (an endpoint with network isolation cannot follow anything else)"
                )
            continue
        if "://" in line or line.startswith((".", "/")) or "@" in line:
            raise BadInputError(
                f"{where}:{number}: {line!r} is a URL or a path, which the container's pip cannot fetch with network "
                f"isolation: vendor its wheel in {WHEELS}/ and name the package instead"
            )
        match = _NAME.match(line)
        if match is None:
            raise BadInputError(f"{where}:{number}: {line!r} is not a requirement pip reads")
        requirements.append(Requirement(number, line, canonical(match.group(1)), bool(match.group(3).strip())))
    return requirements, options


def _wheel_names(wheels: Iterable[str]) -> set[str]:
    return {canonical(name.rsplit("/", 1)[-1].split("-", 1)[0]) for name in wheels if name.endswith(".whl")}


_REQUIRES = re.compile(r"^Requires-Dist:\s*([A-Za-z0-9][A-Za-z0-9._-]*)([^;\n]*)(?:;(.*))?$", re.MULTILINE)


def wheel_dependencies(metadata: str) -> list[str]:
    """The distributions a wheel's METADATA requires unconditionally (extras and other platforms' markers left out)."""
    needed = []
    for name, _spec, raw_marker in _REQUIRES.findall(metadata):
        marker = raw_marker.strip()
        if "extra ==" in marker or "extra==" in marker or 'sys_platform == "win32"' in marker:
            continue
        needed.append(canonical(name))
    return needed


def check(
    framework: str,
    image_version: str,
    requirements_text: str | None,
    wheels: Iterable[str],
    where: str,
    *,
    wheel_requires: dict[str, list[str]] | None = None,
) -> None:
    """Refuse (BadInputError) a requirements file the container's offline start-up install could not satisfy.

    `wheel_requires` maps a vendored wheel's file name to the distributions its METADATA requires: each must be in
    the image or vendored too, or pip (without an index) stops there.
    """
    if requirements_text is None:
        return
    requirements, options = parse(requirements_text, where)
    vendored = _wheel_names(wheels)
    in_image = IMAGE_PACKAGES.get(framework, frozenset())
    for wheel, needs in (wheel_requires or {}).items():
        missing = [name for name in needs if name not in vendored and name not in in_image]
        if missing:
            raise BadInputError(
                f"{where}: the vendored {wheel.rsplit('/', 1)[-1]} requires {', '.join(missing)}, which the "
                f"{framework} {image_version} image does not have and {WHEELS}/ does not hold: download them with "
                f"the same `pip download` into {WHEELS}/ (without --no-deps)"
            )
    for requirement in requirements:
        if requirement.name in vendored:
            if options != {"no-index", "find-links"}:
                raise BadInputError(
                    f"{where}: {requirement.name} is vendored in {WHEELS}/, but pip is not sent there: add the lines "
                    f"`--no-index` and `--find-links {WHEELS}` to requirements.txt"
                )
            continue
        if requirement.name in in_image and not requirement.pinned:
            continue
        why = (
            f"pins {requirement.name}, which the {framework} {image_version} image has at its own version"
            if requirement.name in in_image
            else f"needs {requirement.name}, which the {framework} {image_version} image does not have"
        )
        raise BadInputError(
            f"{where}:{requirement.line}: {requirement.text!r} {why}, and the endpoint's pip cannot download it "
            f"(network isolation): register with --vendor to put its wheels in {WHEELS}/, or run `pip download "
            f"'{requirement.text}' --only-binary=:all: --platform manylinux2014_x86_64 --python-version <the image's> "
            f"-d {WHEELS}/` in the handler's directory and add `--no-index` and `--find-links {WHEELS}` to "
            "requirements.txt" + (", or drop the version to use the image's" if requirement.name in in_image else "")
        )


def image_python(framework: str, image_version: str) -> str | None:
    """The image's Python as pip's --python-version (3.12) when its config names it (py312), else None."""
    from mlinfra.models import images

    try:
        listed = images.image_config(framework).py_versions(image_version)
    except (KeyError, BadInputError):
        return None
    exact = [v for v in listed if re.fullmatch(r"py3\d+", v)]
    return f"3.{exact[0][3:]}" if len(exact) == 1 else None


def vendor(directory: Path, framework: str, image_version: str, *, code: str = "code") -> list[str]:
    """Download the wheels code/requirements.txt needs beyond the image into code/wheels/ (and point pip there).

    Runs `pip download --no-deps` for each requirement the image cannot satisfy, then for each dependency a wheel's
    METADATA names that is neither in the image nor vendored, for the image's platform and Python (its config's
    pyXY; pure-Python wheels only when the config does not name one). Returns the wheel files written. BadInputError
    (nothing changed in requirements.txt) when pip cannot find a wheel: the reason is pip's last line.
    """
    import subprocess
    import sys
    import tempfile
    import zipfile

    requirements_file = directory / code / "requirements.txt"
    if not requirements_file.is_file():
        return []
    text = requirements_file.read_text(encoding="utf-8")
    requirements, options = parse(text, str(requirements_file))
    wheels_dir = directory / code / WHEELS
    in_image = IMAGE_PACKAGES.get(framework, frozenset())
    python = image_python(framework, image_version)
    target = (
        ["--python-version", python, "--platform", "manylinux2014_x86_64", "--implementation", "cp"]
        if python
        else ["--python-version", "3", "--implementation", "py", "--abi", "none", "--platform", "any"]
    )
    pending = [r.text for r in requirements if r.name not in in_image or r.pinned]
    written: list[str] = []
    seen: set[str] = set()
    while pending:
        wanted = pending.pop(0)
        with tempfile.TemporaryDirectory() as scratch:
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--quiet",
                    "--no-deps",
                    "--only-binary=:all:",
                    *target,
                    "--dest",
                    scratch,
                    wanted,
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                reason = (done.stderr.strip().splitlines() or ["pip download failed"])[-1]
                raise BadInputError(
                    f"{requirements_file}: cannot vendor {wanted!r} for the {framework} {image_version} image "
                    f"(Python {python or 'any, pure-Python wheels only'}): {reason}"
                )
            for wheel in sorted(Path(scratch).glob("*.whl")):
                wheels_dir.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(wheel, wheels_dir / wheel.name)
                written.append(f"{code}/{WHEELS}/{wheel.name}")
                seen.add(canonical(wheel.name.split("-", 1)[0]))
                with zipfile.ZipFile(wheel) as archive:
                    name = next((n for n in archive.namelist() if n.endswith(".dist-info/METADATA")), None)
                    metadata = archive.read(name).decode("utf-8", errors="replace") if name else ""
                for dependency in wheel_dependencies(metadata):
                    if dependency not in in_image and dependency not in seen and dependency not in pending:
                        pending.append(dependency)
    if written and options != {"no-index", "find-links"}:
        requirements_file.write_text(f"--no-index\n--find-links {WHEELS}\n" + text, encoding="utf-8")
    return written
