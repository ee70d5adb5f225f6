"""The web view as an ASGI app (Starlette, as `mlinfra serve` uses): routes, the access guard and the actions.

Every response carries a Content-Security-Policy that allows nothing from the network (the pages load their one
stylesheet from this server and have no script at all) and refuses framing by other sites; referrers go to this
server only (with none at all, browsers would post forms with `Origin: null`). The guard in front of the routes
checks the Host header on a loopback bind (a page on another site cannot reach the server through a DNS name it
controls), and with `--token`, the token on every request: from `?token=` once (then a cookie, HttpOnly and
SameSite=Strict, and a redirect that drops it from the address bar) or an `Authorization: Bearer` header. Actions
and the refresh button are POSTs carrying a token signed for exactly what
they do (actions.py), and a POST whose Origin is another site is refused.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode

from mlinfra.errors import BadInputError, MlinfraError, RefusedError
from mlinfra.ui import actions, views
from mlinfra.ui.data import RegistryView

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

LOG = logging.getLogger("mlinfra.ui")
TOKEN_COOKIE = "mlinfra_ui_token"  # noqa: S105 - the cookie's name
MAX_FORM = 16 * 1024
PAGE_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; frame-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
# The model card and the drift job's report are self-contained pages with their own inline styles and SVG (both
# rendered by autoescaping templates); no script may run in them either.
DOCUMENT_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'; form-action 'none'"
)
HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",  # no-referrer would make form posts carry `Origin: null`
    "cache-control": "no-store",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}


class Guard:
    """ASGI middleware: Host check, token check, security headers on every response."""

    def __init__(self, app: Any, *, token: str | None, allowed_hosts: set[str] | None) -> None:
        self.app = app
        self.token = token
        self.allowed_hosts = allowed_hosts

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from starlette.datastructures import URL, Headers, QueryParams
        from starlette.requests import cookie_parser
        from starlette.responses import PlainTextResponse, RedirectResponse

        headers = Headers(scope=scope)
        if self.allowed_hosts is not None and headers.get("host", "") not in self.allowed_hosts:
            await _secured(PlainTextResponse("unexpected Host header: open the address mlinfra ui printed", 421))(
                scope, receive, send
            )
            return
        if self.token is not None:
            query = QueryParams(scope.get("query_string", b""))
            bearer = headers.get("authorization", "")
            given = (
                query.get("token")
                or cookie_parser(headers.get("cookie", "")).get(TOKEN_COOKIE)
                or (bearer[7:] if bearer.lower().startswith("bearer ") else None)
            )
            if not given or not hmac.compare_digest(given.encode(), self.token.encode()):
                message = "this mlinfra ui needs its token: open the address it printed (with ?token=...)"
                await _secured(PlainTextResponse(message, 401))(scope, receive, send)
                return
            if "token" in query and scope["method"] == "GET":
                # Keep the token out of the address bar and the history: a cookie carries it from now on.
                kept = urlencode([(k, v) for k, v in query.multi_items() if k != "token"])
                target = URL(scope=scope).replace(query=kept)
                response = RedirectResponse(f"{target.path}{'?' + kept if kept else ''}", 303)
                response.set_cookie(TOKEN_COOKIE, self.token, httponly=True, samesite="strict", path="/")
                await _secured(response)(scope, receive, send)
                return

        async def secured_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                raw = list(message.get("headers", []))
                names = {name.lower() for name, _ in raw}
                for name, value in HEADERS.items():
                    if name.encode() not in names:
                        raw.append((name.encode(), value.encode()))
                if b"content-security-policy" not in names:
                    raw.append((b"content-security-policy", PAGE_POLICY.encode()))
                message = {**message, "headers": raw}
            await send(message)

        await self.app(scope, receive, secured_send)


def _secured(response: Response) -> Response:
    for name, value in HEADERS.items():
        response.headers[name] = value
    response.headers["content-security-policy"] = PAGE_POLICY
    return response


class Pages:
    """The route handlers, over one RegistryView; sync handlers run in Starlette's thread pool."""

    def __init__(self, view: RegistryView, *, read_only: bool, local: bool, key: bytes) -> None:
        self.view = view
        self.read_only = read_only
        self.local = local
        self.key = key
        self.site = views.Site(read_only=read_only, local=local, tokens={"refresh": actions.sign(key, "refresh")})

    def message(self, here: views.Site, title: str, line: str, status: int, **extra: Any) -> Response:
        from starlette.responses import HTMLResponse

        return HTMLResponse(views.message_page(here, title, [line], **extra), status)

    def page(self, path: str, build: Any, *args: Any, **kwargs: Any) -> Response:
        """A page built from the registry; a bad name is 404, a registry error 502 (one line, as the CLI says it)."""
        from starlette.responses import HTMLResponse

        here = self.site.at(path)
        try:
            return HTMLResponse(build(self.view, *args, here, **kwargs))
        except BadInputError as exc:
            return self.message(here, "Not found", str(exc), 404)
        except MlinfraError as exc:
            return self.message(here, "Could not read the registry", str(exc), 502)

    def document(self, path: str, read: Any) -> Response:
        """A self-contained page stored in the registry (a model card, a drift report), under its own policy."""
        from starlette.responses import HTMLResponse

        here = self.site.at(path)
        try:
            html = read()
        except BadInputError as exc:
            return self.message(here, "Not found", str(exc), 404)
        except MlinfraError as exc:
            return self.message(here, "Could not read the registry", str(exc), 502)
        if html is None:
            return self.message(here, "Not found", "the drift job stored no HTML page for this run", 404)
        return HTMLResponse(html, headers={"content-security-policy": DOCUMENT_POLICY})

    def board(self, request: Request) -> Response:
        return self.page("", views.board_page)

    def model(self, request: Request) -> Response:
        name = request.path_params["model"]
        sort, order = request.query_params.get("sort", "version"), request.query_params.get("order", "desc")
        return self.page(views.model_path(name), views.model_page, name, sort=sort, order=order)

    def version(self, request: Request) -> Response:
        name, number = request.path_params["model"], request.path_params["version"]
        return self.page(views.version_path(name, number), views.version_page, name, number)

    def card(self, request: Request) -> Response:
        name, number = request.path_params["model"], request.path_params["version"]
        return self.document(views.version_path(name, number), lambda: self.view.card_html(name, number).value)

    def diff_form(self, request: Request) -> Response:
        from starlette.responses import RedirectResponse

        name = request.path_params["model"]
        first, second = request.query_params.get("a", ""), request.query_params.get("b", "")
        if not (first.isdigit() and second.isdigit()):
            return self.message(self.site, "Bad request", "a diff needs two version numbers", 400)
        older, newer = sorted((int(first), int(second)))
        return RedirectResponse("/" + views.diff_path(name, older, newer), 303)

    def diff(self, request: Request) -> Response:
        name, first, second = (request.path_params[k] for k in ("model", "a", "b"))
        return self.page(views.diff_path(name, first, second), views.diff_page, name, first, second)

    def drift(self, request: Request) -> Response:
        name, stage = request.path_params["model"], request.path_params["stage"]
        return self.page(views.drift_path(name, stage), views.drift_page, name, stage)

    def report(self, request: Request) -> Response:
        name, stage, file = (request.path_params[k] for k in ("model", "stage", "file"))
        stamp = file.removesuffix(".html")
        return self.document(
            views.drift_path(name, stage), lambda: self.view.drift_report_html(name, stage, stamp).value
        )

    def no_icon(self, request: Request) -> Response:
        from starlette.responses import Response

        return Response(status_code=204)  # the card's and the drift job's pages name no icon; browsers ask

    def stylesheet(self, request: Request) -> Response:
        from starlette.responses import Response

        import mlinfra_templates

        return Response(mlinfra_templates.render("ui/ui.css.j2"), media_type="text/css")

    async def refresh(self, request: Request) -> Response:
        from starlette.responses import RedirectResponse

        form = await _form(request)
        if form is None or not actions.verify(self.key, form.get("csrf", ""), "refresh"):
            return self.message(self.site, "Refused", "the refresh button's token is missing or stale: reload", 403)
        self.view.refresh()
        target = form.get("next", "/")
        if not target.startswith("/") or target.startswith("//"):
            target = "/"
        return RedirectResponse(target, 303)

    def confirm(self, request: Request) -> Response:
        """GET /actions/<kind>: the confirmation page, with the exact command and a token for exactly it."""
        from starlette.responses import HTMLResponse

        if self.read_only:
            return self.message(self.site, "Read-only", "this mlinfra ui was started with --read-only", 403)
        try:
            action = actions.Action.from_form(request.path_params["kind"], request.query_params)
            self.view.require_model(action.model)
        except BadInputError as exc:
            return self.message(self.site, "Bad request", str(exc), 400)
        token = actions.action_token(self.key, action)
        back = "/" + views.model_path(action.model)
        return HTMLResponse(views.confirm_page(self.site, action, action.command(local=self.local), token, back))

    async def act(self, request: Request) -> Response:
        """POST /actions/<kind>: run a confirmed action through its library call."""
        from starlette.concurrency import run_in_threadpool
        from starlette.responses import HTMLResponse

        form = None if self.read_only else await _form(request)
        if form is None:
            why = "--read-only: no actions" if self.read_only else "this request did not come from this server"
            return self.message(self.site, "Refused", why, 403)
        try:
            action = actions.Action.from_form(request.path_params["kind"], form)
        except BadInputError as exc:
            return self.message(self.site, "Bad request", str(exc), 400)
        if not actions.verify(self.key, form.get("csrf", ""), action.kind, action.fields()):
            return self.message(self.site, "Refused", "the confirmation's token does not match this action", 403)
        command = action.command(local=self.local)
        try:
            result = await run_in_threadpool(action.run, self.view.project)
        except MlinfraError as exc:
            return self.failed(command, exc)
        finally:
            self.view.refresh()  # what the action changed (or another's change that refused it) shows next
        said = actions.outcome(action, result)
        back = (f"/{views.model_path(action.model)}", f"Back to {action.model}")
        html = views.message_page(self.site, "Done", [said["line"], f"Ran: {command}"], link=said["link"], back=back)
        return HTMLResponse(html)

    def failed(self, command: str, exc: MlinfraError) -> Response:
        """An action's error as the command reports it: its exit code, its one line, the failing gates."""
        if isinstance(exc, RefusedError):
            items = [f"{g.get('gate')}: {g.get('reason')}" for g in exc.failed]
            return self.message(self.site, "Refused", f"{command} was refused (exit 3): {exc}", 409, items=items)
        if isinstance(exc, BadInputError):
            return self.message(self.site, "Bad request", f"{command} failed (exit 2): {exc}", 400)
        return self.message(self.site, "Failed", f"{command} failed (exit 1): {exc}", 500)


def create_app(
    view: RegistryView,
    *,
    read_only: bool = False,
    token: str | None = None,
    allowed_hosts: set[str] | None = None,
    local: bool = False,
    secret: bytes | None = None,
) -> Starlette:
    """The web view of `view`'s registries. `allowed_hosts` (loopback binds) limits the Host header."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.routing import Route

    pages = Pages(view, read_only=read_only, local=local, key=secret or secrets.token_bytes(32))
    routes = [
        Route("/", pages.board),
        Route("/ui.css", pages.stylesheet),
        Route("/favicon.ico", pages.no_icon),
        Route("/refresh", pages.refresh, methods=["POST"]),
        Route("/models/{model}/", pages.model),
        Route("/models/{model}/v/{version:int}/", pages.version),
        Route("/models/{model}/v/{version:int}/card.html", pages.card),
        Route("/models/{model}/diff/", pages.diff_form),
        Route("/models/{model}/diff/{a:int}/{b:int}/", pages.diff),
        Route("/models/{model}/drift/{stage}/", pages.drift),
        Route("/models/{model}/drift/{stage}/reports/{file}", pages.report),
        Route("/actions/{kind}", pages.confirm, methods=["GET"]),
        Route("/actions/{kind}", pages.act, methods=["POST"]),
    ]
    middleware = [Middleware(Guard, token=token, allowed_hosts=allowed_hosts)]
    return Starlette(routes=routes, middleware=middleware)


async def _form(request: Request) -> dict[str, str] | None:
    """A urlencoded form posted from this server's own pages (None for anything else: another Origin, too large)."""
    origin = request.headers.get("origin")
    if origin is not None and origin != f"{request.url.scheme}://{request.headers.get('host', '')}":
        return None
    if request.headers.get("sec-fetch-site", "same-origin") not in {"same-origin", "none"}:
        return None
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            return None
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        return None
    return {name: values[-1] for name, values in parsed.items()}
