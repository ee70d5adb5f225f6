"""`mlinfra serve` as a real process on a free loopback port, spoken to over HTTP."""

from __future__ import annotations

import http.client
import io
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest

from tests.cli.serveutil import Server, start_serve, train
from tests.emulator import stop_process

REPO = Path(__file__).resolve().parents[2]
ROWS = [[0.5, 1.0, -2.0], [-3.0, -1.0, 0.0], [2.0, 2.0, 2.0]]
CSV_ROWS = "\n".join(",".join(str(v) for v in row) for row in ROWS)
FAILING_HANDLER = """
import os

import joblib


def model_fn(model_dir):
    return joblib.load(os.path.join(model_dir, "model.joblib"))


def predict_fn(data, model):
    if (data == 999).any():
        raise RuntimeError("feature out of range\\nsecond line that must not be shown")
    return model.predict_proba(data)[:, 1]
"""


@pytest.fixture(scope="module")
def capture_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("capture")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, capture_dir: Path) -> Iterator[Server]:
    model = train(tmp_path_factory.mktemp("failing") / "model", FAILING_HANDLER)
    log = tmp_path_factory.mktemp("log") / "serve.log"
    running = start_serve(["serve", "churn", "--path", str(model), "--capture", str(capture_dir)], log)
    running.model_dir = model  # type: ignore[attr-defined]
    yield running
    stop_process(running.process)


def expected(server: Server) -> list[float]:
    model = joblib.load(server.model_dir / "model.joblib")  # type: ignore[attr-defined]
    return [float(p) for p in model.predict_proba(np.array(ROWS, dtype=np.float32))[:, 1]]


def test_ping_answers_200_with_an_empty_body(server: Server) -> None:
    status, _, body = server.request("GET", "/ping")
    assert (status, body) == (200, b"")


def test_csv_in_json_out_by_default_with_sagemaker_headers(server: Server) -> None:
    status, headers, body = server.invoke(CSV_ROWS.encode(), content_type="text/csv")
    assert status == 200, body
    assert headers["content-type"] == "application/json"
    assert headers["x-amzn-invoked-production-variant"] == "primary"
    assert json.loads(body) == pytest.approx(expected(server))


def test_accept_text_csv_answers_one_row_per_line(server: Server) -> None:
    status, headers, body = server.invoke(CSV_ROWS.encode(), content_type="text/csv", accept="text/csv")
    assert status == 200
    assert headers["content-type"].startswith("text/csv")
    assert [float(line) for line in body.decode().splitlines()] == pytest.approx(expected(server))


def test_accept_any_means_the_default_accept_and_the_contenttype_header_is_honoured(server: Server) -> None:
    status, headers, body = server.request(
        "POST", "/invocations", json.dumps(ROWS).encode(), {"ContentType": "application/json", "Accept": "*/*"}
    )
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == pytest.approx(expected(server))


def test_npy_in_npy_out(server: Server) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.array(ROWS))
    status, _, body = server.invoke(buffer.getvalue(), content_type="application/x-npy", accept="application/x-npy")
    assert status == 200
    assert np.load(io.BytesIO(body)).tolist() == pytest.approx(expected(server))


def test_malformed_input_to_the_containers_default_decoders_is_a_500_as_there(server: Server) -> None:
    # This handler leaves input_fn to the container, whose decoder raises on a malformed body: the scikit-learn
    # container answers that with a 500, and so does serve (the generated handlers refuse it with a 400 themselves).
    status, _, body = server.invoke(b"1,x,3\n4,5,6", content_type="text/csv")
    assert status == 500
    assert json.loads(body)["error"].startswith("input_fn: ValueError: could not convert string to float")
    status, _, body = server.invoke(b"[[1, 2, 3]", content_type="application/json")
    assert status == 500
    assert json.loads(body)["error"].startswith("input_fn: JSONDecodeError:")


def test_unknown_content_type_is_415_and_unknown_accept_406(server: Server) -> None:
    status, _, body = server.invoke(b"<rows/>", content_type="application/xml")
    assert status == 415
    assert json.loads(body) == {
        "error": "unsupported Content-Type: Content type application/xml is not supported by this framework."
    }
    status, _, body = server.invoke(CSV_ROWS.encode(), content_type="text/csv", accept="text/html")
    assert status == 406
    assert "text/html" in body.decode()


def test_body_over_6_mb_is_413(server: Server) -> None:
    status, _, body = server.invoke(b"1" * (6291456 + 1), content_type="text/csv")
    assert status == 413
    assert "6291456 bytes" in body.decode()
    # Exactly the limit is accepted (and then refused by the decoder as malformed, not as too large).
    status, _, _ = server.invoke(b"1" * 6291456, content_type="text/csv")
    assert status != 413


def test_chunked_body_over_6_mb_is_413_while_streaming(server: Server) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(7):
            yield b"1" * (1024 * 1024)

    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request(
            "POST", "/invocations", body=chunks(), headers={"Content-Type": "text/csv"}, encode_chunked=True
        )
        response = connection.getresponse()
        assert response.status == 413
        assert "6291456 bytes" in response.read().decode()
    finally:
        connection.close()


def test_handler_exception_is_500_with_one_line_and_serving_goes_on(server: Server) -> None:
    status, _, body = server.invoke(b"999,1,1\n1,1,1", content_type="text/csv")
    assert status == 500
    assert body.decode() == '{"error": "predict_fn: RuntimeError: feature out of range"}\n'
    status, _, _ = server.invoke(CSV_ROWS.encode(), content_type="text/csv")
    assert status == 200
    assert "POST /invocations 500: predict_fn: RuntimeError: feature out of range" in server.output()


def test_capture_is_flushed_at_shutdown_in_sagemaker_layout(server: Server, capture_dir: Path) -> None:
    status, _, _ = server.request(
        "POST",
        "/invocations",
        CSV_ROWS.encode(),
        {"Content-Type": "text/csv", "X-Amzn-SageMaker-Inference-Id": "req-42"},
    )
    assert status == 200
    buffer = io.BytesIO()
    np.save(buffer, np.array(ROWS))
    assert server.invoke(buffer.getvalue(), content_type="application/x-npy")[0] == 200
    assert not list(capture_dir.rglob("*.jsonl")), "nothing is written before the time or size bound"
    assert server.stop() == 0
    files = sorted(capture_dir.rglob("*.jsonl"))
    assert files, server.output()
    records_written = sum(len(f.read_text().splitlines()) for f in files)
    summary = f"capture: {records_written} record(s) in {len(files)} file(s) under {capture_dir}/local-churn/primary/"
    assert summary in server.output()
    for file in files:
        parts = file.relative_to(capture_dir).parts
        assert parts[:2] == ("local-churn", "primary")
        year, month, day, hour = parts[2:6]
        assert (len(year), len(month), len(day), len(hour)) == (4, 2, 2, 2)
    records = [json.loads(line) for file in files for line in file.read_text().splitlines()]
    tagged = [r for r in records if r["eventMetadata"].get("inferenceId") == "req-42"]
    assert len(tagged) == 1
    record = tagged[0]
    assert set(record) == {"captureData", "eventMetadata", "eventVersion"}
    assert record["eventVersion"] == "0"
    assert record["captureData"]["endpointInput"] == {
        "observedContentType": "text/csv",
        "mode": "INPUT",
        "data": CSV_ROWS,
        "encoding": "CSV",
    }
    output = record["captureData"]["endpointOutput"]
    assert (output["mode"], output["encoding"], output["observedContentType"]) == (
        "OUTPUT",
        "JSON",
        "application/json",
    )
    assert json.loads(output["data"]) == pytest.approx(expected(server))
    assert record["eventMetadata"]["inferenceTime"].endswith("Z")
    # Only successful invocations are captured, as SageMaker does; the NPY one is BASE64.
    assert all(r["captureData"]["endpointOutput"]["data"] for r in records)
    encodings = {r["captureData"]["endpointInput"]["encoding"] for r in records}
    assert "BASE64" in encodings


def test_the_churn_example_served_with_its_own_decoder(tmp_path: Path) -> None:
    """examples/churn/model defines input_fn (CSV or JSON rows with a plan name), model_fn and predict_fn; output_fn
    is the container's. Its answers are the logistic regression of model.json, the plan's offset included."""
    server = start_serve(["serve", "churn", "--path", str(REPO / "examples" / "churn" / "model")], tmp_path / "log")
    try:
        spec = json.loads((REPO / "examples" / "churn" / "model" / "model.json").read_text())

        def churn(row: list[Any]) -> float:
            z = spec["intercept"] + sum(c * x for c, x in zip(spec["coefficients"], row[:3], strict=True))
            return 1 / (1 + math.exp(-(z + (spec["plan"][row[3]] if len(row) > 3 else 0.0))))

        rows: list[list[Any]] = [[12, 70.5, 1, "pro"], [48, 20.0, 0, "basic"]]
        status, _, body = server.invoke(b"12,70.5,1,pro\n48,20.0,0,basic", content_type="text/csv")
        assert status == 200, body
        assert json.loads(body) == pytest.approx([churn(r) for r in rows], rel=1e-5)
        # One row, without its plan, as JSON.
        status, _, body = server.invoke(json.dumps([[12, 70.5, 1]]).encode(), content_type="application/json")
        assert status == 200, body
        assert json.loads(body) == pytest.approx([churn([12, 70.5, 1])], rel=1e-5)
        # A row of the wrong width is the handler's one-line error.
        status, _, body = server.invoke(b"12,70.5", content_type="text/csv")
        assert status == 500
        assert "a row has 2 values" in json.loads(body)["error"]
    finally:
        stop_process(server.process)


SLOW_HANDLER = """
import os
import time

import joblib


def model_fn(model_dir):
    return joblib.load(os.path.join(model_dir, "model.joblib"))


def predict_fn(data, model):
    time.sleep(float(data.reshape(-1)[0]))
    return model.predict(data.reshape(1, -1))
"""


def test_timeout_answers_sagemakers_model_error_and_workers_serve_at_once(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    directory = train(tmp_path / "model", SLOW_HANDLER)
    server = start_serve(
        ["serve", "churn", "--path", str(directory), "--timeout", "3", "--workers", "2"], tmp_path / "log"
    )
    try:
        started = time.monotonic()
        status, _, body = server.invoke(b"5,0,0", content_type="text/csv")
        assert time.monotonic() - started < 4.5
        assert status == 424
        assert json.loads(body)["error"] == (
            "Your invocation timed out while waiting for a response from container primary. Review the latency "
            "metrics for each container in Amazon CloudWatch, resolve the issue, and try again."
        )
        assert server.request("GET", "/ping")[0] == 200
        # Two workers: two requests of 1.5 s each are served side by side, well under the 3 s one after the other
        # would take (the slow one above may still hold a worker until it ends: wait for it).
        time.sleep(2.5)
        started = time.monotonic()
        with ThreadPoolExecutor(2) as pool:
            statuses = list(pool.map(lambda _: server.invoke(b"1.5,0,0", content_type="text/csv")[0], range(2)))
        elapsed = time.monotonic() - started
        assert statuses == [200, 200]
        assert elapsed < 2.7, f"two 1.5 s requests took {elapsed:.2f} s with two workers"
    finally:
        server.stop()
