"""The model directory contract per framework: what each SageMaker framework container calls, and where it looks.

Every prebuilt framework container (scikit-learn, XGBoost, PyTorch) serves a model the same way: SageMaker unpacks
`model.tar.gz` into `/opt/ml/model`, the container imports the module `SAGEMAKER_PROGRAM` names from the directory
`SAGEMAKER_SUBMIT_DIRECTORY` names, and calls its `model_fn(model_dir)` once, then `input_fn(body, content_type)`,
`predict_fn(data, model)` and `output_fn(prediction, accept)` per request (or `transform_fn(model, body,
content_type, accept)` instead of the last three). What differs is which of these have a default:

- scikit-learn (sagemaker-scikit-learn-container, serving.py): `model_fn` has none (the default raises
  NotImplementedError); it calls each function with exactly the arguments above.
- XGBoost (sagemaker-xgboost-container, serving.py, script mode): one model is served by the same
  sagemaker-containers stack as scikit-learn (its sagemaker-inference handler_service runs only for multi-model
  endpoints), so the functions get exactly their arguments and an exception raised by any of them is a 500;
  `model_fn` has no default; without `SAGEMAKER_PROGRAM` the container runs in algorithm mode, which mlinfra does not
  use.
- PyTorch (sagemaker-pytorch-inference-toolkit): the default `model_fn` loads a TorchScript `model.pt`; mlinfra
  requires a handler anyway, so `mlinfra serve` and the endpoint run the same code. Built on
  sagemaker-inference-toolkit, which passes a trailing `context` to functions that take one more argument.

Both toolkits put `/opt/ml/model/code` on the import path and install `code/requirements.txt`; the SageMaker Python
SDK repacks an `entry_point` into exactly that place (`code/inference.py`, SAGEMAKER_SUBMIT_DIRECTORY
`/opt/ml/model/code`). mlinfra uses the same layout for every framework, and ModelEndpoint
(infra/components/endpoint.py) sets those variables, SAGEMAKER_REGION and SAGEMAKER_CONTAINER_LOG_LEVEL from what
`register` recorded.

Adapters register themselves under their name (`@register`); nothing here branches on a framework's name.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

from mlinfra.errors import BadInputError

HANDLER_DIRECTORY = "code"
PROGRAM = "inference.py"
REQUIREMENTS = "requirements.txt"
# The declared inputs, beside the handler: {"features": [{"name": ..., "type": "float" | "int" | "category"}, ...]}.
# The generated handlers read it (inputs by name, width); notebooks write it (docs/model-contract.md).
SCHEMA_FILE = "input_schema.json"

# The handler functions and the arguments the containers pass (without the optional trailing `context`).
HANDLER_ARGUMENTS: dict[str, tuple[str, ...]] = {
    "model_fn": ("model_dir",),
    "input_fn": ("request_body", "content_type"),
    "predict_fn": ("data", "model"),
    "output_fn": ("prediction", "accept"),
    "transform_fn": ("model", "request_body", "content_type", "accept"),
}
PER_REQUEST = ("input_fn", "predict_fn", "output_fn")


class Framework:
    """One framework's serving container: what it calls in the handler and what the generated skeleton holds."""

    name: ClassVar[str]
    title: ClassVar[str]
    container: ClassVar[str]  # the container's source repository, where this contract was read
    model_file: ClassVar[str]  # the file the generated handler loads from the model directory
    save_hint: ClassVar[str]  # how an analyst writes that file
    # The image version generated model repositories register with (the SageMaker SDK's name; match your training).
    default_version: ClassVar[str]
    # Handler functions the container has no usable default for (mlinfra's rule for PyTorch: see module docstring).
    required: ClassVar[tuple[str, ...]] = ("model_fn",)
    # Whether the container passes a trailing `context` argument to handler functions that take one more.
    context_argument: ClassVar[bool] = False
    # Packages the generated requirements.txt pins to what the image already has (comments name them).
    requirements: ClassVar[tuple[str, ...]] = ()

    def accepted_arities(self, function: str) -> tuple[int, ...]:
        """How many positional arguments the container may pass to `function`."""
        base = len(HANDLER_ARGUMENTS[function])
        return (base, base + 1) if self.context_argument else (base,)


_FRAMEWORKS: dict[str, Framework] = {}


def register(cls: type[Framework]) -> type[Framework]:
    """Class decorator: make a framework's contract available under its `name`."""
    if cls.name in _FRAMEWORKS:
        raise ValueError(f"framework {cls.name!r} is registered twice")
    _FRAMEWORKS[cls.name] = cls()
    return cls


def names() -> tuple[str, ...]:
    """Every registered framework name, sorted."""
    return tuple(sorted(_FRAMEWORKS))


def get(name: str) -> Framework:
    """The contract of framework `name`; BadInputError naming the known ones otherwise."""
    try:
        return _FRAMEWORKS[name]
    except KeyError:
        raise BadInputError(f"unknown framework {name!r}; mlinfra knows {', '.join(names())}") from None


def all_frameworks() -> Iterator[Framework]:
    """Every registered framework, by name."""
    for name in names():
        yield _FRAMEWORKS[name]


@register
class SKLearn(Framework):
    """scikit-learn: sagemaker-scikit-learn-container (sagemaker-containers' Transformer, no context argument)."""

    name = "sklearn"
    title = "scikit-learn"
    container = "aws/sagemaker-scikit-learn-container"
    model_file = "model.joblib"
    save_hint = "joblib.dump(model, 'model.joblib')"
    default_version = "1.9-0"
    requirements = ("scikit-learn", "joblib", "numpy")


@register
class XGBoost(Framework):
    """XGBoost in script mode: sagemaker-xgboost-container on sagemaker-containers' Transformer (no context)."""

    name = "xgboost"
    title = "XGBoost"
    container = "aws/sagemaker-xgboost-container"
    model_file = "xgboost-model.json"
    save_hint = "booster.save_model('xgboost-model.json')"
    default_version = "3.2-0"
    requirements = ("xgboost", "numpy")


@register
class PyTorch(Framework):
    """PyTorch: sagemaker-pytorch-inference-toolkit (TorchServe) on sagemaker-inference-toolkit's Transformer."""

    name = "pytorch"
    title = "PyTorch"
    container = "aws/sagemaker-pytorch-inference-toolkit"
    model_file = "model.pt"
    save_hint = "torch.jit.save(torch.jit.script(model), 'model.pt')"
    default_version = "2.6.0"
    context_argument = True
    requirements = ("torch", "numpy")
