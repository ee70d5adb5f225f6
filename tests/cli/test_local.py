"""`mlinfra local start | stop | status | bootstrap` against moto's server, a real process on loopback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import Result

from mlinfra.aws import emulator_answers
from mlinfra.local import emulator as local
from mlinfra.stacks.files import load_stage
from mlinfra.stacks.project import Project
from mlinfra.stacks.render import RenderedStack, render
from tests.cli.conftest import snapshot
from tests.emulator import REGION, free_port

pytestmark = pytest.mark.emulator

Run = Callable[..., Result]
STAGES = ["sandbox", "dev", "staging", "prod"]
STATE = Path(".mlinfra") / "local" / "emulator.json"


@pytest.fixture
def no_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """No AWS_ENDPOINT_URL and local mode off; restored after the test even if a command sets them."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", "")
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("MLINFRA_LOCAL", "0")


@pytest.fixture
def started_pids(project_dir: Path) -> Iterator[list[int]]:
    """Pids of emulators a test started through the CLI: whatever the test's outcome, none outlives it."""
    pids: list[int] = []
    yield pids
    local.stop(project_dir)
    for pid in pids:
        if local.process_running(pid):
            os.kill(pid, signal.SIGKILL)
            local.process_running(pid)  # reaps it when it is this process's child


def recorded_pid(root: Path) -> int:
    return int(json.loads((root / STATE).read_text())["pid"])


def client(service: str, url: str, **credentials: Any) -> Any:
    return boto3.client(service, endpoint_url=url, region_name=REGION, **credentials)


# start / status / stop ------------------------------------------------------------------------------------------


def test_start_status_refuse_busy_port_stop(
    project_dir: Path, run: Run, no_endpoint: None, started_pids: list[int]
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    result = run("local", "start", "--detach", "--port", str(port))
    assert result.exit_code == 0, result.stderr
    pid = recorded_pid(project_dir)
    started_pids.append(pid)
    assert result.stdout == f"export AWS_ENDPOINT_URL={url}\n"
    assert result.stderr == (
        f"Started the AWS emulator (pid {pid}) at {url}; log: .mlinfra/local/emulator.log\n"
        "then use `mlinfra --local ...` or MLINFRA_LOCAL=1\n"
    )
    state = json.loads((project_dir / STATE).read_text())
    assert {k: state[k] for k in ("pid", "port", "url")} == {"pid": pid, "port": port, "url": url}

    status = json.loads(run("local", "status", "--json").stdout)
    assert {k: status[k] for k in ("running", "answers", "pid", "port", "url")} == {
        "running": True,
        "answers": True,
        "pid": pid,
        "port": port,
        "url": url,
    }

    again = run("local", "start", "--detach", "--port", str(port))
    assert again.exit_code == 1
    assert again.stdout == ""
    assert again.stderr == (
        f"error: port {port} is in use by the emulator mlinfra started (pid {pid}); "
        "stop it with `mlinfra local stop` or pick another port with --port\n"
    )
    assert recorded_pid(project_dir) == pid  # the record still names the running emulator
    other_port = run("local", "start", "--detach", "--port", str(free_port()))
    assert other_port.exit_code == 1
    assert other_port.stderr == (
        f"error: an emulator started by mlinfra is already running at {url} (pid {pid}); "
        "stop it with `mlinfra local stop` before starting another\n"
    )

    stopped = run("local", "stop")
    assert stopped.exit_code == 0
    assert stopped.stdout == f"Stopped the AWS emulator (pid {pid}) at {url}.\n"
    assert not (project_dir / STATE).exists()
    assert not local.process_running(pid)
    status = json.loads(run("local", "status", "--json").stdout)
    assert status["running"] is False
    assert status["pid"] is None
    assert not emulator_answers(url)

    assert run("local", "stop").stdout == "No emulator running.\n"


def test_start_refuses_a_port_another_program_listens_on(project_dir: Path, run: Run, no_endpoint: None) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        before = snapshot(project_dir)
        result = run("local", "start", "--detach", "--port", str(port))
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: port {port} on 127.0.0.1 is already in use by another program; pick a free one with --port\n"
    )
    assert snapshot(project_dir) == before


def test_stop_removes_a_stale_record(project_dir: Path, run: Run, no_endpoint: None) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (project_dir / STATE).parent.mkdir(parents=True)
    (project_dir / STATE).write_text(
        json.dumps({"pid": gone.pid, "port": 1, "url": "http://127.0.0.1:1", "started": "2026-01-01T00:00:00+00:00"})
    )
    assert json.loads(run("local", "status", "--json").stdout)["running"] is False
    result = run("local", "stop")
    assert result.exit_code == 0
    assert result.stdout == f"No emulator running; removed the stale record of pid {gone.pid}.\n"
    assert not (project_dir / STATE).exists()


def test_foreground_start_stops_the_emulator_on_ctrl_c(project_dir: Path, no_endpoint: None) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-c", "from mlinfra.main import cli; cli()", "local", "start", "--port", str(port)]
    process = subprocess.Popen(command, cwd=project_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    emulator_pid = None
    try:
        deadline = time.monotonic() + 30
        while not ((project_dir / STATE).exists() and emulator_answers(url)):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the emulator did not start in the foreground"
            time.sleep(0.1)
        emulator_pid = recorded_pid(project_dir)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if emulator_pid is not None and local.process_running(emulator_pid):
            os.kill(emulator_pid, signal.SIGKILL)
    assert process.returncode == 0, stderr
    assert stdout.decode() == f"export AWS_ENDPOINT_URL={url}\n"
    assert stderr.decode().endswith(f"Press Ctrl-C to stop it.\nStopped the AWS emulator (pid {emulator_pid}).\n")
    assert not (project_dir / STATE).exists()
    assert not local.process_running(emulator_pid)
    assert local.port_free(port)


def test_start_that_times_out_leaves_nothing_running(
    project_dir: Path, run: Run, no_endpoint: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local, "START_TIMEOUT_SECONDS", 0.0)
    port = free_port()
    result = run("local", "start", "--detach", "--port", str(port))
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"error: the emulator did not answer at http://127.0.0.1:{port} within 0 s and was stopped: "
    )
    assert result.stderr.endswith(" (see .mlinfra/local/emulator.log)\n")
    assert result.stderr.count("\n") == 1
    assert not (project_dir / STATE).exists()
    assert local.port_free(port)
    assert json.loads(run("local", "status", "--json").stdout)["running"] is False


def test_start_without_moto_says_what_to_install(
    project_dir: Path, run: Run, no_endpoint: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *args: None if name == "moto" else real_find_spec(name, *args)
    )
    result = run("local", "start", "--detach")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: local mode needs moto's server, which is not installed: pip install 'mlinfra[local]'\n"
    )


# bootstrap -------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def renders(emulator: str) -> dict[str, RenderedStack]:
    """The shipped stacks rendered offline with the emulator's account (what bootstrap must create)."""
    from tests.cli.conftest import REPO

    account = client("sts", emulator, aws_access_key_id="testing", aws_secret_access_key="testing")
    account_id = account.get_caller_identity()["Account"]
    project = Project(REPO)
    rendered = {}
    for name in STAGES:
        stage = load_stage(project, name)
        rendered[name] = render(stage.raw, project=project.name, stage=name, source=stage.source, account_id=account_id)
    return rendered


def test_bootstrap_creates_what_the_render_declares_and_is_idempotent(
    project_dir: Path, run: Run, aws_env: str, renders: dict[str, RenderedStack]
) -> None:
    result = run("local", "bootstrap", "--all", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["endpoint"] == aws_env
    assert [stage["stage"] for stage in report["stages"]] == STAGES

    s3, kms = client("s3", aws_env), client("kms", aws_env)
    sagemaker, sns = client("sagemaker", aws_env), client("sns", aws_env)
    aliases = {a["AliasName"]: a.get("TargetKeyId") for a in kms.list_aliases()["Aliases"]}
    topics = {t["TopicArn"].rsplit(":", 1)[-1]: t["TopicArn"] for t in sns.list_topics()["Topics"]}
    for stage, rendered in renders.items():
        (alias,) = [r.inputs["name"] for r in rendered.of_type("aws:kms/alias:Alias")]
        key = kms.describe_key(KeyId=aliases[alias])["KeyMetadata"]
        assert kms.get_key_rotation_status(KeyId=key["KeyId"])["KeyRotationEnabled"], stage
        # The registry's access-log bucket is auto-named and not emulated.
        buckets = [r.inputs["bucket"] for r in rendered.of_type("aws:s3/bucket:Bucket") if "bucket" in r.inputs]
        assert buckets == [f"mlinfra-{stage}-123456789012-{REGION}"]
        for bucket in buckets:
            assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled", bucket
            (rule,) = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
            assert rule["ApplyServerSideEncryptionByDefault"] == {
                "SSEAlgorithm": "aws:kms",
                "KMSMasterKeyID": key["Arn"],
            }, bucket
            assert rule["BucketKeyEnabled"] is True
            block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
            assert block == dict.fromkeys(
                ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"), True
            ), bucket
            ownership = s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"]
            assert ownership == [{"ObjectOwnership": "BucketOwnerEnforced"}]
        group = sagemaker.describe_model_package_group(ModelPackageGroupName=f"mlinfra-{stage}-churn")
        assert group["ModelPackageGroupDescription"] == f"churn versions registered in {stage}"
        if stage in ("staging", "prod"):
            attributes = sns.get_topic_attributes(TopicArn=topics[f"mlinfra-{stage}-alerts"])["Attributes"]
            assert attributes["KmsMasterKeyId"] == key["Arn"]
    assert sorted(topics) == ["mlinfra-dev-alerts", "mlinfra-prod-alerts", "mlinfra-staging-alerts"]

    prod_bucket = renders["prod"].named("registry-bucket").inputs["bucket"]
    lock = s3.get_object_lock_configuration(Bucket=prod_bucket)["ObjectLockConfiguration"]
    assert lock["ObjectLockEnabled"] == "Enabled"
    # No bucket-wide default retention: the CLI sets retention on artifacts and audit records as it writes them.
    assert "Rule" not in lock
    for stage in ("sandbox", "dev", "staging"):
        bucket = renders[stage].named("registry-bucket").inputs["bucket"]
        with pytest.raises(s3.exceptions.ClientError, match="ObjectLockConfigurationNotFoundError"):
            s3.get_object_lock_configuration(Bucket=bucket)

    by_stage = {stage["stage"]: stage for stage in report["stages"]}
    assert by_stage["dev"]["counts"] == {"created": 9, "updated": 0, "existing": 0, "skipped": 12}
    assert {e["type"] for e in by_stage["prod"]["created"]} >= {"s3:BucketObjectLockConfiguration", "sns:Topic"}
    skipped = {(e["type"], e["name"]) for e in by_stage["sandbox"]["skipped"]}
    assert ("ec2:Instance", "sandbox-instance") in skipped
    assert ("iam:Role", "sandbox-role") in skipped

    second = run("local", "bootstrap", "--all", "--json")
    assert second.exit_code == 0, second.stderr
    for first_stage, again in zip(report["stages"], json.loads(second.stdout)["stages"], strict=True):
        assert again["counts"]["created"] == again["counts"]["updated"] == 0, again
        assert again["existing"] == first_stage["created"], again["stage"]
        assert again["skipped"] == first_stage["skipped"]
    assert {a["AliasName"] for a in kms.list_aliases()["Aliases"]} == set(aliases)

    text = run("local", "bootstrap", "--stack", "dev")
    assert text.exit_code == 0
    assert text.stdout.splitlines()[:2] == [
        f"Bootstrapped the AWS emulator at {aws_env}.",
        "dev (eu-west-1, account 123456789012): 0 created, 0 updated, 9 existing, 12 skipped",
    ]


def test_bootstrap_repairs_a_setting_changed_since(project_dir: Path, run: Run, aws_env: str) -> None:
    assert run("local", "bootstrap", "--stack", "dev").exit_code == 0
    s3 = client("s3", aws_env)
    bucket = f"mlinfra-dev-123456789012-{REGION}"
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    report = json.loads(run("local", "bootstrap", "--stack", "dev", "--json").stdout)["stages"][0]
    assert report["updated"] == [{"type": "s3:BucketVersioning", "name": bucket}]
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"


def test_bootstrap_uses_the_account_of_the_stage_role(project_dir: Path, run: Run, aws_env: str) -> None:
    stack_file = project_dir / "stacks" / "Pulumi.dev.yaml"
    role = "arn:aws:iam::222222222222:role/mlinfra-dev"
    stack_file.write_text(stack_file.read_text() + f"  mlinfra:access:\n    roleArn: {role}\n")
    result = run("local", "bootstrap", "--stack", "dev", "--json")
    assert result.exit_code == 0, result.stderr
    (report,) = json.loads(result.stdout)["stages"]
    assert report["accountId"] == "222222222222"
    bucket = "mlinfra-dev-222222222222-eu-west-1"
    assert {"type": "s3:Bucket", "name": bucket} in report["created"]
    credentials = client("sts", aws_env).assume_role(RoleArn=role, RoleSessionName="test")["Credentials"]
    in_role = client(
        "s3",
        aws_env,
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )
    assert [b["Name"] for b in in_role.list_buckets()["Buckets"]] == [bucket]
    assert client("s3", aws_env).list_buckets()["Buckets"] == []  # nothing in the caller's own account


def test_bootstrap_without_an_emulator_exits_1(
    project_dir: Path, run: Run, no_endpoint: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    result = run("local", "bootstrap", "--all")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"error: local mode: no AWS emulator answers at {url}; `mlinfra local up` starts one and "
        "creates every stage's registry in it (local mode never falls back to real AWS credentials)\n"
    )


def test_bootstrap_refuses_an_aws_endpoint(
    project_dir: Path, run: Run, no_endpoint: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "https://s3.eu-west-1.amazonaws.com")
    result = run("local", "bootstrap", "--stack", "dev")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: local bootstrap: https://s3.eu-west-1.amazonaws.com is an AWS endpoint, not an emulator; bootstrap "
        "only creates resources in the local emulator (unset AWS_ENDPOINT_URL or point it at `mlinfra local start`)\n"
    )


def test_bootstrap_takes_stack_or_all_not_both(project_dir: Path, run: Run) -> None:
    result = run("local", "bootstrap", "--all", "--stack", "dev")
    assert result.exit_code == 2
    assert "give --stack or --all, not both" in result.stderr


def test_bootstrap_with_a_broken_stack_creates_nothing(project_dir: Path, run: Run, aws_env: str) -> None:
    (project_dir / "stacks" / "Pulumi.prod.yaml").write_text("config:\n  mlinfra:models: [unclosed\n")
    result = run("local", "bootstrap", "--all")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: stacks/Pulumi.prod.yaml: line 3: invalid YAML")
    assert client("s3", aws_env).list_buckets()["Buckets"] == []


# local mode without the emulator -------------------------------------------------------------------------------


def test_local_stack_list_needs_no_emulator(
    project_dir: Path, run: Run, no_endpoint: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing answers there
    sessions: list[Any] = []
    monkeypatch.setattr("mlinfra.aws.SESSION_HOOKS", [sessions.append])
    result = run("--local", "stack", "list", "--json")
    assert result.exit_code == 0, result.stderr
    assert [row["stage"] for row in json.loads(result.stdout)] == STAGES
    assert sessions == []


def test_local_help_imports_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from mlinfra.main import cli\n"
        "for args in (['local'], ['local', 'start'], ['local', 'stop'], ['local', 'status'], ['local', 'bootstrap']):\n"
        "    assert CliRunner().invoke(cli, [*args, '--help']).exit_code == 0\n"
        "heavy = ('pulumi', 'pulumi_aws', 'boto3', 'botocore', 'moto', 'mlinfra_infra', 'pydantic')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
