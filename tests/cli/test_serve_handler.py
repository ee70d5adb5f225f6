"""The handler contract in-process: container defaults per framework, statuses, startup errors through the CLI."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import Result

from mlinfra.errors import BadInputError, MlinfraError
from mlinfra.serving.handler import FRAMEWORKS, InvocationError, load_handler
from tests.cli.serveutil import train

Run = Callable[..., Result]


def write_handler(tmp_path: Path, source: str, folder: str = "") -> Path:
    model = tmp_path / "model"
    (model / folder).mkdir(parents=True, exist_ok=True)
    (model / folder / "inference.py").write_text(source)
    return model


def test_every_registered_framework_has_all_four_defaults() -> None:
    assert {"sklearn", "xgboost", "pytorch", "toolkit"} <= set(FRAMEWORKS)
    for defaults in FRAMEWORKS.values():
        assert all(callable(f) for f in (defaults.model_fn, defaults.input_fn, defaults.predict_fn, defaults.output_fn))


def test_sklearn_defaults_squeeze_one_csv_row_and_cast_to_float32(tmp_path: Path) -> None:
    model = write_handler(
        tmp_path,
        "def model_fn(d):\n    return None\n\ndef predict_fn(data, model):\n    return [str(data.dtype), data.ndim]\n",
    )
    handler = load_handler(model, "sklearn")
    assert handler.invoke(b"1,2,3", "text/csv", None).body == b'["float32", 1]'
    assert handler.invoke(b"1,2,3\n4,5,6", "text/csv", None).body == b'["float32", 2]'


def test_toolkit_defaults_have_no_predict_fn(tmp_path: Path) -> None:
    handler = load_handler(write_handler(tmp_path, "def model_fn(d):\n    return 1\n"), "pytorch")
    with pytest.raises(InvocationError) as caught:
        handler.invoke(b"[[1]]", "application/json", None)
    assert caught.value.status == 500
    assert caught.value.message.startswith("predict_fn: NotImplementedError: Please provide a predict_fn")


def test_handler_in_code_folder_and_functions_taking_a_context(tmp_path: Path) -> None:
    source = (
        "def model_fn(model_dir, context):\n    return 2\n\n"
        "def input_fn(body, content_type, context):\n    return body\n\n"
        "def predict_fn(data, model):\n    return data * model\n\n"
        "def output_fn(prediction, accept):\n    return prediction, 'text/plain'\n"
    )
    model = write_handler(tmp_path, source, "code")
    handler = load_handler(model, "pytorch")  # the inference toolkit passes a context to functions taking one
    assert handler.source == tmp_path / "model" / "code" / "inference.py"
    response = handler.invoke(b"ab", "text/csv", "text/csv")
    assert (response.body, response.content_type) == (b"abab", "text/plain")
    # The scikit-learn container (sagemaker-containers) calls them with exactly their arguments: model_fn fails.
    with pytest.raises(MlinfraError, match=r"model_fn failed .*TypeError: model_fn\(\) missing 1 required"):
        load_handler(model, "sklearn")


def test_the_recorded_handler_place_is_used(tmp_path: Path) -> None:
    model = write_handler(tmp_path, "def model_fn(d):\n    return 'src'\n", "src")
    assert load_handler(model, "sklearn", program="inference.py", directory="src").model == "src"
    with pytest.raises(BadInputError, match=r"no handler inference.py in code/ or at the root"):
        load_handler(model, "sklearn")
    with pytest.raises(BadInputError, match=r"no handler other.py in src/;"):
        load_handler(model, "sklearn", program="other.py", directory="src")


def test_text_bodies_reach_input_fn_as_str_others_as_bytes(tmp_path: Path) -> None:
    source = (
        "def model_fn(d):\n    return None\n\n"
        "def transform_fn(model, body, content_type, accept):\n    return type(body).__name__\n"
    )
    handler = load_handler(write_handler(tmp_path, source), "sklearn")
    assert handler.invoke(b"1", "text/csv", None).body == b"str"
    assert handler.invoke(b"1", "application/json", None).body == b"str"
    assert handler.invoke(b"1", "application/octet-stream", None).body == b"bytes"
    # A parameter makes it another content type to the containers (exact match), so the body stays bytes.
    assert handler.invoke(b"1", "text/csv; charset=utf-8", None).body == b"bytes"


def test_exceptions_get_the_status_their_container_answers(tmp_path: Path) -> None:
    # As the containers answer (tests/conformance runs them): an exception raised by a handler function is a 500,
    # except a status the inference toolkit (pytorch) reads from BaseInferenceToolkitError's status_code, and the
    # generated handlers' HandlerError (raised outside a container, where they return the worker's response).
    source = (
        "class PayloadError(Exception):\n    status_code = 422\n\n"
        "class HandlerError(Exception):\n    status_code = 400\n\n"
        "def model_fn(d):\n    return None\n\n"
        "def input_fn(body, content_type):\n"
        "    if body == 'bad':\n        raise ValueError('expected rows')\n"
        "    if body == 'refused':\n        raise HandlerError('row 1 has 2 values, the model takes 3 features')\n"
        "    raise PayloadError('no such feature')\n"
    )
    answers = {}
    for framework in ("sklearn", "xgboost", "pytorch"):
        handler = load_handler(write_handler(tmp_path / framework, source), framework)
        for body in (b"bad", b"refused", b"other"):
            with pytest.raises(InvocationError) as caught:
                handler.invoke(body, "text/csv", None)
            answers[framework, body] = (caught.value.status, caught.value.message)
    assert answers["sklearn", b"bad"] == (500, "input_fn: ValueError: expected rows")
    assert answers["sklearn", b"refused"] == (400, "row 1 has 2 values, the model takes 3 features")
    assert answers["sklearn", b"other"] == (500, "input_fn: PayloadError: no such feature")
    assert answers["xgboost", b"other"] == answers["sklearn", b"other"]
    assert answers["pytorch", b"bad"] == (500, "input_fn: ValueError: expected rows")
    assert answers["pytorch", b"other"] == (422, "input_fn: PayloadError: no such feature")


def test_pickled_npy_payloads_are_refused(tmp_path: Path) -> None:
    handler = load_handler(write_handler(tmp_path, "def model_fn(d):\n    return None\n"), "sklearn")
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InvocationError) as caught:
        handler.invoke(buffer.getvalue(), "application/x-npy", None)
    assert caught.value.status == 500, "the container's default decoder fails: a 500 there too"
    assert "allow_pickle=False" in caught.value.message


def test_default_accept_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", "text/csv")
    model = train(tmp_path / "model")
    handler = load_handler(model, "sklearn")
    response = handler.invoke(b"1,1,1\n-1,-1,-1", "text/csv", None)
    assert (response.body, response.content_type) == (b"1\n0\n", "text/csv")


def test_transform_fn_with_input_fn_is_refused(tmp_path: Path) -> None:
    source = (
        "def model_fn(d):\n    return 1\n\ndef transform_fn(*a):\n    return ''\n\ndef input_fn(*a):\n    return 1\n"
    )
    with pytest.raises(BadInputError, match="defines transform_fn together with input_fn"):
        load_handler(write_handler(tmp_path, source), "sklearn")


def test_no_model_fn_fails_at_load_with_the_containers_reason(tmp_path: Path) -> None:
    with pytest.raises(MlinfraError, match=r"model_fn failed .*defines no model_fn and this container has no default"):
        load_handler(write_handler(tmp_path, "X = 1\n"), "sklearn")


def test_serve_without_a_handler_exits_2(tmp_path: Path, run: Run) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.joblib").write_bytes(b"x")
    result = run("serve", "churn", "--path", str(model))
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {model.resolve()}: no handler inference.py in code/ or at the root; the sklearn container needs "
        "one defining model_fn (create it with `mlinfra init-model`)\n"
    )


def test_serve_with_a_failing_model_fn_exits_1_before_listening(tmp_path: Path, run: Run) -> None:
    model = write_handler(tmp_path, "def model_fn(d):\n    raise FileNotFoundError('model.joblib is missing')\n")
    result = run("serve", "churn", "--path", str(model))
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: model_fn failed ({model.resolve() / 'inference.py'}): FileNotFoundError: model.joblib is missing\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "error: give --path DIR, or --version N and/or --stack S\n"),
        (
            ["--path", ".", "--version", "2"],
            "error: give --path DIR, or --version N and/or --stack S (got --path and --version)\n",
        ),
        (
            ["--path", "nowhere"],
            "error: nowhere is not a model directory (it does not exist or is a file); pass the directory "
            "holding the model files and the handler\n",
        ),
    ],
)
def test_serve_source_options(
    args: list[str], message: str, run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = run("serve", "churn", *args)
    assert (result.exit_code, result.stderr) == (2, message)
