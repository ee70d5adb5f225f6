"""AWS access for the CLI: per-stage boto3 sessions, role assumption, retries, local mode and one-line errors.

One session per stage (assuming the stage's role where configured), botocore's standard retries, local mode
against the emulator, and AWS errors turned into one-line messages.

Every client honours `AWS_ENDPOINT_URL` (boto3 does) and the standard credential chain. In local mode
(`--local` or MLINFRA_LOCAL=1) the endpoint is the emulator started by `mlinfra local start`, and a command fails
(exit 1) when no emulator answers instead of falling back to real credentials.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator, Mapping
from functools import cache, cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from mlinfra.errors import BadInputError, MlinfraError

if TYPE_CHECKING:
    import boto3

    from mlinfra_infra.config import StackConfig

LOCAL_ENV = "MLINFRA_LOCAL"
ENDPOINT_ENV = "AWS_ENDPOINT_URL"
LOCAL_STATE = Path(".mlinfra") / "local" / "emulator.json"
DEFAULT_LOCAL_PORT = 5000
# Credentials the emulator accepts; used only in local mode and only when no credentials are configured.
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "mlinfra-local", "AWS_SECRET_ACCESS_KEY": "mlinfra-local"}

# Called with every new boto3 session; tests install botocore event hooks here (fault injection, call counting).
SESSION_HOOKS: list[Callable[[boto3.Session], None]] = []


def local_mode() -> bool:
    """Whether local mode is on (MLINFRA_LOCAL=1, set by `mlinfra --local`)."""
    return os.environ.get(LOCAL_ENV, "").lower() in {"1", "true", "yes", "on"}


def mlinfra_command(arguments: str) -> str:
    """A command as a hint prints it, runnable as printed: `mlinfra --local ARGS` in local mode."""
    return f"mlinfra {'--local ' if local_mode() else ''}{arguments}"


def local_state_file(root: Path) -> Path:
    """Where `mlinfra local start --detach` records the emulator it started (pid, port, url)."""
    return root / LOCAL_STATE


def local_endpoint(root: Path | None) -> str:
    """The emulator's URL: $AWS_ENDPOINT_URL, else the one `mlinfra local start` recorded, else the default port."""
    if os.environ.get(ENDPOINT_ENV):
        return os.environ[ENDPOINT_ENV]
    if root is not None:
        with contextlib.suppress(OSError, ValueError, KeyError):
            return str(json.loads(local_state_file(root).read_text())["url"])
    return f"http://127.0.0.1:{DEFAULT_LOCAL_PORT}"


def emulator_answers(url: str, timeout: float = 1.0) -> bool:
    """Whether an AWS emulator answers HTTP at `url`."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/moto-api/", timeout=timeout) as response:  # noqa: S310
            return int(response.status) < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except (OSError, ValueError):
        return False


def enter_local_mode(root: Path | None) -> str:
    """Point this process's AWS clients at the emulator; MlinfraError (exit 1) if none answers."""
    url = local_endpoint(root)
    if not emulator_answers(url):
        raise MlinfraError(
            f"local mode: no AWS emulator answers at {url}; `mlinfra local up` starts one and creates every "
            "stage's registry in it (local mode never falls back to real AWS credentials)"
        )
    os.environ[ENDPOINT_ENV] = url
    if not (os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE")):
        os.environ.update(LOCAL_CREDENTIALS)
    return url


@cache
def _shared_loader() -> Any:
    """One botocore data loader for every session: service models are parsed once per process, not per stage."""
    from botocore.loaders import create_loader

    return create_loader()


def new_session(region: str, credentials: Mapping[str, Any] | None = None) -> boto3.Session:
    """A boto3 session in `region` (optionally with temporary credentials), with SESSION_HOOKS applied."""
    import boto3
    import botocore.session

    core = botocore.session.get_session()
    core.register_component("data_loader", _shared_loader())
    kwargs: dict[str, Any] = {"region_name": region, "botocore_session": core}
    if credentials is not None:
        kwargs.update(
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
        )
    session = boto3.Session(**kwargs)
    for hook in SESSION_HOOKS:
        hook(session)
    return session


def client_config() -> Any:
    """The botocore config: standard retry mode (throttling, 5xx and dropped connections retried with backoff)."""
    from botocore.config import Config

    return Config(retries={"mode": "standard", "max_attempts": 6}, connect_timeout=10, read_timeout=120)


# Why a session acts on a stage: for the stage itself (its own jobs: `access.roleArn`), or for the next stage's job
# reading it as its source (`access.sourceRoleArn`) or approving a package in it (`access.approvalRoleArn`).
Purpose = Literal["stage", "source", "approval"]


class StageAws:
    """AWS clients for one stage: the caller's credentials, or a role assumed with them.

    `purpose` picks the role. "stage": the stage's own `access.roleArn`, assumed with the caller's credentials.
    "source" / "approval": the stage as read (or approved in) by the command of another stage, `acting_for` (that
    stage's own StageAws): the role this stage lends for it (`access.sourceRoleArn` / `approvalRoleArn`), assumed
    from the acting stage's session (role chaining); without one, the acting stage's session itself. A lent purpose
    never falls back to this stage's `roleArn`: that role trusts this stage's own jobs, not the next stage's.
    """

    def __init__(
        self,
        config: StackConfig,
        root: Path | None = None,
        purpose: Purpose = "stage",
        acting_for: StageAws | None = None,
    ) -> None:
        if purpose != "stage" and acting_for is None:
            raise ValueError(f"a {purpose} session of stage {config.stage} needs the StageAws of the acting stage")
        self.config = config
        self.root = root
        self.region = config.region
        self.purpose = purpose
        self.acting_for = acting_for if purpose != "stage" else None
        self._clients: dict[str, Any] = {}

    @property
    def lent_role_arn(self) -> str | None:
        """The role this stage lends for the purpose ("source", "approval"); None for "stage" or when unset."""
        access = self.config.access
        return {"source": access.source_role_arn, "approval": access.approval_role_arn}.get(self.purpose)

    @property
    def role_arn(self) -> str | None:
        """The role this session acts as (None: the caller's own credentials)."""
        if self.acting_for is not None:
            return self.lent_role_arn or self.acting_for.role_arn
        return self.config.access.role_arn

    @cached_property
    def caller_session(self) -> boto3.Session:
        """The caller's own session (whoever runs mlinfra); in local mode, pointed at the emulator first."""
        if self.acting_for is not None:
            return self.acting_for.caller_session
        if local_mode():
            enter_local_mode(self.root)
        return new_session(self.region)

    @cached_property
    def caller_arn(self) -> str:
        """The caller's identity, recorded in audit records even when a stage role is assumed."""
        if self.acting_for is not None:
            return self.acting_for.caller_arn
        with aws_errors("reading the caller identity"):
            return str(self.caller_session.client("sts", config=client_config()).get_caller_identity()["Arn"])

    @cached_property
    def session(self) -> boto3.Session:
        """The session that acts on this stage: the role chosen for the purpose if any, else the one it starts from.

        It starts from the caller's session ("stage") or from the acting stage's session (a lent purpose).
        """
        if self.acting_for is not None:
            base, role = self.acting_for.session, self.lent_role_arn
            if role is None:
                self._refuse_across_accounts()
        else:
            base, role = self.caller_session, self.config.access.role_arn
        if role is None:
            return base
        access, own = self.config.access, self.acting_for is None
        kwargs: dict[str, Any] = {
            "RoleArn": role,
            "RoleSessionName": f"mlinfra-{self.config.stage}" + ("" if own else f"-{self.purpose}"),
            # A lent role is assumed from the acting stage's session (role chaining: an hour at most).
            "DurationSeconds": access.session_seconds if own else 3600,
        }
        if access.external_id and own:
            kwargs["ExternalId"] = access.external_id
        doing = f"assuming {role} for stage {self.config.stage}" + ("" if own else f" ({self.purpose})")
        with aws_errors(doing):
            # A client of its own (created here, for this stage), never the acting stage's cached one.
            credentials = base.client("sts", config=client_config()).assume_role(**kwargs)["Credentials"]
        return new_session(self.region, credentials)

    def declared_account(self) -> str | None:
        """The stage's account as its config says it (`accountId`, else the account of a role it names), no call."""
        if self.config.account_id:
            return self.config.account_id
        for arn in (self.lent_role_arn, self.config.access.role_arn):
            if arn and arn.count(":") >= 5 and arn.split(":")[4].isdigit():
                return arn.split(":")[4]
        return None

    def _refuse_across_accounts(self) -> None:
        """A lent purpose without the lent role: refuse (exit 2) when the stages are known to be in two accounts.

        The acting stage's own identity would ask its own account for this stage's alarms and packages.
        """
        acting = self.acting_for
        mine, theirs = self.declared_account(), acting.declared_account() if acting is not None else None
        if acting is not None and mine and theirs and mine != theirs:
            key = "sourceRoleArn" if self.purpose == "source" else "approvalRoleArn"
            raise BadInputError(
                f"stage {self.config.stage} is in account {mine} and {acting.config.stage} in {theirs}: "
                f"set mlinfra:access.{key} in stage {self.config.stage}'s stack file to the role it lends "
                f"(`mlinfra bootstrap preview --json`, outputs.sourceRoles; docs/cross-account.md)"
            )

    def client(self, service: str) -> Any:
        """A (cached) client for `service` acting on this stage."""
        if service not in self._clients:
            self._clients[service] = self.session.client(service, config=client_config())  # type: ignore[call-overload]
        return self._clients[service]

    @cached_property
    def account_id(self) -> str:
        """The stage's account: from its config, else as the stage's own session would run (never another's)."""
        if self.config.account_id:
            return self.config.account_id
        if self.acting_for is not None:
            # Read for another stage's command, whose session may be in another account: the account of a role of
            # this stage where it names one (no call), else the caller's, as the stage's own session runs.
            declared = self.declared_account()
            if declared:
                return declared
            with aws_errors("reading the caller's account id"):
                sts = self.caller_session.client("sts", config=client_config())
                return str(sts.get_caller_identity()["Account"])
        with aws_errors("reading the stage's account id"):
            return str(self.client("sts").get_caller_identity()["Account"])

    @cached_property
    def registry_bucket(self) -> str:
        """The stage's registry bucket, derived exactly as the Pulumi program derives it."""
        from mlinfra_infra import naming

        return self.config.registry.bucket_name or naming.registry_bucket(
            self.config.project, self.config.stage, self.region, self.account_id
        )


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ClientError ('' for anything else)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


@contextlib.contextmanager
def aws_errors(doing: str) -> Iterator[None]:
    """Turn botocore failures inside the block into one-line MlinfraErrors that say what was being done."""
    from botocore import exceptions as bex

    try:
        yield
    except bex.NoCredentialsError:
        raise MlinfraError(
            f"{doing}: no AWS credentials found; configure them (aws configure / SSO), or use local mode: "
            "`mlinfra local up` (once), then `mlinfra --local ...` or `export MLINFRA_LOCAL=1`"
        ) from None
    except bex.ParamValidationError as exc:
        raise BadInputError(f"{doing}: {str(exc).splitlines()[-1].strip()}") from None
    except bex.ClientError as exc:
        error = exc.response.get("Error", {})
        raise MlinfraError(f"{doing}: {error.get('Code', 'error')}: {error.get('Message', str(exc))}") from None
    except (bex.EndpointConnectionError, bex.ConnectionClosedError, bex.ReadTimeoutError) as exc:
        raise MlinfraError(f"{doing}: cannot reach AWS ({exc}); check the network or AWS_ENDPOINT_URL") from None
    except bex.BotoCoreError as exc:
        raise MlinfraError(f"{doing}: {exc}") from None
