"""`mlinfra local merge BRANCH`: accept a local-mode pull request as GitHub would, then record its apply as CI would.

Local mode's stages delivered by pull request push their pin to a branch of the scratch remote
(`.mlinfra/local/remote.git`); there is no forge to merge it. This merges the branch into the remote's main without
touching the workspace's files first (a fast-forward when main has not moved, else a merge commit written with
`git merge-tree --write-tree`, so a conflict is reported before anything changes; when two promotions proposed from
the same main pinned neighbouring lines of one stack file, the branch's pins are set again on main's file, as
promoting again would rebuild the branch), pushes main, brings the
workspace's checkout up to it (a fast-forward that leaves its uncommitted direct-stage pins alone) and records the
deployment of every stage whose stack file the merge changed, as the apply job would after `pulumi up`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from mlinfra.errors import BadInputError, MlinfraError
from mlinfra.git import Git, GitError
from mlinfra.stacks.project import Project

REMOTE = "origin"
MAIN = "main"
_IDENTITY = ["-c", "user.name=mlinfra", "-c", "user.email=mlinfra@localhost"]


@dataclass
class Merged:
    """What `local merge` did: the branch, main's new commit, how, and the deployments it recorded."""

    branch: str
    commit: str
    how: str  # "fast-forward", "merge" or "already merged"
    stages: list[str] = field(default_factory=list)
    deployments: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """As `local merge --json` prints it."""
        return {
            "branch": self.branch,
            "commit": self.commit,
            "how": self.how,
            "stages": self.stages,
            "deployments": self.deployments,
        }


def _workspace(project: Project) -> Git:
    from mlinfra.stacks.workspace import WORKSPACE, is_scratch_remote

    top = project.root / WORKSPACE
    if not (top / ".git").exists():
        raise BadInputError(
            f"no local-mode workspace in {WORKSPACE.as_posix()}/: run `mlinfra local up` and promote first"
        )
    git = Git(top)
    url = git.run("remote", "get-url", REMOTE, doing="reading the workspace's origin")
    if not is_scratch_remote(project.root, url):
        raise BadInputError(
            f"the workspace's origin is {url}, not local mode's scratch remote: merge the pull request on that forge"
        )
    return git


def _branches(git: Git) -> list[str]:
    out = git.run("for-each-ref", "--format=%(refname:short)", f"refs/remotes/{REMOTE}/", doing="listing branches")
    prefix = f"{REMOTE}/"
    return sorted(b[len(prefix) :] for b in out.splitlines() if b.startswith(prefix) and b != f"{prefix}{MAIN}")


def merge(project: Project, branch: str) -> Merged:
    """Merge `branch` into the scratch remote's main, update the workspace, record the changed stages' deployments."""
    git = _workspace(project)
    git.run("fetch", "--quiet", "--prune", REMOTE, doing="fetching local mode's remote")
    name = branch.removeprefix(f"{REMOTE}/")
    branches = _branches(git)
    if name not in branches:
        listed = ", ".join(branches) or "none"
        raise BadInputError(f"no branch {name!r} on local mode's remote (branches: {listed})")
    base = git.run("rev-parse", f"{REMOTE}/{MAIN}", doing="reading main")
    head = git.run("rev-parse", f"{REMOTE}/{name}", doing=f"reading {name}")
    if git.ok("merge-base", "--is-ancestor", head, base):
        how, new = "already merged", base
    elif git.ok("merge-base", "--is-ancestor", base, head):
        how, new = "fast-forward", head
    else:
        try:
            how, new = "merge", _merge_commit(git, base, head, name)
        except BadInputError:
            # Both sides pinned the same stack file (two promotions proposed from one main): the branch's pins are
            # set again on main's file, as promoting again would rebuild the branch.
            repinned = _repin_on_main(git, base, head, name)
            if repinned is None:
                raise
            how, new = "pins re-applied on main", repinned
    if new != base:
        git.run("push", "--quiet", REMOTE, f"{new}:refs/heads/{MAIN}", doing="pushing main to local mode's remote")
        git.run("fetch", "--quiet", REMOTE, doing="fetching local mode's remote")
    _update_checkout(git, new)
    stages = _changed_stages(project, git, base, new) if new != base else []
    result = Merged(branch=name, commit=new, how=how, stages=stages)
    from mlinfra.registry.deployments import record_deployment

    for stage in stages:
        result.deployments.append(record_deployment(project, stage, commit=None, run_url=None))
    return result


def _merge_commit(git: Git, base: str, head: str, name: str) -> str:
    """A merge commit of `head` into `base`, written without a checkout; BadInputError naming conflicting files."""
    try:
        tree = git.run("merge-tree", "--write-tree", "--name-only", base, head, doing=f"merging {name}")
    except GitError:
        conflicted = _conflicts(git, base, head)
        raise BadInputError(
            f"{name} conflicts with main in {', '.join(conflicted) or 'the stack files'}: main moved since the branch "
            "was made; promote again (the branch is rebuilt on main), then merge it"
        ) from None
    tree = tree.splitlines()[0]
    return git.run(
        *_IDENTITY, "commit-tree", tree, "-p", base, "-p", head, "-m", f"Merge {name}", doing=f"merging {name}"
    )


def _repin_on_main(git: Git, base: str, head: str, name: str) -> str | None:
    """A commit on `base` setting the pins `head` changed, file by file; None if it changed anything but pins."""
    from mlinfra.delivery.pullrequest import Checkout, commit_file
    from mlinfra.stacks.yamledit import pins_of, with_pins

    fork = git.run("merge-base", base, head, doing=f"merging {name}")
    commit = base
    for path in git.run("diff", "--name-only", fork, head, doing=f"merging {name}").splitlines():
        try:
            before = git.run("show", f"{fork}:{path}", doing="reading the stack file")
            after = git.run("show", f"{head}:{path}", doing="reading the stack file")
            current = git.run("show", f"{commit}:{path}", doing="reading the stack file")
        except GitError:
            return None  # a file added or removed on one side: not a pin change
        old, new = pins_of(before), pins_of(after)
        if set(old) - set(new):
            return None  # a pin removed: nothing with_pins can express
        moved = {model: pin for model, pin in new.items() if old.get(model) != pin}
        text = with_pins(current + "\n", moved)
        if not moved or pins_of(text) != {**pins_of(current), **moved}:
            return None
        commit = commit_file(
            Checkout(git, git.cwd, path), commit, path, text.encode(), f"Merge {name} (pins re-applied)"
        )
    return commit


def _conflicts(git: Git, base: str, head: str) -> list[str]:
    import subprocess

    done = subprocess.run(
        ["git", "merge-tree", "--write-tree", "--name-only", base, head],
        cwd=git.cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = done.stdout.splitlines()[1:]
    return sorted({line for line in lines if line and not line.startswith(("Auto-merging", "CONFLICT"))})


def _update_checkout(git: Git, commit: str) -> None:
    """Fast-forward the workspace's main to `commit`; its uncommitted pins of other stack files stay as they are."""
    current = git.run("rev-parse", "HEAD", doing="reading the workspace")
    if current == commit or git.ok("merge-base", "--is-ancestor", commit, current):
        return
    try:
        git.run("merge", "--quiet", "--ff-only", commit, doing="updating the workspace")
    except GitError as exc:
        raise MlinfraError(
            f"main on local mode's remote now holds the merge, but the workspace could not follow it ({exc}); "
            f"commit or discard its changes in {git.cwd} (git -C {git.cwd} status), then run the merge again"
        ) from None


def _changed_stages(project: Project, git: Git, base: str, new: str) -> list[str]:
    changed = git.run("diff", "--name-only", base, new, doing="listing what the merge changed").splitlines()
    stages = []
    for path in changed:
        name = PurePosixPath(path).name
        if name.startswith("Pulumi.") and name.endswith(".yaml") and name.count(".") == 2:
            stage = name.split(".")[1]
            if stage in project.stages():
                stages.append(stage)
    return sorted(set(stages), key=project.stages().index)
