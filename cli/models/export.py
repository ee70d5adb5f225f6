"""A trained model in memory, written as the model directory `mlinfra register` packs (the notebook API's first half).

`write_model(model, sample, name=...)` writes, below DIR (default `./mlinfra-models/<name>/`):

    model/<model file>           the estimator, saved the way its framework's container loads it
    model/code/inference.py      the generated handler (model_templates/handlers/<framework>.py.j2)
    model/code/requirements.txt  the libraries the handler imports: what the image lacks, pinned to the versions
                                 running here; what it has, named in a comment
    model/code/input_schema.json the feature names and types, from the sample's columns
    model/card.md                the card (not packed: `.mlinfraignore` leaves it out; register stores it)
    model/.mlinfraignore
    baseline.csv                 the sample, from which register computes the drift baseline (not packed)
    metrics.json                 the metrics (not packed)

Everything is a pure function of the model, the sample and the arguments, so the same model written twice packs to
the same digest, and `mlinfra register DIR/model ...` (the command `Written.command` spells out) registers exactly
what the notebook API registers. Savers register themselves per framework (`@saver`), detected by the modules of
the model's class hierarchy (an XGBoost scikit-learn wrapper is XGBoost: its own classes come first).
"""

from __future__ import annotations

import csv
import json
import shlex
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from mlinfra.errors import BadInputError
from mlinfra.models import frameworks

DEFAULT_ROOT = "mlinfra-models"
MODEL_DIRECTORY = "model"
SCHEMA_FILE = "input_schema.json"  # in code/: the handler reads it beside itself
BASELINE_FILE = "baseline.csv"
METRICS_FILE = "metrics.json"
FEATURE_TYPES = ("float", "int", "category")


@dataclass(frozen=True)
class Saver:
    """How one framework's models are written: the file its container's handler loads, the libraries to pin."""

    framework: str
    modules: tuple[str, ...]  # top-level packages whose classes mark a model as this framework's
    libraries: tuple[str, ...]  # distributions the handler imports, pinned in requirements.txt
    save: Callable[[Any, Path], None]


_SAVERS: dict[str, Saver] = {}


def saver(framework: str, *, modules: tuple[str, ...], libraries: tuple[str, ...]) -> Callable[..., Any]:
    """Decorator: `save(model, path)` writes models of `framework` (whose classes live in `modules`) to `path`."""

    def register(save: Callable[[Any, Path], None]) -> Callable[[Any, Path], None]:
        frameworks.get(framework)  # only frameworks with a serving contract
        _SAVERS[framework] = Saver(framework, modules, libraries, save)
        return save

    return register


@saver("sklearn", modules=("sklearn",), libraries=("scikit-learn", "joblib", "numpy"))
def _save_sklearn(model: Any, path: Path) -> None:
    import joblib  # type: ignore[import-untyped]

    joblib.dump(model, path)


@saver("xgboost", modules=("xgboost",), libraries=("xgboost", "numpy"))
def _save_xgboost(model: Any, path: Path) -> None:
    booster = model.get_booster() if hasattr(model, "get_booster") else model
    booster.save_model(str(path))


def framework_of(model: Any) -> Saver:
    """The saver for `model`, from the modules of its class hierarchy (most derived first)."""
    for cls in type(model).__mro__:
        package = (cls.__module__ or "").split(".")[0]
        for found in _SAVERS.values():
            if package in found.modules:
                return found
    known = ", ".join(sorted(_SAVERS))
    raise BadInputError(
        f"mlinfra.register cannot save a {type(model).__module__}.{type(model).__qualname__} ({known} models only); "
        "write a model directory (`mlinfra init-model NAME --framework F DIR`) and run `mlinfra register DIR`"
    )


# --- the sample: feature names, types, rows ------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """A data sample as columns: names, the schema type of each, and the rows (for the baseline CSV)."""

    names: list[str]
    types: list[str]
    rows: Iterable[Iterable[Any]]


def _kind(dtype: Any) -> str:
    """The schema type of a numpy/pandas dtype: float, int (bool too) or category (strings, objects, categoricals)."""
    kind = getattr(dtype, "kind", "O")
    if kind == "f":
        return "float"
    if kind in "iub":
        return "int"
    return "category"


def read_sample(sample: Any, model: Any) -> Sample:
    """Names and types of a pandas DataFrame's columns, or of a 2-D array (named by the model's feature_names_in_)."""
    columns = getattr(sample, "columns", None)
    if columns is not None and hasattr(sample, "dtypes") and hasattr(sample, "itertuples"):
        names = [str(c) for c in columns]
        types = [_kind(dtype) for dtype in sample.dtypes]
        rows: Iterable[Iterable[Any]] = sample.itertuples(index=False, name=None)
    else:
        import numpy as np

        array = np.asarray(sample)
        if array.ndim != 2 or array.shape[0] == 0:
            raise BadInputError(
                f"sample must be a pandas DataFrame or a 2-D array with at least one row (got shape {array.shape})"
            )
        learned = getattr(model, "feature_names_in_", None)
        names = [str(n) for n in learned] if learned is not None else [f"x{i}" for i in range(array.shape[1])]
        types = [_kind(array.dtype)] * array.shape[1]
        rows = array.tolist()
    if not names:
        raise BadInputError("sample has no columns; pass some of the rows the model was trained on")
    if len(set(names)) != len(names):
        raise BadInputError(f"sample has duplicate column names ({', '.join(sorted(_duplicates(names)))})")
    _check_against_model(names, model)
    return Sample(names, types, rows)


def _duplicates(names: list[str]) -> set[str]:
    seen: set[str] = set()
    return {n for n in names if n in seen or seen.add(n)}  # type: ignore[func-returns-value]


def _check_against_model(names: list[str], model: Any) -> None:
    learned = getattr(model, "feature_names_in_", None)
    if learned is not None and [str(n) for n in learned] != names:
        missing = [str(n) for n in learned if str(n) not in names]
        extra = [n for n in names if n not in {str(x) for x in learned}]
        detail = "; ".join(
            part
            for part in (
                f"missing {', '.join(missing[:5])}" if missing else "",
                f"not in the model: {', '.join(extra[:5])}" if extra else "",
                "same names in another order" if not missing and not extra else "",
            )
            if part
        )
        raise BadInputError(f"sample's columns are not the model's features ({detail}); pass rows of the training data")
    width = getattr(model, "n_features_in_", None)
    if isinstance(width, int) and width != len(names):
        raise BadInputError(f"sample has {len(names)} columns, the model takes {width}; pass rows of the training data")


def input_schema(sample: Sample) -> dict[str, Any]:
    """The input schema handlers and drift share: {"features": [{"name", "type"}]} in column order."""
    return {"features": [{"name": n, "type": t} for n, t in zip(sample.names, sample.types, strict=True)]}


# --- writing -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Written:
    """What `write_model` wrote: the model directory, the side files, and how the CLI registers the same thing."""

    root: Path
    model_dir: Path
    framework: str
    baseline: Path
    metrics: Path | None
    card: Path
    schema: dict[str, Any]

    def command(self, name: str, framework_version: str, description: str | None = None) -> str:
        """The `mlinfra register` command that registers exactly these files."""
        parts = ["mlinfra", "register", str(self.model_dir), "--model", name, "--framework", self.framework]
        parts += ["--framework-version", framework_version, "--baseline", str(self.baseline)]
        if self.metrics is not None:
            parts += ["--metrics", str(self.metrics)]
        if description:
            parts += ["--description", description]
        return shlex.join(parts)


def pinned_requirements(libraries: Iterable[str]) -> list[str]:
    """`name==version` for each library installed here (the versions the model was written with)."""
    pins = []
    for library in libraries:
        try:
            pins.append(f"{library}=={metadata.version(library)}")
            continue
        except metadata.PackageNotFoundError:
            pass
        # A variant distribution of the same import package (xgboost-cpu for xgboost): its version, under the name
        # the image and the handler know.
        variants = metadata.packages_distributions().get(library.replace("-", "_"), [])
        if not variants:
            raise BadInputError(f"{library} is not installed here, yet the model needs it to be loaded")
        pins.append(f"{library}=={metadata.version(variants[0])}")
    return pins


def _requirements_text(title: str, framework: str, pins: list[str]) -> str:
    """requirements.txt: what the image lacks, pinned; what it has, as a comment (its pip cannot replace those).

    The image is chosen for the saved library's major.minor, and with network isolation (staging and prod) the
    container's start-up install cannot download anything: `register` refuses a pin of a package the image has.
    """
    from mlinfra.models.startup import IMAGE_PACKAGES, canonical

    in_image = IMAGE_PACKAGES.get(framework, frozenset())
    provided = [pin for pin in pins if canonical(pin.split("==")[0]) in in_image]
    lines = [
        "# The libraries the handler imports, as the model was saved with them (mlinfra.register).",
        f"# The {title} image provides: {', '.join(provided) or 'none of them'} (its own patch version; the image",
        "# was picked for the same major.minor). Anything listed below must be installable without network.",
        *[pin for pin in pins if pin not in provided],
    ]
    return "\n".join(lines) + "\n"


def _card_text(name: str, framework: str, card: str | Path | None, description: str | None) -> str:
    from mlinfra.models import scaffold

    if card is None:
        text = scaffold.model_files(name, framework)["card.md"]
        if description:
            heading, _, rest = text.partition("\n")
            text = f"{heading}\n\n{description}\n{rest}"
        return text
    if isinstance(card, Path):
        from mlinfra.models.inputs import read_card

        return read_card(card)
    return card if card.endswith("\n") else card + "\n"


def _metrics_text(metrics: dict[str, Any]) -> str:
    import math

    clean: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(float(value)):
            raise BadInputError(f"metrics[{key!r}] is {value!r}; metrics are finite numbers (e.g. {{'auc': 0.97}})")
        clean[str(key)] = float(value)
    return json.dumps(clean, indent=2, sort_keys=True) + "\n"


def write_model(
    model: Any,
    sample: Any,
    *,
    name: str,
    directory: Path | None = None,
    metrics: dict[str, Any] | None = None,
    description: str | None = None,
    card: str | Path | None = None,
) -> Written:
    """Write `model` and what registering it needs below `directory` (default ./mlinfra-models/<name>/).

    The model directory is written afresh in a temporary sibling and then put in place, so a failure leaves the
    previous one; a directory there that `write_model` did not write (no code/input_schema.json) is refused.
    """
    from mlinfra.models import scaffold

    scaffold.check_model_name(name)
    found = framework_of(model)
    table = read_sample(sample, model)
    root = Path(directory) if directory is not None else Path.cwd() / DEFAULT_ROOT / name
    target = root / MODEL_DIRECTORY
    if target.exists() and not (target / frameworks.HANDLER_DIRECTORY / SCHEMA_FILE).is_file():
        raise BadInputError(
            f"{target} exists and was not written by mlinfra.register; pass directory= another folder, or move it"
        )
    contract = frameworks.get(found.framework)
    files = scaffold.model_files(name, found.framework)
    code = frameworks.HANDLER_DIRECTORY
    schema = input_schema(table)
    files[f"{code}/{frameworks.REQUIREMENTS}"] = _requirements_text(
        contract.title, found.framework, pinned_requirements(found.libraries)
    )
    files[f"{code}/{SCHEMA_FILE}"] = json.dumps(schema, indent=2) + "\n"
    files["card.md"] = _card_text(name, found.framework, card, description)
    staging = root / f".{MODEL_DIRECTORY}.writing"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        for relative, text in files.items():
            path = staging / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        found.save(model, staging / contract.model_file)
        old = root / f".{MODEL_DIRECTORY}.old"
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            target.rename(old)
        staging.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    baseline = root / BASELINE_FILE
    with baseline.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(table.names)
        writer.writerows(table.rows)
    metrics_path = None
    if metrics is not None:
        metrics_path = root / METRICS_FILE
        metrics_path.write_text(_metrics_text(metrics), encoding="utf-8")
    return Written(root, target, found.framework, baseline, metrics_path, target / "card.md", schema)


def image_version(framework: str, libraries: tuple[str, ...]) -> str:
    """The prebuilt image version whose library matches the major.minor running here, e.g. 1.9-0 for sklearn 1.9.1."""
    from mlinfra.models import images

    library = libraries[0]
    running = metadata.version(library)
    major_minor = ".".join(running.split(".")[:2])
    available = images.supported_versions(framework)
    matching = [v for v in available if v.split("-")[0] == major_minor or v.startswith(major_minor + ".")]
    if not matching:
        raise BadInputError(
            f"no prebuilt {framework} image has {library} {major_minor} (running here: {running}; images: "
            f"{', '.join(available)}); pass framework_version= one of them after re-training with its {library}, "
            "or image= an image of your own"
        )
    return matching[-1]
