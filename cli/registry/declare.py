"""Local mode declares a model on first register: in the scratch stacks, committed there, with its package groups.

Against a real account a model must be declared in the stack files (`mlinfra model add NAME`) and deployed before
anything can be registered: that is a reviewed change to the platform. Local mode's stack files are a scratch copy,
so `register` of a model no stack file declares does the same there in one step, and says so: `NAME: {}` under
`mlinfra:models` in every stage's scratch stack file (validated first, comments kept), committed and pushed to the
scratch remote so that the branches of later pull-request promotions carry it, and the model's package group
created in each stage's registry in the emulator, as `mlinfra local up` would after `model add`.
"""

from __future__ import annotations

from mlinfra.aws import StageAws, error_code, local_mode
from mlinfra.errors import MlinfraError
from mlinfra.stacks.project import Project

COMMIT_IDENTITY = ("-c", "user.name=mlinfra", "-c", "user.email=mlinfra@localhost")


def declare_locally(project: Project, model: str) -> list[str]:
    """Declare `model` in every stage of local mode's scratch stacks and create its package groups; the stages."""
    from mlinfra.git import Git
    from mlinfra.models.scaffold import check_model_name
    from mlinfra.stacks.edit import declare_model
    from mlinfra.stacks.files import load_stage
    from mlinfra.stacks.workspace import WORKSPACE

    if not local_mode():  # pragma: no cover - a wiring mistake: the real stack files are reviewed changes
        raise MlinfraError("declaring a model on register is local mode's only")
    check_model_name(model)
    stages = project.stages()
    changed = declare_model(project, stages, model)
    workspace = Git(project.root / WORKSPACE)
    if changed:
        files = [str(project.stage_file(stage).resolve()) for stage in changed]
        workspace.run("add", "--", *files, doing="declaring the model in local mode's workspace")
        workspace.run(
            *COMMIT_IDENTITY, "commit", "--quiet", "-m", f"Declare {model} (local mode, on register)", "--", *files,
            doing="declaring the model in local mode's workspace",
        )  # fmt: skip
        workspace.run("push", "--quiet", "origin", "HEAD:main", doing="pushing the declaration to the scratch remote")
    for stage in stages:
        config = load_stage(project, stage).config
        _create_group(StageAws(config, project.root), config.project, stage, model)
    return stages


def _create_group(aws: StageAws, project_name: str, stage: str, model: str) -> None:
    from mlinfra_infra import naming

    name = naming.package_group(project_name, stage, model)
    sagemaker = aws.client("sagemaker")
    try:
        sagemaker.describe_model_package_group(ModelPackageGroupName=name)
        return
    except Exception as exc:
        if error_code(exc) not in {"ValidationException", "ResourceNotFound"}:
            raise
    sagemaker.create_model_package_group(
        ModelPackageGroupName=name,
        ModelPackageGroupDescription=f"{model} versions registered in {stage}",
        Tags=[
            {"Key": "managed-by", "Value": "mlinfra"},
            {"Key": "stage", "Value": stage},
            {"Key": "model", "Value": model},
        ],
    )
