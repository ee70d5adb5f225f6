"""The prediction baseline from a model directory: the model's own handler on the sample, answers decoded as drift
decodes captured ones. Real models (scikit-learn, XGBoost) written by the notebook API's writer; no AWS.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import Result

from mlinfra.models import export, frameworks
from mlinfra.serving.handler import load_handler
from mlinfra.serving.predictions import PREDICTION_ROWS, PredictionError, for_place, sample_outputs
from mlinfra_drift.baseline import Baseline

Run = Callable[..., Result]


def _frame(n: int, seed: int = 0) -> Any:
    import pandas as pd

    rng = np.random.default_rng(seed)
    return pd.DataFrame({"age": rng.normal(40, 10, n).round(1), "income": rng.lognormal(3, 0.5, n).round(2)})


def _written(model: Any, sample: Any, tmp_path: Path) -> export.Written:
    return export.write_model(model, sample, name="m", directory=tmp_path / "m")


def test_a_classifier_gives_labels_and_probabilities_as_its_endpoint_answers(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    x = _frame(600)
    model = LogisticRegression().fit(x, (x["age"] > 40).astype(int))
    written = _written(model, x, tmp_path)
    # The sample holds the label too: only the input schema's features are sent.
    labelled = tmp_path / "labelled.csv"
    x.assign(churned=(x["age"] > 40).astype(int)).to_csv(labelled, index=False)
    outputs = sample_outputs(written.model_dir, "sklearn", labelled)
    assert outputs["rows"] == 600 and outputs["classes"] == ["0", "1"]
    # Exactly what the served endpoint answers, request by request (float32 inputs, as in the container).
    handler = load_handler(written.model_dir, "sklearn")
    answered = json.loads(handler.invoke(x.to_json(orient="records").encode(), "application/json", None).body)
    assert outputs["columns"]["prediction"]["categories"] == dict(Counter(str(v) for v in answered))
    Baseline.model_validate({**json.loads(json.dumps(_minimal())), "outputs": outputs})


def _minimal() -> dict[str, Any]:
    return {"schema": "mlinfra.baseline/2", "rows": 0, "columns": {}}


def test_a_regressor_without_a_schema_is_sent_csv_rows_and_gives_numbers(tmp_path: Path) -> None:
    from sklearn.linear_model import LinearRegression

    x = _frame(300, seed=1)
    model = LinearRegression().fit(x.to_numpy(), x["age"] * 2 + 1)
    written = _written(model, x.to_numpy(), tmp_path)
    (written.model_dir / "code" / export.SCHEMA_FILE).unlink()  # positional rows, as a hand-written handler takes
    outputs = sample_outputs(written.model_dir, "sklearn", written.baseline)
    assert "classes" not in outputs and list(outputs["columns"]) == ["prediction"]
    prediction = outputs["columns"]["prediction"]
    assert prediction["type"] == "numeric"
    assert prediction["mean"] == pytest.approx(float((x["age"] * 2 + 1).mean()), rel=1e-4)


def test_multiclass_probabilities_and_an_xgboost_booster_that_answers_probabilities(run: Run, tmp_path: Path) -> None:
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier
    from xgboost import XGBClassifier

    x, y = load_iris(return_X_y=True, as_frame=True)
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(x, y)
    outputs = sample_outputs(_written(forest, x, tmp_path / "rf").model_dir, "sklearn", _csv(x, tmp_path))
    assert outputs["classes"] == ["0", "1", "2"]
    assert list(outputs["columns"]) == ["prediction", "probability of 0", "probability of 1", "probability of 2"]

    # An XGBoost booster in a directory `mlinfra init-model` wrote (no input schema: positional CSV rows).
    booster = XGBClassifier(n_estimators=5, max_depth=2).fit(x.to_numpy(), (y == 0).astype(int)).get_booster()
    directory = tmp_path / "xgb"
    assert run("init-model", "m", "--framework", "xgboost", str(directory)).exit_code == 0
    booster.save_model(str(directory / frameworks.get("xgboost").model_file))
    outputs = sample_outputs(directory, "xgboost", _csv(x, tmp_path))
    # The booster answers P(class 1) by default and for output=probabilities: one numeric output.
    assert list(outputs["columns"]) == ["prediction"] and outputs["columns"]["prediction"]["type"] == "numeric"
    assert 0.0 <= outputs["columns"]["prediction"]["min"] <= outputs["columns"]["prediction"]["max"] <= 1.0


def _csv(frame: Any, tmp_path: Path) -> Path:
    path = tmp_path / "sample.csv"
    frame.to_csv(path, index=False)
    return path


def test_parquet_samples_the_first_rows_only_and_failures_are_one_line(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    x = _frame(PREDICTION_ROWS + 50, seed=2)
    model = LogisticRegression().fit(x, (x["income"] > 20).astype(int))
    written = _written(model, x, tmp_path)
    parquet = tmp_path / "sample.parquet"
    x.to_parquet(parquet)
    outputs = for_place(written.model_dir, "sklearn", parquet, {"program": "inference.py", "directory": "code"})
    assert outputs["rows"] == PREDICTION_ROWS and "first 10,000 row(s) of sample.parquet" in outputs["source"]

    other = _csv(x.rename(columns={"income": "salary"}).head(5), tmp_path)
    with pytest.raises(PredictionError, match="the sample has no column income of the model's input schema"):
        sample_outputs(written.model_dir, "sklearn", other)
    text = _csv(x.assign(income="n/a").head(5), tmp_path)
    with pytest.raises(PredictionError, match=r"^the handler answered 400: .*not a finite number"):
        sample_outputs(written.model_dir, "sklearn", text)
    (written.model_dir / "model.joblib").write_bytes(b"not a model")
    with pytest.raises(PredictionError, match=r"^the handler did not load here: model_fn failed"):
        sample_outputs(written.model_dir, "sklearn", written.baseline)
