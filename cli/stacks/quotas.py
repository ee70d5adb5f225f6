"""Service Quotas before a deployment: a stage's SageMaker instance quota against its blue/green peak.

A blue/green update (every new pin, all-at-once, canary or linear) starts a whole new fleet beside the live one and
keeps both until the old one is terminated. An autoscaled variant deploys at its maximum (ModelSettings.deploy_fleet
says why) while the live fleet may be scaled out to its maximum too: the peak per endpoint is twice the deploy fleet.
Endpoints of one instance type share one quota, "<type> for endpoint usage"; new accounts often have 0 to 2.

`mlinfra up` and `mlinfra check --account` read the applied quotas through Service Quotas (boto3) and refuse, exit 3,
a stage whose quota is below its peak, naming the quota and the number needed.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlinfra.errors import RefusedError

if TYPE_CHECKING:
    from mlinfra_infra.config import StackConfig

SERVICE_CODE = "sagemaker"


def quota_name(instance_type: str) -> str:
    """The Service Quotas name of SageMaker's per-type hosting quota."""
    return f"{instance_type} for endpoint usage"


@dataclass(frozen=True)
class Need:
    """Instances of one type a stage's endpoints run (steady, at most) and need during a blue/green update."""

    instance_type: str
    steady: int
    peak: int
    endpoints: tuple[str, ...]


@dataclass(frozen=True)
class QuotaCheck:
    """One instance type: what the stage needs and the account's applied quota (None: not found)."""

    need: Need
    quota: float | None
    quota_code: str | None

    @property
    def ok(self) -> bool:
        return self.quota is not None and self.quota >= self.need.peak

    @property
    def name(self) -> str:
        return quota_name(self.need.instance_type)

    def message(self) -> str:
        need = self.need
        peak = f"{need.peak} ({need.steady} live + {need.peak - need.steady} new during a blue/green update)"
        if self.quota is None:
            return f"Service Quotas has no quota named {self.name!r} in this account and region; {peak} needed"
        code = f" ({self.quota_code})" if self.quota_code else ""
        return f"quota {self.name!r}{code} is {self.quota:g}, the stage needs {peak}"

    def to_json(self) -> dict[str, Any]:
        return {
            "quota": self.name,
            "quotaCode": self.quota_code,
            "value": self.quota,
            "instanceType": self.need.instance_type,
            "steady": self.need.steady,
            "peak": self.need.peak,
            "endpoints": list(self.need.endpoints),
            "ok": self.ok,
        }


def needs(config: StackConfig) -> list[Need]:
    """Per instance type, the stage's real-time endpoints' fleet at most and at the peak of a blue/green update."""
    from mlinfra_infra import naming

    steady: dict[str, int] = defaultdict(int)
    endpoints: dict[str, list[str]] = defaultdict(list)
    for model, settings in sorted(config.models.items()):
        fleet = settings.deploy_fleet
        if settings.pinned is None or fleet is None:
            continue
        steady[settings.instance_type] += fleet
        endpoints[settings.instance_type].append(naming.endpoint(config.project, config.stage, model))
    return [Need(kind, steady[kind], 2 * steady[kind], tuple(endpoints[kind])) for kind in sorted(steady)]


def applied_quotas(client: Any) -> dict[str, tuple[float, str]]:
    """SageMaker's quotas by name -> (value, code): the applied values, defaults where none was applied."""
    found: dict[str, tuple[float, str]] = {}
    for operation in ("list_aws_default_service_quotas", "list_service_quotas"):
        paginator = client.get_paginator(operation)
        for page in paginator.paginate(ServiceCode=SERVICE_CODE):
            for quota in page.get("Quotas", []):
                found[str(quota["QuotaName"])] = (float(quota["Value"]), str(quota["QuotaCode"]))
    return found


def check(config: StackConfig, client: Any) -> list[QuotaCheck]:
    """Each instance type the stage needs against the account's quota (no call when nothing is needed)."""
    wanted = needs(config)
    if not wanted:
        return []
    quotas = applied_quotas(client)
    out = []
    for need in wanted:
        value, code = quotas.get(quota_name(need.instance_type), (None, None))
        out.append(QuotaCheck(need, value, code))
    return out


def refuse_short(stage: str, checks: list[QuotaCheck]) -> None:
    """RefusedError (exit 3) naming the first quota below the stage's peak; nothing when every quota suffices."""
    short = [c for c in checks if not c.ok]
    if short:
        more = f" (and {len(short) - 1} more)" if len(short) > 1 else ""
        raise RefusedError(
            f"{stage}: {short[0].message()}{more}; request an increase in Service Quotas (service {SERVICE_CODE}) "
            "before deploying",
            failed=[c.to_json() for c in short],
        )


def stage_quotas(project: Any, config: StackConfig) -> list[QuotaCheck]:
    """The stage's quota checks against its account (through the stage's role, as every AWS call of the CLI)."""
    from mlinfra.aws import StageAws, aws_errors, local_mode

    if not needs(config) or local_mode():
        # The emulator serves no SageMaker quotas: local mode has none to run out of.
        return []

    with aws_errors(f"reading the Service Quotas of {config.stage}"):
        return check(config, StageAws(config, project.root).client("service-quotas"))


def refuse_below_peak(project: Any, config: StackConfig) -> None:
    """`mlinfra up`'s quota gate: RefusedError (exit 3) when an instance quota is below the stage's peak."""
    refuse_short(config.stage, stage_quotas(project, config))
