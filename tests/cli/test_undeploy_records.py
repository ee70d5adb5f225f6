"""The undeploy audit record and the pointer after an undeploy, as records.py builds them (no AWS)."""

from __future__ import annotations

from mlinfra import records
from mlinfra.records import Stored

WHO = {"actor": "arn:aws:sts::123456789012:assumed-role/mlinfra-staging-deploy/apply", "role": None, "user": "ci"}
DIGEST = "sha256:" + "b" * 64


def deployed() -> records.Deployment:
    return records.Deployment(version=3, digest=DIGEST, since="2026-12-01T10:00:00Z", commit="a" * 40, run_url=None)


def test_the_undeploy_record_names_what_was_deployed_and_the_apply_that_removed_it() -> None:
    audit = records.undeploy_record(
        "churn", "staging", deployed(), time="2026-12-07T06:00:00Z", commit="c" * 40, dirty=False,
        run_url="https://github.com/acme/platform/actions/runs/9", who=WHO,
    )  # fmt: skip
    assert records.AuditRecord.model_validate(audit).to_json() == audit
    assert {k: audit[k] for k in ("action", "model", "stage", "version", "previous", "digest", "commit", "runUrl")} == {
        "action": "undeploy",
        "model": "churn",
        "stage": "staging",
        "version": 3,
        "previous": 3,
        "digest": DIGEST,
        "commit": "c" * 40,
        "runUrl": "https://github.com/acme/platform/actions/runs/9",
    }
    assert audit["reason"] == f"applied {'c' * 12}, which no longer pins churn (deployed since 2026-12-01T10:00:00Z)"
    assert audit["actor"] == WHO["actor"] and len(audit["id"]) == 32


def test_the_pointer_after_an_undeploy_keeps_its_version_and_clears_the_deployment() -> None:
    before = records.pointer_of(
        "churn",
        "staging",
        {"version": 3, "digest": DIGEST},
        {"id": "x" * 32, "action": "deploy", "time": "2026-12-01T10:00:00Z"},
        deployed=deployed().to_json(),
    )
    stored = Stored(before, '"etag"')
    assert records.undeployed_of(stored) is None, "deployed: nothing undeployed"
    audit = records.undeploy_record(
        "churn", "staging", deployed(), time="2026-12-07T06:00:00Z", commit=None, dirty=True, run_url=None, who=WHO
    )
    after = records.undeployed_pointer(stored, audit)
    assert records.Pointer.model_validate(after).to_json() == after
    assert (after["version"], after["digest"], after["since"], after["deployed"]) == (3, DIGEST, before["since"], None)
    assert records.deployed_of(Stored(after, '"etag2"')) is None
    assert records.undeployed_of(Stored(after, '"etag2"')) == audit
    assert "an uncommitted stack file" in audit["reason"]
