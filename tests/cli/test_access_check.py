"""`mlinfra check --access` (the access contract on every stack) and `mlinfra check --account` / `mlinfra up` (the
stage's SageMaker instance quota against the blue/green peak, read through Service Quotas with botocore's Stubber:
the emulator serves no SageMaker quotas, and the Stubber validates every response against botocore's model)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from click.testing import Result

from mlinfra.aws import StageAws
from mlinfra_infra.components import driftjob
from mlinfra_infra.components.common import statement

Run = Callable[..., Result]


def test_access_all_lists_every_principal_and_allows_every_call(project_dir: Path, run: Run) -> None:
    result = run("check", "--access", "--all", "--json")
    assert result.exit_code == 0, result.stderr
    reports = {doc["stack"]: doc for doc in json.loads(result.stdout)}
    assert set(reports) == {"sandbox", "dev", "staging", "prod"}
    principals = {call["principal"] for doc in reports.values() for call in doc["calls"]}
    assert {"drift-job", "endpoint", "scheduler", "sandbox-vm", "analyst"} <= principals
    assert [c for doc in reports.values() for c in doc["calls"] if not c["allowed"]] == []
    # Every unpinned model is rendered with a sample pin, so its endpoint and drift job are checked too.
    assert reports["prod"]["sampledPins"] == ["churn"]
    # CI's roles come from the bootstrap stack; a stage stack lists them as not declared here.
    assert {"ci-preview", "ci-deploy", "ci-promotion"} <= set(reports["prod"]["absentPrincipals"])
    checkpoint = [
        c for c in reports["prod"]["calls"] if c["principal"] == "drift-job" and "checkpoint.json" in json.dumps(c)
    ]
    assert {c["action"] for c in checkpoint} >= {"s3:GetObject", "s3:PutObject", "s3:ListBucket"}
    assert all(c["decidedBy"] for c in checkpoint)


def test_access_table_names_the_deciding_statement(project_dir: Path, run: Run) -> None:
    result = run("check", "--access", "--stack", "prod")
    assert result.exit_code == 0, result.stderr
    assert "drift-job" in result.stdout and "ListCaptureAndReadsThatMayMiss" in result.stdout
    assert "0 denied" in result.stdout


@pytest.fixture
def narrow_drift_listing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The drift job's role as it was before the access contract: ListBucket only under the capture prefixes."""

    def old(models: Any, bucket_arn: Any) -> dict[str, object]:
        prefixes = [f"{m.capture_prefix}*" for m in models]
        return statement(
            "ListOwnCapture", ["s3:ListBucket"], [bucket_arn], condition={"StringLike": {"s3:prefix": prefixes}}
        )

    monkeypatch.setattr(driftjob, "listing_statement", old)


@pytest.mark.usefixtures("narrow_drift_listing")
def test_the_old_drift_role_exits_3_naming_the_denied_call(project_dir: Path, run: Run) -> None:
    result = run("check", "--access", "--stack", "prod")
    assert result.exit_code == 3
    assert "drift-job is denied s3:ListBucket" in result.stderr and "403, not 404" in result.stderr
    assert "(and 1 more)" in result.stderr
    # Both reads that may miss: the checkpoint before the first run, and a missing baseline.
    doc = json.loads(run("check", "--access", "--stack", "prod", "--json").stdout)
    denied = sorted(c["context"]["s3:prefix"] for c in doc["calls"] if not c["allowed"])
    assert denied == ["models/churn/versions/1/baseline.json", "monitoring/churn/checkpoint.json"]
    # Plain `mlinfra check` refuses it too: the contract is a mandatory rule of the pack.
    from tests.builders import pin
    from tests.cli.test_preview import edit_stack

    edit_stack(project_dir, "prod", "mlinfra:models", {"churn": {"pinned": pin(stage="prod")}})
    plain = run("check", "--stack", "prod", "--json")
    assert plain.exit_code == 3
    rules = {(v["rule"], v["level"]) for v in json.loads(plain.stdout)["violations"]}
    assert ("access-contract", "mandatory") in rules


def _quotas(value: float) -> dict[str, Any]:
    return {
        "Quotas": [
            {
                "ServiceCode": "sagemaker",
                "ServiceName": "Amazon SageMaker",
                "QuotaArn": "arn:aws:servicequotas:eu-west-1:123456789012:sagemaker/L-0A3C7B6D",
                "QuotaCode": "L-0A3C7B6D",
                "QuotaName": "ml.m5.xlarge for endpoint usage",
                "Value": value,
                "Unit": "None",
                "Adjustable": True,
                "GlobalQuota": False,
            }
        ]
    }


@pytest.fixture
def quotas(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[float, float | None], None]]:
    """Serve Service Quotas from botocore's Stubber: the default, then the applied value (None: none applied)."""
    client = boto3.client(
        "service-quotas",
        region_name="eu-west-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )
    stubber = Stubber(client)
    real = StageAws.client

    def client_for(self: StageAws, service: str) -> Any:
        return client if service == "service-quotas" else real(self, service)

    monkeypatch.setattr(StageAws, "client", client_for)

    def serve(default: float, applied: float | None) -> None:
        stubber.add_response("list_aws_default_service_quotas", _quotas(default), {"ServiceCode": "sagemaker"})
        stubber.add_response(
            "list_service_quotas",
            _quotas(applied) if applied is not None else {"Quotas": []},
            {"ServiceCode": "sagemaker"},
        )

    with stubber:
        yield serve


def test_a_quota_below_the_peak_refuses_with_exit_3(
    project_dir: Path, run: Run, quotas: Callable[[float, float | None], None]
) -> None:
    from tests.builders import pin
    from tests.cli.test_preview import edit_stack

    edit_stack(project_dir, "prod", "mlinfra:models", {"churn": {"pinned": pin(stage="prod")}})
    quotas(2, 8)
    result = run("check", "--account", "--stack", "prod")
    assert result.exit_code == 3
    # Autoscaled to 6 at most: the new fleet starts at 6 beside up to 6 live instances.
    assert "'ml.m5.xlarge for endpoint usage' (L-0A3C7B6D) is 8, the stage needs 12" in result.stderr
    quotas(2, 12)
    ok = run("check", "--account", "--stack", "prod", "--json")
    assert ok.exit_code == 0, ok.stderr
    doc = json.loads(ok.stdout)
    assert doc["quotas"][0] | {"endpoints": None} == {
        "quota": "ml.m5.xlarge for endpoint usage",
        "quotaCode": "L-0A3C7B6D",
        "value": 12.0,
        "instanceType": "ml.m5.xlarge",
        "steady": 6,
        "peak": 12,
        "endpoints": None,
        "ok": True,
    }
    # No quota applied: the default counts.
    quotas(4, None)
    assert run("check", "--account", "--stack", "prod").exit_code == 3


def test_up_refuses_before_the_engine(
    project_dir: Path, run: Run, quotas: Callable[[float, float | None], None]
) -> None:
    from tests.builders import pin
    from tests.cli.test_preview import edit_stack

    edit_stack(project_dir, "prod", "mlinfra:models", {"churn": {"pinned": pin(stage="prod")}})
    quotas(0, None)
    result = run("up", "--stack", "prod", "--yes")
    assert result.exit_code == 3
    assert "ml.m5.xlarge for endpoint usage" in result.stderr and "12" in result.stderr


def test_a_stage_without_instances_needs_no_quota_call(project_dir: Path, run: Run) -> None:
    # dev is serverless and sandbox has no endpoint: nothing to check, no AWS call (no credentials needed).
    result = run("check", "--account", "--stack", "dev", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {"stack": "dev", "quotas": []}


def test_cost_shows_steady_state_and_the_deployment_peak(project_dir: Path, run: Run) -> None:
    from mlinfra_infra.policy.cost import PriceTable
    from tests.builders import pin
    from tests.cli.test_preview import edit_stack

    edit_stack(project_dir, "prod", "mlinfra:models", {"churn": {"pinned": pin(stage="prod")}})
    result = run("check", "--stack", "prod", "--offline", "--json")  # the cost only: no gate re-check (AWS)
    assert result.exit_code == 0, result.stderr
    hourly = json.loads(result.stdout)["endpointHourlyUsd"]
    rate = PriceTable.load().region("eu-west-1")["sagemakerHostingHourly"]["ml.m5.xlarge"]
    # Two instances at minCapacity; during an update up to six live beside the six-instance new fleet.
    assert hourly["steady"] == pytest.approx(2 * rate, abs=1e-3)
    assert hourly["deploymentPeak"] == pytest.approx(12 * rate, abs=1e-3)
    assert hourly["peakBasis"] == ["6 live + 6 new x ml.m5.xlarge"]
    table = run("check", "--stack", "prod", "--offline")
    assert "/hour at the peak of a blue/green update" in table.stdout
