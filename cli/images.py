"""Prebuilt SageMaker inference images per framework, resolved offline from the sagemaker SDK's bundled image config.

Each framework has an adapter that registers itself under its name and knows the arguments the SDK's
`image_uris.retrieve` needs for a CPU inference image of a given version. The SDK reads JSON files shipped inside
the package and botocore's bundled endpoint data, so no network call and no credentials are involved. Importing it
takes seconds, so it happens on first use only.
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Callable
from types import ModuleType
from typing import Any, ClassVar, TypeVar

from .errors import BadInputError, MlinfraError

IMAGE_SCOPE = "inference"
# Images differ by processor (cpu/gpu); endpoints default to CPU instances, so resolve against a CPU instance type.
CPU_INSTANCE_TYPE = "ml.m5.large"
SDK_MODULE = "sagemaker.core.image_uris"
SDK_DISTRIBUTION = "sagemaker-core"
SHOWN_VERSIONS = 5


class FrameworkAdapter:
    """How one framework's prebuilt inference image is looked up: the SDK's name for it and retrieve()'s arguments.

    Subclass it, set `name` (as mlinfra spells the framework) and `sdk_name`, override `retrieve_args` if the SDK
    needs more than a version, and decorate the class with `@register`.
    """

    name: ClassVar[str]
    sdk_name: ClassVar[str]
    # Versions the SDK lists that must not be pinned (moving tags, images with another serving contract).
    excluded: ClassVar[frozenset[str]] = frozenset()

    def versions(self, sdk: ModuleType) -> list[str]:
        """The versions (and aliases) the installed SDK has an inference image for, oldest first."""
        listed: list[str] = sdk.list_versions(self.sdk_name, IMAGE_SCOPE)
        return sorted((v for v in listed if v not in self.excluded), key=_version_key)

    def retrieve_args(self, version: str, sdk: ModuleType) -> dict[str, Any]:
        """Keyword arguments for `image_uris.retrieve` besides framework and region."""
        del sdk  # used by adapters that look up more (e.g. the Python version)
        return {"version": version, "image_scope": IMAGE_SCOPE, "instance_type": CPU_INSTANCE_TYPE}


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

    def retrieve_args(self, version: str, sdk: ModuleType) -> dict[str, Any]:
        """Version, scope and CPU instance type, plus the newest py_version the SDK lists for this version."""
        args = super().retrieve_args(version, sdk)
        py_versions: list[str] = sdk.list_py_versions(self.sdk_name, version, IMAGE_SCOPE)
        if py_versions:
            args["py_version"] = max(py_versions, key=_version_key)
        return args


def _version_key(version: str) -> tuple[int, ...]:
    """Numeric order of versions such as 1.2-1, 2.6.0 or py310 (a `-py312` variant suffix does not count)."""
    return tuple(int(n) for n in re.findall(r"\d+", re.sub(r"-py\d+$", "", version)))


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


def _sdk() -> ModuleType:
    """The SDK's image_uris module (slow to import: only when an image is resolved)."""
    try:
        return importlib.import_module(SDK_MODULE)
    except ImportError as exc:
        raise MlinfraError(
            f"resolving a prebuilt SageMaker image needs the sagemaker SDK ({exc.name} is missing): "
            f"pip install {SDK_DISTRIBUTION}"
        ) from None


def _sdk_version() -> str:
    from importlib import metadata

    try:
        return f"{SDK_DISTRIBUTION} {metadata.version(SDK_DISTRIBUTION)}"
    except metadata.PackageNotFoundError:
        return "the sagemaker SDK"


def supported_versions(framework: str) -> list[str]:
    """The versions of `framework` the installed SDK has a prebuilt inference image for, oldest first."""
    return _adapter(framework).versions(_sdk())


@functools.cache
def resolve_image(framework: str, version: str, region: str) -> str:
    """The ECR URI of SageMaker's prebuilt CPU inference image for `framework` `version` in `region`, offline.

    Raises BadInputError for an unknown framework (with the known ones), a version the installed SDK has no image
    for (with the newest supported ones) or a region it does not know.
    """
    adapter = _adapter(framework)
    sdk = _sdk()
    supported = adapter.versions(sdk)
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
    retrieve: Callable[..., str] = sdk.retrieve
    try:
        return retrieve(adapter.sdk_name, region=region, **adapter.retrieve_args(version, sdk))
    except ValueError as exc:
        # e.g. "Unsupported region: mars-1. You may need to upgrade ...": keep the SDK's first sentence only.
        reason = str(exc).split(". ", 1)[0].rstrip(".")
        raise BadInputError(
            f"no {framework} {version} inference image for region {region!r}: {reason} "
            f"(check the region, or upgrade {_sdk_version()})"
        ) from None
