"""The quickstart: the whole outer loop on the local AWS emulator, from a checkout of its own.

Run with `make quickstart` (or `.venv/bin/python examples/quickstart.py`). It copies Pulumi.yaml and stacks/ to
.mlinfra/quickstart/ (a checkout of its own, so its emulator and scratch state never mix with yours), starts the
emulator on a free loopback port (`mlinfra local up`) and runs everything in local mode, which pins into its scratch
copy of the stacks (.mlinfra/quickstart/.mlinfra/local/workspace/), never into stack files. It creates the
registries the stacks declare, registers the example churn model, promotes it to dev (delivered directly) and
records that apply, promotes it to staging (delivered by pull request: a branch on local mode's scratch remote),
accepts it with `mlinfra local merge`, which records that apply, shows prod's gates refusing it (exit 3), then
status, history and the dev stack's offline render. Then it plays a day of staging traffic into the stage's data
capture (SageMaker's file layout and record shape, written by `capture_traffic` below, each answer the example
model's own handler gives) whose last hours drift, and runs `mlinfra drift churn --stack staging --publish`: the
drifted feature, and the predictions it moves, exit 3 and the MaxPSI metric lands in the emulator's CloudWatch,
where the stage's drift alarm watches it. The emulator is stopped at the end, whatever
happens.

The same steps for a model of your own, from a notebook, are docs/analyst.md.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import random
import shutil
import socket
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3

from mlinfra.stacks.project import Project
from mlinfra_drift.capture import capture_key
from mlinfra_drift.records import capture_line
from mlinfra_infra import layout, naming

REPO = Path(__file__).resolve().parents[1]
# MLINFRA_QUICKSTART_DIR moves the scratch checkout (tests/test_quickstart.py runs this file in a temporary folder).
WORKSPACE = Path(os.environ.get("MLINFRA_QUICKSTART_DIR") or REPO / ".mlinfra" / "quickstart").resolve()
EXAMPLE = REPO / "examples" / "churn"
MLINFRA = str(Path(sys.executable).parent / "mlinfra")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def step(title: str, *args: str, env: dict[str, str], expect: int = 0) -> None:
    print(f"\n## {title}\n$ mlinfra {' '.join(args)}", flush=True)
    result = subprocess.run([MLINFRA, *args], cwd=WORKSPACE, env=env, check=False)
    if result.returncode != expect:
        raise SystemExit(f"quickstart: `mlinfra {' '.join(args)}` exited {result.returncode}, expected {expect}")
    if expect:
        print(f"(exit code {result.returncode}, as expected)")


def example_handler() -> Any:
    """The example model's own inference handler (examples/churn/model/code/inference.py), imported."""
    spec = importlib.util.spec_from_file_location("churn_inference", EXAMPLE / "model" / "code" / "inference.py")
    if spec is None or spec.loader is None:
        raise SystemExit("quickstart: examples/churn/model/code/inference.py cannot be imported")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def capture_traffic(env: dict[str, str], *, hours: int = 6, per_hour: int = 400) -> str:
    """Write `hours` of staging traffic as a SageMaker endpoint captures it; the last two hours double their charges.

    Used where `mlinfra serve --capture` is not available: the files land where the endpoint's DataCaptureConfig
    sends them, s3://<staging registry>/capture/churn/<endpoint>/primary/yyyy/mm/dd/hh/*.jsonl.
    """
    session = boto3.Session(region_name="eu-west-1")
    client_args = {"endpoint_url": env["AWS_ENDPOINT_URL"], "aws_access_key_id": "local", "aws_secret_access_key": "x"}
    account = session.client("sts", **client_args).get_caller_identity()["Account"]
    project = Project(WORKSPACE).name
    bucket = naming.registry_bucket(project, "staging", "eu-west-1", account)
    endpoint = naming.endpoint(project, "staging", "churn")
    with (EXAMPLE / "baseline.csv").open() as handle:
        sample = list(csv.reader(handle))[1:]
    handler = example_handler()
    model = handler.model_fn(str(EXAMPLE / "model"))
    s3 = session.client("s3", **client_args)
    rng = random.Random(7)  # noqa: S311 - simulated traffic, not secrets
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    for hour in range(hours, 0, -1):
        written = now - timedelta(hours=hour) + timedelta(minutes=59)
        drifted = hour <= 2
        lines = []
        for _ in range(per_hour):
            tenure, charges, calls, plan = rng.choice(sample)
            if drifted:
                charges = f"{float(charges) * 2:.2f}"
            when = written - timedelta(seconds=rng.uniform(0, 3500))
            row = f"{tenure},{charges},{calls},{plan}"
            (churn,) = handler.predict_fn(handler.input_fn(row, "text/csv"), model)  # what the endpoint answers
            lines.append(
                capture_line(row, inference_time=when, event_id=str(uuid.uuid4()), output=f"{churn:.4f}",
                             fractional=rng.random() < 0.5)
            )  # fmt: skip
        key = capture_key(layout.capture_prefix("churn"), endpoint, "primary", written, str(uuid.uuid4()))
        s3.put_object(Bucket=bucket, Key=key, Body=("\n".join(lines) + "\n").encode())
    return f"s3://{bucket}/{layout.capture_prefix('churn')}/{endpoint}/primary/"


def main() -> None:
    shutil.rmtree(WORKSPACE, ignore_errors=True)
    WORKSPACE.mkdir(parents=True)
    shutil.copy(REPO / "Pulumi.yaml", WORKSPACE / "Pulumi.yaml")
    shutil.copytree(REPO / "stacks", WORKSPACE / "stacks")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(MLINFRA_LOCAL="1", AWS_DEFAULT_REGION="eu-west-1")
    env.pop("MLINFRA_STACK", None)
    port = free_port()
    step("The stages and what they pin", "stack", "list", env=env)
    try:
        step(
            "Start the AWS emulator (moto's server on loopback) and create the registries the stacks declare",
            "local", "up", "--port", str(port), env=env,
        )  # fmt: skip
        env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{port}"
        step(
            "Register the example model into the entry stage (sandbox)",
            "register",
            str(EXAMPLE / "model"),
            "--model",
            "churn",
            "--framework",
            "sklearn",
            "--metrics",
            str(EXAMPLE / "metrics.json"),
            "--baseline",
            str(EXAMPLE / "baseline.csv"),
            env=env,
        )
        step(
            "Promote it to dev (delivered directly): verify, gate, copy, record, pin",
            "promote",
            "churn",
            "--to",
            "dev",
            "--reason",
            "quickstart",
            env=env,
        )
        step("CI would apply dev now; record that deployment", "record-deployment", "--stack", "dev", env=env)
        step(
            "On to staging (delivered by pull request): the pin goes on a branch, the stage pointer stays",
            "promote",
            "churn",
            "--to",
            "staging",
            "--reason",
            "quickstart",
            env=env,
        )
        step(
            "Merge the pull request (local mode's remote stands in for GitHub) and record staging's apply, as CI would",
            "local", "merge", "mlinfra/promote-staging-churn-v1", env=env,
        )  # fmt: skip
        step(
            "staging's Model names the handler (SAGEMAKER_PROGRAM, SAGEMAKER_SUBMIT_DIRECTORY): the policy passes",
            "check",
            "--stack",
            "staging",
            env=env,
        )
        step("prod refuses it: no approval, no day deployed in staging", "promote", "churn", "--to", "prod",
             env=env, expect=3)  # fmt: skip
        step("Where every model stands", "status", "--all", env=env)
        step("The audit trail", "history", "churn", env=env)
        step("Every version: metrics, approval, where it runs", "versions", "churn", env=env)
        step("The dev stack now declares the endpoint (offline render)", "preview", "--stack", "dev", env=env)
        print("\n## What local mode pinned, in its scratch copy (stacks/ itself is untouched)")
        subprocess.run(
            ["git", "--no-pager", "diff", "--no-index", "--stat", "stacks", ".mlinfra/local/workspace/stacks"],
            cwd=WORKSPACE,
            check=False,
        )
        where = capture_traffic(env)
        print(f"\n## Six hours of staging traffic captured in SageMaker's layout under {where}")
        step(
            "Drift of the last 24 hours against the version's baseline, published where the drift alarm looks",
            "drift",
            "churn",
            "--stack",
            "staging",
            "--publish",
            "--report",
            "drift.html",
            env=env,
            expect=3,
        )
        step("The last hour and a half only: the drifted feature stands out", "drift", "churn", "--stack", "staging",
             "--since", "90m", env=env, expect=3)  # fmt: skip
        step("staging's status with its alarms", "status", "--stack", "staging", env=env)
    finally:
        subprocess.run([MLINFRA, "local", "stop"], cwd=WORKSPACE, env=env, check=False)
    shown = WORKSPACE.relative_to(REPO) if WORKSPACE.is_relative_to(REPO) else WORKSPACE
    print(f"\nDone. The scratch project is {shown}; your stacks/ are unchanged.")


if __name__ == "__main__":
    main()
