"""The notebook API against the emulator: the same version as the CLI, a served prediction, honest messages.

`mlinfra.register(model, X, name=...)` writes the model directory and registers it through the function the
`register` command calls; the test registers the same model both ways and compares digests, and checks what the
directory holds (pinned requirements, input schema, baseline columns, the card left out of the archive).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from collections import Counter
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import Result

import mlinfra
from mlinfra.errors import BadInputError
from mlinfra.models import export
from mlinfra.records import VersionRecord
from mlinfra.stacks.project import Project
from mlinfra_infra import layout

pytestmark = pytest.mark.emulator
Run = Callable[..., Result]


def ok(result: Result) -> Any:
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout) if result.stdout.lstrip().startswith(("{", "[")) else result.stdout


def trained() -> tuple[Any, Any, Any]:
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = load_breast_cancer(return_X_y=True, as_frame=True)
    x_train, x_test, y_train, _ = train_test_split(x, y, random_state=0)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x_train, y_train)
    return model, x_train, x_test


@pytest.fixture
def bootstrapped(project_dir: Path, aws_env: str, run: Run) -> Path:
    ok(run("local", "up", "--json"))
    return project_dir


def bucket(stage: str) -> str:
    return f"mlinfra-{stage}-123456789012-eu-west-1"


def test_api_and_cli_register_the_same_digest(bootstrapped: Path, run: Run, tmp_path: Path) -> None:
    model, x_train, x_test = trained()
    record = mlinfra.register(
        model, x_train, name="cancer", metrics={"accuracy": 0.96}, description="first", directory=tmp_path / "api"
    )
    assert isinstance(record, VersionRecord)
    assert (record.model, record.version, record.stage, record.framework) == ("cancer", 1, "sandbox", "sklearn")
    assert record.metrics == {"accuracy": 0.96} and record.description == "first"
    assert record.image.endswith(f"sagemaker-scikit-learn:{export.image_version('sklearn', ('scikit-learn',))}-cpu-py3")

    # The same model written again by the same code, registered by the CLI: the same bytes, so the same version.
    written = export.write_model(model, x_train, name="cancer", directory=tmp_path / "cli")
    plan = ok(run("register", str(written.model_dir), "-m", "cancer", "--framework", "sklearn", "--dry-run", "--json"))
    assert plan["digest"] == record.digest
    again = ok(
        run(
            "register", str(written.model_dir), "-m", "cancer", "--framework", "sklearn",
            "--framework-version", record.framework_version, "--json",
        )
    )  # fmt: skip
    assert (again["version"], again["digest"], again["existing"]) == (1, record.digest, True)

    # What the directory holds, and what the archive leaves out.
    code = written.model_dir / "code"
    requirements = (code / "requirements.txt").read_text().splitlines()
    # The image provides both (picked for this scikit-learn's major.minor): named, not pinned, as its offline
    # start-up install could not replace them.
    provided = f"scikit-learn=={metadata.version('scikit-learn')}, joblib=={metadata.version('joblib')}"
    assert any(provided in line for line in requirements if line.startswith("#")), requirements
    assert [line for line in requirements if not line.startswith("#")] == []
    schema = json.loads((code / "input_schema.json").read_text())
    assert [f["name"] for f in schema["features"]] == list(x_train.columns)
    assert {f["type"] for f in schema["features"]} == {"float"}
    assert written.baseline.read_text().splitlines()[0].split(",")[:2] == ["mean radius", "mean texture"]
    body = boto3.client("s3").get_object(Bucket=bucket("sandbox"), Key=layout.artifact_key("cancer", record.digest))
    archive = tmp_path / "stored.tar.gz"
    archive.write_bytes(body["Body"].read())
    with tarfile.open(archive) as tar:
        names = sorted(m.name for m in tar.getmembers() if m.isreg())
    assert names == ["code/inference.py", "code/input_schema.json", "code/requirements.txt", "model.joblib"]
    stored = json.loads(
        boto3.client("s3").get_object(Bucket=bucket("sandbox"), Key=record.baseline or "")["Body"].read()
    )
    assert stored["header"] == list(x_train.columns) and stored["rows"] == len(x_train)
    # The prediction baseline: the model's answers on the sample, through the handler its endpoint runs.
    outputs = stored["outputs"]
    assert outputs["rows"] == len(x_train) and outputs["classes"] == ["0", "1"]
    assert list(outputs["columns"]) == ["prediction", "probability of 1"]
    labels = Counter(str(v) for v in model.predict(x_train).tolist())
    assert outputs["columns"]["prediction"]["categories"] == dict(labels)
    positive = model.predict_proba(x_train)[:, 1]
    assert outputs["columns"]["probability of 1"]["mean"] == pytest.approx(positive.mean(), abs=1e-6)

    # Served from the registry, through its own handler; then promoted through the API.
    with mlinfra.serve("cancer") as endpoint:
        assert endpoint.predict(x_test[:3]) == model.predict(x_test[:3]).tolist()
    promoted = mlinfra.promote("cancer", to="dev")
    assert (promoted["stage"], promoted["version"], promoted["deployed"]) == ("dev", 1, None)
    listed = mlinfra.versions("cancer")
    assert [v["version"] for v in listed] == [1]


def test_local_mode_declares_an_undeclared_model_and_says_so(
    bootstrapped: Path, run: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, x_train, _ = trained()
    mlinfra.register(model, x_train, name="cancer", directory=tmp_path / "m")
    err = capsys.readouterr().err
    assert "note: cancer was not declared: local mode declared it in every stage of its scratch stacks" in err
    assert "for the real stack files run `mlinfra model add cancer`" in err
    project = Project(bootstrapped)
    real = (bootstrapped / "stacks" / "Pulumi.dev.yaml").read_text()
    assert "cancer" not in real  # your own stack files never change
    scratch = project.stacks_dir / "Pulumi.dev.yaml"
    assert "cancer: {}" in scratch.read_text()
    log = subprocess.run(
        ["git", "log", "--format=%s", "origin/main"],
        cwd=scratch.parent.parent,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "Declare cancer (local mode, on register)" in log  # on the scratch remote: pull requests carry it


def test_a_name_close_to_a_declared_model_is_a_typo_not_a_new_model(
    bootstrapped: Path, run: Run, tmp_path: Path
) -> None:
    model, x_train, _ = trained()
    with pytest.raises(BadInputError, match=r"unknown model 'chrun' .*did you mean 'churn'.*mlinfra --local model add"):
        mlinfra.register(model, x_train, name="chrun", directory=tmp_path / "m")


def test_outside_local_mode_the_error_prints_model_add(project_dir: Path, run: Run, tmp_path: Path) -> None:
    (tmp_path / "model" / "code").mkdir(parents=True)
    (tmp_path / "model" / "code" / "inference.py").write_text("def model_fn(model_dir):\n    return None\n")
    result = run(
        "register", str(tmp_path / "model"), "-m", "fraud", "--image", "1" * 12 + ".dkr.ecr.eu-west-1.amazonaws.com/x:1"
    )
    assert result.exit_code == 2
    assert "to add it, run `mlinfra model add fraud`" in result.stderr


def test_register_refuses_data_unless_ignored_or_included(project_dir: Path, run: Run, tmp_path: Path) -> None:
    model = tmp_path / "model"
    (model / "code").mkdir(parents=True)
    (model / "code" / "inference.py").write_text("def model_fn(model_dir):\n    return None\n")
    (model / "model.joblib").write_bytes(b"weights")
    (model / "train.csv").write_text("a,b\n1,2\n")
    (model / "frame.pkl").write_bytes(b"\x80\x04\x95...\x8c\x11pandas.core.frame\x94\x8c\tDataFrame\x94")
    result = run("register", str(model), "-m", "churn", "--framework", "sklearn", "--framework-version", "1.2-1")
    assert result.exit_code == 2
    assert "would pack data with the model: frame.pkl (" in result.stderr
    assert "a pickled DataFrame), train.csv (" in result.stderr and "--include-data" in result.stderr
    dry = run("register", str(model), "-m", "churn", "--framework", "sklearn", "--dry-run")
    assert dry.exit_code == 0 and "warning: train.csv looks like data (a table)" in dry.stderr
    (model / ".mlinfraignore").write_text("*.csv\n*.pkl\n")
    dry = run("register", str(model), "-m", "churn", "--framework", "sklearn", "--dry-run")
    assert "warning" not in dry.stderr


def test_no_project_names_mlinfra_project_and_the_flag(
    tmp_path: Path, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLINFRA_PROJECT", raising=False)
    result = run("status", "--all")
    assert result.exit_code == 2
    assert "point MLINFRA_PROJECT=DIR (or `mlinfra --project DIR ...`) at one" in result.stderr
    assert "`mlinfra local up`" in result.stderr


def test_project_flag_finds_the_clone_from_anywhere(
    project_dir: Path, tmp_path: Path, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "notebooks"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("MLINFRA_PROJECT", raising=False)
    assert run("stack", "list", "--json").exit_code == 2  # no clone here
    result = run("--project", str(project_dir), "stack", "list", "--json")
    assert result.exit_code == 0, result.stderr
    assert "MLINFRA_PROJECT" not in os.environ  # restored after the command


def test_import_mlinfra_stays_light() -> None:
    code = (
        "import sys, mlinfra; print(sorted(m for m in ('boto3', 'pydantic', 'sklearn', 'pulumi') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
    assert callable(mlinfra.register) and "register" in dir(mlinfra)


def test_attach_changes_card_and_description_in_place_audited(bootstrapped: Path, run: Run, tmp_path: Path) -> None:
    model, x_train, _ = trained()
    record = mlinfra.register(model, x_train, name="cancer", description="first", directory=tmp_path / "m")
    card = tmp_path / "card.md"
    card.write_text("# cancer\n\n## Intended use\n\nTriage research only.\n")
    result = run("attach", "cancer", "--version", "1", "--card", str(card), "--description", "reviewed", "--json")
    assert result.exit_code == 0, result.stderr
    assert sorted(json.loads(result.stdout)["changed"]) == ["card", "description"]
    stored = json.loads(
        boto3.client("s3").get_object(Bucket=bucket("sandbox"), Key=layout.version_key("cancer", 1))["Body"].read()
    )
    assert stored["description"] == "reviewed" and stored["digest"] == record.digest
    text = boto3.client("s3").get_object(Bucket=bucket("sandbox"), Key=stored["card"])["Body"].read().decode()
    assert text == card.read_text()
    assert [v["version"] for v in json.loads(run("versions", "cancer", "--json").stdout)] == [1]  # no new version
    history = json.loads(run("history", "cancer", "--json").stdout)
    attach = next(h for h in history if h["action"] == "attach")
    assert set(attach["changes"]) == {"card", "description"}
    assert attach["changes"]["description"] == {"old": "first", "new": "reviewed"}
    same = run("attach", "cancer", "--version", "1", "--card", str(card), "--json")
    assert json.loads(same.stdout)["changed"] == []
    assert "Triage research only." in run("card", "cancer", "--version", "1").stdout


def test_cli_register_in_local_mode_declares_and_says_so(bootstrapped: Path, run: Run, tmp_path: Path) -> None:
    model = tmp_path / "model"
    (model / "code").mkdir(parents=True)
    (model / "code" / "inference.py").write_text("def model_fn(model_dir):\n    return None\n")
    (model / "model.joblib").write_bytes(b"weights")
    result = run("register", str(model), "-m", "fraud", "--framework", "sklearn", "--framework-version", "1.2-1")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.startswith("note: fraud was not declared: local mode declared it in every stage")
    assert "fraud registered v1" in result.stdout
    assert "Next: mlinfra --local promote fraud --version 1 --to dev" in result.stdout
    promoted = run("promote", "fraud", "--to", "dev")  # the declaration reached every stage, groups included
    assert promoted.exit_code == 0, promoted.stderr


def test_requirements_pin_a_library_installed_as_a_variant_distribution() -> None:
    """XGBoost installs as `xgboost-cpu` here (a variant distribution of the `xgboost` import package): the pin is
    `xgboost==<its version>`, what the image and the handler know, and an absent library is a one-line error."""
    variants = metadata.packages_distributions().get("xgboost", [])
    assert variants, "xgboost is a dev dependency"
    assert export.pinned_requirements(["xgboost"]) == [f"xgboost=={metadata.version(variants[0])}"]
    with pytest.raises(BadInputError, match="not-a-library is not installed here"):
        export.pinned_requirements(["not-a-library"])
