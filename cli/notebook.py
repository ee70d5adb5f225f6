"""The notebook API: `import mlinfra; mlinfra.register(model, sample, name="cancer")`, the inner loop's exit door.

Each function does what its command does, through the same library code: `register` writes the model directory
(models/export.py) and then calls the very function `mlinfra register` calls (registry/register.py), so the CLI and
the API give the same version, digest included; `promote`, `versions` and `serve` likewise. The project is found as
the CLI finds it (the working directory, else $MLINFRA_PROJECT), and local mode is $MLINFRA_LOCAL=1 (`mlinfra
--local`). Errors are the CLI's: MlinfraError subclasses whose message is the one line the CLI would print.

Heavy modules load only when a function runs: `import mlinfra` costs nothing more than before.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlinfra.records import VersionRecord
    from mlinfra.serving.background import BackgroundServer
    from mlinfra.stacks.project import Project

__all__ = ["promote", "register", "serve", "versions"]


def _project(project: str | Path | None) -> Project:
    from mlinfra.stacks.project import Project

    return Project.find(Path(project).expanduser() if project is not None else None)


def _say(message: str) -> None:
    print(message, file=sys.stderr)


def register(
    model: Any,
    sample: Any,
    *,
    name: str,
    metrics: dict[str, float] | None = None,
    description: str | None = None,
    card: str | Path | None = None,
    framework_version: str | None = None,
    directory: str | Path | None = None,
    project: str | Path | None = None,
) -> VersionRecord:
    """Register a trained model as a new immutable version of `name` in the entry stage; its version record.

    `sample` is a pandas DataFrame (or 2-D array) of training rows: its columns give the input schema (names and
    types, in code/input_schema.json) and the drift baseline, and the model's answers on it (through its handler,
    as the endpoint answers) the prediction baseline. `metrics` ({"auc": 0.97}) are what promotion gates
    read; `description` is one line; `card` is Markdown text or a path (default: the card skeleton to fill in).
    The image is SageMaker's prebuilt one for the library version running here (`framework_version` picks another).
    The model directory lands in `directory` (default ./mlinfra-models/<name>/) and stays there:
    `mlinfra register` of it registers the same bytes (the record's `command` says how). Registering the same model
    again returns the existing version; in local mode a model no stack declares is declared in the scratch stacks.

    Example:
        >>> record = mlinfra.register(clf, X_train, name="cancer", metrics={"auc": 0.99})
        >>> record.version, record.digest

    """
    from mlinfra import records
    from mlinfra.models import export, inputs
    from mlinfra.registry import register as registration
    from mlinfra.serving.predictions import for_place

    found = _project(project)
    written = export.write_model(
        model,
        sample,
        name=name,
        directory=Path(directory).expanduser() if directory is not None else None,
        metrics=metrics,
        description=description,
        card=card,
    )
    saver = export.framework_of(model)
    version = framework_version or export.image_version(saver.framework, saver.libraries)
    result = registration.register(
        found,
        written.model_dir,
        name,
        framework=saver.framework,
        framework_version=version,
        image=None,
        metrics_path=written.metrics,
        baseline_path=written.baseline,
        git_sha=inputs.git_sha(Path.cwd()),
        description=description,
        card_path=written.card,
        predict=for_place,
    )
    for note in result.get("notes", []):
        _say(f"note: {note}")
    record = records.parse_version_record(result)
    verb = "already registered as" if result.get("existing") else "registered"
    _say(f"{name} {verb} v{record.version} ({record.digest[:19]}...) in {record.stage}")
    _say(f"  the same from a shell: {written.command(name, version, description)}")
    return record


def promote(
    name: str,
    *,
    to: str,
    version: int | None = None,
    reason: str = "promoted from a notebook",
    project: str | Path | None = None,
) -> dict[str, Any]:
    """Promote a version of `name` to stage `to` (default: what the preceding stage runs), as `mlinfra promote` does.

    Gates are evaluated as for the command (exit 3 there, RefusedError here). Returns the promotion's summary, with
    `delivery` and `pullRequest` for stages delivered by pull request.

    Example:
        >>> mlinfra.promote("cancer", to="dev")

    """
    from mlinfra.registry import promote as promotion

    result = promotion.promote(_project(project), name, to, version=version, source=None, reason=reason, force=False)
    _say(promotion.sentence(result))
    return result


def versions(name: str, *, stage: str | None = None, project: str | Path | None = None) -> list[dict[str, Any]]:
    """Every version of `name`, newest first, with where each runs (what `mlinfra versions NAME --json` prints)."""
    from mlinfra.registry.versions import list_versions

    return list_versions(_project(project), name, stage)


def serve(
    name: str,
    *,
    version: int | None = None,
    stage: str | None = None,
    path: str | Path | None = None,
    port: int | None = None,
    capture_stage: str | None = None,
    project: str | Path | None = None,
) -> BackgroundServer:
    """Serve a version of `name` on 127.0.0.1 in the background, through its own handler, as `mlinfra serve` does.

    Default: the entry stage's latest registered version; `stage` serves what that stage runs (with `version`:
    that version from its registry), `path` a model directory as it is. `capture_stage` writes SageMaker data
    capture into that stage's registry as its endpoint would (local mode only). Returns a running server: `.url`,
    `.predict(rows)`, `.stop()` (also a context manager, which stops it and writes the capture).

    Example:
        >>> endpoint = mlinfra.serve("cancer")
        >>> endpoint.predict(X_test[:3])

    """
    from mlinfra.serving.app import build_app
    from mlinfra.serving.background import BackgroundServer, free_port
    from mlinfra.serving.sources import CaptureTarget, Source, capture_writer, resolve

    found = _project(project) if path is None or capture_stage is not None else None
    if path is None and version is None and stage is None:
        from mlinfra.registry.protocol import entry_stage

        assert found is not None  # noqa: S101 - found above whenever path is None
        stage = entry_stage(found)[1].name
    source = Source(path=Path(path) if path is not None else None, version=version, stage=stage)
    served = resolve(name, source, project=found)
    writer = capture_writer(
        name, CaptureTarget(stage=capture_stage), served_stage=served.stage, project=found, warn=_say
    )
    app = build_app(served.handler, capture=writer)
    chosen = port or free_port()
    server = BackgroundServer(app, host="127.0.0.1", port=chosen, description=served.description)
    server.start()
    _say(f"serving {served.description} at {server.url} (.predict(rows), .stop())")
    return server
