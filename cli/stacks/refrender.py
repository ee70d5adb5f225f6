"""Render a stack as of a git ref: that commit's whole tree, its program imported in a separate process.

The tree at the ref is written to a temporary folder with `git archive` (the working tree and the index are never
touched). A child process then imports that tree's Pulumi program (`mlinfra_infra`, and the templates and packages
it uses, under the import names the tree's pyproject.toml gives them) and renders it under the mock runtime with this
checkout's renderer, so two versions of the program never share a process. Forked after the caller's own render, the
child reuses the Pulumi SDK and provider modules already imported, which are most of a render's cost.

When only stack files changed since the base, no child is needed: `render_stack_file_at` renders the base's stack
file with this program.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlinfra.errors import BadInputError, MlinfraError

if TYPE_CHECKING:
    from mlinfra.stacks.project import Project
    from mlinfra.stacks.render import RenderedStack

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
    from mlinfra.stacks.files import Stage, raw_config_of, validate
    from mlinfra.stacks.render import RenderedStack, render_stage
    from mlinfra.stacks.yamlio import read_yaml

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


def render_tree_at(project: Project, stages: list[str], commit: str, label: str) -> dict[str, RenderedStack]:
    """Stage -> the stack as of `commit`, rendered from that commit's whole tree in a child process.

    The child is forked from this process where fork exists, after the caller's own render: it inherits the Pulumi
    SDK and the provider modules already imported (most of a render's cost), drops this checkout's program modules
    and imports the base tree's instead, so the two program versions still never share a process. Elsewhere a fresh
    Python process does the same. A stage absent at `commit` renders empty. MlinfraError, with the child's exit code
    and naming the base, when the base does not render.
    """
    workdir = Path(tempfile.mkdtemp(prefix="mlinfra-base-"))
    try:
        root = _materialize(project, commit, workdir)
        out, err = workdir / "render.json", workdir / "render.err"
        child = _forked if hasattr(os, "fork") else _spawned  # a fresh interpreter where fork does not exist
        code = child(root, stages, out, err)
        if code != 0:
            message = err.read_text(encoding="utf-8") if err.exists() else ""
            line = (message.strip().splitlines() or ["the render failed"])[-1].removeprefix("error: ")
            error = MlinfraError(f"base {label} ({commit[:7]}): {line}")
            error.exit_code = code if code in (1, 2) else 1
            raise error
        return _stacks_from_json(out.read_text(encoding="utf-8"))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _stacks_from_json(text: str) -> dict[str, RenderedStack]:
    from mlinfra.stacks.render import RenderedResource, RenderedStack

    stacks = {}
    for doc in json.loads(text):
        resources = [RenderedResource(**r) for r in doc["resources"]]
        stacks[doc["stack"]] = RenderedStack(stack=doc["stack"], resources=resources, outputs=doc["outputs"])
    return stacks


def _forked(root: Path, stages: list[str], out: Path, err: Path) -> int:
    """Render in a forked child; its exit code. The child writes only to `out` and `err`, never to our streams."""
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 1
        try:
            code = _render_tree(root, stages, out, err, fresh=True)
        except BaseException as exc:  # noqa: BLE001 - whatever happens, the child reports and exits
            err.write_text(f"error: {type(exc).__name__}: {exc}\n", encoding="utf-8")
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _spawned(root: Path, stages: list[str], out: Path, err: Path) -> int:
    code = "import sys; from mlinfra.stacks.refrender import _worker; _worker()"
    done = subprocess.run(
        [sys.executable, "-c", code, str(root), str(out), str(err), *stages], capture_output=True, check=False
    )
    return done.returncode


def _render_tree(root: Path, stages: list[str], out: Path, err: Path, *, fresh: bool) -> int:
    """In the child: import the tree's program (not this checkout's) and render `stages` into `out` as JSON."""
    import asyncio
    import importlib

    from mlinfra.stacks.files import load_stage
    from mlinfra.stacks.project import Project
    from mlinfra.stacks.render import render_stage

    if fresh:
        # Forget this checkout's program and give the Pulumi SDK a new event loop (the parent's executor threads
        # do not survive a fork).
        ours = set(_package_dirs(root)) | {"mlinfra_infra"}
        for name in [m for m in sys.modules if m.split(".")[0] in ours]:
            del sys.modules[name]
        asyncio.set_event_loop(asyncio.new_event_loop())
    sys.path.insert(0, str(root / IMPORT_DIR))
    importlib.invalidate_caches()
    project = Project(root)
    docs: list[dict[str, Any]] = []
    try:
        for stage in stages:
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
        err.write_text(f"error: {exc}\n", encoding="utf-8")
        return exc.exit_code
    out.write_text(json.dumps(docs, default=str), encoding="utf-8")
    return 0


def render_at_ref(project: Project, stage: str, ref: str | None = None) -> RenderedStack:
    """The stack of `stage` as of git `ref` (default: the merge base with main); empty if the stage did not exist."""
    label, commit = resolve_base(project, ref)
    return render_tree_at(project, [stage], commit, label)[stage]


def _worker() -> None:
    """A fresh Python process: argv = root, out, err, stages..."""
    root, out, err, *stages = sys.argv[1:]
    raise SystemExit(_render_tree(Path(root), stages, Path(out), Path(err), fresh=False))
