"""register / promote / approve / rollback / history / status against the AWS emulator over HTTP."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import boto3
import pytest
from click.testing import Result
from ruamel.yaml import YAML

from mlinfra.registry.integrity import checksum_of
from mlinfra.stacks.edit import read_pin
from mlinfra.stacks.project import Project
from mlinfra_infra import layout, naming
from tests.cli.conftest import snapshot

Run = Callable[..., Result]
# A team's own serving image (not a framework container, whose handler layout register would check).
IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/churn-serving:1.2.0"
# SageMaker's scikit-learn 1.2-1 image in eu-west-1, as register resolves it for --framework sklearn.
FRAMEWORK_IMAGE = "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
ACCOUNT = "123456789012"


def bucket(stage: str) -> str:
    return naming.registry_bucket("mlinfra", stage, "eu-west-1", ACCOUNT)


def ok(result: Result) -> Any:
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.stderr}"
    return json.loads(result.stdout) if result.stdout.strip().startswith(("{", "[")) else result.stdout


def make_model(root: Path, content: str = "weights-1") -> Path:
    model = root / "model"
    model.mkdir(parents=True, exist_ok=True)
    (model / "model.bin").write_text(content)
    (model / "code").mkdir(exist_ok=True)
    (model / "code" / "inference.py").write_text("def model_fn(model_dir):\n    return model_dir\n")
    return model


@pytest.fixture
def platform(project_dir: Path, aws_env: str, run: Run) -> Path:
    """The shipped stacks, every stage delivered directly (test_delivery.py covers pull requests), bootstrapped."""
    direct_delivery(project_dir)
    ok(run("local", "bootstrap", "--all", "--json"))
    return project_dir


def direct_delivery(root: Path) -> None:
    """Deliver staging and prod directly too: the promotion moves the pointer and pins the stack file at once."""
    for stage in ("staging", "prod"):
        path = root / "stacks" / f"Pulumi.{stage}.yaml"
        path.write_text(path.read_text() + "  mlinfra:delivery: direct\n")


def register(run: Run, root: Path, content: str = "weights-1", *extra: str) -> dict[str, Any]:
    model = make_model(root / f"src-{content}", content) if content else root
    metrics = root / "metrics.json"
    metrics.write_text(json.dumps({"auc": 0.91, "f1": 0.8}))
    return ok(
        run(
            "register",
            str(model),
            "--model",
            "churn",
            "--image",
            IMAGE,
            "--metrics",
            str(metrics),
            "--git-sha",
            "abc123",
            "--json",
            *extra,
        )
    )


def s3() -> Any:
    return boto3.client("s3", region_name="eu-west-1")


def read_json(stage: str, key: str) -> dict[str, Any]:
    return json.loads(s3().get_object(Bucket=bucket(stage), Key=key)["Body"].read())


def set_since(stage: str, model: str, hours_ago: float) -> None:
    """Pretend the stage's version was deployed `hours_ago` hours ago (the soak gate reads `deployed.since`)."""
    pointer = read_json(stage, layout.stage_key(model))
    since = (datetime.now(UTC) - timedelta(hours=hours_ago)).isoformat().replace("+00:00", "Z")
    pointer["deployed"] = {"version": pointer["version"], "digest": pointer["digest"], "since": since}
    s3().put_object(Bucket=bucket(stage), Key=layout.stage_key(model), Body=json.dumps(pointer).encode())


# --- register --------------------------------------------------------------------------------------------------


def test_register_uploads_records_and_numbers_by_package_version(platform: Path, run: Run, tmp_path: Path) -> None:
    out = register(run, tmp_path)
    assert set(out) == {
        *("model", "version", "digest", "artifact", "image", "frameworkVersion"),
        *("existing", "attached", "finished", "repaired"),
    }
    assert (out["existing"], out["attached"]) == (False, [])
    assert out["version"] == 1
    assert out["artifact"] == f"s3://{bucket('sandbox')}/{layout.artifact_key('churn', out['digest'])}"
    attributes = s3().get_object_attributes(
        Bucket=bucket("sandbox"), Key=layout.artifact_key("churn", out["digest"]), ObjectAttributes=["Checksum"]
    )
    assert attributes["Checksum"]["ChecksumSHA256"] == checksum_of(out["digest"])
    record = read_json("sandbox", layout.version_key("churn", 1))
    assert record["metrics"] == {"auc": 0.91, "f1": 0.8}
    assert record["gitSha"] == "abc123"
    assert record["registeredBy"].startswith("arn:aws:")
    package = boto3.client("sagemaker", region_name="eu-west-1").describe_model_package(
        ModelPackageName=record["packageArn"]
    )
    assert package["ModelPackageVersion"] == 1
    assert package["ModelApprovalStatus"] == "PendingManualApproval"
    keys = [o["Key"] for o in s3().list_objects_v2(Bucket=bucket("sandbox"))["Contents"]]
    assert not [k for k in keys if k.startswith("uploads/")], "the temporary upload is removed"


def test_same_bytes_twice_return_the_existing_version(platform: Path, run: Run, tmp_path: Path) -> None:
    first = register(run, tmp_path)
    again = register(run, tmp_path)
    assert again == {**first, "existing": True}
    other = register(run, tmp_path, "weights-2")
    assert other["version"] == 2
    assert other["digest"] != first["digest"]


def test_register_unknown_model_and_bad_metrics_write_nothing(platform: Path, run: Run, tmp_path: Path) -> None:
    model = make_model(tmp_path)
    before = s3().list_objects_v2(Bucket=bucket("sandbox")).get("KeyCount")
    result = run("register", str(model), "--model", "chrun", "--image", IMAGE)
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "error: unknown model 'chrun' in .mlinfra/local/workspace/stacks/Pulumi.sandbox.yaml (did you mean 'churn'?)"
    )
    (tmp_path / "m.json").write_text("{not json")
    result = run("register", str(model), "--model", "churn", "--image", IMAGE, "--metrics", str(tmp_path / "m.json"))
    assert result.exit_code == 2
    assert "not valid JSON" in result.stderr and result.stderr.count("\n") == 1
    result = run("register", str(model), "--model", "churn")
    assert result.exit_code == 2
    assert "give --framework (its image is picked to fit the model) or --image" in result.stderr
    assert s3().list_objects_v2(Bucket=bucket("sandbox")).get("KeyCount") == before


@pytest.mark.parametrize("kind", ["absolute", "dotdot", "symlink", "device"])
def test_malicious_archive_is_refused_and_nothing_is_stored(
    platform: Path, run: Run, tmp_path: Path, kind: str
) -> None:
    import io
    import tarfile

    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo({"absolute": "/etc/evil", "dotdot": "../evil"}.get(kind, "evil"))
        if kind == "symlink":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        elif kind == "device":
            info.type = tarfile.CHRTYPE
        data = b"x" if kind in {"absolute", "dotdot"} else b""
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    result = run("register", str(archive), "--model", "churn", "--image", IMAGE)
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith(f"error: {archive}")
    assert result.stderr.count("\n") == 1
    contents = s3().list_objects_v2(Bucket=bucket("sandbox")).get("Contents", [])
    assert not contents, f"nothing stored, found {[c['Key'] for c in contents]}"
    assert not s3().list_multipart_uploads(Bucket=bucket("sandbox")).get("Uploads")


def test_register_a_tarball(platform: Path, run: Run, tmp_path: Path) -> None:
    from mlinfra.models.packaging import pack

    archive = tmp_path / "model.tar.gz"
    with archive.open("wb") as handle:
        packed = pack(make_model(tmp_path), handle.write)
    out = ok(run("register", str(archive), "--model", "churn", "--image", IMAGE, "--json"))
    assert out["digest"] == packed.digest
    # The directory it came from gives the same digest, hence the same version.
    assert ok(run("register", str(tmp_path / "model"), "-m", "churn", "--image", IMAGE, "--json"))["version"] == 1


# --- promote ---------------------------------------------------------------------------------------------------


def test_promote_copies_registers_moves_pins_and_audits(platform: Path, run: Run, tmp_path: Path) -> None:
    reg = register(run, tmp_path)
    out = ok(run("promote", "churn", "--to", "dev", "--reason", "first", "--json"))
    assert out == {
        "model": "churn",
        "stage": "dev",
        "version": 1,
        "previous": None,
        "digest": reg["digest"],
        "deployed": None,  # pinned, not deployed: no apply recorded yet
    }
    key = layout.artifact_key("churn", reg["digest"])
    attributes = s3().get_object_attributes(Bucket=bucket("dev"), Key=key, ObjectAttributes=["Checksum"])
    assert attributes["Checksum"]["ChecksumSHA256"] == checksum_of(reg["digest"])
    pin = read_pin(Project(platform), "dev", "churn")
    assert pin == {"version": 1, "digest": reg["digest"], "image": IMAGE, "artifact": f"s3://{bucket('dev')}/{key}"}
    assert read_json("dev", layout.stage_key("churn"))["version"] == 1
    record = read_json("dev", layout.version_key("churn", 1))
    assert record["lineage"]["sourceStage"] == "sandbox"
    assert record["packageArn"].startswith(f"arn:aws:sagemaker:eu-west-1:{ACCOUNT}:model-package/mlinfra-dev-churn/")
    history = ok(run("history", "churn", "--json"))
    assert [(h["action"], h["stage"], h["version"]) for h in history] == [
        ("promote", "dev", 1),
        ("register", "sandbox", 1),
    ]
    assert {"action", "model", "stage", "version", "actor", "time", "reason"} <= set(history[0])
    assert history[0]["reason"] == "first"
    # The stack file still renders, now with the endpoint.
    preview = ok(run("preview", "--stack", "dev", "--json"))
    assert [r["inputs"]["name"] for r in preview["resources"] if r["type"] == "aws:sagemaker/endpoint:Endpoint"] == [
        "mlinfra-dev-churn"
    ]


def test_promote_again_is_idempotent_and_default_follows_the_previous_stage(
    platform: Path, run: Run, tmp_path: Path
) -> None:
    register(run, tmp_path)
    ok(run("promote", "churn", "--to", "dev", "--reason", "r"))
    again = ok(run("promote", "churn", "--to", "dev", "--reason", "r", "--json"))
    assert again["version"] == 1
    assert len([h for h in ok(run("history", "churn", "--stage", "dev", "--json")) if h["action"] == "promote"]) == 1
    register(run, tmp_path, "weights-2")
    moved = ok(run("promote", "churn", "--to", "dev", "--json"))
    assert (moved["version"], moved["previous"]) == (2, 1)


def test_skipping_a_stage_is_refused_unless_forced_with_a_reason(platform: Path, run: Run, tmp_path: Path) -> None:
    register(run, tmp_path)
    before = snapshot(platform)
    result = run("promote", "churn", "--to", "staging", "--from", "sandbox")
    assert result.exit_code == 3
    assert "source-stage: promotes from sandbox, but this stage requires dev" in result.stderr
    assert snapshot(platform) == before
    result = run("promote", "churn", "--to", "staging", "--from", "sandbox", "--force")
    assert result.exit_code == 2
    assert result.stderr == "error: --force skips the gates and needs --reason saying why\n"
    forced = ok(run("promote", "churn", "--to", "staging", "--from", "sandbox", "--force", "--reason", "hotfix"))
    assert "skipped with --force" in forced
    record = ok(run("history", "churn", "--stage", "staging", "--json"))[0]
    assert record["forced"] is True and record["reason"] == "hotfix"


def test_prod_gates_list_every_failure_then_pass(platform: Path, run: Run, tmp_path: Path) -> None:
    register(run, tmp_path)
    ok(run("promote", "churn", "--to", "dev"))
    ok(run("promote", "churn", "--to", "staging"))
    result = run("promote", "churn", "--to", "prod")
    assert result.exit_code == 3
    assert "2 gate(s) failed" in result.stderr
    assert (
        "approval: v1 is PendingManualApproval in staging; run "
        '`mlinfra --local approve churn --version 1 --stack prod --reason "..."`' in result.stderr
    )
    assert "soak: staging has deployed nothing, not v1: the soak counts from the recorded deployment" in result.stderr
    ok(run("record-deployment", "--stack", "staging"))
    result = run("promote", "churn", "--to", "prod")
    assert "soak: v1 has been deployed 0.0 h in staging; 24 h required" in result.stderr
    approved = ok(run("approve", "churn", "--version", "1", "--stage", "prod", "--reason", "card reviewed", "--json"))
    assert approved["approvedIn"] == "staging"
    set_since("staging", "churn", 25)
    out = ok(run("promote", "churn", "--to", "prod", "--json"))
    assert out["version"] == 1
    actions = [h["action"] for h in ok(run("history", "churn", "--stage", "prod", "--json"))]
    assert actions == ["promote", "approve"]

    # Object Lock in prod is per object: the artifact and the audit records carry the configured retention
    # (GOVERNANCE, 365 days), the stage pointer stays replaceable and nothing is locked in staging.
    client = s3()
    artifact = client.head_object(Bucket=bucket("prod"), Key=layout.artifact_key("churn", out["digest"]))
    assert artifact["ObjectLockMode"] == "GOVERNANCE"
    days = (artifact["ObjectLockRetainUntilDate"] - datetime.now(UTC)).days
    assert 363 <= days <= 365, days
    audit_keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket("prod"), Prefix="audit/")["Contents"]]
    assert len(audit_keys) == 2
    for key in audit_keys:
        assert client.head_object(Bucket=bucket("prod"), Key=key)["ObjectLockMode"] == "GOVERNANCE", key
    assert "ObjectLockMode" not in client.head_object(Bucket=bucket("prod"), Key=layout.stage_key("churn"))
    staged = client.head_object(Bucket=bucket("staging"), Key=layout.artifact_key("churn", out["digest"]))
    assert "ObjectLockMode" not in staged


def test_metric_threshold_gate(platform: Path, run: Run, tmp_path: Path) -> None:
    path = platform / "stacks" / "Pulumi.dev.yaml"
    yaml = YAML()
    data = yaml.load(path.read_text())
    data["config"]["mlinfra:modelDefaults"]["gates"]["metrics"] = {"auc": {"min": 0.95}, "latency": {"max": 10}}
    with path.open("w") as handle:
        yaml.dump(data, handle)
    register(run, tmp_path)
    result = run("promote", "churn", "--to", "dev")
    assert result.exit_code == 3
    assert "metric:auc: auc = 0.91 is below the minimum 0.95" in result.stderr
    assert "metric:latency: latency was not registered with this version" in result.stderr


def test_source_alarm_in_alarm_blocks(platform: Path, run: Run, tmp_path: Path) -> None:
    register(run, tmp_path)
    ok(run("promote", "churn", "--to", "dev"))
    cloudwatch = boto3.client("cloudwatch", region_name="eu-west-1")
    name = naming.alarm("mlinfra", "dev", "churn", naming.ALARM_5XX)
    cloudwatch.put_metric_alarm(
        AlarmName=name,
        MetricName="Invocation5XXErrors",
        Namespace="AWS/SageMaker",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1,
        ComparisonOperator="GreaterThanThreshold",
    )
    cloudwatch.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason="test")
    result = run("promote", "churn", "--to", "staging")
    assert result.exit_code == 3
    assert f"source-alarms: in ALARM in dev: {name}" in result.stderr


def test_digest_mismatch_is_caught_without_download(platform: Path, run: Run, tmp_path: Path) -> None:
    reg = register(run, tmp_path)
    ok(run("promote", "churn", "--to", "dev"))
    key = layout.artifact_key("churn", reg["digest"])
    s3().put_object(Bucket=bucket("dev"), Key=key, Body=b"tampered", ChecksumAlgorithm="SHA256")
    before = snapshot(platform)
    result = run("promote", "churn", "--to", "staging")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: digest mismatch: s3://{bucket('dev')}/{key} no longer matches")
    assert snapshot(platform) == before


def test_unknown_stage_model_version(platform: Path, run: Run, tmp_path: Path) -> None:
    register(run, tmp_path)
    assert run("promote", "churn", "--to", "qa").stderr.startswith("error: unknown stage 'qa'")
    result = run("promote", "fraud", "--to", "dev")
    assert result.exit_code == 2 and "unknown model 'fraud'" in result.stderr
    result = run("promote", "churn", "--to", "dev", "--version", "9")
    assert result.exit_code == 2
    assert result.stderr == "error: churn v9 is not in sandbox's registry (versions there: v1)\n"
    result = run("promote", "churn", "--to", "sandbox")
    assert result.exit_code == 2 and "entry stage" in result.stderr


def test_invalid_stack_yaml_refused_before_any_aws_call(platform: Path, run: Run, tmp_path: Path) -> None:
    register(run, tmp_path)
    (platform / "stacks" / "Pulumi.dev.yaml").write_text("config:\n  mlinfra:models: {churn: [\n")
    before = snapshot(platform)
    result = run("promote", "churn", "--to", "dev")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: stacks/Pulumi.dev.yaml: line 3: invalid YAML")
    assert snapshot(platform) == before
    assert "Contents" not in s3().list_objects_v2(Bucket=bucket("dev"))


# --- rollback, status ------------------------------------------------------------------------------------------


def test_rollback_returns_to_the_previous_version(platform: Path, run: Run, tmp_path: Path) -> None:
    register(run, tmp_path)
    ok(run("promote", "churn", "--to", "dev"))
    register(run, tmp_path, "weights-2")
    ok(run("promote", "churn", "--to", "dev"))
    out = ok(run("rollback", "churn", "--stage", "dev", "--reason", "latency", "--json"))
    assert (out["version"], out["previous"]) == (1, 2)
    assert read_pin(Project(platform), "dev", "churn")["version"] == 1
    assert ok(run("history", "churn", "--stage", "dev", "--json"))[0]["action"] == "rollback"
    result = run("rollback", "churn", "--stage", "dev", "--to", "7", "--reason", "x")
    assert result.exit_code == 2
    assert "churn v7 is not in dev's registry" in result.stderr


def test_status_compares_pinned_pointer_and_live(platform: Path, run: Run, tmp_path: Path) -> None:
    register(run, tmp_path)
    ok(run("promote", "churn", "--to", "dev"))
    rows = ok(run("status", "--all", "--json"))
    dev = next(r for r in rows if r["stage"] == "dev")
    assert {k: dev[k] for k in ("model", "stage", "pinned", "pointer", "live")} == {
        "model": "churn",
        "stage": "dev",
        "pinned": 1,
        "pointer": 1,
        "live": None,
    }
    assert "pinned v1, live nothing: apply pending" in dev["notes"]
    sandbox = next(r for r in rows if r["stage"] == "sandbox")
    assert sandbox["pointer"] == 1 and sandbox["pinned"] is None
    table = ok(run("status", "--stack", "dev"))
    assert "apply pending" in table


# --- stages in separate accounts -------------------------------------------------------------------------------


def _as_role(role: str) -> boto3.Session:
    """A session as `role` in the emulator (its account is the role's)."""
    credentials = boto3.client("sts", region_name="eu-west-1").assume_role(RoleArn=role, RoleSessionName="check")[
        "Credentials"
    ]
    return boto3.Session(
        region_name="eu-west-1",
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )


def test_a_source_stage_in_the_same_account_is_read_with_the_command_stages_own_identity(
    project_dir: Path, aws_env: str, run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """staging and prod share account 222222222222, each with its own promotion role (`access.roleArn`; staging's
    with an ExternalId) and no source roles. prod's commands (approve, check, promote) read and approve in staging
    as prod's own role: never through staging's roleArn, which trusts staging's own jobs only."""
    from mlinfra import aws as mlinfra_aws

    account = "222222222222"
    role = f"arn:aws:iam::{account}:role/mlinfra-prod-promotion"
    staging_role = f"arn:aws:iam::{account}:role/mlinfra-staging-promotion"
    direct_delivery(project_dir)
    prod = project_dir / "stacks" / "Pulumi.prod.yaml"
    prod.write_text(prod.read_text() + f"  mlinfra:access:\n    roleArn: {role}\n")
    dev = project_dir / "stacks" / "Pulumi.dev.yaml"  # dev (the default account) lets staging's role copy from it
    dev.write_text(dev.read_text() + f"  mlinfra:registry:\n    readerRoleArns: [{staging_role}]\n")
    staging = project_dir / "stacks" / "Pulumi.staging.yaml"
    staging.write_text(
        staging.read_text()
        + f"  mlinfra:accountId: '{account}'\n"
        + f"  mlinfra:access:\n    roleArn: {staging_role}\n    externalId: staging-only\n"
        + f"  mlinfra:registry:\n    readerRoleArns: [{role}]\n"
    )
    assumed: list[str] = []

    def record_assume_role(session: Any) -> None:
        session.events.register(
            "provide-client-params.sts.AssumeRole", lambda params, **_: assumed.append(str(params["RoleArn"]))
        )

    monkeypatch.setattr(mlinfra_aws, "SESSION_HOOKS", [record_assume_role])
    ok(run("local", "bootstrap", "--all", "--json"))
    register(run, tmp_path)
    ok(run("promote", "churn", "--to", "dev"))
    ok(run("promote", "churn", "--to", "staging"))
    assert staging_role in assumed, "staging's own jobs assume its roleArn"

    assumed.clear()
    ok(run("approve", "churn", "--version", "1", "--stage", "prod", "--reason", "ok"))
    assert assumed == [role], "approved in staging as prod's own role, never as staging's"
    staging_bucket = naming.registry_bucket("mlinfra", "staging", "eu-west-1", account)
    as_prod = _as_role(role)
    pointer = json.loads(
        as_prod.client("s3").get_object(Bucket=staging_bucket, Key=layout.stage_key("churn"))["Body"].read()
    )
    since = (datetime.now(UTC) - timedelta(hours=30)).isoformat().replace("+00:00", "Z")
    pointer["deployed"] = {"version": pointer["version"], "digest": pointer["digest"], "since": since}
    as_prod.client("s3").put_object(Bucket=staging_bucket, Key=layout.stage_key("churn"), Body=json.dumps(pointer))

    assumed.clear()
    out = ok(run("promote", "churn", "--to", "prod", "--json"))
    assert out["version"] == 1
    assert assumed == [role], "staging is read (records, package, alarms, artifact) as prod's own role"
    prod_bucket = naming.registry_bucket("mlinfra", "prod", "eu-west-1", account)
    key = layout.artifact_key("churn", out["digest"])
    assert as_prod.client("s3").head_object(Bucket=prod_bucket, Key=key)["ContentLength"] > 0
    pin = read_pin(Project(project_dir), "prod", "churn")
    assert pin is not None and pin["artifact"] == f"s3://{prod_bucket}/{key}"
    history = ok(run("history", "churn", "--stage", "prod", "--json"))
    approval = next(r for r in history if r["action"] == "approve")
    assert approval["role"] == role, "the approval went through prod's own role"
    record = next(r for r in history if r["action"] == "promote")
    assert record["role"] == role
    assert ":222222222222:" not in record["actor"], "the audit names the caller, not only the role it assumed"
    policy = json.loads(
        next(
            r["inputs"]["policy"]
            for r in ok(run("preview", "--stack", "staging", "--json"))["resources"]
            if r["name"] == "registry-policy"
        )
    )
    grant = next(s for s in policy["Statement"] if s.get("Sid") == "NextStagePromotionRolesReadModels")
    assert grant["Principal"] == {"AWS": [role]}


# --- images, baselines, live endpoints, --apply, local mode without an emulator ------------------------------------


def test_register_resolves_the_framework_image_and_stores_the_baseline(
    platform: Path, run: Run, tmp_path: Path
) -> None:
    model = make_model(tmp_path)
    baseline = tmp_path / "baseline.csv"
    baseline.write_text("tenure,plan\n3,basic\n5,pro\n,basic\n")
    out = ok(
        run(
            "register",
            str(model),
            "-m",
            "churn",
            "--framework",
            "sklearn",
            "--framework-version",
            "1.2-1",
            "--baseline",
            str(baseline),
            "--json",
        )
    )
    assert out["image"] == FRAMEWORK_IMAGE, "resolved offline by the sagemaker SDK's image_uris"
    stored = read_json("sandbox", f"{layout.version_prefix('churn', 1)}baseline.json")
    assert stored["rows"] == 3
    assert stored["columns"]["tenure"]["missing"] == 1
    assert stored["columns"]["plan"]["type"] == "categorical"
    assert read_json("sandbox", layout.version_key("churn", 1))["baseline"].endswith("/versions/1/baseline.json")
    # The baseline travels with the version, so each stage's monitoring finds it in its own registry.
    ok(run("promote", "churn", "--to", "dev"))
    assert read_json("dev", f"{layout.version_prefix('churn', 1)}baseline.json") == stored


def test_status_reads_the_live_version_from_the_endpoint(platform: Path, run: Run, tmp_path: Path) -> None:
    # The emulator cannot update an endpoint (no UpdateEndpoint) and nothing serves, but it keeps the resources
    # `pulumi up` would create: an endpoint whose model carries MLINFRA_VERSION, as ModelEndpoint declares it.
    register(run, tmp_path)
    ok(run("promote", "churn", "--to", "dev"))
    sagemaker = boto3.client("sagemaker", region_name="eu-west-1")
    sagemaker.create_model(
        ModelName="mlinfra-dev-churn-m-1234567",
        PrimaryContainer={"Image": IMAGE, "Environment": {"MLINFRA_VERSION": "1"}},
        ExecutionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/sagemaker",
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName="mlinfra-dev-churn-c-1234567",
        ProductionVariants=[
            {
                "VariantName": "primary",
                "ModelName": "mlinfra-dev-churn-m-1234567",
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
            }
        ],
    )
    sagemaker.create_endpoint(EndpointName="mlinfra-dev-churn", EndpointConfigName="mlinfra-dev-churn-c-1234567")
    ok(run("record-deployment", "--stack", "dev"))  # what the apply that created the endpoint records
    dev = next(r for r in ok(run("status", "--stack", "dev", "--json")) if r["model"] == "churn")
    assert (dev["pinned"], dev["pointer"], dev["live"]) == (1, 1, 1)
    assert dev["notes"] == []
    register(run, tmp_path, "weights-2")
    ok(run("promote", "churn", "--to", "dev"))
    dev = next(r for r in ok(run("status", "--stack", "dev", "--json")) if r["model"] == "churn")
    assert "pinned v2, live v1: apply pending" in dev["notes"]


def test_status_says_when_a_deployment_is_rolling_back(
    platform: Path, run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The emulator's endpoints are always InService; a botocore hook reports what SageMaker says mid-rollback.
    register(run, tmp_path)
    ok(run("promote", "churn", "--to", "dev"))
    sagemaker = boto3.client("sagemaker", region_name="eu-west-1")
    sagemaker.create_model(
        ModelName="mlinfra-dev-churn-m-1",
        PrimaryContainer={"Image": IMAGE, "Environment": {"MLINFRA_VERSION": "1"}},
        ExecutionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/sagemaker",
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName="mlinfra-dev-churn-c-1",
        ProductionVariants=[
            {
                "VariantName": "primary",
                "ModelName": "mlinfra-dev-churn-m-1",
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
            }
        ],
    )
    sagemaker.create_endpoint(EndpointName="mlinfra-dev-churn", EndpointConfigName="mlinfra-dev-churn-c-1")

    def rolling_back(parsed: dict[str, Any], **_: Any) -> None:
        parsed["EndpointStatus"] = "RollingBack"

    def install(session: Any) -> None:
        session.events.register("after-call.sagemaker.DescribeEndpoint", rolling_back)

    monkeypatch.setattr("mlinfra.aws.SESSION_HOOKS", [install])
    register(run, tmp_path, "weights-2")
    ok(run("promote", "churn", "--to", "dev"))
    dev = next(r for r in ok(run("status", "--stack", "dev", "--json")) if r["model"] == "churn")
    assert dev["live"] == 1 and dev["pinned"] == 2
    assert "pinned v2, live v1: apply pending" in dev["notes"]
    assert any(n.startswith("endpoint RollingBack: a rollback alarm fired") for n in dev["notes"]), dev["notes"]


def test_apply_without_the_pulumi_cli_commits_then_says_so(platform: Path, run: Run, tmp_path: Path) -> None:
    register(run, tmp_path)
    result = run("promote", "churn", "--to", "dev", "--apply", env={"PATH": str(tmp_path)})
    assert result.exit_code == 1
    assert "v1 pinned in dev (was nothing); deploys on the next apply" in result.stdout
    assert result.stderr.startswith("error: the pulumi CLI is not installed")
    assert read_pin(Project(platform), "dev", "churn")["version"] == 1


@pytest.mark.parametrize("command", [("status", "--all"), ("history", "churn"), ("promote", "churn", "--to", "dev")])
def test_local_mode_without_an_emulator_fails_instead_of_using_aws(
    project_dir: Path, run: Run, monkeypatch: pytest.MonkeyPatch, command: tuple[str, ...]
) -> None:
    from tests.emulator import free_port

    port = free_port()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    result = run("--local", *command)
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: local mode: no AWS emulator answers at http://127.0.0.1:{port}; `mlinfra local up` starts "
        "one and creates every stage's registry in it (local mode never falls back to real AWS credentials)\n"
    )


def test_unknown_framework_version_leaves_nothing_behind(platform: Path, run: Run, tmp_path: Path) -> None:
    # The image is resolved while the artifact uploads; a version the SDK does not know must not leave the upload.
    result = run(
        "register", str(make_model(tmp_path)), "-m", "churn", "--framework", "sklearn", "--framework-version", "0.0-0"
    )
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "0.0-0" in result.stderr
    assert "Contents" not in s3().list_objects_v2(Bucket=bucket("sandbox"))
    assert not s3().list_multipart_uploads(Bucket=bucket("sandbox")).get("Uploads")


def test_a_source_stage_in_another_account_is_read_and_approved_through_its_source_roles(
    project_dir: Path, aws_env: str, run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """staging in 333333333333 lends prod (222222222222) a source role and an approval role: prod's promote reads
    staging (pointer, records, package, alarms) by assuming the source role, approve writes staging's package by
    assuming the approval role, and the artifact is copied server-side by prod's own role."""
    from mlinfra import aws as mlinfra_aws

    staging_account, prod_account = "333333333333", "222222222222"
    prod_role = f"arn:aws:iam::{prod_account}:role/mlinfra-prod-promotion"
    staging_role = f"arn:aws:iam::{staging_account}:role/mlinfra-staging-promotion"
    source_role = f"arn:aws:iam::{staging_account}:role/mlinfra-staging-source"
    approval_role = f"arn:aws:iam::{staging_account}:role/mlinfra-staging-approval"
    direct_delivery(project_dir)
    prod = project_dir / "stacks" / "Pulumi.prod.yaml"
    prod.write_text(prod.read_text() + f"  mlinfra:access:\n    roleArn: {prod_role}\n")
    staging = project_dir / "stacks" / "Pulumi.staging.yaml"
    staging.write_text(
        staging.read_text()
        + f"  mlinfra:accountId: '{staging_account}'\n"
        + f"  mlinfra:access:\n    roleArn: {staging_role}\n    sourceRoleArn: {source_role}\n"
        + f"    approvalRoleArn: {approval_role}\n"
        + f"  mlinfra:registry:\n    readerRoleArns: [{prod_role}]\n"
    )
    assumed: list[str] = []
    # Who signed each AssumeRole (its access key id) and whom each issued key id belongs to: a lent role is assumed
    # from prod's session (chained), never from the caller's own credentials.
    signed_by: list[tuple[str, str]] = []
    issued: dict[str, str] = {}

    def record_assume_role(session: Any) -> None:
        session.events.register(
            "provide-client-params.sts.AssumeRole", lambda params, **_: assumed.append(str(params["RoleArn"]))
        )

        def sent(request: Any, **_: Any) -> None:
            body = request.body.decode() if isinstance(request.body, bytes) else str(request.body)
            role_arn = parse_qs(body)["RoleArn"][0]
            signer = re.search(r"Credential=([^/]+)/", str(request.headers["Authorization"]))
            signed_by.append((role_arn, signer.group(1) if signer else ""))

        def answered(parsed: dict[str, Any], **_: Any) -> None:
            if "Credentials" in parsed:
                issued[parsed["Credentials"]["AccessKeyId"]] = parsed["AssumedRoleUser"]["Arn"]

        session.events.register("before-send.sts.AssumeRole", sent)
        session.events.register("after-call.sts.AssumeRole", answered)

    def assumed_from(role_arn: str) -> set[str]:
        """The identities that assumed `role_arn` (an assumed-role ARN, or "caller" for the caller's own keys)."""
        return {issued.get(key, "caller") for arn, key in signed_by if arn == role_arn}

    monkeypatch.setattr(mlinfra_aws, "SESSION_HOOKS", [record_assume_role])
    ok(run("local", "bootstrap", "--all", "--json"))
    register(run, tmp_path)
    ok(run("promote", "churn", "--to", "dev"))
    ok(run("promote", "churn", "--to", "staging"))
    assert source_role not in assumed, "staging's own jobs use its roleArn, never the roles it lends prod"
    prod_session = f"arn:aws:sts::{prod_account}:assumed-role/mlinfra-prod-promotion/mlinfra-prod"

    assumed.clear()
    ok(run("approve", "churn", "--version", "1", "--stage", "prod", "--reason", "ok"))
    assert approval_role in assumed and source_role in assumed and staging_role not in assumed
    assert assumed_from(approval_role) == assumed_from(source_role) == {prod_session}, signed_by
    credentials = boto3.client("sts", region_name="eu-west-1").assume_role(
        RoleArn=staging_role, RoleSessionName="check"
    )["Credentials"]
    as_staging = boto3.Session(
        region_name="eu-west-1",
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )
    staging_bucket = naming.registry_bucket("mlinfra", "staging", "eu-west-1", staging_account)
    record = json.loads(
        as_staging.client("s3").get_object(Bucket=staging_bucket, Key=layout.version_key("churn", 1))["Body"].read()
    )
    package = as_staging.client("sagemaker").describe_model_package(ModelPackageName=record["packageArn"])
    assert package["ModelApprovalStatus"] == "Approved", "approved in staging's account, through its approval role"

    # The soak gate reads staging's pointer (in staging's account) through the source role.
    pointer = json.loads(
        as_staging.client("s3").get_object(Bucket=staging_bucket, Key=layout.stage_key("churn"))["Body"].read()
    )
    since = (datetime.now(UTC) - timedelta(hours=30)).isoformat().replace("+00:00", "Z")
    pointer["deployed"] = {"version": pointer["version"], "digest": pointer["digest"], "since": since}
    as_staging.client("s3").put_object(
        Bucket=staging_bucket, Key=layout.stage_key("churn"), Body=json.dumps(pointer).encode()
    )
    # `mlinfra check` re-checks a pin of prod that its pointer does not record (the preview job's gate re-check):
    # staging's pointer, records and package are read through the source role.
    from mlinfra.stacks.edit import pin_version

    before = prod.read_text()
    pin = read_pin(Project(project_dir), "staging", "churn")
    assert pin is not None
    pin_version(
        Project(project_dir), "prod", "churn", {**pin, "artifact": pin["artifact"].replace("-staging-", "-prod-")}
    )
    assumed.clear()
    result = run("check", "--stack", "prod", "--json")
    assert result.exit_code == 3, result.stderr
    (checked,) = json.loads(result.stdout)["pins"]
    failed = {g["gate"] for g in checked["gates"] if not g["passed"]}
    assert checked["checked"] and failed == {"registry"}, checked  # soaked and approved in staging; not promoted
    assert source_role in assumed and approval_role not in assumed
    prod.write_text(before)

    assumed.clear()
    out = ok(run("promote", "churn", "--to", "prod", "--json"))
    assert out["version"] == 1
    assert source_role in assumed and prod_role in assumed and approval_role not in assumed
    assert assumed_from(source_role) == {prod_session}, "the lent role is chained from prod's own session"
    assert assumed_from(prod_role) == {"caller"}
    history = ok(run("history", "churn", "--stage", "prod", "--json"))
    approval = next(r for r in history if r["action"] == "approve")
    assert approval["role"] == approval_role, "the audit names the role the approval went through"


def test_a_source_in_another_account_without_its_lent_roles_is_refused_naming_the_setting(
    project_dir: Path, aws_env: str, run: Run, tmp_path: Path
) -> None:
    """staging in 333333333333 lends prod nothing: prod's job would ask its own account (222222222222) for staging's
    alarms and packages and find none. promote refuses (exit 2) naming the stack-file key, and writes nothing."""
    prod_role = "arn:aws:iam::222222222222:role/mlinfra-prod-promotion"
    direct_delivery(project_dir)
    prod = project_dir / "stacks" / "Pulumi.prod.yaml"
    prod.write_text(prod.read_text() + f"  mlinfra:access:\n    roleArn: {prod_role}\n")
    staging = project_dir / "stacks" / "Pulumi.staging.yaml"
    staging.write_text(
        staging.read_text()
        + "  mlinfra:accountId: '333333333333'\n"
        + "  mlinfra:access:\n    roleArn: arn:aws:iam::333333333333:role/mlinfra-staging-promotion\n"
        + f"  mlinfra:registry:\n    readerRoleArns: [{prod_role}]\n"
    )
    ok(run("local", "bootstrap", "--all", "--json"))
    register(run, tmp_path)
    ok(run("promote", "churn", "--to", "dev"))
    ok(run("promote", "churn", "--to", "staging"))
    before = prod.read_text()
    result = run("promote", "churn", "--to", "prod")
    assert result.exit_code == 2, result.stderr
    assert "stage staging is in account 333333333333 and prod in 222222222222" in result.stderr
    assert "mlinfra:access.sourceRoleArn" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert prod.read_text() == before
