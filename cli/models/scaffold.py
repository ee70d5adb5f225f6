"""What `mlinfra init-model` and `mlinfra init-model-repo` write: a model directory and an analyst's model repository.

Everything comes from the Jinja2 templates in model_templates/ (StrictUndefined), which the platform team may edit.
Existing files are never overwritten unless asked (`force`), and nothing is written when any would be: the whole
skeleton lands, or none of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlinfra.errors import BadInputError
from mlinfra.models import frameworks

MODEL_DIRECTORY = "model"
WORKFLOW = ".github/workflows/register.yml"

# Actions the generated workflow uses, pinned to full commit SHAs (the release each is, in a comment). All run on
# Node 24. Keep them in step with the platform's own workflows (.github/workflows/).
ACTIONS = {
    "checkout": ("actions/checkout", "3d3c42e5aac5ba805825da76410c181273ba90b1", "v7.0.1"),
    "setup_python": ("actions/setup-python", "5fda3b95a4ea91299a34e894583c3862153e4b97", "v7.0.0"),
    "aws_credentials": (
        "aws-actions/configure-aws-credentials",
        "e6de054238d6b7531b4efff3b6587d9aade6a06c",
        "v6.2.3",
    ),
    "app_token": ("actions/create-github-app-token", "1b10c78c7865c340bc4f6099eb2f838309f1e8c3", "v3.1.1"),
}


@dataclass(frozen=True)
class Written:
    """A file a scaffold wrote (or would write): its path and size in bytes."""

    path: Path
    size: int


def check_model_name(model: str) -> str:
    """`model` if it is a valid model name (as stack files require), else BadInputError."""
    from pydantic import TypeAdapter, ValidationError

    from mlinfra_infra.config import ModelName

    try:
        TypeAdapter(ModelName).validate_python(model)
    except ValidationError:
        raise BadInputError(
            f"{model!r} is not a model name (lowercase letters, digits and single hyphens, at most 32 characters)"
        ) from None
    return model


def model_files(model: str, framework_name: str) -> dict[str, str]:
    """The files of a model directory skeleton for `framework_name`: relative path -> content."""
    import mlinfra_templates

    framework = frameworks.get(framework_name)
    context = {
        "model": model,
        "title": framework.title,
        "framework": framework.name,
        "model_file": framework.model_file,
        "save_hint": framework.save_hint,
        "program": frameworks.PROGRAM,
        "directory": frameworks.HANDLER_DIRECTORY,
        "schema_file": frameworks.SCHEMA_FILE,
        "requirements": framework.requirements,
    }
    code = frameworks.HANDLER_DIRECTORY
    return {
        f"{code}/{frameworks.PROGRAM}": mlinfra_templates.render(f"handlers/{framework.name}.py.j2", **context),
        f"{code}/{frameworks.REQUIREMENTS}": mlinfra_templates.render("handlers/requirements.txt.j2", **context),
        "card.md": mlinfra_templates.render("cards/stub.md.j2", **context),
        ".mlinfraignore": mlinfra_templates.render("handlers/mlinfraignore.j2", **context),
    }


def repo_files(model: str, framework_name: str, framework_version: str, first_stage: str) -> dict[str, str]:
    """The files of a model repository: the model directory skeleton under model/, the workflow and a README."""
    import mlinfra_templates

    framework = frameworks.get(framework_name)
    context = {
        "model": model,
        "framework": framework.name,
        "title": framework.title,
        "framework_version": framework_version,
        "model_file": framework.model_file,
        "save_hint": framework.save_hint,
        "first_stage": first_stage,
        "model_directory": MODEL_DIRECTORY,
        "actions": {key: {"repo": r, "sha": sha, "version": v} for key, (r, sha, v) in ACTIONS.items()},
    }
    files = {f"{MODEL_DIRECTORY}/{path}": text for path, text in model_files(model, framework_name).items()}
    files[WORKFLOW] = mlinfra_templates.render("repo/register.yml.j2", **context)
    files["README.md"] = mlinfra_templates.render("repo/README.md.j2", **context)
    files[".gitignore"] = mlinfra_templates.render("repo/gitignore.j2", **context)
    files["metrics.json"] = "{}\n"
    return files


def write_files(directory: Path, files: dict[str, str], *, force: bool) -> list[Written]:
    """Write `files` below `directory`; BadInputError (writing nothing) if any exists and `force` is not given."""
    if directory.exists() and not directory.is_dir():
        raise BadInputError(f"{directory} exists and is not a directory; choose another path")
    targets = {directory / relative: text for relative, text in files.items()}
    if not force:
        existing = [str(path) for path in targets if path.exists() or path.is_symlink()]
        if existing:
            raise BadInputError(
                f"{existing[0]} exists{f' (and {len(existing) - 1} more)' if len(existing) > 1 else ''}; "
                "nothing was written: move it away, or pass --force to overwrite"
            )
    written = []
    for path, text in targets.items():
        if path.is_symlink():
            raise BadInputError(f"{path} is a symlink; remove it first (mlinfra does not write through links)")
        path.parent.mkdir(parents=True, exist_ok=True)
        data = text.encode("utf-8")
        tmp = path.with_name(f".{path.name}.mlinfra-tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
        written.append(Written(path, len(data)))
    return written


def init_model(model: str, framework: str, directory: Path, *, force: bool) -> list[Written]:
    """Write a model directory skeleton for `framework` into `directory` (created if needed)."""
    check_model_name(model)
    return write_files(directory, model_files(model, framework), force=force)


def init_model_repo(
    model: str, framework: str, framework_version: str | None, directory: Path, *, first_stage: str, force: bool
) -> list[Written]:
    """Write an analyst's model repository (model skeleton, tag-triggered register workflow, README)."""
    from pydantic import TypeAdapter, ValidationError

    from mlinfra_infra.config import StageName

    check_model_name(model)
    adapter = frameworks.get(framework)

    try:
        TypeAdapter(StageName).validate_python(first_stage)
    except ValidationError:
        raise BadInputError(f"--to {first_stage!r} is not a stage name (lowercase letters and digits)") from None
    version = framework_version or adapter.default_version
    return write_files(directory, repo_files(model, framework, version, first_stage), force=force)
