"""`mlinfra.serve(...)` from a notebook: the same app as `mlinfra serve`, on a uvicorn server in a background thread.

The server answers the SageMaker container contract (GET /ping, POST /invocations) on 127.0.0.1 until `stop()` (or
the end of a `with` block, or the interpreter's exit). `predict(rows)` posts JSON and returns the decoded answer, so a
notebook can try the endpoint it is about to promote without leaving Python.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

from mlinfra.errors import MlinfraError

if TYPE_CHECKING:
    from starlette.applications import Starlette

START_TIMEOUT_SECONDS = 30.0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on at `host` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class BackgroundServer:
    """A running local endpoint: its URL, `predict(rows)`, `stop()`; a context manager that stops on exit."""

    def __init__(self, app: Starlette, *, host: str, port: int, description: str) -> None:
        import uvicorn

        self.description = description
        self.url = f"http://{host}:{port}"
        config = uvicorn.Config(
            app, host=host, port=port, lifespan="on", log_level="warning", access_log=False, http="httptools"
        )
        self._server = uvicorn.Server(config)
        # Signals belong to the notebook's kernel, not to this server (uvicorn skips them off the main thread too).
        self._thread = threading.Thread(target=self._server.run, name=f"mlinfra-serve-{port}", daemon=True)

    def start(self) -> BackgroundServer:
        """Start serving; returns once GET /ping answers (MlinfraError if it does not within 30 s)."""
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._server.started:
                return self
            if not self._thread.is_alive():
                break
            time.sleep(0.02)
        self.stop()
        raise MlinfraError(f"the local server for {self.description} did not start at {self.url}")

    def predict(self, rows: Any, *, accept: str = "application/json") -> Any:
        """POST `rows` as JSON and return the decoded answer.

        A DataFrame or 2-D array is sent as rows, in column order; a list goes as the handler takes it (rows, or
        records by feature name where the handler reads its input schema).
        """
        if hasattr(rows, "to_numpy") and hasattr(rows, "columns"):
            # A DataFrame goes by position, in its column order (the training order): every handler takes rows.
            rows = rows.to_numpy().tolist()
        elif hasattr(rows, "tolist"):
            rows = rows.tolist()
        request = urllib.request.Request(  # noqa: S310 - our own loopback server
            f"{self.url}/invocations",
            data=json.dumps(rows).encode(),
            headers={"Content-Type": "application/json", "Accept": accept},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
                body = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace").strip()
            raise MlinfraError(f"{self.description} answered {exc.code}: {detail}") from None
        return json.loads(body) if accept == "application/json" else body.decode()

    def stop(self) -> None:
        """Stop serving (buffered capture is written) and wait for the server thread."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=15)

    def __enter__(self) -> BackgroundServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "serving" if self._thread.is_alive() else "stopped"
        return f"<mlinfra endpoint {self.description} at {self.url} ({state})>"
