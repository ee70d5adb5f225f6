"""A scratch platform project wired to a fresh AWS emulator, for the benchmarks that talk to AWS."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ruamel.yaml import YAML

from bench.common import BIN, REPO


@contextmanager
def emulator(log: Path, **extra_env: str) -> Iterator[dict[str, str]]:
    """A fresh moto server on loopback (its output in `log`) and the environment pointing at it, plus `extra_env`."""
    from mlinfra.aws import emulator_answers
    from tests.emulator import free_port, stop_process

    url = f"http://127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ENDPOINT_URL=url, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")
    env.update(AWS_DEFAULT_REGION="eu-west-1", **extra_env)
    with log.open("wb") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", url.rsplit(":", 1)[1]],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while not emulator_answers(url):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the emulator did not start (see {log})")
            time.sleep(0.1)
        yield env
    finally:
        stop_process(server)


@contextmanager
def emulator_project(models: list[str]) -> Iterator[tuple[Path, dict[str, str]]]:
    """A copy of the stacks with `models` declared, a running emulator bootstrapped for it, and the env to use."""
    work = Path(tempfile.mkdtemp(prefix="mlinfra-bench-"))
    root = work / "platform"
    root.mkdir()
    shutil.copy(REPO / "Pulumi.yaml", root / "Pulumi.yaml")
    shutil.copytree(REPO / "stacks", root / "stacks")
    yaml = YAML()
    for path in (root / "stacks").glob("Pulumi.*.yaml"):
        data = yaml.load(path.read_text())
        for model in models:
            data["config"]["mlinfra:models"][model] = {}
        with path.open("w") as handle:
            yaml.dump(data, handle)
    try:
        with emulator(work / "moto.log", MLINFRA_LOCAL="1", TMPDIR=str(work)) as env:
            subprocess.run(
                [str(BIN / "mlinfra"), "local", "bootstrap", "--all"],
                cwd=root,
                env=env,
                check=True,
                stdout=subprocess.DEVNULL,
            )
            yield root, env
    finally:
        shutil.rmtree(work, ignore_errors=True)


def write_model(directory: Path, size: int, files: int = 1) -> Path:
    """A model directory of `size` random bytes in `files` files (random: weights barely compress either)."""
    directory.mkdir(parents=True, exist_ok=True)
    per_file = size // files
    for index in range(files):
        with (directory / f"weights-{index}.bin").open("wb") as handle:
            remaining = per_file
            while remaining:
                chunk = min(remaining, 8 << 20)
                handle.write(os.urandom(chunk))
                remaining -= chunk
    # The handler where every framework container looks for it (so `register --framework` accepts the directory).
    (directory / "code").mkdir(exist_ok=True)
    (directory / "code" / "inference.py").write_text("def model_fn(model_dir):\n    return model_dir\n")
    return directory
