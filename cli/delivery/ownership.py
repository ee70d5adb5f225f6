"""Whose commit is on a promotion branch: mlinfra only ever replaces a branch tip it made itself.

A promotion pushes `mlinfra/<action>-<stage>-<model>-v<N>`; a re-run (after main moved) replaces the branch with a
fresh commit. If a colleague pushed to that branch meanwhile (a fix, a merge of main), replacing it would throw
their commit away. So every proposal commit carries a trailer naming its branch, and a tip is replaced only when it
is such a commit: one parent, only the stack file changed, the trailer for this branch.
"""

from __future__ import annotations

from mlinfra.git import Git, GitError

TRAILER = "Mlinfra-Proposal"


def trailer(branch: str) -> str:
    """The last line of a proposal commit's message."""
    return f"{TRAILER}: {branch}"


def foreign_tip(git: Git, tip: str, branch: str, path: str) -> str | None:
    """None when `tip` is a proposal commit mlinfra made for `branch`; else who made it, as one line."""
    try:
        message = git.run("log", "-1", "--format=%B", tip, doing=f"reading {branch}")
        parents = git.run("rev-list", "--parents", "-n", "1", tip, doing=f"reading {branch}").split()[1:]
        changed = (
            git.run("diff-tree", "--no-commit-id", "--name-only", "-r", tip, doing=f"reading {branch}").split()
            if len(parents) == 1
            else []
        )
    except GitError:
        return f"{tip[:7]} (unreadable)"
    if trailer(branch) in message.splitlines() and changed == [path]:
        return None
    return git.run("log", "-1", "--format=%h by %an <%ae> (%s)", tip, doing=f"reading {branch}")
