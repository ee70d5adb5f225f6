"""Monthly cost estimate of a rendered stack from the dated price table shipped beside it (prices.json).

Each resource that costs money gets a line with its monthly USD and the basis (instance hours, assumed load, ...);
a resource whose price is not in the table for the stack's region is listed as missing, never guessed. Types that
AWS does not charge for (IAM, security groups, bucket settings, ...) are free. Assumptions about use come from the
stage's `mlinfra:policy.costAssumptions`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources as package_files
from typing import Any

from .engine import Resource, as_list, get

HOURS_PER_MONTH = 730
DAYS_PER_MONTH = 30.4
WEEKDAYS_PER_MONTH = 21.7
AVAILABILITY_ZONES_DEFAULT = 1

# Types AWS does not charge for by themselves (their use is billed elsewhere, e.g. S3 storage by the bucket line).
FREE_TYPES = frozenset(
    {
        "aws:iam/role:Role",
        "aws:iam/rolePolicy:RolePolicy",
        "aws:iam/policy:Policy",
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
        "aws:iam/instanceProfile:InstanceProfile",
        "aws:kms/alias:Alias",
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "aws:s3/bucketVersioning:BucketVersioning",
        "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
        "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
        "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
        "aws:s3/bucketPolicy:BucketPolicy",
        "aws:s3/bucketLogging:BucketLogging",
        "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration",
        "aws:s3/bucketObjectv2:BucketObjectv2",
        "aws:sagemaker/model:Model",
        "aws:sagemaker/endpoint:Endpoint",
        "aws:sagemaker/modelPackageGroup:ModelPackageGroup",
        "aws:appautoscaling/target:Target",
        "aws:appautoscaling/policy:Policy",
        "aws:sns/topic:Topic",
        "aws:sns/topicPolicy:TopicPolicy",
        "aws:sns/topicSubscription:TopicSubscription",
        "aws:ec2/vpc:Vpc",
        "aws:ec2/subnet:Subnet",
        "aws:ec2/routeTable:RouteTable",
        "aws:ec2/routeTableAssociation:RouteTableAssociation",
        "aws:ec2/securityGroup:SecurityGroup",
        "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup",
        "aws:ssm/document:Document",
        "aws:scheduler/schedule:Schedule",
        "aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig",
        "aws:codeartifact/domain:Domain",
        # The drift job's first run at deployment: one invocation, priced with the function's runs.
        "aws:lambda/invocation:Invocation",
    }
)


@dataclass(frozen=True)
class PriceTable:
    """The shipped price table: its date, currency, sources and per-region prices."""

    date: str
    currency: str
    note: str
    sources: dict[str, str]
    regions: dict[str, dict[str, Any]]

    @classmethod
    def load(cls) -> PriceTable:
        text = package_files.files(__package__ or "mlinfra_infra.policy").joinpath("prices.json").read_text("utf-8")
        data = json.loads(text)
        return cls(data["date"], data["currency"], data["note"], data["sources"], data["regions"])

    def region(self, region: str) -> dict[str, Any]:
        return self.regions.get(region, {})


@dataclass(frozen=True)
class CostLine:
    """One resource's monthly estimate; `monthly_usd` None means its price is missing from the table."""

    resource: str
    type: str
    monthly_usd: float | None
    basis: str

    def to_json(self) -> dict[str, Any]:
        usd = None if self.monthly_usd is None else round(self.monthly_usd, 2)
        return {"resource": self.resource, "type": self.type, "monthlyUsd": usd, "basis": self.basis}


@dataclass
class Estimate:
    """A stack's estimate: priced lines, the total of what could be priced, and what could not."""

    region: str
    table_date: str
    lines: list[CostLine] = field(default_factory=list)
    # Real-time endpoint instances per hour: in steady state (at minCapacity or the fixed count) and at the peak of
    # a blue/green update (the live fleet at its maximum plus the new fleet, which starts at the deploy fleet).
    steady_hourly: float = 0.0
    peak_hourly: float = 0.0
    peak_basis: list[str] = field(default_factory=list)

    @property
    def total(self) -> float:
        return round(sum(line.monthly_usd or 0.0 for line in self.lines), 2)

    @property
    def missing(self) -> list[CostLine]:
        return [line for line in self.lines if line.monthly_usd is None]


@dataclass(frozen=True)
class Assumptions:
    """Use the estimate assumes (from `mlinfra:policy.costAssumptions`)."""

    serverless_requests_per_month: int = 100_000
    serverless_seconds_per_request: float = 0.2
    capture_gb_per_day: float = 0.5
    registry_gb: float = 10
    drift_job_seconds: float = 60
    sandbox_hours_per_weekday: float = 10
    capture_retention_days: int = 30

    @classmethod
    def from_config(cls, cfg: Any) -> Assumptions:
        a = cfg.policy.cost_assumptions
        return cls(
            a.serverless_requests_per_month,
            a.serverless_seconds_per_request,
            a.capture_gb_per_day,
            a.registry_gb,
            a.drift_job_seconds,
            a.sandbox_hours_per_weekday,
            cfg.registry.capture_retention_days,
        )


_CRON_HOUR = re.compile(r"cron\(\S+ (\d+) ")


def _sandbox_hours(resources: Sequence[Resource], assume: Assumptions) -> tuple[float, str]:
    """Monthly hours the VM runs: weekdays between the morning start and the nightly stop schedules."""
    hours: dict[str, int] = {}
    for schedule in resources:
        if schedule.type != "aws:scheduler/schedule:Schedule":
            continue
        match = _CRON_HOUR.match(str(schedule.inputs.get("scheduleExpression", "")))
        action = str(get(schedule.inputs, "target.arn", ""))
        if match:
            hours["start" if action.endswith("startInstances") else "stop"] = int(match.group(1))
    if "stop" not in hours:
        return HOURS_PER_MONTH, "runs around the clock (no nightly stop)"
    if "start" in hours and hours["stop"] > hours["start"]:
        daily = float(hours["stop"] - hours["start"])
        basis = f"{daily:g} h per weekday ({hours['start']}:00-{hours['stop']}:00 schedules)"
    else:
        daily = assume.sandbox_hours_per_weekday
        basis = f"{daily:g} h per weekday (assumed; stopped nightly at {hours['stop']}:00)"
    return daily * WEEKDAYS_PER_MONTH, basis


def _runs_per_month(resources: Sequence[Resource]) -> float:
    for schedule in resources:
        expression = (
            str(schedule.inputs.get("scheduleExpression", "")) if schedule.type.startswith("aws:scheduler") else ""
        )
        if expression.startswith("cron(5 * "):
            return HOURS_PER_MONTH
        if expression.startswith("cron(5 0 "):
            return DAYS_PER_MONTH
    return HOURS_PER_MONTH


class _Pricer:
    """Prices resources of one stack against one region's table; each `price_*` method handles one kind."""

    def __init__(self, resources: Sequence[Resource], prices: dict[str, Any], assume: Assumptions) -> None:
        self.resources, self.prices, self.assume = resources, prices, assume
        self.scaling = {str(t.inputs.get("resourceId")): t for t in resources if t.type == SCALING_TARGET}
        self.endpoints = {
            str(e.inputs.get("endpointConfigName", "")): str(e.inputs.get("name"))
            for e in resources
            if e.type == "aws:sagemaker/endpoint:Endpoint"
        }
        self.log_targets = {
            str(r.inputs.get("targetBucket")) for r in resources if r.type == "aws:s3/bucketLogging:BucketLogging"
        }
        self.steady_hourly = 0.0
        self.peak_hourly = 0.0
        self.peak_basis: list[str] = []

    def rate(self, key: str, sub: str | None = None) -> float | None:
        value = self.prices.get(key)
        if sub is not None:
            value = value.get(sub) if isinstance(value, dict) else None
        return float(value) if isinstance(value, int | float) else None

    def endpoint_config(self, r: Resource) -> Iterator[CostLine]:
        for variant in as_list(r.inputs.get("productionVariants")):
            if "instanceType" not in variant:
                yield self._serverless(r, variant)
                continue
            kind, count = str(variant["instanceType"]), int(variant.get("initialInstanceCount", 1))
            config_name = str(r.inputs.get("name") or r.name)
            endpoint = next((e for c, e in self.endpoints.items() if c.startswith(config_name)), None)
            target = self.scaling.get(f"endpoint/{endpoint}/variant/{variant.get('variantName')}")
            basis = f"{count} x {kind} x {HOURS_PER_MONTH} h"
            if target is not None:
                count = int(target.inputs.get("minCapacity", count))
                most = target.inputs.get("maxCapacity")
                basis = f"{count} x {kind} x {HOURS_PER_MONTH} h at minCapacity (up to {most})"
            hourly = self.rate("sagemakerHostingHourly", kind)
            if hourly is None:
                yield CostLine(r.name, r.type, None, f"{basis}; no price for {kind}")
            else:
                yield CostLine(r.name, r.type, hourly * count * HOURS_PER_MONTH, basis)
                deploy = int(variant.get("initialInstanceCount", 1))
                live = int(target.inputs.get("maxCapacity", deploy)) if target is not None else deploy
                self.steady_hourly += hourly * count
                self.peak_hourly += hourly * (live + deploy)
                self.peak_basis.append(f"{live} live + {deploy} new x {kind}")

    def _serverless(self, r: Resource, variant: dict[str, Any]) -> CostLine:
        a = self.assume
        gb = int(get(variant, "serverlessConfig.memorySizeInMb", 1024)) / 1024
        seconds = a.serverless_requests_per_month * a.serverless_seconds_per_request
        rate = self.rate("sagemakerServerlessPerGbSecond")
        basis = (
            f"serverless {gb:g} GB x {a.serverless_requests_per_month:,} requests x "
            f"{a.serverless_seconds_per_request:g} s (assumed)"
        )
        return CostLine(r.name, r.type, None if rate is None else rate * gb * seconds, basis)

    def bucket(self, r: Resource) -> Iterator[CostLine]:
        rate, a = self.rate("s3StandardPerGbMonth"), self.assume
        if str(r.inputs.get("bucket") or "") in self.log_targets or r.name.endswith("access-logs"):
            yield CostLine(
                r.name, r.type, None if rate is None else 0.0, "access logs: a few MB a month (below a cent)"
            )
            return
        gb = a.registry_gb + a.capture_gb_per_day * a.capture_retention_days
        basis = (
            f"{a.registry_gb:g} GB of artifacts + {a.capture_gb_per_day:g} GB/day of capture kept "
            f"{a.capture_retention_days} days (assumed)"
        )
        yield CostLine(r.name, r.type, None if rate is None else rate * gb, basis)

    def instance(self, r: Resource) -> Iterator[CostLine]:
        kind = str(r.inputs.get("instanceType"))
        hours, basis = _sandbox_hours(self.resources, self.assume)
        hourly = self.rate("ec2Hourly", kind)
        yield CostLine(r.name, r.type, None if hourly is None else hourly * hours, f"{kind}, {basis}")
        volume = int(get(r.inputs, "rootBlockDevice.volumeSize", 8))
        rate = self.rate("ebsGp3PerGbMonth")
        usd = None if rate is None else rate * volume
        yield CostLine(f"{r.name}:root-volume", "ebs:gp3", usd, f"{volume} GB gp3 (billed while stopped)")

    def vpc_endpoint(self, r: Resource) -> Iterator[CostLine]:
        if r.inputs.get("vpcEndpointType") == "Gateway":
            yield CostLine(r.name, r.type, 0.0, "gateway endpoint (free)")
            return
        azs = max(len(as_list(r.inputs.get("subnetIds"))), 1)
        rate = self.rate("interfaceEndpointHourlyPerAz")
        usd = None if rate is None else rate * azs * HOURS_PER_MONTH
        yield CostLine(r.name, r.type, usd, f"interface endpoint in {azs} AZ x {HOURS_PER_MONTH} h (data not counted)")

    def function(self, r: Resource) -> Iterator[CostLine]:
        gb = int(r.inputs.get("memorySize", 128)) / 1024
        runs = _runs_per_month(self.resources)
        rate, per_million = self.rate("lambdaPerGbSecond"), self.rate("lambdaPerMillionRequests")
        seconds = self.assume.drift_job_seconds
        usd = None if rate is None or per_million is None else rate * gb * seconds * runs + per_million * runs / 1e6
        yield CostLine(r.name, r.type, usd, f"{runs:g} runs x {seconds:g} s (assumed) x {gb:g} GB")

    def flat(self, r: Resource) -> Iterator[CostLine]:
        key, basis = FLAT[r.type]
        if key is None:
            yield CostLine(r.name, r.type, 0.0 if self.prices else None, basis)
        else:
            yield CostLine(r.name, r.type, self.rate(key), basis)


SCALING_TARGET = "aws:appautoscaling/target:Target"
# Types priced per resource-month: (price key or None for "below a cent", basis).
FLAT: dict[str, tuple[str | None, str]] = {
    "aws:kms/key:Key": ("kmsKeyMonthly", "1 customer key (requests not counted)"),
    "aws:cloudwatch/metricAlarm:MetricAlarm": ("metricAlarmMonthly", "1 standard-resolution alarm"),
    "aws:cloudwatch/compositeAlarm:CompositeAlarm": ("compositeAlarmMonthly", "1 composite alarm"),
    "aws:cloudwatch/dashboard:Dashboard": ("dashboardMonthly", "1 dashboard"),
    "aws:cloudwatch/logGroup:LogGroup": (None, "a few MB of logs a month (below a cent)"),
    "aws:sqs/queue:Queue": (None, "dead letters of failed scheduled runs: a few requests a month (below a cent)"),
}


def estimate(
    resources: Sequence[Resource], region: str, assume: Assumptions, table: PriceTable | None = None
) -> Estimate:
    """Price every resource of a rendered stack; a type or region without a price is a missing line."""
    table = table or PriceTable.load()
    pricer = _Pricer(resources, table.region(region), assume)
    kinds: dict[str, Callable[[Resource], Iterator[CostLine]]] = {
        "aws:sagemaker/endpointConfiguration:EndpointConfiguration": pricer.endpoint_config,
        "aws:s3/bucket:Bucket": pricer.bucket,
        "aws:ec2/instance:Instance": pricer.instance,
        "aws:ec2/vpcEndpoint:VpcEndpoint": pricer.vpc_endpoint,
        "aws:lambda/function:Function": pricer.function,
        **dict.fromkeys(FLAT, pricer.flat),
    }
    result = Estimate(region=region, table_date=table.date)
    for r in resources:
        if not r.type.startswith("aws:") or r.type in FREE_TYPES:
            continue
        kind = kinds.get(r.type)
        if kind is None:
            result.lines.append(CostLine(r.name, r.type, None, "no price in the table for this type"))
        else:
            result.lines.extend(kind(r))
    result.steady_hourly = round(pricer.steady_hourly, 4)
    result.peak_hourly = round(pricer.peak_hourly, 4)
    result.peak_basis = pricer.peak_basis
    return result


@dataclass(frozen=True)
class CostChange:
    """One resource whose monthly estimate differs between two renders (None: missing price or absent)."""

    resource: str
    before: float | None
    after: float | None

    @property
    def delta(self) -> float:
        return round((self.after or 0.0) - (self.before or 0.0), 2)


@dataclass(frozen=True)
class CostDelta:
    """What a change does to a stack's monthly estimate: the totals and the resources whose line moved."""

    before_total: float
    after_total: float
    changes: tuple[CostChange, ...]

    @property
    def delta(self) -> float:
        return round(self.after_total - self.before_total, 2)

    def markdown(self) -> str:
        """A line and a small table for a PR comment (what `preview --diff` shows); ends with a newline."""
        head = f"Monthly estimate: ${self.before_total:,.2f} -> ${self.after_total:,.2f} ({self.delta:+,.2f})\n"
        if not self.changes:
            return head
        rows = ["", "| resource | before | after | delta |", "|---|---|---|---|"]
        for c in self.changes:
            before = "—" if c.before is None else f"{c.before:,.2f}"
            after = "—" if c.after is None else f"{c.after:,.2f}"
            rows.append(f"| {c.resource} | {before} | {after} | {c.delta:+,.2f} |")
        return head + "\n".join(rows) + "\n"


def delta(before: Estimate, after: Estimate) -> CostDelta:
    """Compare two estimates of one stack (e.g. the base branch's render and the working tree's), line by line."""

    def by_resource(est: Estimate) -> dict[str, float | None]:
        lines: dict[str, float | None] = {}
        for line in est.lines:
            lines[line.resource] = (
                None if line.monthly_usd is None else (lines.get(line.resource) or 0) + line.monthly_usd
            )
        return lines

    old, new = by_resource(before), by_resource(after)
    changes = tuple(
        CostChange(name, old.get(name), new.get(name))
        for name in sorted(set(old) | set(new))
        if name not in old or name not in new or round((old[name] or 0) - (new[name] or 0), 2) != 0
    )
    return CostDelta(before.total, after.total, changes)
