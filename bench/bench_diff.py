"""`mlinfra preview --diff` against a single `mlinfra preview` of the same stacks (limit: under 2x), measured in a
temporary git repository holding this checkout's program and stacks, with a pin changed in the working tree: once
with only the stack file changed (a promotion; the base renders in-process) and once with a program file changed
too (the base's tree renders in a child process, alongside the working tree's render).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import BIN, REPO

COPIED = ("Pulumi.yaml", "pyproject.toml", "stacks", "infra", "model_templates", "drift")
REPEAT = 5
LIMIT = 2.0


def _git(root: Path, *args: str) -> None:
    env = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "b@example.com", "GIT_COMMITTER_NAME": "bench"}
    env |= {"GIT_COMMITTER_EMAIL": "b@example.com", "PATH": "/usr/bin:/bin", "HOME": str(root)}
    subprocess.run(["git", *args], cwd=root, env=env, check=True, capture_output=True)


def _repository(into: Path) -> Path:
    from ruamel.yaml import YAML

    from tests.builders import pin

    root = into / "platform"
    root.mkdir()
    for name in COPIED:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, root / name)
    _git(root, "init", "-q", "-b", "main")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "base")
    path = root / "stacks" / "Pulumi.staging.yaml"
    yaml = YAML()
    data = yaml.load(path.read_text())
    data["config"]["mlinfra:models"] = {"churn": {"pinned": pin(version=4, stage="staging")}}
    with path.open("w") as handle:
        yaml.dump(data, handle)
    return root


def _run(root: Path, *args: str) -> None:
    subprocess.run([str(BIN / "mlinfra"), *args], cwd=root, check=True, capture_output=True)


def _timed(root: Path, *args: str) -> float:
    start = time.perf_counter()
    _run(root, *args)
    return time.perf_counter() - start


def _interleaved(root: Path, scope: tuple[str, ...]) -> tuple[float, float]:
    """Best-of-REPEAT times of the single preview and of the diff, run alternately so both see the same load.

    The best time estimates each command's own cost on a machine other processes share; a median would mostly
    measure the neighbours.
    """
    single, diff = [], []
    for _ in range(REPEAT):
        single.append(_timed(root, "preview", *scope))
        diff.append(_timed(root, "preview", "--diff", "--base", "main", *scope))
    return min(single), min(diff)


def main() -> bool:
    ok = True
    with tempfile.TemporaryDirectory(prefix="mlinfra-bench-diff-") as tmp:
        root = _repository(Path(tmp))
        for changed in ("stack file", "stack file + program"):
            if changed != "stack file":
                common = root / "infra" / "components" / "common.py"
                common.write_text(common.read_text() + "\n# changed\n")
            for scope in (("--stack", "staging"), ("--all",)):
                _run(root, "preview", *scope)  # warm the file cache
                single, diff = _interleaved(root, scope)
                ratio = diff / single
                within = ratio < LIMIT
                ok &= within
                shown = " ".join(scope)
                print(
                    f"mlinfra preview --diff {shown}, {changed} changed (best of {REPEAT}): {diff:.2f}s  vs "
                    f"mlinfra preview {shown}: {single:.2f}s  ratio {ratio:.2f} (limit < {LIMIT:g}) "
                    f"{'OK' if within else 'OVER'}"
                )
    return ok


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
