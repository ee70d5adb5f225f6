"""`mlinfra serve`: a model behind the SageMaker container contract on this machine, before it is promoted."""

from __future__ import annotations

from pathlib import Path

import click

from mlinfra.options import complete_models, complete_stages, stage_option

FRAMEWORKS = ("sklearn", "xgboost", "pytorch", "toolkit")


@click.command()
@click.argument("model", shell_complete=complete_models)
@click.option(
    "--version",
    "-v",
    "version",
    type=click.IntRange(min=1),
    help="Serve version N (from the entry stage's registry, or --stack's).",
)
@stage_option("Serve the version STAGE's registry points to (with --version: version N from STAGE's registry).")
@click.option(
    "--path",
    "path",
    type=click.Path(path_type=Path),
    help="Serve a model directory as it is (no registry needed).",
)
@click.option(
    "--framework",
    type=click.Choice(FRAMEWORKS),
    help="Container defaults to emulate (default: the version's framework; sklearn for --path).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (loopback by default).")
@click.option(
    "--port", "-p", default=8080, show_default=True, type=click.IntRange(1, 65535), help="Port (8080 as SageMaker)."
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=60.0,
    show_default=True,
    help="Seconds an invocation may take before the answer is SageMaker's timeout error (424, as ModelError).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="Requests served at once, one per worker as in the container (default: SAGEMAKER_MODEL_SERVER_WORKERS, "
    "else one per CPU).",
)
@click.option(
    "--capture",
    "capture_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Write SageMaker data capture (JSONL) under DIR/<endpoint>/primary/yyyy/mm/dd/hh/.",
)
@click.option(
    "--capture-stage",
    metavar="STAGE",
    shell_complete=complete_stages,
    help="Write data capture into STAGE's registry under capture/<model>/, as its endpoint would (--local only).",
)
@click.option(
    "--capture-flush-seconds",
    type=click.FloatRange(min=0.1),
    help="Write buffered capture at least this often (default 30; also at 4 MiB and on exit).",
)
def serve(
    model: str,
    version: int | None,
    stage: str | None,
    path: Path | None,
    framework: str | None,
    host: str,
    port: int,
    timeout: float,
    workers: int | None,
    capture_dir: Path | None,
    capture_stage: str | None,
    capture_flush_seconds: float | None,
) -> None:
    """Serve MODEL locally through its own handler, as SageMaker's framework container would.

    The handler (SAGEMAKER_PROGRAM, default inference.py, in code/ or at the root) is imported and model_fn runs
    before the port opens; functions it leaves out get the container's defaults. GET /ping answers 200,
    POST /invocations honours Content-Type and Accept, with the status the framework's container would answer
    (tests run both on one table): a handler's 4xx (the generated ones: 400 malformed input or wrong width,
    406 unsupported Accept, 415 unsupported Content-Type), 413 body over 6 MB, 424 no answer within --timeout,
    500 handler exception. Every failure is one line of JSON, {"error": ...}; serving goes on. Ctrl-C stops it
    and writes the capture still buffered. docs/model-contract.md lists every case.

    \b
    Examples:
      mlinfra serve churn --path examples/churn/model
      mlinfra --local serve churn --stack staging --capture-stage staging
      mlinfra serve churn --version 3 --port 9000 --capture ./capture
      mlinfra serve churn --version 3 --stack staging --timeout 5 --workers 2
      curl -s localhost:8080/invocations -H 'Content-Type: text/csv' --data-binary $'1,2,3\\n4,5,6'
    """
    from mlinfra.serving.app import build_app, run
    from mlinfra.serving.sources import CaptureTarget, Source, capture_writer, resolve

    served = resolve(model, Source(path=path, version=version, stage=stage, framework=framework))
    writer = capture_writer(
        model,
        CaptureTarget(directory=capture_dir, stage=capture_stage, max_seconds=capture_flush_seconds),
        served_stage=served.stage,
        warn=lambda message: click.echo(f"warning: {message}", err=True),
    )
    app = build_app(served.handler, capture=writer, timeout=timeout, workers=workers)
    click.echo(f"serving {served.description}", err=True)
    click.echo(f"  handler  {served.handler.source}", err=True)
    if writer is not None:
        click.echo(f"  capture  {writer.destination}", err=True)
    click.echo(f"  listening on http://{host}:{port} (GET /ping, POST /invocations); Ctrl-C stops", err=True)
    run(app, host, port)
