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
from collections.abc import Iterable
from dataclasses import dataclass

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
            f"(network isolation): vendor it with `pip download '{requirement.text}' --only-binary=:all: "
            f"--platform manylinux2014_x86_64 --python-version <the image's> -d {WHEELS}/` in the handler's "
            f"directory and add `--no-index` and `--find-links {WHEELS}` to requirements.txt"
            + (", or drop the version to use the image's" if requirement.name in in_image else "")
        )
