"""`mlinfra serve`: choose what to serve (a directory, a version, a stage's version), load it, set up capture.

The HTTP side is app.py, the handler contract handler.py, capture capture.py, downloads artifacts.py; this module
puts them together so that the command only parses options and starts the server.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlinfra.errors import BadInputError
from mlinfra.serving.handler import Handler, load_handler
from mlinfra.stacks.project import Project
from mlinfra_infra import layout, naming


@dataclass
class Source:
    """What to serve: exactly one of a directory, a version number (entry stage) or a stage (its pointer)."""

    path: Path | None = None
    version: int | None = None
    stage: str | None = None
    framework: str | None = None


@dataclass
class Served:
    """A loaded model ready to serve, and what to say about it."""

    handler: Handler
    model: str
    description: str
    version: int | None
    stage: str | None


@dataclass
class CaptureTarget:
    """Where captured invocations go: a local folder, or a stage registry's capture prefix (emulator only)."""

    directory: Path | None = None
    stage: str | None = None
    max_seconds: float | None = None


def _project(project: Project | None) -> Project:
    return project if project is not None else Project.find()


def resolve(
    model: str, source: Source, *, project: Project | None = None, progress: Callable[[int], None] | None = None
) -> Served:
    """Load the model `source` names through its handler (model_fn runs here, before any port is opened)."""
    chosen = [
        name
        for name, value in (("--path", source.path), ("--version", source.version), ("--stack", source.stage))
        if value is not None
    ]
    # --version N with --stack S is version N from S's registry; --path goes alone.
    if not chosen or (source.path is not None and len(chosen) > 1):
        raise BadInputError(
            "give --path DIR, or --version N and/or --stack S" + (f" (got {' and '.join(chosen)})" if chosen else "")
        )
    if source.path is not None:
        if not source.path.is_dir():
            raise BadInputError(
                f"{source.path} is not a model directory (it does not exist or is a file); pass the directory "
                "holding the model files and the handler"
            )
        framework = source.framework or "sklearn"
        handler = load_handler(source.path.resolve(), framework)
        return Served(handler, model, f"{model} from {source.path} ({framework})", None, None)
    return _resolve_registered(model, source, _project(project), progress)


def _resolve_registered(model: str, source: Source, project: Project, progress: Callable[[int], None] | None) -> Served:
    from mlinfra.aws import aws_errors
    from mlinfra.registry.protocol import Context, require_model
    from mlinfra.serving.artifacts import fetch

    if source.stage is not None:
        stage = project.require_stage(source.stage)
    else:
        names = project.stages()
        if not names:
            raise BadInputError(f"no stack files in {project.relative(project.stacks_dir)}/")
        ctx0 = Context.load(project, names[0])
        stage = ctx0.stages[names[0]].config.entry_stage
    ctx = Context.load(project, stage)
    require_model(ctx.stages[stage], model)
    registry = ctx.registry(stage)
    with aws_errors(f"fetching {model} from {stage}'s registry"):
        version = source.version
        if version is None:
            pointer = registry.pointer(model)
            if pointer is None:
                raise BadInputError(f"no version of {model} runs in {stage} yet; serve one with --version N")
            version = int(pointer.data["version"])
        record = registry.require_version(model, version)
        fetched = fetch(project, registry, model, record, progress)
    framework = source.framework or record.get("framework")
    recorded = record.get("handler")
    place: dict[str, Any] = recorded if isinstance(recorded, dict) else {}
    handler = load_handler(fetched.model_dir, framework, program=place.get("program"), directory=place.get("directory"))
    origin = f"{stage}'s pointer" if source.version is None else f"{stage}'s registry"
    return Served(
        handler,
        model,
        f"{model} v{version} ({str(record['digest'])[:19]}..., {framework or 'own image'}) from {origin}",
        version,
        stage,
    )


def capture_writer(
    model: str,
    target: CaptureTarget,
    *,
    served_stage: str | None,
    project: Project | None = None,
    warn: Callable[[str], None] | None = None,
) -> Any:
    """A CaptureWriter for the target, named like the endpoint the stage would run (None when capture is off)."""
    from mlinfra.serving.capture import MAX_SECONDS, CaptureWriter, LocalSink, S3Sink

    if target.directory is not None and target.stage is not None:
        raise BadInputError("give --capture DIR or --capture-stage S, not both")
    seconds = target.max_seconds if target.max_seconds is not None else MAX_SECONDS
    if target.directory is not None:
        endpoint = f"local-{model}"
        if served_stage is not None:
            endpoint = naming.endpoint(_project(project).name, served_stage, model)
        return CaptureWriter(
            LocalSink(target.directory), prefix="", endpoint=endpoint, variant=naming.VARIANT_NAME, max_seconds=seconds
        )
    if target.stage is None:
        return None
    from mlinfra.aws import local_mode
    from mlinfra.registry.protocol import Context, require_model

    if not local_mode():
        raise BadInputError(
            "--capture-stage writes into a stage registry's capture prefix and is for the emulator only (run with "
            "--local): local traffic must not mix with a real endpoint's capture; use --capture DIR instead"
        )
    root = _project(project)
    stage = root.require_stage(target.stage)
    ctx = Context.load(root, stage)
    require_model(ctx.stages[stage], model)
    registry = ctx.registry(stage)
    config = ctx.stages[stage].config
    settings = config.models[model]
    if not (settings.capture.enabled and settings.mode == "realtime") and warn is not None:
        warn(
            f"{stage}'s endpoint for {model} does not capture (capture.enabled is off or it is serverless): "
            "serve writes there anyway, as if it did"
        )
    return CaptureWriter(
        S3Sink(registry.s3, registry.bucket),
        prefix=layout.capture_prefix(model),
        endpoint=naming.endpoint(config.project, stage, model),
        variant=naming.VARIANT_NAME,
        max_seconds=seconds,
    )
