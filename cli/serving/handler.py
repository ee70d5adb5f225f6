"""A model's inference handler, loaded and called the way SageMaker's framework containers do.

The prebuilt containers import the user's module (`SAGEMAKER_PROGRAM`, default here `inference.py`, looked up in
`code/` and then the model directory's root), call `model_fn(model_dir)` once, and per request
`input_fn(body, content_type)` -> `predict_fn(data, model)` -> `output_fn(prediction, accept)`, or `transform_fn(model,
body, content_type, accept)` instead of the three. A function the module does not define falls back to the
container's default. The defaults differ per container, so they are adapters registered per framework:

- `sklearn` and `xgboost`: the scikit-learn and XGBoost containers, both serving one model through
  sagemaker-containers' Flask worker (their serving.py; the XGBoost container's sagemaker-inference handler service
  runs only for multi-model endpoints): no default `model_fn`; handler functions get exactly their arguments (no
  context); `input_fn` decodes `application/json`, `text/csv` and `application/x-npy` to a numpy array (CSV through
  `csv.reader` and `.squeeze()`, so a single row becomes a 1-D array, as in the container) and casts text payloads to
  float32; `predict_fn` is `model.predict(data)` (an XGBoost DMatrix for a booster); `output_fn` encodes JSON, CSV or
  NPY. A text body that is not UTF-8 is decoded with replacement characters, as Werkzeug's `get_data(as_text=True)`.
- `toolkit` (pytorch, or an image of one's own): the generic sagemaker-inference-toolkit defaults: the same
  decoders (CSV through `numpy.genfromtxt`), and no default `model_fn` or `predict_fn`: the handler defines them. A
  text body that is not UTF-8 fails in the toolkit before the handler runs: 500, as there.

Request semantics follow the containers: the Content-Type header (or `ContentType`), `application/json` when absent,
matched exactly (`text/csv; charset=utf-8` is not `text/csv` to the default decoder); Accept absent or `*/*` means
SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT (default `application/json`); JSON and CSV bodies reach `input_fn` as `str`,
everything else as `bytes`. Two deliberate differences: NPY payloads are loaded with `allow_pickle=False` (the
containers allow pickles, which run code), and errors get HTTP statuses a client can act on (see `InvocationError`).
tests/conformance runs the containers' own toolkits and `mlinfra serve` on one table of requests and asserts that
both answer every row with the same status.
"""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import inspect
import io
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from mlinfra.errors import BadInputError, MlinfraError

JSON = "application/json"
CSV = "text/csv"
NPY = "application/x-npy"
ANY = "*/*"
UTF8_TYPES = (JSON, CSV)
DEFAULT_PROGRAM = "inference.py"
PROGRAM_ENV = "SAGEMAKER_PROGRAM"
DEFAULT_ACCEPT_ENV = "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT"
HANDLER_DIRS = ("code", "")  # where the containers' conventions put the handler, in the order they are tried


class InvocationError(Exception):
    """A request that failed, with the HTTP status to answer and a one-line message.

    As the containers answer: 406 an Accept the default encoder cannot write, 415 a Content-Type the default decoder
    does not know, 500 any exception of a handler function or of a default decoder (a malformed body the handler did
    not refuse itself). Under the inference toolkit (pytorch) an exception carrying an integer `status_code` (its
    BaseInferenceToolkitError) keeps that status; under sagemaker-containers (sklearn, xgboost) only the generated
    handlers' HandlerError does, which they raise outside a container where they would return the worker's response.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class UnsupportedFormatError(Exception):
    """Raised by the default decoders and encoders for a content type they do not handle (as the containers do)."""


def one_line(exc: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# --- the containers' default codecs ------------------------------------------------------------------------------


def _np() -> Any:
    import numpy as np

    return np


def json_to_numpy(text: str | bytes) -> Any:
    """`application/json` -> numpy array (json.loads, then numpy.array)."""
    return _np().array(json.loads(text))


def csv_to_numpy_containers(text: str | bytes) -> Any:
    """`text/csv` -> numpy array as sagemaker-containers reads it: csv.reader, squeeze (one row becomes 1-D)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    rows = list(csv.reader(io.StringIO(text), delimiter=",", quotechar='"', doublequote=True, strict=True))
    return _np().array(rows).squeeze()


def csv_to_numpy_toolkit(text: str | bytes) -> Any:
    """`text/csv` -> numpy array as sagemaker-inference-toolkit reads it: numpy.genfromtxt with ',' delimiters."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    return _np().genfromtxt(io.StringIO(text), delimiter=",")


def npy_to_numpy(data: str | bytes) -> Any:
    """`application/x-npy` -> numpy array; pickled objects are refused (the containers would run them)."""
    raw = data.encode("latin-1") if isinstance(data, str) else data
    return _np().load(io.BytesIO(raw), allow_pickle=False)


def array_to_json(value: Any) -> str:
    """Anything array-like -> JSON (numpy values through tolist), as the containers encode it."""

    def default(item: Any) -> Any:
        if hasattr(item, "tolist"):
            return item.tolist()
        raise TypeError(f"Object of type {type(item).__name__} is not JSON serializable")

    return json.dumps(value, default=default)


def array_to_csv(value: Any) -> str:
    """Array-like -> CSV, one row per line (a 1-D array becomes a column), as the containers encode it."""
    np = _np()
    array = np.array(value)
    if array.ndim == 0:
        array = array.reshape(1, 1)
    elif array.ndim == 1:
        array = array.reshape(array.shape[0], 1)
    stream = io.StringIO()
    csv.writer(stream, lineterminator="\n", delimiter=",", quotechar='"', doublequote=True, strict=True).writerows(
        array.tolist()
    )
    return stream.getvalue()


def array_to_npy(value: Any) -> bytes:
    """Array-like -> NPY bytes."""
    buffer = io.BytesIO()
    _np().save(buffer, value)
    return buffer.getvalue()


def decode(data: str | bytes, content_type: str, csv_reader: Callable[[str | bytes], Any]) -> Any:
    """The containers' default decoding: exact content-type match, UnsupportedFormatError otherwise."""
    decoders: dict[str, Callable[[str | bytes], Any]] = {JSON: json_to_numpy, CSV: csv_reader, NPY: npy_to_numpy}
    if content_type not in decoders:
        raise UnsupportedFormatError(f"Content type {content_type} is not supported by this framework.")
    return decoders[content_type](data)


def encode(prediction: Any, accept: str) -> str | bytes:
    """The containers' default encoding to JSON, CSV or NPY; UnsupportedFormatError for any other Accept."""
    encoders: dict[str, Callable[[Any], str | bytes]] = {JSON: array_to_json, CSV: array_to_csv, NPY: array_to_npy}
    if accept not in encoders:
        raise UnsupportedFormatError(f"Content type {accept} is not supported by this framework.")
    return encoders[accept](prediction)


# --- framework adapters ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Defaults:
    """What a framework's container does when the handler leaves a function out."""

    name: str
    model_fn: Callable[[str], Any]
    input_fn: Callable[[Any, str], Any]
    predict_fn: Callable[[Any, Any], Any]
    output_fn: Callable[[Any, str], Any]
    # Whether the container passes a trailing `context` to handler functions taking one more argument (the
    # inference toolkit does; sagemaker-containers, under the scikit-learn and XGBoost containers, calls them with
    # exactly theirs).
    context_argument: bool
    # How a text body (JSON, CSV) that is not UTF-8 is decoded: "replace" (Werkzeug, under sagemaker-containers) or
    # "strict" (the inference toolkit, whose failure is a 500).
    text_errors: str = "strict"
    # Whether an exception's integer `status_code` becomes the answer's status (sagemaker-inference-toolkit's errors
    # do); sagemaker-containers wraps every exception of a handler function in a 500.
    exception_status: bool = True


FRAMEWORKS: dict[str, Defaults] = {}
"""Framework name (as `register --framework` records it) -> the defaults of its container."""


def adapter(*names: str) -> Callable[[Callable[[], Defaults]], Callable[[], Defaults]]:
    """Register the defaults a factory builds under each framework name."""

    def register(factory: Callable[[], Defaults]) -> Callable[[], Defaults]:
        defaults = factory()
        for name in names:
            FRAMEWORKS[name] = defaults
        return factory

    return register


def _no_model_fn(model_dir: str) -> Any:
    raise NotImplementedError(
        f"the handler defines no model_fn and this container has no default: add model_fn(model_dir) that loads "
        f"the model from {model_dir}"
    )


def _no_predict_fn(data: Any, model: Any) -> Any:
    raise NotImplementedError("Please provide a predict_fn implementation (this container has no default).")


def _containers_input_fn(data: Any, content_type: str) -> Any:
    array = decode(data, content_type, csv_to_numpy_containers)
    return array.astype(_np().float32) if content_type in UTF8_TYPES else array


@adapter("sklearn")
def _sklearn() -> Defaults:
    return Defaults(
        name="sklearn",
        model_fn=_no_model_fn,
        input_fn=_containers_input_fn,
        predict_fn=lambda data, model: model.predict(data),
        output_fn=lambda prediction, accept: (encode(prediction, accept), accept),
        context_argument=False,
        text_errors="replace",
        exception_status=False,
    )


def _xgboost_predict_fn(data: Any, model: Any) -> Any:
    import xgboost

    matrix = data if isinstance(data, xgboost.DMatrix) else xgboost.DMatrix(data)
    return model.predict(matrix, validate_features=False)


@adapter("xgboost")
def _xgboost() -> Defaults:
    return Defaults(
        name="xgboost",
        model_fn=_no_model_fn,
        input_fn=_containers_input_fn,
        predict_fn=_xgboost_predict_fn,
        output_fn=lambda prediction, accept: (encode(prediction, accept), accept),
        context_argument=False,
        text_errors="replace",
        exception_status=False,
    )


@adapter("toolkit", "pytorch")
def _toolkit() -> Defaults:
    return Defaults(
        name="toolkit",
        model_fn=_no_model_fn,
        input_fn=lambda data, content_type: decode(data, content_type, csv_to_numpy_toolkit),
        predict_fn=_no_predict_fn,
        output_fn=lambda prediction, accept: (encode(prediction, accept), accept),
        context_argument=True,
    )


def defaults_for(framework: str | None) -> Defaults:
    """The container defaults of a framework (None: an image of one's own, served with the toolkit's defaults)."""
    if framework is None:
        return FRAMEWORKS["toolkit"]
    if framework not in FRAMEWORKS:
        known = ", ".join(sorted(FRAMEWORKS))
        raise BadInputError(f"framework {framework!r} has no serving adapter (known: {known})")
    return FRAMEWORKS[framework]


# --- the handler -------------------------------------------------------------------------------------------------


@dataclass
class Response:
    """A serialized prediction and its content type."""

    body: bytes
    content_type: str


_ARITY: dict[Any, int | None] = {}


def _arity_call(function: Callable[..., Any], *args: Any, context: bool = True) -> Any:
    """Call a handler function with or without the trailing context argument, as the inference toolkit does."""
    try:
        parameters = _ARITY[function]
    except (KeyError, TypeError):
        try:
            parameters = len(inspect.signature(function).parameters)
        except (TypeError, ValueError):
            parameters = None
        with contextlib.suppress(TypeError):
            _ARITY[function] = parameters
    if context and parameters == len(args) + 1:
        return function(*args, None)
    return function(*args)


HANDLER_ERROR = "HandlerError"  # what the generated handlers raise outside a container (see model_templates)


def _status_of(exc: BaseException, honour: bool = True) -> int | None:
    """The status an exception carries: any `status_code` under the toolkit; only HandlerError's otherwise."""
    status = getattr(exc, "status_code", None)
    if not honour and type(exc).__name__ != HANDLER_ERROR:
        return None
    return status if isinstance(status, int) and 400 <= status <= 599 else None


def _message(exc: BaseException, prefix: str) -> str:
    """A failure's one-line message: a HandlerError's own, else `prefix: Type: first line`."""
    if type(exc).__name__ == HANDLER_ERROR:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else HANDLER_ERROR
    return f"{prefix}: {one_line(exc)}"


class Handler:
    """A model loaded through its handler module, ready to answer invocations one at a time."""

    def __init__(self, module: ModuleType | None, defaults: Defaults, model_dir: Path, source: Path | None) -> None:
        self.module = module
        self.defaults = defaults
        self.model_dir = model_dir
        self.source = source

        def get(name: str) -> Any:
            return getattr(module, name, None) if module is not None else None

        self.transform_fn = get("transform_fn")
        custom = {name: get(name) for name in ("input_fn", "predict_fn", "output_fn")}
        if self.transform_fn is not None and any(custom.values()):
            raise BadInputError(
                f"{source}: defines transform_fn together with input_fn, predict_fn or output_fn; the containers "
                "refuse that combination, keep one or the other"
            )
        self.model_fn = get("model_fn") or defaults.model_fn
        self.input_fn = custom["input_fn"] or defaults.input_fn
        self.predict_fn = custom["predict_fn"] or defaults.predict_fn
        self.output_fn = custom["output_fn"] or defaults.output_fn
        self.custom_input = custom["input_fn"] is not None
        self.custom_output = custom["output_fn"] is not None
        self.default_accept = os.environ.get(DEFAULT_ACCEPT_ENV) or JSON
        self.model: Any = None

    def load(self) -> None:
        """Call model_fn(model_dir) once, as the container does before answering /ping."""
        try:
            self.model = self._run(self.model_fn, str(self.model_dir))
        except Exception as exc:  # noqa: BLE001 - whatever the user's handler raises becomes a status
            where = f" ({self.source})" if self.source else ""
            raise MlinfraError(f"model_fn failed{where}: {one_line(exc)}") from None

    def accept_of(self, accept: str | None) -> str:
        """The Accept the handler sees: the request's, or the default one when it is absent or `*/*`."""
        return self.default_accept if not accept or accept.strip() == ANY else accept

    def invoke(self, body: bytes, content_type: str | None, accept: str | None) -> Response:
        """One request through the handler; InvocationError carries the status of a failure."""
        content_type = content_type or JSON
        accept = self.accept_of(accept)
        data: str | bytes = body
        if content_type in UTF8_TYPES:
            try:
                data = body.decode("utf-8", errors=self.defaults.text_errors)
            except UnicodeDecodeError as exc:  # the toolkit decodes before the handler runs: its failure is a 500
                raise InvocationError(500, f"the body is not UTF-8 text ({content_type}): {exc.reason}") from None
        if self.transform_fn is not None:
            result = self._call(self.transform_fn, "transform_fn", self.model, data, content_type, accept)
            return self._response(result, accept)
        try:
            decoded = self._run(self.input_fn, data, content_type)
        except UnsupportedFormatError as exc:
            raise InvocationError(415, f"unsupported Content-Type: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - whatever the user's handler raises becomes a status
            # As in the containers: a status the exception carries (see _status_of), else a 500.
            status = _status_of(exc, self.defaults.exception_status)
            raise InvocationError(status or 500, _message(exc, "input_fn")) from None
        prediction = self._call(self.predict_fn, "predict_fn", decoded, self.model)
        try:
            result = self._run(self.output_fn, prediction, accept)
        except UnsupportedFormatError as exc:
            raise InvocationError(406, f"unsupported Accept: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - whatever the user's handler raises becomes a status
            status = _status_of(exc, self.defaults.exception_status)
            raise InvocationError(status or 500, _message(exc, "output_fn")) from None
        return self._response(result, accept)

    def _run(self, function: Callable[..., Any], *args: Any) -> Any:
        return _arity_call(function, *args, context=self.defaults.context_argument)

    def _call(self, function: Callable[..., Any], name: str, *args: Any) -> Any:
        try:
            return self._run(function, *args)
        except Exception as exc:  # noqa: BLE001 - whatever the user's handler raises becomes a status
            status = _status_of(exc, self.defaults.exception_status)
            raise InvocationError(status or 500, _message(exc, name)) from None

    @staticmethod
    def _response(result: Any, accept: str) -> Response:
        content_type = accept
        if isinstance(result, tuple) and len(result) == 2:
            result, content_type = result
        if isinstance(result, str):
            return Response(result.encode("utf-8"), str(content_type))
        if isinstance(result, bytes | bytearray | memoryview):
            return Response(bytes(result), str(content_type))
        raise InvocationError(
            500, f"output_fn returned {type(result).__name__}; return bytes or str (or a (body, content_type) tuple)"
        )


def find_program(model_dir: Path, program: str | None = None, directory: str | None = None) -> Path | None:
    """The handler file: where register recorded it (`directory`), else in code/, then at the model directory's root.

    Its name is `program`, else SAGEMAKER_PROGRAM, else inference.py.
    """
    name = program or os.environ.get(PROGRAM_ENV) or DEFAULT_PROGRAM
    if not name.endswith(".py"):
        name += ".py"
    for folder in (directory,) if directory is not None else HANDLER_DIRS:
        candidate = model_dir / folder / name if folder else model_dir / name
        if candidate.is_file():
            return candidate
    return None


def _import(path: Path) -> ModuleType:
    """Import the handler as the containers do: its folder first on sys.path, so its helper modules import too."""
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise BadInputError(f"{path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - whatever the user's handler raises becomes a status
        raise MlinfraError(f"{path}: importing the handler failed: {one_line(exc)}") from None
    return module


def load_handler(
    model_dir: Path, framework: str | None, *, program: str | None = None, directory: str | None = None
) -> Handler:
    """Import the model's handler, apply the framework's defaults and call model_fn; errors are one line.

    `program` and `directory` are the handler's place as `register` recorded it (the version record's `handler`).
    """
    defaults = defaults_for(framework)
    source = find_program(model_dir, program, directory)
    if source is None:
        wanted = program or os.environ.get(PROGRAM_ENV) or DEFAULT_PROGRAM
        where = f"{directory}/" if directory is not None else "code/ or at the root"
        raise BadInputError(
            f"{model_dir}: no handler {wanted} in {where}; the {defaults.name} container needs one "
            "defining model_fn (create it with `mlinfra init-model`)"
        )
    handler = Handler(_import(source), defaults, model_dir, source)
    handler.load()
    return handler
