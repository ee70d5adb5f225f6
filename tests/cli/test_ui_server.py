"""`mlinfra ui`'s server over HTTP (no browser): access rules, CSRF, read-only, the cache, and `--static`."""

from __future__ import annotations

import http.client
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from click.testing import Result

from tests.cli.conftest import snapshot
from tests.cli.test_promotion import IMAGE, make_model, ok
from tests.cli.uiserver import serving

Run = Callable[..., Result]
pytestmark = pytest.mark.emulator
TOKEN = "0123456789abcdef0123"


def request(base: str, method: str, path: str, body: dict[str, str] | None = None, **headers: str) -> Any:
    """One request, redirects not followed: (status, headers, text)."""
    parts = urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    data = urlencode(body).encode() if body is not None else None
    if data is not None:
        headers.setdefault("content-type", "application/x-www-form-urlencoded")
    connection.request(method, path, body=data, headers={k.replace("_", "-"): v for k, v in headers.items()})
    response = connection.getresponse()
    text = response.read().decode()
    connection.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, text


@pytest.fixture
def registered(project_dir: Path, aws_env: str, run: Run, tmp_path: Path) -> Path:
    """churn v1 registered and promoted to dev."""
    ok(run("local", "bootstrap", "--all", "--json"))
    ok(run("register", str(make_model(tmp_path / "v1")), "--model", "churn", "--image", IMAGE, "--json"))
    ok(run("promote", "churn", "--to", "dev", "--reason", "first"))
    return project_dir


def endpoint_serving(*, version: int) -> None:
    """dev's churn endpoint in the emulator as ModelEndpoint declares it: its model carries MLINFRA_VERSION."""
    import boto3

    sagemaker = boto3.client("sagemaker", region_name="eu-west-1")
    container = {"Image": IMAGE, "Environment": {"MLINFRA_VERSION": str(version)}}
    role = "arn:aws:iam::123456789012:role/sagemaker"
    sagemaker.create_model(ModelName="mlinfra-dev-churn-m-1", PrimaryContainer=container, ExecutionRoleArn=role)
    variant = {"VariantName": "primary", "ModelName": "mlinfra-dev-churn-m-1", "InitialInstanceCount": 1}
    sagemaker.create_endpoint_config(
        EndpointConfigName="mlinfra-dev-churn-c-1", ProductionVariants=[{**variant, "InstanceType": "ml.m5.large"}]
    )
    sagemaker.create_endpoint(EndpointName="mlinfra-dev-churn", EndpointConfigName="mlinfra-dev-churn-c-1")


@pytest.fixture
def bootstrapped(project_dir: Path, aws_env: str, run: Run) -> Path:
    """The stages' registries, empty."""
    ok(run("local", "bootstrap", "--all", "--json"))
    return project_dir


def csrf(page: str, form: str = "/refresh") -> str:
    """The CSRF token of the page's form posting to `form`."""
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page.split(f'action="{form}"', 1)[1])
    assert found, f"no CSRF token in the form posting to {form}"
    return found.group(1)


def test_pages_are_cached_until_refreshed_and_allow_nothing_from_the_network(
    registered: Path, run: Run, tmp_path: Path
) -> None:
    endpoint_serving(version=1)
    with serving(registered) as (base, _view):
        status, headers, page = request(base, "GET", "/")
        assert status == 200
        policy = headers["content-security-policy"]
        assert "default-src 'none'" in policy and "script-src" not in policy and "http" not in policy
        assert headers["x-content-type-options"] == "nosniff" and headers["referrer-policy"] == "same-origin"
        assert re.search(r"<script|https?://(?!127\.0\.0\.1)", page) is None
        refreshed = re.search(r"refreshed at <time>([^<]+)</time>", page)
        assert refreshed
        dev = page.split('data-stage="dev"', 1)[1].split("</td>", 1)[0]
        assert '<dd class="pointer">v1</dd>' in dev
        assert '<dd class="live">v1</dd>' in dev and '<dd class="endpoint">InService</dd>' in dev

        ok(run("register", str(make_model(tmp_path / "v2", "weights-2")), "-m", "churn", "--image", IMAGE))
        ok(run("promote", "churn", "--to", "dev", "--version", "2", "--reason", "second"))
        _, _, cached = request(base, "GET", "/")
        assert '<dd class="pointer">v1</dd>' in cached.split('data-stage="dev"', 1)[1].split("</td>", 1)[0]
        assert f"<time>{refreshed.group(1)}</time>" in cached

        assert request(base, "POST", "/refresh", {"csrf": "0" * 64, "next": "/"})[0] == 403
        status, headers, _ = request(base, "POST", "/refresh", {"csrf": csrf(cached), "next": "//evil.example/"})
        assert (status, headers["location"]) == (303, "/")  # never redirected off the server
        _, _, fresh = request(base, "GET", "/")
        assert '<dd class="pointer">v2</dd>' in fresh.split('data-stage="dev"', 1)[1].split("</td>", 1)[0]

        assert request(base, "GET", "/models/nosuch/")[0] == 404
        assert request(base, "GET", "/models/churn/v/9/")[0] == 404
        assert request(base, "GET", "/", host="attacker.example")[0] == 421  # DNS rebinding: wrong Host


def test_actions_need_the_confirmations_token_and_are_gone_when_read_only(registered: Path, run: Run) -> None:
    from mlinfra.ui.actions import Action

    with serving(registered) as (base, _view):
        query = urlencode({"model": "churn", "stage": "staging", "version": "1", "reason": "ok"})
        status, _, confirm = request(base, "GET", f"/actions/approve?{query}")
        assert status == 200
        assert "mlinfra --local approve churn --version 1 --stack staging --reason ok" in confirm
        token = csrf(confirm, "/actions/approve")
        form = {"model": "churn", "stage": "staging", "version": "1", "reason": "ok"}
        # A token for other arguments, a foreign Origin, a cross-site fetch: refused, nothing written.
        assert request(base, "POST", "/actions/approve", {**form, "version": "2", "csrf": token})[0] == 403
        assert (
            request(base, "POST", "/actions/approve", {**form, "csrf": token}, origin="http://evil.example")[0] == 403
        )
        assert request(base, "POST", "/actions/approve", {**form, "csrf": token}, sec_fetch_site="cross-site")[0] == 403
        history = ok(run("history", "churn", "--json"))
        assert [r["action"] for r in history if r["action"] == "approve"] == []
        status, _, done = request(base, "POST", "/actions/approve", {**form, "csrf": token})
        assert status == 200 and "churn v1 approved for staging (package in dev)" in done
        assert [r["action"] for r in ok(run("history", "churn", "--json"))].count("approve") == 1
        # A refused promotion shows its gates: v1 has no approval for prod and no day in staging.
        ok(run("promote", "churn", "--to", "staging", "--reason", "on to staging"))
        action = Action("promote", "churn", "prod", 1, "")
        query = urlencode(action.fields())
        token = csrf(request(base, "GET", f"/actions/promote?{query}")[2], "/actions/promote")
        status, _, refused = request(base, "POST", "/actions/promote", {**action.fields(), "csrf": token})
        assert status == 409 and "refused (exit 3)" in refused
        # Bad input is one line naming the field.
        status, _, bad = request(base, "GET", "/actions/approve?model=churn&stage=prod&reason=x")
        assert status == 400 and "approve needs the version" in bad

    with serving(registered, read_only=True) as (base, _view):
        _, _, page = request(base, "GET", "/models/churn/")
        assert "/actions/" not in page and "<h2" in page
        query = urlencode({"model": "churn", "stage": "staging", "version": "1", "reason": "ok"})
        assert request(base, "GET", f"/actions/approve?{query}")[0] == 403
        assert request(base, "POST", "/actions/approve", {"csrf": "x"})[0] == 403


def test_a_token_guards_every_request(bootstrapped: Path) -> None:
    with serving(bootstrapped, token=TOKEN, allowed_hosts=None) as (base, _view):
        assert request(base, "GET", "/")[0] == 401
        assert request(base, "GET", "/ui.css")[0] == 401
        assert request(base, "GET", "/?token=wrong-token-wrong-token")[0] == 401
        status, headers, _ = request(base, "GET", f"/models/churn/?token={TOKEN}&sort=version")
        assert (status, headers["location"]) == (303, "/models/churn/?sort=version")  # the token leaves the URL
        cookie = headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert request(base, "GET", "/", cookie=cookie.split(";")[0])[0] == 200
        assert request(base, "GET", "/", authorization=f"Bearer {TOKEN}")[0] == 200


def test_non_loopback_host_needs_a_long_token(project_dir: Path, run: Run) -> None:
    result = run("ui", "--host", "0.0.0.0")  # noqa: S104 - refused: that is the test
    assert result.exit_code == 2 and "--host 0.0.0.0 is reachable from other machines" in result.stderr
    result = run("ui", "--host", "0.0.0.0", "--token", "short")  # noqa: S104
    assert result.exit_code == 2 and "use 16 or more" in result.stderr


def test_static_site_is_the_same_pages_without_actions(registered: Path, run: Run, tmp_path: Path) -> None:
    site = tmp_path / "site"
    result = run("ui", "--static", str(site))
    assert result.exit_code == 0, result.stderr
    files = {p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file()}
    assert {"index.html", "ui.css", "models/churn/index.html", "models/churn/v/1/index.html"} <= files
    assert "models/churn/v/1/card.html" in files
    for name in files:
        text = (site / name).read_text()
        assert "<script" not in text and 'method="post"' not in text and "/actions/" not in text
        if name.endswith("index.html"):
            assert 'href="/' not in text  # relative links only: the site works under any prefix
    board = (site / "index.html").read_text()
    assert 'href="models/churn/index.html"' in board and 'href="ui.css"' in board
    version = (site / "models/churn/v/1/index.html").read_text()
    assert 'href="../../../../ui.css"' in version

    again = run("ui", "--static", str(site))  # a site written before is replaced
    assert again.exit_code == 0
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    before = snapshot(other)
    refused = run("ui", "--static", str(other))
    assert refused.exit_code == 2 and "not written by `mlinfra ui --static`" in refused.stderr
    assert snapshot(other) == before
