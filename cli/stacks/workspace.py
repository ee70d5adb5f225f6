"""Local mode stays local: the stack files it pins live in a scratch git repository under `.mlinfra/local/`.

Pins written in local mode name the emulator's buckets, so they must never reach the real `stacks/`. In local mode
the project's stacks directory is `.mlinfra/local/workspace/<stacks>/`: a git repository created on first use from
the checkout's stack files (committed on `main`), whose `origin` is a bare repository beside it
(`.mlinfra/local/remote.git`), so stages delivered by pull request work the same way offline (their branches go to
that remote; point `origin` at any other git remote to try a forge). The emulator keeps its state in memory only: a
registry bucket that is gone while the workspace says it was bootstrapped means the emulator was restarted, and
`mlinfra local bootstrap` then starts the workspace afresh from `stacks/`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from mlinfra.errors import MlinfraError

LOCAL_DIR = Path(".mlinfra") / "local"
WORKSPACE = LOCAL_DIR / "workspace"
SCRATCH_REMOTE = LOCAL_DIR / "remote.git"
MARKER = LOCAL_DIR / "workspace.json"


def workspace_stacks(root: Path, stacks_dir: Path) -> Path:
    """Local mode's stacks directory for a project whose real stack files are in `stacks_dir`.

    Created on first use; a real stack file edited since is copied over again, keeping the scratch pins of the
    models it still declares (so the scratch follows your config, and only the pins stay local).
    """
    relative = stacks_dir.resolve().relative_to(root.resolve())
    target = root / WORKSPACE / relative
    if not (root / MARKER).is_file() or not target.is_dir():
        seed(root, stacks_dir)
    else:
        _sync(root, stacks_dir, target)
    return target


def _stack_files(stacks_dir: Path) -> list[Path]:
    """The real stack files (a directory named like one is not; `mlinfra` reports it where it is used)."""
    return sorted(p for p in stacks_dir.glob("Pulumi.*.yaml") if p.is_file())


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_marker(root: Path) -> dict[str, Any]:
    try:
        data = json.loads((root / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_marker(root: Path, data: dict[str, Any]) -> None:
    path = root / MARKER
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)


def _sync(root: Path, stacks_dir: Path, target: Path) -> None:
    from mlinfra.stacks.yamledit import pins_of, with_pins
    from mlinfra.stacks.yamlio import read_yaml

    marker = _read_marker(root)
    synced: dict[str, str] = marker.get("synced", {})
    changed = False
    for real in _stack_files(stacks_dir):
        data = real.read_bytes()
        if synced.get(real.name) == _digest(data):
            continue
        # A broken real file is reported as itself, not as the scratch copy.
        read_yaml(real, real.relative_to(root).as_posix())
        scratch = target / real.name
        pins = pins_of(scratch.read_text(encoding="utf-8")) if scratch.is_file() else {}
        scratch.write_text(with_pins(data.decode("utf-8"), pins), encoding="utf-8")
        synced[real.name] = _digest(data)
        changed = True
    if changed:
        _write_marker(root, {**marker, "synced": synced})


def seed(root: Path, stacks_dir: Path) -> None:
    """(Re)create the workspace from the real stack files, committed on main and pushed to the scratch remote."""
    from mlinfra.git import Git
    from mlinfra.stacks.yamlio import read_yaml

    workspace, remote = root / WORKSPACE, root / SCRATCH_REMOTE
    relative = stacks_dir.resolve().relative_to(root.resolve())
    for stack_file in _stack_files(stacks_dir):
        read_yaml(stack_file, stack_file.relative_to(root).as_posix())  # a broken file is named as itself
    shutil.rmtree(workspace, ignore_errors=True)
    shutil.rmtree(remote, ignore_errors=True)
    (workspace / relative).mkdir(parents=True, exist_ok=True)
    for stack_file in _stack_files(stacks_dir):
        shutil.copy2(stack_file, workspace / relative / stack_file.name)
    remote.mkdir(parents=True)
    identity = ["-c", "user.name=mlinfra", "-c", "user.email=mlinfra@localhost"]
    try:
        Git(remote).run("init", "--quiet", "--bare", "--initial-branch=main", doing="creating local mode's remote")
        git = Git(workspace)
        git.run("init", "--quiet", "--initial-branch=main", doing="creating local mode's workspace")
        git.run("add", "--all", doing="creating local mode's workspace")
        git.run(*identity, "commit", "--quiet", "-m", "Stack files copied for local mode", doing="seeding")
        git.run("remote", "add", "origin", str(remote.resolve()), doing="seeding local mode's workspace")
        git.run("push", "--quiet", "origin", "main", doing="seeding local mode's remote")
    except MlinfraError:
        shutil.rmtree(workspace, ignore_errors=True)
        raise
    synced = {p.name: _digest(p.read_bytes()) for p in _stack_files(stacks_dir)}
    _write_marker(root, {"source": relative.as_posix(), "bootstrapped": [], "synced": synced})


NOTICE = (
    f"local mode: the stack files are a scratch copy in {WORKSPACE.as_posix()}/ (origin "
    f"{SCRATCH_REMOTE.as_posix()}); your own stack files are never changed"
)


def is_scratch_remote(root: Path, url: str) -> bool:
    """Whether `url` is local mode's own bare remote (which has no pull requests to open)."""
    return Path(url).resolve() == (root / SCRATCH_REMOTE).resolve() if url.startswith("/") else False


def mark_bootstrapped(root: Path, stages: list[str]) -> None:
    """Remember that these stages' registries exist in the emulator, to tell a restarted emulator later."""
    data = _read_marker(root)
    if data:
        data["bootstrapped"] = sorted(set(data.get("bootstrapped", [])) | set(stages))
        _write_marker(root, data)


def after_bootstrap(root: Path, stacks_dir: Path, created_bucket: dict[str, bool]) -> None:
    """After `mlinfra local bootstrap`: start the workspace afresh if the emulator was restarted.

    A registry re-created for a stage bootstrapped before means the emulator lost its state, so the workspace's
    pins name versions it no longer has.
    """
    if any(created and was_bootstrapped(root, stage) for stage, created in created_bucket.items()):
        seed(root, stacks_dir)
    mark_bootstrapped(root, list(created_bucket))


def was_bootstrapped(root: Path, stage: str) -> bool:
    """Whether `mlinfra local bootstrap` created this stage's registry for the current workspace."""
    return stage in _read_marker(root).get("bootstrapped", [])


def missing_registry_note(root: Path, stage: str, exc: Exception) -> str:
    """`status`'s note for a stage whose registry bucket is missing: a restarted emulator says so plainly."""
    from mlinfra.aws import local_mode

    if local_mode() and was_bootstrapped(root, stage):
        return RESET_NOTE
    return str(exc).split(":")[0]


RESET_NOTE = (
    "the emulator was restarted and lost its state (moto keeps it in memory only): run "
    "`mlinfra local bootstrap --all`, which also starts a fresh scratch copy of the stacks, then register again"
)
