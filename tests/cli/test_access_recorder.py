"""The access contract's recorder (tests/access_recorder.py) on the emulator: what it records, for whom, and what
the guard reports when the code makes a call the contract lacks."""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor

import boto3
import click
import pytest
from click.testing import CliRunner

from mlinfra_drift import job as drift_job
from mlinfra_infra.policy.contract import Call
from tests import access_recorder

BUCKET = "recorder-test-bucket"


@click.group()
def cli() -> None:
    """A stand-in for `mlinfra`: the recorder names callers by their subcommand."""


@cli.command("promote")
def promote() -> None:
    s3 = boto3.client("s3")
    with contextlib.suppress(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket=BUCKET, Key="stages/churn.json")
    s3.put_object(Bucket=BUCKET, Key="stages/churn.json", Body=b"{}", IfNoneMatch="*")
    # Work handed to a thread keeps its caller.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(s3.list_objects_v2, Bucket=BUCKET, Prefix="audit/churn/").result()


@pytest.mark.emulator
@pytest.mark.usefixtures("aws_env")
def test_it_records_the_codes_calls_with_their_context_and_not_the_tests() -> None:
    boto3.client("s3").create_bucket(
        Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )  # the test's own call: no caller
    access_recorder.drain()
    result = CliRunner().invoke(cli, ["promote"], catch_exceptions=False)
    assert result.exit_code == 0
    calls = set(access_recorder.drain())
    assert calls == {
        Call("mlinfra promote", "s3:GetObject", "arn:aws:s3:::{bucket}/stages/{model}.json"),
        # A 404 the code handled: the principal needs s3:ListBucket there, or S3 answers 403.
        Call("mlinfra promote", "s3:GetObject", "arn:aws:s3:::{bucket}/stages/{model}.json", missing_key=True),
        Call("mlinfra promote", "s3:PutObject", "arn:aws:s3:::{bucket}/stages/{model}.json",
             (("s3:if-none-match", "*"),)),
        Call("mlinfra promote", "s3:ListBucket", "arn:aws:s3:::{bucket}", (("s3:prefix", "audit/{model}/"),)),
    }  # fmt: skip
    # All of them are in the shipped contract; an unknown one is reported with what to do.
    assert access_recorder.problems(calls) == []
    odd = Call("mlinfra promote", "s3:DeleteObject", "arn:aws:s3:::{bucket}/stages/{model}.json")
    assert access_recorder.problems([odd]) == [
        "the access contract lacks mlinfra promote: s3:DeleteObject arn:aws:s3:::{bucket}/stages/{model}.json {}"
    ]
    assert access_recorder.problems([Call("mlinfra frobnicate", "s3:GetObject", "*")]) == [
        "caller 'mlinfra frobnicate' runs as no principal of the access contract",
        "the access contract lacks mlinfra frobnicate: s3:GetObject * {}",
    ]


@cli.command("record-deployment")
def record_deployment() -> None:
    # The drift job's conditional write, as on a Lambda runtime whose botocore predates the IfMatch parameter:
    # the header is added at signing time, where the recorder still sees it.
    s3 = boto3.client("s3")
    drift_job.put_conditionally(
        s3, {"If-Match": '"abc"'}, as_headers=True, Bucket=BUCKET, Key="stages/churn.json", Body=b"{}"
    )


@pytest.mark.emulator
@pytest.mark.usefixtures("aws_env")
def test_headers_the_code_adds_at_signing_are_seen() -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    s3.put_object(Bucket=BUCKET, Key="stages/churn.json", Body=b"{}")
    access_recorder.drain()
    CliRunner().invoke(cli, ["record-deployment"])  # the emulator may refuse the stale ETag: only the call matters
    assert access_recorder.drain() == [
        Call("mlinfra record-deployment", "s3:PutObject", "arn:aws:s3:::{bucket}/stages/{model}.json",
             (("s3:if-match", "{etag}"),))
    ]  # fmt: skip
