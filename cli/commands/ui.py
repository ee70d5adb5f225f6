"""`mlinfra ui`: the registry, the stages and drift in a browser (or written out as a static site)."""

from __future__ import annotations

import ipaddress

import click

from mlinfra.options import all_option, stack_option

TOKEN_ENV = "MLINFRA_UI_TOKEN"  # noqa: S105 - the variable's name
MIN_TOKEN = 16


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@click.command()
@stack_option
@all_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind; non-loopback needs --token.")
@click.option("--port", "-p", type=click.IntRange(0, 65535), default=8765, show_default=True, help="Port (0: any).")
@click.option(
    "--token",
    envvar=TOKEN_ENV,
    metavar="TOKEN",
    help=f"Every request must carry it (?token= once, then a cookie; or a Bearer header). Also ${TOKEN_ENV}.",
)
@click.option("--read-only", is_flag=True, help="Hide the actions (approve, promote, rollback).")
@click.option("--open", "open_browser", is_flag=True, help="Open the board in the default browser.")
@click.option(
    "--static",
    "static_dir",
    type=click.Path(file_okay=False, path_type=str),
    metavar="DIR",
    help="Write the pages as a static site into DIR (no actions) and exit, instead of serving.",
)
def ui(
    stack: str | None,
    all_stacks: bool,
    host: str,
    port: int,
    token: str | None,
    read_only: bool,
    open_browser: bool,
    static_dir: str | None,
) -> None:
    """Serve the registry in a browser: the board of models x stages, each model, version, diff and drift.

    The board shows, per model and stage, what `mlinfra status` shows (pinned, pointer, deployed with its commit
    and run, live, drift, a pull request waiting) and marks what disagrees with status's own notes. A model's page
    lists its versions with metrics (sortable, charted), approvals and its history; a version's page its record,
    files, baseline and model card, and a diff with any other version; a drift page the drift job's reports as a
    trend. Pages need no JavaScript and load nothing from the network.

    Approve, promote and rollback are offered as forms; each shows the exact command it is equivalent to and runs
    only once confirmed, through the same library call, gates and audit record as the command (--read-only hides
    them). What is read is cached: each page says when it was read, and its Refresh button reads again.

    The server binds 127.0.0.1 by default. Any other --host needs --token (16 characters or more), which every
    request must carry: open the printed address once (it carries ?token=), a cookie does the rest.

    \b
    Examples:
      mlinfra ui --open                          every stage, on http://127.0.0.1:8765/
      mlinfra --local ui --stack dev --port 9000
      mlinfra ui --read-only --host 0.0.0.0 --token "$(openssl rand -hex 24)"
      mlinfra ui --static site/                  a static copy to publish behind your own authentication
    """
    from mlinfra.errors import BadInputError
    from mlinfra.options import chosen_stages, in_local_mode
    from mlinfra.stacks.project import Project
    from mlinfra.ui.data import RegistryView

    project = Project.find()
    names = chosen_stages(project, stack, all_stacks) if stack else chosen_stages(project, None, True)
    view = RegistryView(project, names)
    if static_dir is not None:
        from pathlib import Path

        from mlinfra.ui.static import write_site

        count = write_site(view, Path(static_dir))
        click.echo(f"wrote {count} files into {static_dir}/ (open {Path(static_dir) / 'index.html'})")
        return
    if token is not None and len(token) < MIN_TOKEN:
        raise BadInputError(f"--token is {len(token)} characters; use {MIN_TOKEN} or more (openssl rand -hex 24)")
    loopback = _loopback(host)
    if not loopback and token is None:
        raise BadInputError(
            f"--host {host} is reachable from other machines: give --token (or ${TOKEN_ENV}) so every request must "
            "carry it, or bind 127.0.0.1"
        )
    serve(
        view, host=host, port=port, token=token, read_only=read_only, local=in_local_mode(), open_browser=open_browser
    )


def serve(
    view: object,
    *,
    host: str,
    port: int,
    token: str | None,
    read_only: bool,
    local: bool,
    open_browser: bool,
) -> None:
    """Read the board once (errors surface here, before serving), then serve until interrupted."""
    import socket
    import threading
    import webbrowser

    import uvicorn

    from mlinfra.errors import MlinfraError
    from mlinfra.ui.app import create_app
    from mlinfra.ui.data import RegistryView

    assert isinstance(view, RegistryView)  # noqa: S101 - typed loosely to keep this module's imports light
    loaded = view.board()
    from mlinfra.ui import views

    views.board_page(view, views.Site())  # compiles the templates now, not on the first request
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host.strip("[]"), port))
        listener.listen(128)  # connections wait in the backlog until uvicorn accepts them
    except OSError as exc:
        raise MlinfraError(f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port") from None
    bound = listener.getsockname()[1]
    shown = f"[{host.strip('[]')}]" if ":" in host else host
    allowed = {f"{name}:{bound}" for name in ("127.0.0.1", "localhost", "[::1]")} if _loopback(host) else None
    app = create_app(view, read_only=read_only, token=token, allowed_hosts=allowed, local=local)
    url = f"http://{shown}:{bound}/" + (f"?token={token}" if token else "")
    rows = len(loaded.value)
    click.echo(f"mlinfra ui: {rows} model/stage cells read at {loaded.refreshed}; serving {url}  (Ctrl-C stops)")
    if read_only:
        click.echo("read-only: actions are hidden")
    if open_browser:
        threading.Timer(0.5, webbrowser.open, args=(url,)).start()
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    server.run(sockets=[listener])
