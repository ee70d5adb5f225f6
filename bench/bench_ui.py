"""`mlinfra ui`: the board's first byte for 50 models x 4 stages x 100 versions, after one read of the registry.

The registry is written into the emulator through the library's record builders and stores (a real registration
of 5,000 versions would take the benchmark's whole budget): in every stage, 100 version records per model, the stage
pointer with its audit record and recorded deployment, and the pin in the stage's (local mode) stack file. Then, on
that registry, `mlinfra status --all --json` is timed as a process (the baseline: the same reads the board needs),
and `mlinfra ui` is started as a process: it reads the board once before serving, after which every request for
the board is answered from its cache. The limit is 300 ms to the first byte of the board.
"""

from __future__ import annotations

import http.client
import os
import statistics
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.common import BIN
from bench.emulator_project import emulator_project, write_model
from tests.emulator import free_port, stop_process

MODELS = 50
VERSIONS = 100
STAGES = ("sandbox", "dev", "staging", "prod")
IMAGE = "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
LIMIT_SECONDS = 0.300
REPEAT = 20
STATUS_REPEAT = 3


@contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def seed(root: Path, env: dict[str, str], models: list[str]) -> None:
    """Every stage: 100 version records per model, its pointer (audit record, deployment) and its stack file pin.

    One real `mlinfra register` and `mlinfra promote` give the image, handler and identity every other version reuses;
    each record is made by the library's builders (records.version_record, audit_record, pointer_of, deployment,
    pin_of) and written by its stores.
    """
    import uuid

    from mlinfra import records
    from mlinfra.registry.protocol import Context
    from mlinfra.stacks.edit import pin_version
    from mlinfra.stacks.project import Project
    from mlinfra_infra import layout

    source = write_model(root.parent / "model", 4096)
    metrics = root.parent / "metrics.json"
    metrics.write_text('{"auc": 0.8, "f1": 0.6}')
    for args in (
        ["register", str(source), "-m", models[0], "--image", IMAGE, "--metrics", str(metrics)],
        ["promote", models[0], "--to", "dev", "--reason", "bench"],
    ):
        subprocess.run(
            [str(BIN / "mlinfra"), *args],
            cwd=root,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
    with _environment(env):
        project = Project(root)
        ctx = Context.load(project, *STAGES)
        template = ctx.registry(STAGES[0]).version(models[0], 1)
        promoted = ctx.registry(STAGES[1]).pointer(models[0])
        assert template is not None and promoted is not None
        writes: list[tuple[Any, dict[str, Any]]] = []
        pointers: list[tuple[Any, str, dict[str, Any]]] = []
        for stage in STAGES:
            registry = ctx.registry(stage)
            for model in models:
                record: dict[str, Any] = {}
                for number in range(1, VERSIONS + 1):
                    digest = f"sha256:{uuid.uuid5(uuid.NAMESPACE_URL, f'{model}/{number}').hex * 2}"
                    record = records.version_record(
                        model=model,
                        version=number,
                        digest=digest,
                        size=template["size"],
                        framework=template["framework"],
                        framework_version=template["frameworkVersion"],
                        image=template["image"],
                        artifact=registry.artifact_uri(model, digest),
                        metrics={"auc": 0.7 + number / 1000, "f1": 0.5 + (number % 7) / 100},
                        git_sha=template["gitSha"],
                        who={"actor": template["registeredBy"], "user": template["registeredByUser"]},
                        stage=stage,
                        package_arn=template["packageArn"],
                        baseline=None,
                        handler=template["handler"],
                        description=None,
                        card=None,
                    ).to_json()
                    if not (model == models[0] and number == 1 and stage in STAGES[:2]):
                        writes.append((registry, record))
                asked = promoted.data["record"]
                audit = records.audit_record(
                    "register" if stage == STAGES[0] else "promote",
                    model=model,
                    stage=stage,
                    version=VERSIONS,
                    previous=VERSIONS - 1,
                    digest=record["digest"],
                    reason=asked["reason"],
                    source=None if stage == STAGES[0] else asked["source"],
                    who={key: asked[key] for key in ("actor", "role", "user")},
                )
                deployed = None
                if stage != STAGES[0]:
                    deployed = records.deployment(VERSIONS, record["digest"], audit["time"], commit=None, run_url=None)
                pointer = records.pointer_of(model, stage, record, audit, deployed=deployed)
                pointers.append((registry, model, pointer))
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda w: w[0].write(layout.version_key(w[1]["model"], w[1]["version"]), w[1]), writes))
            list(pool.map(lambda p: p[0].move_pointer(p[1], p[2], p[0].pointer(p[1])), pointers))
            list(pool.map(lambda p: p[0].write_audit(p[2]["record"]), pointers))
        for registry, model, _pointer in pointers:
            if registry.stage != STAGES[0]:
                record = registry.version(model, VERSIONS) or {}
                pin_version(project, registry.stage, model, records.pin_of(record, record["artifact"]))


def _first_byte(port: int, path: str) -> float:
    """Seconds from sending a GET to having the response's status line and headers (then the body is drained)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    start = time.perf_counter()
    connection.request("GET", path)
    response = connection.getresponse()
    elapsed = time.perf_counter() - start
    body = response.read()
    connection.close()
    assert response.status == 200, (response.status, body[:300])
    return elapsed


def _status_seconds(root: Path, env: dict[str, str]) -> float:
    times = []
    for _ in range(STATUS_REPEAT):
        start = time.perf_counter()
        subprocess.run(
            [str(BIN / "mlinfra"), "status", "--all", "--json"],
            cwd=root,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> bool:
    models = [f"model-{index:02d}" for index in range(MODELS)]
    with emulator_project(models) as (root, env):
        started = time.perf_counter()
        seed(root, env, models)
        seeded = time.perf_counter() - started
        status = _status_seconds(root, env)
        port = free_port()
        started = time.perf_counter()
        server = subprocess.Popen(
            [str(BIN / "mlinfra"), "ui", "--all", "--port", str(port)],
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            assert server.stdout is not None
            line = server.stdout.readline()
            assert "serving" in line, line
            cold = time.perf_counter() - started
            board = [_first_byte(port, "/") for _ in range(REPEAT)]
            model_cold = _first_byte(port, f"/models/{models[len(models) // 2]}/")
            model = [_first_byte(port, f"/models/{models[len(models) // 2]}/") for _ in range(REPEAT)]
        finally:
            stop_process(server)  # type: ignore[arg-type]
    median, worst = statistics.median(board), max(board)
    ok = worst <= LIMIT_SECONDS
    print(
        f"registry: {MODELS} models x {len(STAGES)} stages x {VERSIONS} versions "
        f"({MODELS * len(STAGES) * VERSIONS:,} version records) written in {seeded:.1f}s"
    )
    print(
        f"mlinfra ui board, first byte after one read, slowest of {REPEAT}: {worst * 1000:.1f} ms (median "
        f"{median * 1000:.1f} ms) (limit {LIMIT_SECONDS * 1000:.0f} ms) {'OK' if ok else 'OVER'}"
    )
    print(
        f"  vs mlinfra status --all --json (median of {STATUS_REPEAT}): {status:.2f}s  ratio {worst / status:.4f}; "
        f"ui start including its one read of the board: {cold:.2f}s"
    )
    print(
        f"  a model's page ({len(STAGES) * VERSIONS} version records): first read {model_cold:.2f}s, then first byte "
        f"{statistics.median(model) * 1000:.1f} ms (median of {REPEAT})"
    )
    return ok


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
