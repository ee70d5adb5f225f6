"""The generated handlers under the framework containers' own serving code, and `mlinfra serve` answering alike.

For each framework: `mlinfra init-model` writes the handler, a real model is trained, `register`'s packer packs the
directory into model.tar.gz, and tests/conformance/driver.py serves that archive through the container's toolkit
(sagemaker-containers' Flask worker for scikit-learn and XGBoost, sagemaker-pytorch-inference under a TorchServe
context for PyTorch; see the driver) with the environment the rendered Model sets. One table of requests goes through
it: valid CSV and JSON get 200 and exactly the model's predictions, every malformed request a 4xx with a one-line JSON
body. The same table then goes through `mlinfra serve` over the same archive, which must answer every row with the
container's status (plus 413 for a body over InvokeEndpoint's 6 MB limit, which SageMaker's front end enforces).
"""

from __future__ import annotations

import base64
import json
import subprocess
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlinfra.models import directory as modeldir
from mlinfra.models import frameworks, packaging, scaffold
from mlinfra_infra.components.endpoint import container_environment
from mlinfra_infra.config import HandlerLayout, Pin
from tests.cli.serveutil import start_serve
from tests.conformance import env

DRIVER = Path(__file__).with_name("driver.py")
FEATURES = ("age", "income", "score")
ROWS = [[0.1, 1.2, 3.0], [2.5, 0.3, 1.1], [1.0, -1.0, 0.5]]
NAN = float("nan")
CSV_ROWS = "".join(",".join(str(v) for v in row) + "\n" for row in ROWS)
DIGEST = "sha256:" + "0" * 64
IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"

pytestmark = pytest.mark.conformance


@dataclass(frozen=True)
class Case:
    """One request of the table and the status every container answers it with (`by_framework` overrides)."""

    name: str
    body: bytes
    content_type: str | None
    accept: str | None = None
    status: int = 200
    by_framework: tuple[tuple[str, int], ...] = ()
    # For a 200: what the answer holds ("rows", "wrapped" {"predictions": ...}, "csv" or "probabilities"), and the
    # rows it answers for (default ROWS).
    answer: str = "rows"
    rows: tuple[tuple[float, ...], ...] | None = None

    def expected(self, framework: str) -> int:
        return dict(self.by_framework).get(framework, self.status)


TABLE = [
    Case("csv rows", CSV_ROWS.encode(), "text/csv"),
    Case("csv one row", b"0.1,1.2,3.0", "text/csv", rows=((0.1, 1.2, 3.0),)),
    Case("json rows", json.dumps(ROWS).encode(), "application/json"),
    Case("json instances", json.dumps({"instances": ROWS}).encode(), "application/json", answer="wrapped"),
    Case("json inputs", json.dumps({"inputs": ROWS}).encode(), "application/json", answer="wrapped"),
    Case(
        "records by name",
        json.dumps([dict(zip(FEATURES, row, strict=True)) for row in ROWS]).encode(),
        "application/json",
    ),
    Case(
        "instances by name",
        json.dumps({"instances": [dict(zip(FEATURES, row, strict=True)) for row in ROWS]}).encode(),
        "application/json",
        answer="wrapped",
    ),
    Case("csv answer", CSV_ROWS.encode(), "text/csv", accept="text/csv", answer="csv"),
    Case(
        "probabilities",
        CSV_ROWS.encode(),
        "text/csv",
        accept="application/json; output=probabilities",
        answer="probabilities",
        by_framework=(("pytorch", 406),),
    ),
    Case("non-numeric cell", b"0.1,abc,3.0\n", "text/csv", status=400),
    Case("header row", b"age,income,score\n0.1,1.2,3.0\n", "text/csv", status=400),
    Case("too few values", b"0.1,1.2\n", "text/csv", status=400),
    Case("too many values", json.dumps([[0.1, 1.2, 3.0, 4.0]]).encode(), "application/json", status=400),
    Case("ragged rows", json.dumps([[0.1, 1.2, 3.0], [1.0]]).encode(), "application/json", status=400),
    Case("missing feature", json.dumps([{"age": 1, "income": 2}]).encode(), "application/json", status=400),
    Case(
        "unknown feature",
        json.dumps([{"age": 1, "income": 2, "score": 3, "zip": 4}]).encode(),
        "application/json",
        status=400,
    ),
    Case("empty body", b"", "text/csv", status=400),
    Case("empty json", b"", "application/json", status=400),
    Case("invalid json", b"{not json", "application/json", status=400),
    Case("json scalar", b"42", "application/json", status=400),
    Case("unknown content type", b"0.1,1.2,3.0", "text/plain", status=415),
    Case("npy content type", b"\x93NUMPY", "application/x-npy", status=415),
    Case("unknown accept", b"0.1,1.2,3.0", "text/csv", accept="application/xml", status=406),
    # XGBoost takes NaN as a missing value; no model takes infinity.
    Case("nan", b"nan,1.2,3.0\n", "text/csv", status=400, by_framework=(("xgboost", 200),), rows=((NAN, 1.2, 3.0),)),
    Case("infinity", json.dumps([[1e999, 1.0, 1.0]]).encode(), "application/json", status=400),
]


def train(framework: str, directory: Path) -> Callable[[np.ndarray, bool], Any]:
    """A real model on FEATURES saved where the generated handler loads it; its own (predict, probabilities)."""
    rng = np.random.default_rng(11)
    features = rng.normal(size=(120, len(FEATURES))).astype(np.float32)
    labels = (features[:, 0] + features[:, 1] > 0).astype(int)
    if framework == "sklearn":
        import joblib
        import pandas as pd
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression().fit(pd.DataFrame(features, columns=list(FEATURES)), labels)
        joblib.dump(model, directory / "model.joblib")

        def sklearn_predict(rows: np.ndarray, probabilities: bool) -> Any:
            frame = pd.DataFrame(rows, columns=list(FEATURES))
            return model.predict_proba(frame) if probabilities else model.predict(frame)

        return sklearn_predict
    if framework == "xgboost":
        import xgboost as xgb

        data = xgb.DMatrix(features, label=labels, feature_names=list(FEATURES))
        booster = xgb.train({"objective": "binary:logistic"}, data, num_boost_round=5)
        booster.save_model(str(directory / "xgboost-model.json"))
        return lambda rows, probabilities: booster.predict(xgb.DMatrix(rows, feature_names=list(FEATURES)))
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(len(FEATURES), 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    torch.jit.save(torch.jit.script(net), str(directory / "model.pt"))
    # A TorchScript model does not record its inputs: the schema declares them (as the notebook API writes it).
    schema = {"features": [{"name": name, "type": "float"} for name in FEATURES]}
    (directory / "code" / "input_schema.json").write_text(json.dumps(schema))
    return lambda rows, probabilities: net(torch.as_tensor(rows, dtype=torch.float32)).detach().numpy()


@dataclass
class Packed:
    framework: str
    directory: Path
    archive: Path
    environment: dict[str, str]
    predict: Callable[[np.ndarray, bool], Any]


@pytest.fixture(scope="module")
def conformance_python() -> Path:
    return env.ensure()


@pytest.fixture(scope="module", params=frameworks.names())
def packed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Packed:
    framework = str(request.param)
    root = tmp_path_factory.mktemp(f"conformance-{framework}")
    directory = root / "model"
    scaffold.init_model("churn", framework, directory, force=False)
    predict = train(framework, directory)
    layout = modeldir.check_directory(directory, framework, "churn")
    archive = root / "model.tar.gz"
    with archive.open("wb") as out:
        packaging.pack(directory, out.write, skip=modeldir.skipper(directory))
    pin = Pin(
        version=1,
        digest=DIGEST,
        image=IMAGE,
        artifact="s3://bucket/models/churn/model.tar.gz",
        handler=HandlerLayout(framework=framework, program=layout.program, directory=layout.directory),
    )
    environment = container_environment("churn", pin, "eu-west-1")
    return Packed(framework, directory, archive, environment, predict)


def _headers(case: Case) -> dict[str, str]:
    headers = {}
    if case.content_type is not None:
        headers["Content-Type"] = case.content_type
    if case.accept is not None:
        headers["Accept"] = case.accept
    return headers


def run_container(python: Path, packed: Packed, cases: list[Case], tmp_path: Path) -> dict[str, Any]:
    spec = {
        "framework": packed.framework,
        "archive": str(packed.archive),
        "environment": packed.environment,
        "requests": [{"body": base64.b64encode(c.body).decode(), "headers": _headers(c)} for c in cases],
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    done = subprocess.run(
        [str(python), str(DRIVER), str(tmp_path / "spec.json"), str(tmp_path / "out.json")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads((tmp_path / "out.json").read_text()))


def check_answer(packed: Packed, case: Case, status: int, body: bytes) -> None:
    """A 200 holds exactly the model's predictions; anything else is a one-line JSON {"error": ...}."""
    if status != 200:
        text = body.decode("utf-8")
        assert "\n" not in text.strip(), f"{case.name}: {text!r}"
        assert set(json.loads(text)) == {"error"}, f"{case.name}: {text!r}"
        return
    rows = np.asarray(case.rows if case.rows is not None else ROWS, dtype=np.float32)
    expected = np.asarray(packed.predict(rows, case.answer == "probabilities"))
    if case.answer == "csv":
        got = np.asarray([[float(v) for v in line.split(",")] for line in body.decode().splitlines()])
    else:
        answer = json.loads(body)
        if case.answer == "wrapped":
            assert list(answer) == ["predictions"], case.name
            answer = answer["predictions"]
        got = np.asarray(answer, dtype=float)
    assert np.allclose(got.reshape(expected.shape), expected, rtol=1e-6, atol=1e-6), case.name


def test_the_container_answers_the_table(conformance_python: Path, packed: Packed, tmp_path: Path) -> None:
    result = run_container(conformance_python, packed, TABLE, tmp_path)
    assert result["install"] == "ok", "the container's start-up pip install (without an index) failed"
    statuses = {case.name: answer["status"] for case, answer in zip(TABLE, result["answers"], strict=True)}
    assert statuses == {case.name: case.expected(packed.framework) for case in TABLE}
    for case, answer in zip(TABLE, result["answers"], strict=True):
        check_answer(packed, case, answer["status"], base64.b64decode(answer["body"]))


def test_mlinfra_serve_answers_the_table_alike(packed: Packed, tmp_path: Path) -> None:
    unpacked = tmp_path / "model"
    with tarfile.open(packed.archive) as archive:
        archive.extractall(unpacked, filter="data")
    server = start_serve(
        ["serve", "churn", "--path", str(unpacked), "--framework", packed.framework], tmp_path / "serve.log"
    )
    try:
        for case in TABLE:
            status, _, body = server.invoke(case.body, **_headers(case))
            assert status == case.expected(packed.framework), f"{case.name}: {status} {body!r}"
            check_answer(packed, case, status, body)
        status, _, body = server.invoke(b"0" * (6291456 + 1), **{"Content-Type": "text/csv"})
        assert status == 413
        assert "6291456 bytes" in json.loads(body)["error"]
    finally:
        server.stop()


def test_without_the_models_pip_setting_the_offline_start_up_install_fails(
    conformance_python: Path, packed: Packed, tmp_path: Path
) -> None:
    # Why ModelEndpoint sets PIP_NO_BUILD_ISOLATION=0: sagemaker-containers `pip install .`s the handler's folder at
    # start-up, and an isolated build would fetch setuptools from an index that network isolation does not reach.
    # The PyTorch toolkit installs requirements.txt only (no package of the folder): it starts without it.
    environment = {k: v for k, v in packed.environment.items() if k != "PIP_NO_BUILD_ISOLATION"}
    bare = Packed(packed.framework, packed.directory, packed.archive, environment, packed.predict)
    result = run_container(conformance_python, bare, TABLE[:1], tmp_path)
    if packed.framework == "pytorch":
        assert result["install"] == "ok"
        assert [answer["status"] for answer in result["answers"]] == [200]
    else:
        assert result["install"].startswith("failed"), result["install"]
        assert result["answers"] == []
