"""`mlinfra init-model`: every generated file renders, the handler compiles, passes register's check, and serves a
real trained model of its framework through model_fn -> input_fn -> predict_fn -> output_fn, as the container would.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from click.testing import Result

from mlinfra.models import directory as modeldir
from mlinfra.models import frameworks, scaffold
from mlinfra_templates import names

Run = Callable[..., Result]
ROWS = [[0.1, 1.2, 3.0], [2.5, 0.3, 1.1], [1.0, 1.0, 1.0], [3.3, 2.2, 0.1]]


def load_handler(directory: Path, name: str) -> ModuleType:
    """Import code/inference.py from a model directory under a unique module name (as the container imports it)."""
    spec = importlib.util.spec_from_file_location(name, directory / "code" / "inference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def train(framework: str, directory: Path) -> Callable[[np.ndarray], np.ndarray]:
    """Train a tiny real model, save it where the handler loads it; its own predict function, for comparison."""
    rng = np.random.default_rng(7)
    features = rng.normal(size=(80, 3)).astype(np.float32)
    labels = (features[:, 0] + features[:, 1] > 0).astype(int)
    if framework == "sklearn":
        import joblib
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression().fit(features, labels)
        joblib.dump(model, directory / "model.joblib")
        return model.predict
    if framework == "xgboost":
        import xgboost as xgb

        booster = xgb.train({"objective": "binary:logistic"}, xgb.DMatrix(features, label=labels), num_boost_round=5)
        booster.save_model(str(directory / "xgboost-model.json"))
        return lambda rows: booster.predict(xgb.DMatrix(rows))
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    scripted = torch.jit.script(net)
    torch.jit.save(scripted, str(directory / "model.pt"))
    return lambda rows: net(torch.as_tensor(rows, dtype=torch.float32)).detach().numpy()


@pytest.fixture(params=frameworks.names())
def framework(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_every_template_is_rendered_by_some_test() -> None:
    rendered_here = {f"handlers/{f}.py.j2" for f in frameworks.names()} | {
        "handlers/base.py.j2",
        "handlers/_toolkit_respond.py.j2",
        "handlers/_containers_respond.py.j2",
        "handlers/requirements.txt.j2",
        "handlers/mlinfraignore.j2",
        "cards/stub.md.j2",
    }
    # The web view's pages: tests/cli/test_ui_server.py and test_ui_browser.py render every one of them.
    ui_pages = {n for n in names() if n.startswith("ui/")}
    elsewhere = ui_pages | {  # test_cards.py, test_model_repo.py, tests/infra/test_sandbox.py
        "cards/card.md.j2",
        "cards/card.html.j2",
        "repo/register.yml.j2",
        "repo/README.md.j2",
        "repo/gitignore.j2",
        "sandbox/cloud-init.yaml.j2",
    }
    assert set(names()) - rendered_here - elsewhere <= {n for n in names() if n.startswith("reports/")}


def test_init_model_writes_the_skeleton(framework: str, run: Run, tmp_path: Path) -> None:
    target = tmp_path / "fraud"
    result = run("init-model", "fraud", "--framework", framework, str(target), "--json")
    assert result.exit_code == 0, result.stderr
    written = {Path(item["path"]).relative_to(target).as_posix() for item in json.loads(result.stdout)}
    assert written == {"code/inference.py", "code/requirements.txt", "card.md", ".mlinfraignore"}
    source = (target / "code" / "inference.py").read_text()
    compile(source, "inference.py", "exec")
    assert "{{" not in source and "{%" not in source
    # register's static check accepts what init-model writes
    layout = modeldir.check_directory(target, framework, "fraud")
    assert (layout.framework, layout.program, layout.directory) == (framework, "inference.py", "code")
    requirements = (target / "code" / "requirements.txt").read_text()
    # Nothing to install: the image has what the handler imports (named in the comment), and pip has no network.
    assert [r for r in requirements.split("\n") if r and not r.startswith("#")] == []
    assert ", ".join(frameworks.get(framework).requirements) in " ".join(requirements.replace("#", " ").split())
    assert (target / "card.md").read_text().startswith("# fraud\n")
    assert "card.md" in (target / ".mlinfraignore").read_text().splitlines()


def test_init_model_refuses_to_overwrite_and_writes_nothing(run: Run, tmp_path: Path) -> None:
    target = tmp_path / "m"
    (target / "code").mkdir(parents=True)
    (target / "code" / "inference.py").write_text("mine\n")
    result = run("init-model", "churn", "--framework", "sklearn", str(target))
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {target / 'code' / 'inference.py'} exists; nothing was written: move it away, "
        "or pass --force to overwrite\n"
    )
    assert sorted(p.name for p in target.rglob("*")) == ["code", "inference.py"]
    assert (target / "code" / "inference.py").read_text() == "mine\n"
    assert run("init-model", "churn", "--framework", "sklearn", str(target), "--force").exit_code == 0
    assert "def model_fn" in (target / "code" / "inference.py").read_text()


def test_init_model_refuses_a_bad_model_name(run: Run, tmp_path: Path) -> None:
    result = run("init-model", "Churn_Model", "--framework", "sklearn", str(tmp_path / "x"))
    assert result.exit_code == 2
    assert "'Churn_Model' is not a model name" in result.stderr
    assert not (tmp_path / "x").exists()


def test_handler_round_trips_a_real_model(framework: str, tmp_path: Path) -> None:
    directory = tmp_path / "model"
    scaffold.init_model("churn", framework, directory, force=False)
    predict = train(framework, directory)
    handler = load_handler(directory, f"handler_{framework}_roundtrip")
    model = handler.model_fn(str(directory))
    expected = np.asarray(predict(np.asarray(ROWS, dtype=np.float32))).tolist()

    def invoke(body: str | bytes, content_type: str, accept: str | None) -> Any:
        return handler.output_fn(handler.predict_fn(handler.input_fn(body, content_type), model), accept)

    body, media = invoke(json.dumps(ROWS), "application/json", "application/json")
    assert media == "application/json"
    assert np.allclose(np.asarray(json.loads(body), dtype=float), np.asarray(expected, dtype=float), atol=1e-5)

    body, media = invoke(json.dumps({"instances": ROWS}).encode(), "application/json; charset=utf-8", None)
    assert media == "application/json"
    answer = json.loads(body)
    assert list(answer) == ["predictions"]
    assert np.allclose(np.asarray(answer["predictions"], dtype=float), np.asarray(expected, dtype=float), atol=1e-5)

    csv_body = "\n".join(",".join(str(v) for v in row) for row in ROWS) + "\n"
    body, media = invoke(csv_body, "text/csv", "text/csv")
    assert media == "text/csv"
    lines = body.strip().split("\n")
    assert len(lines) == len(ROWS)
    parsed = [[float(v) for v in line.split(",")] for line in lines]
    assert np.allclose(np.asarray(parsed).reshape(np.asarray(expected).shape), expected, atol=1e-5)

    body, media = invoke(csv_body, "text/csv", "application/xml, text/csv;q=0.5")
    assert media == "text/csv", "the first supported type the Accept header lists"


@pytest.mark.parametrize(
    ("body", "content_type", "accept", "status", "message"),
    [
        ("{not json", "application/json", None, 400, "the body is not valid JSON"),
        ('{"rows": [[1, 2, 3]]}', "application/json", None, 400, "record 1: missing feature(s) a, b, c"),
        ("[1, 2, 3]", "application/json", None, 400, "expected a list of rows (lists of numbers) or of records"),
        ("[]", "application/json", None, 400, "expected a non-empty list of rows or records"),
        ("[[1, 2, 3], [1, 2]]", "application/json", None, 400, "row 2 has 2 values, the model takes 3 features"),
        ("[[1, 2]]", "application/json", None, 400, "row 1 has 2 values, the model takes 3 features"),
        ('[{"a": 1, "b": 2, "c": 3, "d": 4}]', "application/json", None, 400, "record 1: unknown feature(s) d"),
        ("nan,1,2", "text/csv", None, 400, "row 1: 'nan' is not a finite number"),
        ("[[1e999, 1, 2]]", "application/json", None, 400, "row 1: inf is not a finite number"),
        ('[[1, "x", 3]]', "application/json", None, 400, "row 1: 'x' is not a number"),
        ("a,b,c\n1,2,3\n", "text/csv", None, 400, "row 1: 'a' is not a number (send numbers only, no header)"),
        ("", "text/csv", None, 400, "the request body is empty"),
        (b"\xff\xfe", "text/csv", None, 400, "the request body is not UTF-8 text"),
        ("1,2,3", "application/x-npy", None, 415, "unsupported Content-Type 'application/x-npy'"),
        ("1,2,3", "text/csv", "application/xml", 406, "unsupported Accept 'application/xml'"),
    ],
)
def test_malformed_requests_get_a_4xx_with_one_line(
    framework: str,
    tmp_path: Path,
    body: str | bytes,
    content_type: str,
    accept: str | None,
    status: int,
    message: str,
) -> None:
    directory = tmp_path / "model"
    scaffold.init_model("churn", framework, directory, force=False)
    train(framework, directory)
    schema = {"features": [{"name": name, "type": "float"} for name in "abc"]}
    (directory / "code" / frameworks.SCHEMA_FILE).write_text(json.dumps(schema))
    handler = load_handler(directory, f"handler_{framework}_errors_{status}_{abs(hash(body))}")
    model = handler.model_fn(str(directory))
    if framework == "xgboost" and body == "nan,1,2":  # a missing value to XGBoost
        handler.output_fn(handler.predict_fn(handler.input_fn(body, content_type), model), accept)
        return
    with pytest.raises(Exception) as caught:
        handler.output_fn(handler.predict_fn(handler.input_fn(body, content_type), model), accept)
    error = caught.value
    assert type(error).__name__ == "HandlerError"
    assert error.status_code == status  # type: ignore[attr-defined]
    assert str(error).startswith(message), str(error)
    assert "\n" not in str(error)


def test_model_fn_says_which_file_is_missing(framework: str, tmp_path: Path) -> None:
    directory = tmp_path / "model"
    scaffold.init_model("churn", framework, directory, force=False)
    handler = load_handler(directory, f"handler_{framework}_missing")
    with pytest.raises(FileNotFoundError, match=frameworks.get(framework).model_file):
        handler.model_fn(str(directory))


def test_the_pin_accepts_exactly_the_registered_frameworks() -> None:
    from typing import get_args

    from mlinfra_infra.config import HandlerLayout

    assert set(get_args(HandlerLayout.model_fields["framework"].annotation)) == set(frameworks.names())


def test_generated_handler_is_formatted_and_lint_clean(framework: str, tmp_path: Path) -> None:
    import subprocess

    scaffold.init_model("churn", framework, tmp_path / "m", force=False)
    handler = str(tmp_path / "m" / "code" / "inference.py")
    ruff = str(Path(sys.executable).parent / "ruff")
    formatted = subprocess.run(
        [ruff, "format", "--isolated", "--check", "--line-length", "120", handler],
        capture_output=True,
        text=True,
        check=False,
    )
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr
    linted = subprocess.run(
        [ruff, "check", "--isolated", "--select", "E,F,W,B", "--line-length", "120", handler],
        capture_output=True,
        text=True,
        check=False,
    )
    assert linted.returncode == 0, linted.stdout


def test_default_framework_versions_resolve_to_an_inference_image(framework: str) -> None:
    # init-model-repo's workflow registers with these: they must be versions the image lookup knows.
    from mlinfra.models import images

    adapter = frameworks.get(framework)
    assert images.resolve_image(framework, adapter.default_version, "eu-west-1").endswith(
        tuple(f":{adapter.default_version}{suffix}" for suffix in ("", "-cpu-py3", "-cpu-py312"))
    )


def test_records_by_name_reach_a_pipeline_with_categories(tmp_path: Path) -> None:
    # A scikit-learn pipeline fitted on a DataFrame encodes its own categories: the schema declares them, the
    # handler passes them as sent, by name, in the schema's order, whatever order the record lists them in.
    import joblib
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame = pd.DataFrame(
        {"age": [20, 35, 50, 65, 30, 45], "plan": ["a", "b", "a", "c", "b", "c"], "income": [1.0, 2, 3, 4, 5, 6]}
    )
    labels = [0, 1, 0, 1, 1, 0]
    encode = ColumnTransformer([("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"])], remainder="passthrough")
    model = make_pipeline(encode, LogisticRegression()).fit(frame, labels)
    directory = tmp_path / "model"
    scaffold.init_model("churn", "sklearn", directory, force=False)
    joblib.dump(model, directory / "model.joblib")
    schema = {"features": [{"name": "age", "type": "int"}, {"name": "plan", "type": "category"},
                           {"name": "income", "type": "float"}]}  # fmt: skip
    (directory / "code" / frameworks.SCHEMA_FILE).write_text(json.dumps(schema))
    handler = load_handler(directory, "handler_sklearn_categories")
    loaded = handler.model_fn(str(directory))
    records = [{"plan": "b", "income": 2.5, "age": 33}, {"age": 61, "plan": "c", "income": 4.0}]
    body, media = handler.output_fn(
        handler.predict_fn(handler.input_fn(json.dumps({"inputs": records}), "application/json"), loaded),
        "application/json; output=probabilities",
    )
    assert media == "application/json"
    wanted = model.predict_proba(pd.DataFrame(records)[["age", "plan", "income"]])
    assert np.allclose(json.loads(body)["predictions"], wanted)
    with pytest.raises(Exception, match=r"row 1: category \[1\] is not a string or a number"):
        handler.output_fn(
            handler.predict_fn(handler.input_fn('[{"age": 1, "plan": [1], "income": 2}]', "application/json"), loaded),
            None,
        )
