"""The registry's typed records read and write back exactly what earlier mlinfra wrote, and each builder makes them.

tests/fixtures/records/ holds every record one scenario wrote with the code before the records were typed
(register, promote, a recorded deployment, attach, a second version, rollback, a pull-request promotion into
staging and its deployment, an approval for prod), one folder per stage as in that stage's registry bucket.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mlinfra.registry import records

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "records"
FILES = sorted(FIXTURES.rglob("*.json"))


def stored(data: dict[str, Any]) -> bytes:
    """How mlinfra.registry.store writes a JSON record."""
    return json.dumps(data, indent=2, sort_keys=True).encode()


def kind(path: Path) -> type[records.Record]:
    part = path.relative_to(FIXTURES).parts[1]
    return {"audit": records.AuditRecord, "stages": records.Pointer, "models": records.VersionRecord}[part]


def load(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_bytes())
    assert isinstance(data, dict)
    return data


def by_action(action: str) -> list[dict[str, Any]]:
    return [load(p) for p in FILES if kind(p) is records.AuditRecord and load(p)["action"] == action]


def test_the_fixtures_cover_every_record_and_action() -> None:
    kinds = {kind(p) for p in FILES}
    assert kinds == {records.AuditRecord, records.Pointer, records.VersionRecord}
    actions = {load(p)["action"] for p in FILES if kind(p) is records.AuditRecord}
    assert actions == {"register", "promote", "rollback", "deploy", "attach", "approve"}


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(FIXTURES)) for p in FILES])
def test_a_stored_record_reads_and_writes_back_byte_for_byte(path: Path) -> None:
    original = path.read_bytes()
    record = kind(path).model_validate(json.loads(original))
    assert stored(record.to_json()) == original


def test_a_record_of_the_wrong_shape_does_not_validate() -> None:
    with pytest.raises(ValueError, match="digest"):
        records.VersionRecord.model_validate({"model": "churn", "version": 1, "size": 1, "image": "i", "artifact": "a"})


def without_id(audit: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in audit.items() if k != "id"}


def who_of(audit: dict[str, Any]) -> dict[str, Any]:
    return {key: audit[key] for key in ("actor", "role", "user")}


def test_the_audit_builder_makes_each_action_record_as_stored() -> None:
    common = ("model", "stage", "version", "previous", "digest", "reason", "source", "forced", "gates", "time")
    for action in ("register", "promote", "rollback", "deploy", "attach", "approve"):
        for old in by_action(action):
            details = {k: v for k, v in old.items() if k not in {*common, "id", "action", "actor", "role", "user"}}
            built = records.audit_record(action, who=who_of(old), **{k: old[k] for k in common}, **details)
            assert without_id(built) == without_id(old), action
            assert len(built["id"]) == 32 and built["id"] != old["id"]


def test_the_version_builders_make_the_registered_and_the_promoted_record_as_stored() -> None:
    registered = load(FIXTURES / "sandbox" / "models" / "churn" / "versions" / "2.json")
    built = records.version_record(
        model="churn",
        version=2,
        digest=registered["digest"],
        size=registered["size"],
        framework=registered["framework"],
        framework_version=registered["frameworkVersion"],
        image=registered["image"],
        artifact=registered["artifact"],
        metrics=registered["metrics"],
        git_sha=registered["gitSha"],
        who={"actor": registered["registeredBy"], "user": registered["registeredByUser"]},
        stage="sandbox",
        package_arn=registered["packageArn"],
        baseline=registered["baseline"],
        handler=registered["handler"],
        description=registered["description"],
        card=registered["card"],
    ).to_json()
    assert {**built, "registeredAt": registered["registeredAt"]} == registered

    source = load(FIXTURES / "dev" / "models" / "churn" / "versions" / "1.json")
    promoted = load(FIXTURES / "staging" / "models" / "churn" / "versions" / "1.json")
    copy = records.promoted_record(
        source,
        source_stage="dev",
        stage="staging",
        artifact=promoted["artifact"],
        package_arn=promoted["packageArn"],
    )
    assert copy == promoted


def test_the_pointer_builder_makes_the_pointer_as_stored() -> None:
    for path in FIXTURES.glob("*/stages/churn.json"):
        old = load(path)
        rebuilt = records.pointer_of(old["model"], old["stage"], old, old["record"], deployed=old["deployed"])
        assert rebuilt == old, path


@pytest.mark.parametrize("handler", [None, {"framework": "sklearn", "program": "inference.py", "directory": "code"}])
def test_the_pin_carries_the_handler_layout_whenever_the_version_has_one(handler: dict[str, Any] | None) -> None:
    version = {"version": 3, "digest": "sha256:" + "a" * 64, "image": "img", "handler": handler}
    pin = records.pin_of(version, "s3://bucket/models/m/model.tar.gz")
    assert pin == {
        "version": 3,
        "digest": version["digest"],
        "image": "img",
        "artifact": "s3://bucket/models/m/model.tar.gz",
        **({"handler": handler} if handler else {}),
    }


def test_no_module_but_records_builds_a_pin_a_pointer_or_an_audit_record() -> None:
    import ast

    shapes = {
        "pin": {"version", "digest", "image", "artifact"},
        "audit record": {"id", "action"},
        "pointer": {"since", "record"},
        "version record": {"registeredBy", "packageArn"},
    }
    cli = Path(records.__file__).resolve().parent.parent
    found = []
    for path in sorted(cli.rglob("*.py")):
        if path.name == "records.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Dict):
                keys = {k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
                found += [f"{path.relative_to(cli)}:{node.lineno} {name}" for name, s in shapes.items() if s <= keys]
    assert found == []
