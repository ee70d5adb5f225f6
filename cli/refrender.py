"""Render a stack as of a git ref: that commit's whole tree, its program imported in a separate process.

The tree at the ref is written to a temporary folder with `git archive` (the working tree and the index are never
touched). A child Python process then imports that tree's Pulumi program (`mlinfra_infra`, and the templates and
packages it uses, under the import names the tree's pyproject.toml gives them) and renders it under the mock runtime
with this checkout's renderer, so two versions of the program never share a process. The child starts before the
caller renders the working tree, so the two renders run side by side.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import BadInputError, MlinfraError

if TYPE_CHECKING:
    from .project import Project
    from .render import RenderedStack

DEFAULT_BASES = ("main", "origin/main")
# Paths whose changes cannot change a render: both sides render with this checkout's renderer (cli/), and these hold
# no program, template or stack input. Anything else changed since the base means the base is rendered.
NOT_RENDERED = ("cli/", "tests/", "bench/", "examples/", ".github/", ".ci/", "requirements/", "README.md", "NOTES.md")
RENDERER = "mlinfra"  # this checkout's renderer; every other import name comes from the tree at the ref
IMPORT_DIR = ".mlinfra-import"


def _git(cwd: Path, *args: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise MlinfraError("git is not installed: `preview --diff` needs git to read the base commit") from None
    if done.returncode != 0:
        raise BadInputError((done.stderr.strip().splitlines() or [f"git {args[0]} failed"])[-1])
    return done.stdout.strip()


def resolve_base(project: Project, ref: str | None) -> tuple[str, str]:
    """(label, commit) of the base: `ref`, or the merge base of HEAD with main (then origin/main)."""
    root = project.root
    try:
        _git(root, "rev-parse", "--show-toplevel")
    except BadInputError:
        raise BadInputError(f"{root} is not in a git repository: `preview --diff` compares against a commit") from None
    if ref is not None:
        try:
            return ref, _git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
        except BadInputError:
            raise BadInputError(f"--base {ref}: no such commit, branch or tag in this repository") from None
    for candidate in DEFAULT_BASES:
        try:
            commit = _git(root, "merge-base", "HEAD", candidate)
        except BadInputError:
            continue
        return f"merge-base with {candidate}", commit
    raise BadInputError(
        "no merge base with main or origin/main: pass --base REF (in CI, check out with fetch-depth: 0 and fetch main)"
    )


def changed_since(project: Project, commit: str) -> set[str]:
    """Paths (relative to the project root) that differ between `commit` and the working tree, untracked included."""
    root = project.root
    tracked = _git(root, "diff", "--name-only", "--relative", commit, "--")
    untracked = _git(root, "ls-files", "--others", "--exclude-standard")
    return {line for line in (tracked + "\n" + untracked).splitlines() if line}


def stages_to_render(project: Project, stages: list[str], changed: set[str]) -> list[str]:
    """The stages whose render at the base may differ from the working tree's, given the paths that changed.

    A stage is unaffected when every changed path is another stage's stack file or holds no render input.
    """
    stack_files = {stage: project.relative(project.stage_file(stage)) for stage in project.stages()}
    needed = []
    for stage in stages:
        others = {path for other, path in stack_files.items() if other != stage}
        if any(path not in others and not path.startswith(NOT_RENDERED) for path in changed):
            needed.append(stage)
    return needed


def only_stack_files(project: Project, changed: set[str]) -> bool:
    """True when nothing but stack files (and files holding no render input) changed: the program is the same."""
    stack_files = {project.relative(project.stage_file(stage)) for stage in project.stages()}
    return all(path in stack_files or path.startswith(NOT_RENDERED) for path in changed)


def render_stack_file_at(project: Project, stage: str, commit: str, label: str) -> RenderedStack:
    """The stage as of `commit` when only its stack file differs: that file rendered here, with this program.

    Used instead of a child process when the program (and Pulumi.yaml) are unchanged since `commit`, which is what a
    promotion changes. A stack file absent at `commit` renders empty. Errors name the base like the child's do.
    """
    from .project import read_yaml
    from .render import RenderedStack, render_stage
    from .stackfile import Stage, raw_config_of, validate

    source = project.relative(project.stage_file(stage))
    try:
        text = _git(project.root, "show", f"{commit}:./{source}")
    except BadInputError:
        return RenderedStack(stack=stage)
    try:
        with tempfile.TemporaryDirectory(prefix="mlinfra-base-") as tmp:
            copy = Path(tmp) / "stack.yaml"
            copy.write_text(text + "\n", encoding="utf-8")
            data = read_yaml(copy, source)
        raw = raw_config_of(project, data, source)
        return render_stage(Stage(project, stage, raw, validate(project, stage, raw, source)))
    except MlinfraError as exc:
        error = type(exc)(f"base {label} ({commit[:7]}): {exc}")
        error.exit_code = exc.exit_code
        raise error from None


def _package_dirs(tree: Path) -> dict[str, str]:
    """Import name -> folder, from the tree's pyproject.toml (`[tool.setuptools] package-dir`)."""
    import tomllib

    try:
        data = tomllib.loads((tree / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return {"mlinfra_infra": "infra"}
    mapping = data.get("tool", {}).get("setuptools", {}).get("package-dir", {})
    return {str(k): str(v) for k, v in mapping.items() if k and k != RENDERER}


def _materialize(project: Project, commit: str, into: Path) -> Path:
    """Write the tree of `commit` into `into`; the project's root inside it."""
    top = Path(_git(project.root, "rev-parse", "--show-toplevel"))
    prefix = project.root.resolve().relative_to(top.resolve())
    with subprocess.Popen(
        ["git", "archive", "--format=tar", commit], cwd=top, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as proc:
        assert proc.stdout is not None  # noqa: S101 - Popen with PIPE
        with tarfile.open(fileobj=proc.stdout, mode="r|") as archive:
            archive.extractall(into, filter="data")
        error = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise MlinfraError(f"git archive {commit[:12]} failed: {error.strip()}")
    root = into / prefix
    imports = root / IMPORT_DIR
    imports.mkdir()
    for name, folder in _package_dirs(root).items():
        if (root / folder).is_dir():
            (imports / name).symlink_to(root / folder, target_is_directory=True)
    return root


@dataclass
class PendingRender:
    """Renders of stacks at a commit, running in a child process; `result()` waits for them."""

    label: str
    commit: str
    stages: list[str]
    workdir: Path
    process: subprocess.Popen[str]

    def result(self) -> dict[str, RenderedStack]:
        """Stage -> rendered stack; MlinfraError (with the child's exit code) when the base fails to render."""
        from .render import RenderedResource, RenderedStack

        try:
            out, err = self.process.communicate()
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)
        if self.process.returncode != 0:
            line = (err.strip().splitlines() or ["the render failed"])[-1].removeprefix("error: ")
            error = MlinfraError(f"base {self.label} ({self.commit[:7]}): {line}")
            error.exit_code = self.process.returncode if self.process.returncode in (1, 2) else 1
            raise error
        stacks = {}
        for doc in json.loads(out):
            resources = [RenderedResource(**r) for r in doc["resources"]]
            stacks[doc["stack"]] = RenderedStack(stack=doc["stack"], resources=resources, outputs=doc["outputs"])
        return stacks

    def result_quietly(self) -> None:
        """Wait for the child (after it was killed) and remove its tree, ignoring its result."""
        try:
            self.process.communicate()
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def base(self) -> str:
        """How the diff names the base: `main (1a2b3c4)`."""
        return f"{self.label} ({self.commit[:7]})"


def start_render_at_ref(
    project: Project, stages: list[str], ref: str | None, *, resolved: tuple[str, str] | None = None
) -> PendingRender:
    """Start rendering `stages` as of `ref` (default: the merge base with main) in one child process."""
    label, commit = resolved or resolve_base(project, ref)
    workdir = Path(tempfile.mkdtemp(prefix="mlinfra-base-"))
    try:
        root = _materialize(project, commit, workdir)
        imports = str(root / IMPORT_DIR)
        code = f"import sys; sys.path.insert(0, {imports!r}); from mlinfra.refrender import _worker; _worker()"
        process = subprocess.Popen(
            [sys.executable, "-c", code, str(root), *stages], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    return PendingRender(label, commit, stages, workdir, process)


def render_at_ref(project: Project, stage: str, ref: str | None) -> RenderedStack:
    """The stack of `stage` as of git `ref` (default: the merge base with main); empty if the stage did not exist."""
    return start_render_at_ref(project, [stage], ref).result()[stage]


def _worker() -> None:
    """Child process: render stages argv[2:] of the project at argv[1], print a JSON list (a missing stage is empty)."""
    from .errors import MlinfraError
    from .project import Project
    from .render import render_stage
    from .stackfile import load_stage

    project = Project(Path(sys.argv[1]))
    docs: list[dict[str, Any]] = []
    try:
        for stage in sys.argv[2:]:
            doc: dict[str, Any] = {"stack": stage, "resources": [], "outputs": {}}
            if project.stage_file(stage).is_file():
                rendered = render_stage(load_stage(project, stage))
                doc["resources"] = [
                    {"type": r.type, "name": r.name, "parent": r.parent, "inputs": r.inputs, "custom": r.custom}
                    for r in rendered.resources
                ]
                doc["outputs"] = rendered.outputs
            docs.append(doc)
    except MlinfraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    sys.stdout.write(json.dumps(docs, default=str))
