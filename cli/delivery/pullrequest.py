"""Promotion as a pull request: the pin on a new branch, pushed to `origin`, and a pull request opened with `gh`.

In a stage whose `mlinfra:delivery` is `pullRequest` a promotion does not edit the checkout: the pinned stack file
is built from the remote's default branch, written as a blob, and committed through a temporary index (`git
hash-object`, `read-tree`, `update-index`, `write-tree`, `commit-tree`), so the working tree, the index and the
checked-out branch stay exactly as they were. The commit is pushed to `origin` as `mlinfra/<action>-<stage>-<model>-
v<version>`; `gh pr create` opens the pull request when `gh` is on the PATH, else the branch and a compare URL are
printed. Re-running the same promotion reuses the branch (and gh reports the pull request already open).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mlinfra.git import GIT_TIMEOUT_SECONDS, Git, GitError
from mlinfra.stacks.project import Project

REMOTE = "origin"
BRANCH_PREFIX = "mlinfra/"
MAX_BODY_CHARS = 60_000  # GitHub refuses pull request bodies over 65,536 characters
_COMMITTER = {"GIT_AUTHOR_NAME": "mlinfra", "GIT_AUTHOR_EMAIL": "mlinfra@localhost"}


@dataclass(frozen=True)
class PullRequest:
    """Where a proposed pin went: its branch and commit, and the pull request (or how to open one)."""

    branch: str
    base: str
    commit: str
    remote: str
    url: str | None
    compare_url: str | None
    note: str | None

    def to_json(self) -> dict[str, Any]:
        """As printed by `--json` and stored in the audit record (camelCase keys)."""
        data = asdict(self)
        data["compareUrl"] = data.pop("compare_url")
        return data


@dataclass(frozen=True)
class Checkout:
    """The git repository holding a stack file: its top level and the file's path in it."""

    git: Git
    top: Path
    path: str  # the stack file, relative to the repository's top level, with forward slashes

    def remote_url(self) -> str:
        """Origin's URL; GitError saying how to add one when there is none."""
        try:
            return self.git.run("remote", "get-url", REMOTE, doing="reading origin")
        except GitError:
            raise GitError(
                f"{self.top} has no `{REMOTE}` remote: this stage is delivered by pull request, so the pin goes on a "
                f"branch pushed to {REMOTE}; add one (`git remote add {REMOTE} URL`)"
            ) from None


def checkout_of(project: Project, stage: str) -> Checkout:
    """The repository holding `stage`'s stack file; GitError when it is not in a git repository with an origin."""
    stack_file = project.stage_file(project.require_stage(stage)).resolve()
    git = Git(stack_file.parent)
    try:
        top = Path(git.run("rev-parse", "--show-toplevel", doing="finding the repository"))
    except GitError:
        raise GitError(
            f"{project.relative(stack_file)} is not in a git repository: stage {stage} is delivered by pull "
            "request (mlinfra:delivery: pullRequest); clone the platform repository, or set mlinfra:delivery: direct"
        ) from None
    found = Checkout(Git(top), top, stack_file.relative_to(top.resolve()).as_posix())
    found.remote_url()
    return found


def default_branch(checkout: Checkout) -> str:
    """The branch origin's HEAD names (usually main); `main` when the remote does not say."""
    listing = checkout.git.run("ls-remote", "--symref", REMOTE, "HEAD", doing=f"reading {REMOTE}'s default branch")
    match = re.search(r"^ref: refs/heads/(\S+)\s+HEAD$", listing, re.MULTILINE)
    return match.group(1) if match else "main"


def _remote_commit(checkout: Checkout, branch: str) -> str | None:
    listing = checkout.git.run("ls-remote", REMOTE, f"refs/heads/{branch}", doing=f"looking for {branch} on origin")
    return listing.split()[0] if listing else None


def _fetch(checkout: Checkout, branch: str) -> str:
    """Fetch `branch` from origin (no working tree, index or local branch touched); its commit."""
    checkout.git.run("fetch", "--quiet", "--no-tags", REMOTE, f"refs/heads/{branch}", doing=f"fetching {branch}")
    return checkout.git.run("rev-parse", "FETCH_HEAD^{commit}", doing=f"fetching {branch}")


def file_at(repo: Path, commit: str, path: str) -> bytes | None:
    """The bytes of `path` (from the repository's top level) at `commit`, or None when it has no such file."""
    git = shutil.which("git") or "git"
    done = subprocess.run(
        [git, "cat-file", "blob", f"{commit}:{path}"],
        cwd=repo,
        capture_output=True,
        timeout=GIT_TIMEOUT_SECONDS,
        check=False,
    )
    return done.stdout if done.returncode == 0 else None


def _identity(git: Git) -> dict[str, str]:
    """The committer: GIT_AUTHOR_*/GIT_COMMITTER_* or git's configured user, else `mlinfra` for what is unset."""
    if git.ok("config", "user.email"):
        return {}
    fallback = {
        **_COMMITTER,
        "GIT_COMMITTER_NAME": _COMMITTER["GIT_AUTHOR_NAME"],
        "GIT_COMMITTER_EMAIL": _COMMITTER["GIT_AUTHOR_EMAIL"],
    }
    return {key: value for key, value in fallback.items() if not os.environ.get(key)}


def commit_file(checkout: Checkout, parent: str, path: str, content: bytes, message: str) -> str:
    """A commit on top of `parent` whose only change is `path` = `content`; the checkout is not touched.

    Plumbing on a temporary index: the real index, working tree and HEAD stay as they were.
    """
    git = checkout.git
    blob = git.run("hash-object", "-w", "--stdin", stdin=content, doing="writing the stack file blob")
    listed = git.run("ls-tree", parent, "--", path, doing="reading the stack file's mode")
    mode = listed.split()[0] if listed else "100644"
    with tempfile.TemporaryDirectory(prefix="mlinfra-index-") as scratch:
        env = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
        git.run("read-tree", parent, env=env, doing="preparing the commit")
        git.run("update-index", "--add", "--cacheinfo", f"{mode},{blob},{path}", env=env, doing="preparing the commit")
        tree = git.run("write-tree", env=env, doing="preparing the commit")
    return git.run(
        "commit-tree", tree, "-p", parent, "-F", "-", stdin=message.encode(), env=_identity(git), doing="committing"
    )


def compare_url(remote_url: str, base: str, branch: str) -> str | None:
    """The forge's page for opening a pull request from `branch` into `base` (GitHub URL shapes), else None."""
    match = re.match(r"^(?:https://|ssh://git@|git@)([^/:]+)[/:]([^/]+)/(.+?)(?:\.git)?/?$", remote_url)
    if not match or "." not in match.group(1):
        return None
    host, owner, repo = match.groups()
    return f"https://{host}/{owner}/{repo}/compare/{base}...{branch}?expand=1"


def branch_name(action: str, stage: str, model: str, version: int) -> str:
    """`mlinfra/promote-prod-churn-v7`: one branch per proposed pin, so a re-run finds its own."""
    return f"{BRANCH_PREFIX}{action}-{stage}-{model}-v{version}"


def propose(
    checkout: Checkout,
    *,
    branch: str,
    new_text: bytes,
    base: str,
    parent: str,
    title: str,
    body: str,
    local_remote: bool = False,
) -> PullRequest:
    """Put `new_text` at the stack file's path on `branch` (from `parent`, origin's `base`), push, open the PR."""
    remote_url = checkout.remote_url()
    existing = _remote_commit(checkout, branch)
    commit: str | None = None
    if existing is not None:
        fetched = _fetch(checkout, branch)
        if file_at(checkout.top, fetched, checkout.path) == new_text:
            commit = fetched  # a re-run: the branch already carries this pin
    if commit is None:
        commit = commit_file(checkout, parent, checkout.path, new_text, f"{title}\n\n{_trailer(body)}")
        lease = f"--force-with-lease=refs/heads/{branch}:{existing or ''}"
        checkout.git.run(
            "push", "--quiet", lease, REMOTE, f"{commit}:refs/heads/{branch}", doing=f"pushing {branch} to {REMOTE}"
        )
    compare = compare_url(remote_url, base, branch)
    url, note = None, None
    if local_remote:
        note = (
            f"local mode's scratch remote has no pull requests; to accept it: git -C {checkout.top} pull --no-edit "
            f"{REMOTE} {branch} && git -C {checkout.top} push {REMOTE} HEAD:{base}"
        )
    elif shutil.which("gh") is None:
        note = "gh is not installed: open the pull request " + (f"at {compare}" if compare else f"from {branch}")
    else:
        url, note = _gh_pr_create(checkout, base=base, branch=branch, title=title, body=body)
    return PullRequest(branch, base, commit, remote_url, url, compare, note)


def _trailer(body: str) -> str:
    """The commit message's body: the first paragraph of the pull request body (who asked, and why)."""
    return body.split("\n\n", 1)[0]


def _gh_pr_create(
    checkout: Checkout, *, base: str, branch: str, title: str, body: str
) -> tuple[str | None, str | None]:
    """`gh pr create`; (url, None), or (None, why not). An open pull request for the branch is found, not an error."""
    gh = shutil.which("gh") or "gh"
    done = subprocess.run(
        [gh, "pr", "create", "--base", base, "--head", branch, "--title", title, "--body-file", "-"],
        cwd=checkout.top,
        input=body[:MAX_BODY_CHARS].encode(),
        capture_output=True,
        timeout=GIT_TIMEOUT_SECONDS,
        check=False,
    )
    out = done.stdout.decode(errors="replace") + "\n" + done.stderr.decode(errors="replace")
    found = re.findall(r"https?://\S+/pull/\d+", out)
    if found:
        return found[-1], None
    lines = [line.strip() for line in done.stderr.decode(errors="replace").splitlines() if line.strip()]
    return None, f"gh pr create failed ({lines[-1] if lines else f'exit {done.returncode}'}); open it by hand"


def prepare(checkout: Checkout) -> tuple[str, str]:
    """Origin's default branch and its current commit, fetched (nothing in the checkout changes)."""
    base = default_branch(checkout)
    return base, _fetch(checkout, base)


# The pull request's body ------------------------------------------------------------------------------------------


def _render(project: Project, stage: str, text: bytes, source: str) -> Any:
    from ruamel.yaml import YAML

    from mlinfra.stacks.files import raw_config_of
    from mlinfra.stacks.render import render

    raw = raw_config_of(project, YAML(typ="safe", pure=True).load(text.decode("utf-8")), source)
    return render(raw, project=project.name, stage=stage, source=source)


def preview_diff(
    project: Project, stage: str, before: bytes, after: bytes, *, source: str, base: str | None = None
) -> str:
    """What applying `after` over `before` changes, as Markdown: both stack files rendered offline and compared.

    `base` labels the `before` side (e.g. `main (1a2b3c4)`).
    """
    import importlib

    old = _render(project, stage, before, source)
    new = _render(project, stage, after, source)
    try:  # `mlinfra preview --diff`'s engine (cli/stacks/diff.py), when this checkout has it
        stackdiff: Any = importlib.import_module("mlinfra.stacks.diff")
    except ImportError:
        return _resource_diff(old, new)
    return str(stackdiff.diff_rendered(old, new, base=base).markdown())


def _resource_diff(old: Any, new: Any) -> str:
    """Resources added, removed and changed (with the inputs that change) between two renders."""
    before = {(r.type, r.name): r for r in old.resources}
    after = {(r.type, r.name): r for r in new.resources}
    lines = []
    for key in sorted(after.keys() - before.keys()):
        lines.append(f"- **add** `{key[0]}` {key[1]}")
    for key in sorted(before.keys() - after.keys()):
        lines.append(f"- **remove** `{key[0]}` {key[1]}")
    for key in sorted(before.keys() & after.keys()):
        changed = sorted(
            k
            for k in before[key].inputs.keys() | after[key].inputs.keys()
            if before[key].inputs.get(k) != after[key].inputs.get(k)
        )
        if changed:
            lines.append(f"- **change** `{key[0]}` {key[1]}: {', '.join(changed)}")
    return "\n".join(lines) or "No resource changes."


def pull_request_body(
    *,
    summary: str,
    asked: Mapping[str, Any],
    gates: list[Mapping[str, Any]],
    diff: str,
    stage: str,
) -> str:
    """Markdown: what is proposed and who asked, the gate results, and what the apply will change."""
    rows = "\n".join(f"| {g['gate']} | {'pass' if g['passed'] else 'FAIL (forced)'} | {g['reason']} |" for g in gates)
    who = asked.get("actor") or "unknown"
    user = f" (user `{asked['user']}`)" if asked.get("user") else ""
    role = f", acting as `{asked['role']}`" if asked.get("role") else ""
    reason = asked.get("reason") or "no reason given"
    if asked.get("requestedBy"):
        user = f" (dispatched by @{asked['requestedBy']} in {asked.get('runUrl')})"
    body = (
        f"{summary}\n\nAsked by `{who}`{user}{role}: {reason}\n\n"
        f"### Gates\n\n| gate | result | reason |\n|---|---|---|\n{rows or '| - | - | no gates |'}\n\n"
        f"### What the apply of `{stage}` will change (offline render)\n\n{diff}\n\n"
        f"Merging does not deploy by itself: CI applies `{stage}` and then records the deployment "
        f"(`mlinfra record-deployment`), which moves the stage pointer. Until then `mlinfra status` shows the "
        "version as promoted, not deployed."
    )
    if len(body) > MAX_BODY_CHARS:
        body = body[: MAX_BODY_CHARS - 40] + "\n\n(truncated: run `mlinfra preview --diff`)"
    return body
