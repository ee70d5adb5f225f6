"""Prebuilt SageMaker inference images per framework, resolved offline from the image config sagemaker-core ships.

The sagemaker SDK (distribution `sagemaker-core`) ships one JSON file per framework (`image_uri_config/<name>.json`:
versions, aliases, Python versions, processors, repositories and the ECR account of each region) and its
`image_uris.retrieve` turns them into an image URI. Importing the SDK costs about 2 s and 150 MB, more than a small
model's whole registration, so mlinfra reads those same JSON files from the installed distribution (located through
its metadata, without importing it) and applies retrieve's rules for a CPU inference image: the version or its
alias, the Python version, the processor of a CPU instance, `<account>.dkr.<ecr hostname>/<repository>:<tag>` with
the hostname from botocore's endpoint data. A test compares every supported version against the SDK's own
`retrieve`, so the two cannot disagree unnoticed.

Each framework has an adapter that registers itself under its name.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from mlinfra.errors import BadInputError, MlinfraError

IMAGE_SCOPE = "inference"
# Images differ by processor (cpu/gpu); endpoints default to CPU instances, so resolve against a CPU instance type.
CPU_INSTANCE_TYPE = "ml.m5.large"
SDK_DISTRIBUTION = "sagemaker-core"
CONFIG_DIR = "sagemaker/core/image_uri_config"
SHOWN_VERSIONS = 5


class ImageConfig:
    """One framework's bundled image config for the inference scope (what `image_uris.retrieve` reads)."""

    def __init__(self, data: dict[str, Any]) -> None:
        scoped = data if "versions" in data else data[IMAGE_SCOPE]
        self.versions: dict[str, Any] = scoped["versions"]
        self.aliases: dict[str, str] = scoped.get("version_aliases", {})
        self.processors: list[str] | None = scoped.get("processors")

    def listed(self) -> list[str]:
        """Versions and aliases (retrieve accepts either)."""
        return [*self.versions, *self.aliases]

    def version_config(self, version: str) -> dict[str, Any]:
        """The config of a version or alias."""
        return dict(self.versions[self.aliases.get(version, version)])

    def py_versions(self, version: str) -> list[str]:
        """The Python versions listed for a version or alias."""
        found: list[str] = self.version_config(version).get("py_versions", [])
        return found


class FrameworkAdapter:
    """How one framework's prebuilt inference image is looked up: the SDK's name for it and retrieve()'s arguments.

    Subclass it, set `name` (as mlinfra spells the framework) and `sdk_name` (the config file's name), override
    `py_version` if the image is chosen among several Python versions, and decorate the class with `@register`.
    """

    name: ClassVar[str]
    sdk_name: ClassVar[str]
    # Versions the SDK lists that must not be pinned (moving tags, images with another serving contract).
    excluded: ClassVar[frozenset[str]] = frozenset()

    def versions(self, config: ImageConfig) -> list[str]:
        """The versions (and aliases) the installed SDK has an inference image for, oldest first."""
        return sorted((v for v in config.listed() if v not in self.excluded), key=_version_key)

    def py_version(self, version: str, config: ImageConfig) -> str | None:
        """The Python version of the image; None lets retrieve's rule pick the only one listed."""
        del version, config
        return None


_ADAPTERS: dict[str, FrameworkAdapter] = {}
A = TypeVar("A", bound=type[FrameworkAdapter])


def register(cls: A) -> A:
    """Class decorator: make a FrameworkAdapter available under its `name`."""
    if cls.name in _ADAPTERS:
        raise ValueError(f"framework {cls.name!r} is registered twice")
    _ADAPTERS[cls.name] = cls()
    return cls


@register
class SklearnAdapter(FrameworkAdapter):
    """scikit-learn: SageMaker's sagemaker-scikit-learn container (versions such as 1.2-1)."""

    name = "sklearn"
    sdk_name = "sklearn"


@register
class XGBoostAdapter(FrameworkAdapter):
    """XGBoost as a framework container, sagemaker-xgboost (versions such as 1.7-1)."""

    name = "xgboost"
    sdk_name = "xgboost"
    # "1" and its alias "latest" are the legacy built-in algorithm image (repository `xgboost`), a moving tag with
    # the algorithm's own serving contract rather than the framework container's.
    excluded = frozenset({"1", "latest"})


@register
class PyTorchAdapter(FrameworkAdapter):
    """PyTorch: the pytorch-inference deep learning container, CPU variant for the newest Python the SDK lists."""

    name = "pytorch"
    sdk_name = "pytorch"

    def py_version(self, version: str, config: ImageConfig) -> str | None:
        """The newest Python version listed for this version."""
        listed = config.py_versions(version)
        return max(listed, key=_version_key) if listed else None


def _version_key(version: str) -> tuple[int, ...]:
    """Numeric order of versions such as 1.2-1, 2.6.0 or py310 (a `-py312` variant suffix does not count)."""
    return tuple(int(n) for n in re.findall(r"\d+", re.sub(r"-py\d+$", "", version)))


def check_uri(image: str) -> None:
    """BadInputError unless `image` is an ECR image URI (what a pin's image must be)."""
    from pydantic import TypeAdapter, ValidationError

    from mlinfra_infra.config import ImageUri

    try:
        TypeAdapter(ImageUri).validate_python(image)
    except ValidationError:
        raise BadInputError(
            f"--image {image!r} is not an ECR image URI (<account>.dkr.ecr.<region>.amazonaws.com/<repo>:<tag>)"
        ) from None


def framework_names() -> list[str]:
    """The frameworks mlinfra resolves prebuilt images for, sorted."""
    return sorted(_ADAPTERS)


def _adapter(framework: str) -> FrameworkAdapter:
    try:
        return _ADAPTERS[framework]
    except KeyError:
        from mlinfra_infra.config import suggest

        known = framework_names()
        raise BadInputError(
            f"unknown framework {framework!r}{suggest(framework, known)}: use one of {', '.join(known)}"
        ) from None


def _missing_sdk() -> MlinfraError:
    return MlinfraError(
        f"resolving a prebuilt SageMaker image needs the image config of the sagemaker SDK ({SDK_DISTRIBUTION} is "
        f"not installed): pip install {SDK_DISTRIBUTION}"
    )


def config_dir() -> Path:
    """Where the installed sagemaker-core keeps its image config (found through its metadata; nothing imported)."""
    from importlib import metadata

    try:
        distribution = metadata.distribution(SDK_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise _missing_sdk() from None
    folder = Path(str(distribution.locate_file(CONFIG_DIR)))
    if not folder.is_dir():
        raise _missing_sdk()
    return folder


@functools.cache
def image_config(framework: str) -> ImageConfig:
    """The bundled image config of an adapter's framework."""
    path = config_dir() / f"{_adapter(framework).sdk_name}.json"
    try:
        return ImageConfig(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError) as exc:
        raise MlinfraError(f"{path}: unreadable image config of {_sdk_version()} ({exc}); reinstall it") from None


def _sdk_version() -> str:
    from importlib import metadata

    try:
        return f"{SDK_DISTRIBUTION} {metadata.version(SDK_DISTRIBUTION)}"
    except metadata.PackageNotFoundError:
        return "the sagemaker SDK"


def supported_versions(framework: str) -> list[str]:
    """The versions of `framework` the installed SDK has a prebuilt inference image for, oldest first."""
    return _adapter(framework).versions(image_config(framework))


@functools.cache
def _ecr_hostname(region: str) -> str:
    """ECR's hostname in `region` from botocore's endpoint data (as the SDK resolves it)."""
    import botocore.regions

    from mlinfra.aws import _shared_loader

    # The loader every mlinfra session uses: endpoints.json is parsed once per process, for this and the clients.
    resolver = botocore.regions.EndpointResolver(_shared_loader().load_data("endpoints"))
    endpoint = resolver.construct_endpoint("ecr", region)
    if not endpoint and region == "il-central-1":
        return f"ecr.{region}.amazonaws.com"  # the SDK's own exception for a region botocore once lacked
    if not endpoint:
        raise BadInputError(f"no ECR endpoint for region {region!r} in botocore's endpoint data (check the region)")
    return str(endpoint["hostname"])


def _processor(available: list[str] | None) -> str | None:
    """The processor retrieve picks for CPU_INSTANCE_TYPE (its family, when the config lists it, else cpu)."""
    if not available:
        return None
    family = CPU_INSTANCE_TYPE.split(".")[1]
    return family if family in available else "cpu"


@functools.cache
def resolve_image(framework: str, version: str, region: str) -> str:
    """The ECR URI of SageMaker's prebuilt CPU inference image for `framework` `version` in `region`, offline.

    Raises BadInputError for an unknown framework (with the known ones), a version the installed SDK has no image
    for (with the newest supported ones) or a region it does not know.
    """
    adapter = _adapter(framework)
    config = image_config(framework)
    supported = adapter.versions(config)
    if version in adapter.excluded:
        raise BadInputError(
            f"{framework} version {version!r} is not a framework image mlinfra can pin "
            f"(a moving tag or another serving contract); pin a version such as {supported[-1]}"
        )
    if version not in supported:
        from mlinfra_infra.config import suggest

        newest = ", ".join(reversed(supported[-SHOWN_VERSIONS:]))
        raise BadInputError(
            f"{framework} version {version!r} has no prebuilt SageMaker inference image in {_sdk_version()}"
            f"{suggest(version, supported)}; newest supported: {newest} (upgrade the SDK for newer ones)"
        )
    settings = config.version_config(version)
    py_version = adapter.py_version(version, config)
    if "repository" in settings:
        listed = settings.get("py_versions") or []
        if py_version is None and len(listed) == 1:
            py_version = listed[0]
    else:  # configs nested by Python version
        if py_version is None and len(settings) == 1:
            py_version = next(iter(settings))
        settings = settings.get(py_version or "", settings)
    registries: dict[str, str] = settings["registries"]
    if region not in registries:
        raise BadInputError(
            f"no {framework} {version} inference image for region {region!r}: Unsupported region "
            f"(check the region, or upgrade {_sdk_version()})"
        )
    processor = _processor(config.processors or settings.get("processors"))
    container_version = (settings.get("container_version") or {}).get(processor)
    if not settings.get("processor_in_tag", True):
        processor = None
    tag_prefix = settings.get("tag_prefix", version)
    tag = "-".join(x for x in (tag_prefix, processor, py_version, container_version) if x)
    repository = settings["repository"] + (f":{tag}" if tag else "")
    return f"{registries[region]}.dkr.{_ecr_hostname(region)}/{repository}"
