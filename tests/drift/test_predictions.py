"""Prediction drift: the prediction baseline's builder, the captured-output parser, and scoring outputs.

The builder is the input features' (numeric_feature / categorical_feature) applied to the model's answers; the
parser reads every shape the generated handlers answer (and the containers' default encoders); the scorer folds the
outputs of every capture record, on the fast path and the careful one alike, and says why when it cannot.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from mlinfra_drift import outputs
from mlinfra_drift.baseline import (
    PREDICTION,
    Baseline,
    categorical_feature,
    numeric_feature,
    outputs_summary,
    probability_name,
)
from mlinfra_drift.capture import CaptureFile
from mlinfra_drift.publish import datums
from mlinfra_drift.records import capture_line
from mlinfra_drift.report import DriftReport, Thresholds
from mlinfra_drift.score import Scorer
from tests.drift.helpers import END, START, baseline_of

RNG = np.random.default_rng(19)
WHEN = datetime(2026, 11, 26, 10, 30, tzinfo=UTC)


def _classifier(x: np.ndarray) -> tuple[list[int], list[list[float]]]:
    """A fixed logistic 'model' of one feature: labels at p > 0.5 and the two class probabilities."""
    p = 1 / (1 + np.exp(-2 * x))
    return (p > 0.5).astype(int).tolist(), np.c_[1 - p, p].tolist()


def _baseline(x: np.ndarray) -> Baseline:
    labels, probabilities = _classifier(x)
    base = baseline_of({"x": x.tolist()})
    doc = json.loads(base.to_json())
    doc["outputs"] = outputs_summary(labels, probabilities, source="test")
    return Baseline.from_json(json.dumps(doc))


def _score(baseline: Baseline, lines: list[str], thresholds: Thresholds | None = None) -> DriftReport:
    scorer = Scorer(baseline)
    scorer.add_file(CaptureFile("k", ("\n".join(lines) + "\n").encode(), False))
    return scorer.report(
        model="churn", stage="staging", version=1, start=START, end=END, thresholds=thresholds or Thresholds()
    )


# --- the builder ---------------------------------------------------------------------------------------------------


def test_classifier_outputs_are_the_label_as_a_category_and_the_positive_class_probability() -> None:
    x = RNG.normal(0, 1, 3_000)
    labels, probabilities = _classifier(x)
    doc = outputs_summary(labels, probabilities, source="s")
    assert doc["classes"] == ["0", "1"] and list(doc["columns"]) == [PREDICTION, probability_name("1")]
    # The same builders as the input features: no second histogram.
    assert doc["columns"][PREDICTION] == categorical_feature(Counter(str(v) for v in labels), len(labels))
    positive = np.asarray([p[1] for p in probabilities])
    assert doc["columns"]["probability of 1"] == numeric_feature(positive, len(labels))


def test_multiclass_keeps_every_class_probability_in_the_models_order() -> None:
    labels = ["setosa", "versicolor", "virginica"] * 100
    probabilities = [[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]] * 100
    doc = outputs_summary(labels, probabilities, source="s")
    assert doc["classes"] == ["setosa", "versicolor", "virginica"]
    assert list(doc["columns"]) == [PREDICTION] + [probability_name(c) for c in doc["classes"]]
    numbered = outputs_summary([2, 10, 2] * 10, [[0.2, 0.8], [0.7, 0.3], [0.2, 0.8]] * 10, source="s")
    assert numbered["classes"] == ["2", "10"]  # sorted as numbers, as scikit-learn sorts classes_


def test_regressor_and_probability_answers_are_numeric_and_not_kept_twice() -> None:
    values = RNG.normal(100, 15, 500).tolist()
    regressor = outputs_summary(values, None, source="s")
    assert regressor["columns"][PREDICTION]["type"] == "numeric" and "classes" not in regressor
    # An XGBoost binary:logistic booster answers its probability by default and for output=probabilities alike.
    booster = outputs_summary([0.2, 0.7], [[0.2], [0.7]], source="s")
    assert list(booster["columns"]) == [PREDICTION] and booster["columns"][PREDICTION]["type"] == "numeric"
    with pytest.raises(ValueError, match="one row of the same width per prediction"):
        outputs_summary([1, 0], [[0.1, 0.9]], source="s")
    with pytest.raises(ValueError, match="at least one row"):
        outputs_summary([], None, source="s")


def test_a_baseline_without_outputs_stays_readable_and_scores_inputs_only() -> None:
    plain = baseline_of({"x": RNG.normal(0, 1, 200).tolist()})
    assert plain.outputs is None and "outputs" not in json.loads(plain.to_json())
    report = _score(plain, [capture_line("0.1", inference_time=WHEN, event_id="e", output="1")])
    assert report.rows == 1 and report.predictions is not None
    assert report.predictions.status == "no_baseline" and not report.predictions.drifted
    assert "mlinfra baseline churn --version 1 DATA --model-dir DIR" in (report.predictions.note or "")
    assert [d["MetricName"] for d in datums(report, stage="staging", model="churn")].count("PredictionPSI") == 0


# --- the parser ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "encoding", "content_type", "expected"),
    [
        ("[0, 1, 1]", "JSON", "application/json", [0, 1, 1]),
        ('{"predictions": [0, 1]}', "JSON", "application/json", [0, 1]),
        ("[[0.1, 0.9], [0.8, 0.2]]", "JSON", "application/json", [[0.1, 0.9], [0.8, 0.2]]),
        ('{"predictions": [[0.3]]}', "JSON", "application/json", [0.3]),
        ('["yes", "no"]', "JSON", "application/json", ["yes", "no"]),
        ("0.73", "JSON", "application/json", [0.73]),
        ("1\n0\n", "CSV", "text/csv", ["1", "0"]),
        ("0.1,0.9\n0.7,0.3\n", "CSV", "text/csv", [["0.1", "0.9"], ["0.7", "0.3"]]),
        (base64.b64encode(b"[1, 0]").decode(), "BASE64", "application/json", [1, 0]),
        (base64.b64encode(b"0.4\n").decode(), "BASE64", "text/csv", ["0.4"]),
        ("", "CSV", "text/csv", []),
        ('{"error": "row 1: missing feature age"}', "JSON", "application/json", None),
        ("[1, ", "JSON", "application/json", None),
        ("[[1, null]]", "JSON", "application/json", None),
        ("not base64!", "BASE64", "application/json", None),
        ("1", "XML", "text/xml", None),
    ],
)
def test_outputs_parse_as_the_handlers_answer(
    data: str, encoding: str, content_type: str, expected: list[Any] | None
) -> None:
    assert outputs.parse_output({"observedContentType": content_type, "data": data, "encoding": encoding}) == expected


def test_the_fast_path_reads_the_same_outputs_as_the_json_parser() -> None:
    answers = ["1", "0", "[[0.25, 0.75]]", "", 'a "quoted"\\label']
    lines = [
        capture_line("0.5", inference_time=WHEN, event_id="e", output=a, output_type="application/json",
                     output_encoding="JSON")
        for a in answers
    ]  # fmt: skip
    data = ("\n".join(lines) + "\n").encode()
    fast = outputs.canonical_outputs(data)
    careful = [outputs.parse_output(json.loads(line)["captureData"]["endpointOutput"]) for line in lines]
    assert fast == careful == [[1], [0], [[0.25, 0.75]], [], None]


# --- scoring -------------------------------------------------------------------------------------------------------


def _lines(x: np.ndarray, *, probabilities: bool, csv_answers: bool = False) -> list[str]:
    labels, probs = _classifier(x)
    out = []
    for value, label, prob in zip(x, labels, probs, strict=True):
        if probabilities:
            answer, kind = json.dumps([prob]), "application/json"
        else:
            answer, kind = (f"{label}\n", "text/csv") if csv_answers else (json.dumps([label]), "application/json")
        out.append(
            capture_line(f"{value:.4f}", inference_time=WHEN, event_id="e", output=answer, output_type=kind,
                         output_encoding="CSV" if kind == "text/csv" else "JSON")
        )  # fmt: skip
    return out


def test_shifted_outputs_are_prediction_drift_and_steady_ones_are_not() -> None:
    baseline = _baseline(RNG.normal(0, 1, 4_000))
    steady = _score(baseline, _lines(RNG.normal(0, 1, 1_000), probabilities=False))
    assert steady.predictions is not None and steady.predictions.status == "scored"
    assert steady.predictions.rows == 1_000 and not steady.predictions.drifted
    assert steady.predictions.records == {"with": 1_000}

    shifted = _score(baseline, _lines(RNG.normal(1, 1, 1_000), probabilities=False))
    predictions = shifted.predictions
    assert predictions is not None and predictions.drifted
    (label,) = predictions.outputs  # labels only: the clients did not ask for probabilities
    assert label.name == PREDICTION and label.drifted and label.psi is not None and label.psi > 0.2
    assert label.measure == "share of class 1"
    assert label.baseline_value == pytest.approx(0.5, abs=0.03) and label.current_value == pytest.approx(0.84, abs=0.04)
    assert predictions.sentence().startswith("Predictions drifted: share of class 1 0.")
    assert f"PSI {label.psi:.2f}" in predictions.sentence()
    data = shifted.to_json_dict()["predictions"]
    assert data["status"] == "scored" and data["drifted"] is True and data["maxPsi"] == label.psi
    assert data["outputs"][0]["measure"] == "share of class 1" and data["outputs"][0]["baselineValue"] > 0
    metric = [d for d in datums(shifted, stage="staging", model="churn") if d["MetricName"] == "PredictionPSI"]
    assert [(m["Value"], [x["Name"] for x in m["Dimensions"]]) for m in metric] == [(label.psi, ["Stage", "Model"])]


def test_probability_answers_score_the_probability_and_csv_answers_the_label() -> None:
    baseline = _baseline(RNG.normal(0, 1, 4_000))
    shifted = _score(baseline, _lines(RNG.normal(1, 1, 800), probabilities=True))
    assert shifted.predictions is not None
    (probability,) = shifted.predictions.outputs
    assert probability.name == "probability of 1" and probability.drifted and probability.ks is not None
    assert probability.measure == "mean probability of 1"
    assert probability.current_value is not None and probability.baseline_value is not None
    assert probability.current_value > probability.baseline_value + 0.2
    csv_answers = _score(baseline, _lines(RNG.normal(1, 1, 800), probabilities=False, csv_answers=True))
    assert csv_answers.predictions is not None and csv_answers.predictions.outputs[0].name == PREDICTION
    assert csv_answers.predictions.drifted


def test_fast_and_careful_paths_and_workers_count_outputs_alike() -> None:
    baseline = _baseline(RNG.normal(0, 1, 2_000))
    lines = _lines(RNG.normal(0.5, 1, 300), probabilities=False)
    fast = _score(baseline, lines)
    # A JSON input takes every line of the file off the fast path.
    careful = _score(baseline, [*lines, capture_line("[[0.1]]", inference_time=WHEN, event_id="e",
                                                     content_type="application/json", encoding="JSON")])  # fmt: skip
    assert fast.predictions is not None and careful.predictions is not None
    assert careful.predictions.records == {"with": 300, "without": 1}
    assert fast.predictions.outputs[0].psi == careful.predictions.outputs[0].psi
    # Two scorers' states merged (worker processes) give the same counts as one scorer of the whole window.
    one, two, merged = Scorer(baseline), Scorer(baseline), Scorer(baseline)
    one.add_file(CaptureFile("a", "\n".join(lines[:100]).encode(), False))
    two.add_file(CaptureFile("b", "\n".join(lines[100:]).encode(), False))
    merged.merge(one.state())
    merged.merge(two.state())
    again = merged.report(model="churn", stage="staging", version=1, start=START, end=END, thresholds=Thresholds())
    assert again.predictions is not None and again.predictions.outputs[0].psi == fast.predictions.outputs[0].psi


def test_a_capture_without_outputs_says_so_and_unreadable_outputs_are_counted() -> None:
    baseline = _baseline(RNG.normal(0, 1, 1_000))
    absent = _score(baseline, [capture_line("0.2", inference_time=WHEN, event_id="e") for _ in range(150)])
    assert absent.rows == 150 and absent.predictions is not None
    assert absent.predictions.status == "no_outputs" and absent.predictions.records == {"without": 150}
    assert "enable output capture" in (absent.predictions.note or "")
    assert not [d for d in datums(absent, stage="s", model="m") if d["MetricName"] == "PredictionPSI"]
    errors = [
        capture_line("0.2", inference_time=WHEN, event_id="e", output='{"error": "x"}', output_type="application/json",
                     output_encoding="JSON"),
        capture_line("0.2", inference_time=WHEN, event_id="e", output="[[0.1, 0.2, 0.7]]",
                     output_type="application/json", output_encoding="JSON"),
        capture_line("0.2", inference_time=WHEN, event_id="e", output="1"),
    ]  # fmt: skip
    mixed = _score(baseline, errors)
    assert mixed.predictions is not None and mixed.predictions.status == "scored"
    assert mixed.predictions.records == {"unreadable": 1, "unreadableEntries": 1, "with": 2}
    assert mixed.predictions.rows == 1


def test_the_html_report_charts_the_outputs_and_says_why_when_it_cannot() -> None:
    baseline = _baseline(RNG.normal(0, 1, 2_000))
    html = _score(baseline, _lines(RNG.normal(1, 1, 400), probabilities=False)).html()
    assert "<h2>Predictions</h2>" in html and "Predictions drifted: share of class 1" in html
    assert 'aria-label="baseline and window shares of prediction"' in html
    absent = _score(baseline, [capture_line("0.2", inference_time=WHEN, event_id="e")]).html()
    assert (
        "the capture has no outputs" in absent and 'aria-label="baseline and window shares of prediction"' not in absent
    )


def test_the_verdict_never_says_no_drift_when_the_predictions_drifted() -> None:
    from mlinfra.monitoring.drift import DriftRun

    # Inputs of a feature the 'model' ignores stay put; its answers move (a changed upstream score, say).
    baseline = _baseline(RNG.normal(0, 1, 4_000))
    labels = [capture_line(f"{v:.3f}", inference_time=WHEN, event_id="e", output="1") for v in RNG.normal(0, 1, 500)]
    report = _score(baseline, labels)
    assert not report.drifted and report.predictions is not None and report.predictions.drifted
    run = DriftRun(report=report, source="s", published=0, report_path=None, warnings=[], min_rows=100)
    assert run.verdict().startswith("All 1 features are within their thresholds. Predictions drifted: share of class")
    assert run.drifted
    few = DriftRun(report=report, source="s", published=0, report_path=None, warnings=[], min_rows=1_000)
    assert few.verdict().startswith("Too few rows to judge") and not few.drifted
