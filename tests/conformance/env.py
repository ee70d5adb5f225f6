"""The conformance environment: a virtual environment of the tests' own with the containers' serving toolkits.

`python tests/conformance/env.py` (run by `make conformance`, which `make test` runs) and the tests' session fixture
call `ensure()`: it builds build/conformance/ once (about 20 s with pip's cache warm, more on a cold cache) and
returns at once while requirements.txt and the project's environment are unchanged. The environment sees the project
environment's packages behind its own (a .pth file), so the toolkits' pinned web stack wins and the model libraries
are the very ones the tests train with. Standard library only: it runs before anything else is importable.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
VENV = ROOT / "build" / "conformance"
REQUIREMENTS = HERE / "requirements.txt"
STAMP = VENV / ".installed"
# The containers' Dockerfiles patch sagemaker-containers for Python >= 3.10 (collections.Mapping moved to .abc).
MAPPING_MODULE = "sagemaker_containers/_mapping.py"


def _site_dirs(python: str) -> list[str]:
    """The site-packages folders the project's interpreter imports from (a worktree's venv may chain several)."""
    code = "import json, sys; print(json.dumps([p for p in sys.path if p.endswith('site-packages')]))"
    return list(json.loads(subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout))


def _python() -> Path:
    return VENV / "bin" / "python"


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """One builder at a time (pytest-xdist workers start together)."""
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with (VENV.parent / "conformance.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure(project_python: str = sys.executable) -> Path:
    """The conformance environment's interpreter, built first if missing or out of date."""
    sites = _site_dirs(project_python)
    wanted = hashlib.sha256((REQUIREMENTS.read_text() + "\n".join(sites)).encode()).hexdigest()
    with _locked():
        if STAMP.is_file() and STAMP.read_text().strip() == wanted and _python().exists():
            return _python()
        shutil.rmtree(VENV, ignore_errors=True)
        subprocess.run([project_python, "-m", "venv", str(VENV)], check=True)
        own = Path(
            subprocess.run(
                [str(_python()), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        )
        # The project's setuptools (pkg_resources, which sagemaker-containers imports) instead of the venv's own.
        for leftover in (*own.glob("setuptools*"), *own.glob("_distutils_hack"), *own.glob("distutils-precedence.pth")):
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
        (own / "_project_env.pth").write_text("".join(f"{site}\n" for site in sites))
        subprocess.run(
            [
                str(_python()),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-deps",
                "-r",
                str(REQUIREMENTS),
            ],
            check=True,
        )
        mapping = own / MAPPING_MODULE
        mapping.write_text(mapping.read_text().replace("collections.Mapping", "collections.abc.Mapping"))
        subprocess.run([str(_python()), "-c", "import sagemaker_containers.beta.framework, ts.context"], check=True)
        STAMP.write_text(wanted + "\n")
    return _python()


if __name__ == "__main__":
    print(ensure())
