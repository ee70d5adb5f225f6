"""The web view (`mlinfra ui`'s app) served by uvicorn on a loopback port in a background thread, for tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlinfra.stacks.project import Project
from mlinfra.ui.app import create_app
from mlinfra.ui.data import RegistryView


@contextmanager
def serving(root: Path, **options: Any) -> Iterator[tuple[str, RegistryView]]:
    """`mlinfra ui` over the project at `root` (every stage): its base URL and its RegistryView."""
    import uvicorn

    project = Project.find(root)
    view = RegistryView(project, project.stages())
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    options.setdefault("allowed_hosts", {f"127.0.0.1:{port}", f"localhost:{port}"})
    app = create_app(view, local=True, **options)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the ui server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", view
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listener.close()
