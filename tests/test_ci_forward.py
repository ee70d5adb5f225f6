""".ci/forward.py: a stacks run plans and applies only main's head (or a commit no newer commit supersedes).

Real git repositories: main moves by commits, and the script runs as the workflow runs it, from the repository's
top level, reading the paths filter of the shipped stacks.yml.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / ".ci" / "forward.py"
WORKFLOW = REPO / ".github" / "workflows" / "stacks.yml"


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def commit(repo: Path, path: str, text: str) -> str:
    target = repo / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    git(repo, "add", "-A")
    git(repo, "-c", "user.email=a@example.com", "-c", "user.name=A", "commit", "--quiet", "-m", path)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "platform"
    root.mkdir()
    git(root, "init", "--quiet", "--initial-branch=main")
    (root / ".github" / "workflows").mkdir(parents=True)
    shutil.copy(WORKFLOW, root / ".github" / "workflows" / "stacks.yml")
    commit(root, "stacks/Pulumi.prod.yaml", "config: {}\n")
    return root


def forward(repo: Path, sha: str, head: str = "main") -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--commit", sha, "--head", head],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    return done.returncode, done.stderr.strip()


def test_main_head_goes_on(repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD")
    assert forward(repo, head) == (0, f"{head[:12]} is main's head")


def test_an_older_commit_superseded_by_a_stack_change_is_refused_naming_both(repo: Path) -> None:
    old = commit(repo, "stacks/Pulumi.prod.yaml", "config: {a: 1}\n")
    new = commit(repo, "stacks/Pulumi.prod.yaml", "config: {a: 2}\n")
    code, line = forward(repo, old)
    assert code == 3
    assert line == (
        f"error: refused: {old[:12]} is no longer main's head ({new[:12]}, 1 commit(s) newer, changing "
        f"stacks/Pulumi.prod.yaml); the run of {new[:12]} applies it"
    )


def test_newer_commits_outside_the_paths_filter_do_not_supersede(repo: Path) -> None:
    old = commit(repo, "infra/program.py", "x = 1\n")
    commit(repo, "docs/delivery.md", "# docs\n")
    commit(repo, "README.md", "# readme\n")
    code, line = forward(repo, old)
    assert code == 0
    assert "2 commit(s) after" in line and "none changing what deploys" in line


@pytest.mark.parametrize("path", ["infra/x.py", "cli/stacks/edit.py", "Pulumi.yaml", ".pulumi-version",
                                  "requirements/deploy.txt", ".github/workflows/stacks.yml"])  # fmt: skip
def test_each_deployed_path_supersedes(repo: Path, path: str) -> None:
    old = git(repo, "rev-parse", "HEAD")
    before = (repo / path).read_text() if (repo / path).exists() else ""
    commit(repo, path, before + "# changed\n")
    assert forward(repo, old)[0] == 3


def test_a_commit_off_main_is_refused(repo: Path) -> None:
    git(repo, "checkout", "--quiet", "-b", "side")
    side = commit(repo, "stacks/Pulumi.prod.yaml", "config: {side: 1}\n")
    git(repo, "checkout", "--quiet", "main")
    code, line = forward(repo, side)
    assert code == 3 and line.startswith(f"error: refused: {side[:12]} is not on main")


def test_an_unknown_head_is_an_error_not_a_pass(repo: Path) -> None:
    code, line = forward(repo, "HEAD", "no-such-ref")
    assert (code, line) == (1, "error: no-such-ref: no such commit here (fetch main first)")


def test_the_workflow_paths_cover_what_an_apply_reads() -> None:
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import forward as script  # type: ignore[import-not-found]
    finally:
        sys.path.pop(0)
    paths = script.deploy_paths(WORKFLOW)
    for needed in ("stacks/**", "infra/**", "cli/**", "Pulumi.yaml", ".pulumi-version", "requirements/**",
                   ".github/workflows/stacks.yml"):  # fmt: skip
        assert needed in paths
