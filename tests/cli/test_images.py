"""Prebuilt SageMaker inference images resolved offline through the sagemaker SDK's bundled image config."""

from __future__ import annotations

import re
from collections.abc import Iterator
from types import ModuleType

import pytest

from mlinfra import images
from mlinfra.errors import BadInputError, MlinfraError
from mlinfra_infra.config import Pin
from tests.builders import pin

REGION = "eu-west-1"


@pytest.fixture(scope="module")
def sdk() -> Iterator[ModuleType]:
    """The SDK's image_uris module, imported once for the module (the import takes seconds)."""
    images.resolve_image.cache_clear()
    yield images._sdk()
    images.resolve_image.cache_clear()


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
    monkeypatch.setattr(images, "SDK_MODULE", "sagemaker_not_installed.image_uris")
    with pytest.raises(MlinfraError, match=r"needs the sagemaker SDK .*: pip install sagemaker-core"):
        images._sdk()


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
