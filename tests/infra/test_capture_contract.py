"""`mlinfra serve --capture-stage` writes where, and how, the rendered endpoint tells SageMaker to capture."""

from __future__ import annotations

from collections.abc import Callable

from mlinfra.serving.capture import CSV_CONTENT_TYPES, JSON_CONTENT_TYPES
from mlinfra.stacks.render import RenderedStack
from mlinfra_infra import layout, naming, outputs
from tests.infra.test_endpoint import CONFIG, ENDPOINT, PROD_CHURN, child, variant

Render = Callable[..., RenderedStack]


def test_capture_prefix_endpoint_variant_and_content_types_match_the_rendered_endpoint(render_stack: Render) -> None:
    stack = render_stack({"mlinfra:models": {"churn": PROD_CHURN}}, stage="prod")
    capture = child(stack, CONFIG).inputs["dataCaptureConfig"]
    bucket = stack.outputs[outputs.REGISTRY_BUCKET]
    # serve writes s3://<bucket>/<capture_prefix>/<endpoint>/<variant>/yyyy/mm/dd/hh/, as SageMaker does below
    # DestinationS3Uri.
    assert capture["destinationS3Uri"] == f"s3://{bucket}/{layout.capture_prefix('churn')}"
    assert child(stack, ENDPOINT).inputs["name"] == naming.endpoint("mlinfra", "prod", "churn")
    assert variant(stack)["variantName"] == naming.VARIANT_NAME
    assert capture["captureContentTypeHeader"] == {
        "jsonContentTypes": list(JSON_CONTENT_TYPES),
        "csvContentTypes": list(CSV_CONTENT_TYPES),
    }
