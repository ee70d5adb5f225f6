"""The SageMaker inference container contract over HTTP: GET /ping and POST /invocations, on Starlette + uvicorn.

SageMaker's front end forwards InvokeEndpoint to the container's POST /invocations with the request's Content-Type
and Accept, and answers with the container's body and Content-Type plus `x-Amzn-Invoked-Production-Variant`; the
container answers GET /ping with 200 once the model is loaded. Here one process plays both parts: the body limit of
InvokeEndpoint (6 MB, 6291456 bytes: 413 beyond it, checked on Content-Length before reading and while streaming),
the variant header, SageMaker's 60-second invocation timeout (`timeout`: a 424 ModelError with SageMaker's message; the
prediction still running is left to finish, as a container's worker would), and data capture of successful
invocations. Requests are served by `workers` threads at once, one request per worker at a time as in the
containers (gunicorn or TorchServe workers, SAGEMAKER_MODEL_SERVER_WORKERS, by default one per CPU), sharing the one
loaded model; /ping keeps answering while predictions run. Failures answer a one-line JSON body {"error": "..."}.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mlinfra.serving.handler import Handler, InvocationError

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

    from mlinfra.serving.capture import CaptureWriter

MAX_BODY = 6291456  # botocore's sagemaker-runtime model: InvokeEndpoint Body max
TIMEOUT_SECONDS = 60.0  # SageMaker's real-time invocation timeout
WORKERS_ENV = "SAGEMAKER_MODEL_SERVER_WORKERS"
# What SageMaker answers (ModelError, HTTP 424 in botocore's sagemaker-runtime model) when the container is too slow.
TIMEOUT_MESSAGE = (
    "Your invocation timed out while waiting for a response from container {variant}. Review the latency metrics "
    "for each container in Amazon CloudWatch, resolve the issue, and try again."
)
VARIANT_HEADER = "x-Amzn-Invoked-Production-Variant"
INFERENCE_ID_HEADER = "x-amzn-sagemaker-inference-id"
CUSTOM_ATTRIBUTES_HEADER = "x-amzn-sagemaker-custom-attributes"


class _TooLargeError(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLargeError
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLargeError
        chunks.append(chunk)
    return b"".join(chunks)


def build_app(
    handler: Handler,
    *,
    variant: str = "primary",
    capture: CaptureWriter | None = None,
    max_body: int = MAX_BODY,
    log: Callable[[str], None] | None = None,
    timeout: float = TIMEOUT_SECONDS,
    workers: int | None = None,
) -> Starlette:
    """The ASGI app serving `handler` (already loaded) with `workers` threads (default: default_workers())."""
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    from mlinfra.serving.capture import capture_record

    say = log or (lambda message: print(message, file=sys.stderr, flush=True))
    worker = ThreadPoolExecutor(workers or default_workers(), thread_name_prefix="mlinfra-handler")

    def failure(status: int, message: str) -> Response:
        body = json.dumps({"error": " ".join(message.split())}) + "\n"
        return Response(body, status_code=status, media_type="application/json", headers={VARIANT_HEADER: variant})

    async def ping(request: Request) -> Response:
        return Response(status_code=200)

    async def invocations(request: Request) -> Response:
        try:
            body = await _read_body(request, max_body)
        except _TooLargeError:
            return failure(413, f"the body exceeds SageMaker's real-time payload limit of {max_body} bytes (6 MB)")
        headers = request.headers
        content_type = headers.get("content-type") or headers.get("contenttype")
        accept = headers.get("accept")
        when = datetime.now(UTC)
        loop = asyncio.get_running_loop()
        try:
            result = await asyncio.wait_for(
                loop.run_in_executor(worker, handler.invoke, body, content_type, accept), timeout
            )
        except TimeoutError:
            say(f"POST /invocations 424: no answer within {timeout:g} s")
            return failure(424, TIMEOUT_MESSAGE.format(variant=variant))
        except InvocationError as exc:
            if exc.status >= 500:
                say(f"POST /invocations {exc.status}: {exc.message}")
            return failure(exc.status, exc.message)
        response_headers = {VARIANT_HEADER: variant}
        if CUSTOM_ATTRIBUTES_HEADER in headers:
            response_headers["X-Amzn-SageMaker-Custom-Attributes"] = headers[CUSTOM_ATTRIBUTES_HEADER]
        response = Response(result.body, media_type=result.content_type, headers=response_headers)
        if capture is not None:
            capture.add(
                capture_record(
                    body,
                    content_type or "application/json",
                    result.body,
                    response.headers.get("content-type", result.content_type),
                    when=when,
                    inference_id=headers.get(INFERENCE_ID_HEADER),
                ),
                when,
            )
        return response

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        if capture is not None:
            capture.start()
        try:
            yield
        finally:
            worker.shutdown(wait=True)
            if capture is not None:
                await asyncio.get_running_loop().run_in_executor(None, capture.close)
                say(f"capture: {capture.records} record(s) in {capture.files} file(s) under {capture.destination}")

    return Starlette(
        routes=[Route("/ping", ping, methods=["GET"]), Route("/invocations", invocations, methods=["POST"])],
        lifespan=lifespan,
    )


def default_workers() -> int:
    """SAGEMAKER_MODEL_SERVER_WORKERS when set, else one worker per CPU (the containers' default)."""
    configured = os.environ.get(WORKERS_ENV, "")
    if configured.isdigit() and int(configured) > 0:
        return int(configured)
    return os.cpu_count() or 1


class _StoppedError(Exception):
    """Raised by the signal handlers uvicorn re-raises SIGINT/SIGTERM to after its graceful shutdown."""


def _stopped(signum: int, frame: Any) -> None:
    raise _StoppedError


def run(app: Starlette, host: str, port: int) -> None:
    """Serve until Ctrl-C or SIGTERM, then shut down gracefully (capture flushed) and return normally."""
    import signal

    import uvicorn

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http="httptools",
        loop="auto",  # uvloop when installed (the serve extra installs it)
        lifespan="on",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=10,
    )
    # uvicorn handles the signals itself and, once shut down, raises them again for the previous handlers: these turn
    # that into a normal return instead of a KeyboardInterrupt (click's "Aborted!", exit 1) or a death by SIGTERM.
    previous = {sig: signal.signal(sig, _stopped) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        uvicorn.Server(config).run()
    except (_StoppedError, KeyboardInterrupt):
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
