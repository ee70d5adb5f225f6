"""Prebuilt SageMaker inference images resolved offline from the image config the sagemaker SDK ships.

mlinfra reads the SDK's JSON without importing the SDK; these tests import it (once per module) to check that every
version mlinfra offers resolves to exactly the URI the SDK's own `image_uris.retrieve` returns.
"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from collections.abc import Iterator
from types import ModuleType

import pytest

from mlinfra.errors import BadInputError, MlinfraError
from mlinfra.models import images
from mlinfra_infra.config import Pin
from tests.builders import pin

REGION = "eu-west-1"


@pytest.fixture(scope="module")
def sdk() -> Iterator[ModuleType]:
    """The SDK's image_uris module, imported once for the module (the import takes seconds)."""
    images.resolve_image.cache_clear()
    yield importlib.import_module("sagemaker.core.image_uris")
    images.resolve_image.cache_clear()


def _sdk_uri(sdk: ModuleType, framework: str, version: str, region: str) -> str:
    adapter = images._ADAPTERS[framework]
    args: dict[str, str] = {"version": version, "image_scope": "inference", "instance_type": images.CPU_INSTANCE_TYPE}
    if framework == "pytorch":
        args["py_version"] = max(sdk.list_py_versions("pytorch", version, "inference"), key=images._version_key)
    return str(sdk.retrieve(adapter.sdk_name, region=region, **args))


@pytest.mark.parametrize("framework", ["sklearn", "xgboost", "pytorch"])
def test_every_supported_version_resolves_as_the_sdk_does(sdk: ModuleType, framework: str) -> None:
    versions = images.supported_versions(framework)
    assert versions, "the installed SDK lists versions"
    sdk_listed = set(sdk.list_versions(images._ADAPTERS[framework].sdk_name, "inference"))
    assert set(versions) <= sdk_listed
    assert sdk_listed - set(versions) <= images._ADAPTERS[framework].excluded
    for region in (REGION, "us-east-1", "cn-north-1", "ap-southeast-2"):
        for version in versions:
            try:
                expected = _sdk_uri(sdk, framework, version, region)
            except ValueError:
                with pytest.raises(BadInputError):
                    images.resolve_image(framework, version, region)
                continue
            assert images.resolve_image(framework, version, region) == expected, (framework, version, region)


def test_resolving_an_image_does_not_import_the_sdk() -> None:
    code = (
        "import sys; from mlinfra.models import images; images.resolve_image.cache_clear(); "
        "print(images.resolve_image('pytorch', '2.1', 'eu-west-1')); "
        "print(any(m.startswith('sagemaker') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert "/pytorch-inference:2.1-cpu-py3" in out[0]
    assert out[1] == "False"


def test_framework_names() -> None:
    assert images.framework_names() == ["pytorch", "sklearn", "xgboost"]


def test_sklearn_image_is_the_documented_one(sdk: ModuleType) -> None:
    uri = images.resolve_image("sklearn", "1.2-1", REGION)
    assert re.fullmatch(r"\d{12}\.dkr\.ecr\.eu-west-1\.amazonaws\.com/sagemaker-scikit-learn:1\.2-1-cpu-py3", uri)


@pytest.mark.parametrize(
    ("framework", "version", "repository"),
    [
        ("sklearn", "1.2-1", "sagemaker-scikit-learn"),
        ("xgboost", "1.7-1", "sagemaker-xgboost"),
        ("pytorch", "2.1", "pytorch-inference"),
    ],
)
def test_images_are_pinnable_ecr_uris(sdk: ModuleType, framework: str, version: str, repository: str) -> None:
    uri = images.resolve_image(framework, version, REGION)
    assert uri.split("/", 1)[1].startswith(f"{repository}:{version}")
    assert Pin.model_validate({**pin(), "image": uri}).image == uri  # passes the stack config's ImageUri pattern


def test_pytorch_uses_a_cpu_image_for_the_python_the_sdk_lists(sdk: ModuleType) -> None:
    py_versions = sdk.list_py_versions("pytorch", "2.1", "inference")
    newest = max(py_versions, key=lambda v: int(v.removeprefix("py")))
    assert images.resolve_image("pytorch", "2.1", REGION).endswith(f":2.1-cpu-{newest}")


def test_results_are_cached(sdk: ModuleType) -> None:
    before = images.resolve_image.cache_info().hits
    images.resolve_image("sklearn", "1.2-1", REGION)
    images.resolve_image("sklearn", "1.2-1", REGION)
    assert images.resolve_image.cache_info().hits >= before + 1


def test_unknown_framework_lists_the_known_ones() -> None:
    with pytest.raises(BadInputError) as caught:
        images.resolve_image("sklern", "1.2-1", REGION)
    assert (
        str(caught.value)
        == "unknown framework 'sklern' (did you mean 'sklearn'?): use one of pytorch, sklearn, xgboost"
    )


def test_unsupported_version_lists_supported_ones_from_the_sdk(sdk: ModuleType) -> None:
    with pytest.raises(BadInputError) as caught:
        images.resolve_image("sklearn", "1.2", REGION)
    message = str(caught.value)
    assert message.startswith("sklearn version '1.2' has no prebuilt SageMaker inference image in ")
    assert "(did you mean '1.2-1'?)" in message
    shown = message.split("newest supported: ", 1)[1].split(" (", 1)[0].split(", ")
    assert len(shown) == images.SHOWN_VERSIONS
    assert set(shown) <= set(sdk.list_versions("sklearn", "inference"))
    assert "1.2-1" in images.supported_versions("sklearn")


def test_moving_tags_are_refused(sdk: ModuleType) -> None:
    with pytest.raises(BadInputError, match=r"xgboost version 'latest' is not a framework image mlinfra can pin"):
        images.resolve_image("xgboost", "latest", REGION)


def test_unknown_region(sdk: ModuleType) -> None:
    with pytest.raises(
        BadInputError, match=r"^no sklearn 1.2-1 inference image for region 'mars-1': Unsupported region"
    ):
        images.resolve_image("sklearn", "1.2-1", "mars-1")


def test_missing_sdk_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images, "SDK_DISTRIBUTION", "sagemaker-not-installed")
    with pytest.raises(MlinfraError, match=r"needs the image config of the sagemaker SDK .*: pip install"):
        images.config_dir()


def test_adapters_register_under_their_name() -> None:
    @images.register
    class Custom(images.FrameworkAdapter):
        name = "custom-test"
        sdk_name = "sklearn"

    try:
        assert "custom-test" in images.framework_names()
        with pytest.raises(ValueError, match="registered twice"):
            images.register(Custom)
    finally:
        images._ADAPTERS.pop("custom-test")
