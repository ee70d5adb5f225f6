"""git run as a subprocess in one repository, with one-line errors: shared by stack delivery and local mode."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from mlinfra.errors import MlinfraError

GIT_TIMEOUT_SECONDS = 120


# What a server prints while it works, not why it refused.
_PROGRESS = re.compile(r"^(Enumerating|Counting|Compressing|Total|Resolving|Writing|Delta) ")
REMOTE_REASON_CHARS = 500


def failure_reason(stderr: str) -> str:
    """Git's failure as one line: its `! [rejected]` line (else its last line), with the server's `remote:` lines.

    A push a server refuses (branch protection, a ruleset, a pre-receive hook) says why only in `remote:` lines;
    git's own last line ("failed to push some refs") does not.
    """
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    remote = [line.removeprefix("remote:").strip() for line in lines if line.startswith("remote:")]
    remote = [line for line in remote if line and not _PROGRESS.match(line)]
    rejected = [line for line in lines if line.startswith("! [")]
    last = rejected[-1] if rejected else (lines[-1] if lines else "")
    if remote:
        said = " ".join(remote)
        if len(said) > REMOTE_REASON_CHARS:
            said = said[: REMOTE_REASON_CHARS - 3] + "..."
        return f"{last} (remote: {said})"
    return last


class GitError(MlinfraError):
    """Raised when a git command fails; the message is git's last line and what was being done."""


class Git:
    """git run in one repository, with one-line errors."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd

    def run(self, *args: str, stdin: bytes | None = None, env: Mapping[str, str] | None = None, doing: str) -> str:
        """`git ARGS` in the repository; its stdout (stripped). GitError names what was being done."""
        git = shutil.which("git")
        if git is None:
            raise GitError(f"{doing}: git is not installed; install git and run again")
        full_env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", **(env or {})}
        try:
            done = subprocess.run(
                [git, *args],
                cwd=self.cwd,
                input=stdin,
                capture_output=True,
                env=full_env,
                timeout=GIT_TIMEOUT_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise GitError(f"{doing}: git {args[0]} did not finish within {GIT_TIMEOUT_SECONDS} s") from None
        if done.returncode != 0:
            reason = failure_reason(done.stderr.decode(errors="replace"))
            raise GitError(f"{doing}: {reason or f'git {args[0]} exited {done.returncode}'}")
        return done.stdout.decode(errors="replace").strip()

    def ok(self, *args: str) -> bool:
        """Whether `git ARGS` succeeds (for probes)."""
        try:
            self.run(*args, doing="probe")
        except GitError:
            return False
        return True
