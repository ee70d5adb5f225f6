"""The quickstart: the whole outer loop on the local AWS emulator, in a scratch copy of this repository.

Run with `make quickstart` (or `.venv/bin/python examples/quickstart.py`). It copies Pulumi.yaml and stacks/ to
.mlinfra/quickstart/ (so your own stack files are not touched), starts the emulator on a free loopback port, creates
the registries the stacks declare, registers the example churn model, promotes it to dev, and shows status, history
and the dev stack's offline preview with the new endpoint. The emulator is stopped at the end, whatever happens.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORKSPACE = REPO / ".mlinfra" / "quickstart"
EXAMPLE = REPO / "examples" / "churn"
MLINFRA = str(Path(sys.executable).parent / "mlinfra")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def step(title: str, *args: str, env: dict[str, str]) -> None:
    print(f"\n## {title}\n$ mlinfra {' '.join(args)}", flush=True)
    result = subprocess.run([MLINFRA, *args], cwd=WORKSPACE, env=env, check=False)
    if result.returncode != 0:
        raise SystemExit(f"quickstart: `mlinfra {' '.join(args)}` exited {result.returncode}")


def main() -> None:
    shutil.rmtree(WORKSPACE, ignore_errors=True)
    WORKSPACE.mkdir(parents=True)
    shutil.copy(REPO / "Pulumi.yaml", WORKSPACE / "Pulumi.yaml")
    shutil.copytree(REPO / "stacks", WORKSPACE / "stacks")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(MLINFRA_LOCAL="1", AWS_DEFAULT_REGION="eu-west-1")
    env.pop("MLINFRA_STACK", None)
    port = free_port()
    step("The stages and what they pin", "stack", "list", env=env)
    step(
        "Start the AWS emulator (moto's server on loopback)", "local", "start", "--detach", "--port", str(port), env=env
    )
    try:
        env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{port}"
        step("Create the registries the stacks declare", "local", "bootstrap", "--all", env=env)
        step(
            "Register the example model into the entry stage (sandbox)",
            "register",
            str(EXAMPLE / "model"),
            "--model",
            "churn",
            "--framework",
            "sklearn",
            "--framework-version",
            "1.2-1",
            "--metrics",
            str(EXAMPLE / "metrics.json"),
            "--baseline",
            str(EXAMPLE / "baseline.csv"),
            env=env,
        )
        step(
            "Promote it to dev: verify, gate, copy, record, pin",
            "promote",
            "churn",
            "--to",
            "dev",
            "--reason",
            "quickstart",
            env=env,
        )
        step(
            "And on to staging (real-time endpoint, data capture, drift monitoring)",
            "promote",
            "churn",
            "--to",
            "staging",
            "--reason",
            "quickstart",
            env=env,
        )
        print(
            "\n## prod refuses it: no approval, no day of soak in staging (exit 3)\n$ mlinfra promote churn --to prod"
        )
        result = subprocess.run([MLINFRA, "promote", "churn", "--to", "prod"], cwd=WORKSPACE, env=env, check=False)
        print(f"(exit code {result.returncode})")
        step("Where every model stands", "status", "--all", env=env)
        step("The audit trail", "history", "churn", env=env)
        step("The dev stack now declares the endpoint (offline render)", "preview", "--stack", "dev", env=env)
        subprocess.run(
            ["git", "--no-pager", "diff", "--no-index", "--stat", str(REPO / "stacks"), "stacks"],
            cwd=WORKSPACE,
            check=False,
        )
    finally:
        subprocess.run([MLINFRA, "local", "stop"], cwd=WORKSPACE, env=env, check=False)
    print(f"\nDone. The scratch project is {WORKSPACE.relative_to(REPO)}; your stacks/ are unchanged.")


if __name__ == "__main__":
    main()
