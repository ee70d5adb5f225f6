"""Serve a packed model through a framework container's own serving code and answer a table of requests.

Runs under the conformance environment's Python (tests/conformance/env.py builds it), never mlinfra's: it imports the
toolkits the SageMaker framework containers run and nothing of mlinfra. `driver.py SPEC OUT` reads a JSON spec:

    {"framework": "sklearn" | "xgboost" | "pytorch", "archive": "model.tar.gz", "environment": {...the Model's...},
     "requests": [{"body": "<base64>", "headers": {"Content-Type": ..., "Accept": ...}}, ...]}

and writes one JSON object to OUT: {"install": "<the start-up pip install's outcome>", "answers": [{"status",
"content_type", "body"}, ...]}. What it does is what the container does at start-up and per request, read from the
containers' source:

- scikit-learn and XGBoost (sagemaker-scikit-learn-container's and sagemaker-xgboost-container's serving.py over
  sagemaker-containers): SageMaker unpacks model.tar.gz into /opt/ml/model; the serve entry point imports the module
  SAGEMAKER_PROGRAM names from SAGEMAKER_SUBMIT_DIRECTORY through sagemaker-containers' `modules.import_module`
  (copied to /opt/ml/code, a setup.py written, `pip install . -r requirements.txt`), then each gunicorn worker builds
  a `transformer.Transformer` from the module's model_fn/input_fn/predict_fn/output_fn (or transform_fn), calls
  `initialize()` (model_fn) and serves `worker.Worker(transform_fn=transformer.transform)`, a Flask app. Requests go
  to that app through Flask's WSGI test client (the app gunicorn would run, without the sockets).
- PyTorch (sagemaker-pytorch-inference-toolkit on TorchServe): start-up installs code/requirements.txt and puts
  code/ on the Python path; TorchServe's worker builds the toolkit's HandlerService, calls `initialize(context)`, and
  per request `handle(data, context)` with a TorchServe Context; the status the handler reports on the context is
  the HTTP status TorchServe answers with.

/opt/ml is SAGEMAKER_BASE_DIR (a temporary folder) here; the Model's /opt/ml paths are mapped into it. The start-up
pip install runs as the container runs it, with the index switched off (PIP_NO_INDEX): endpoints run with network
isolation, so anything not already installed must come from the archive.
"""

import base64
import contextlib
import fcntl
import json
import os
import sys
import tarfile
import tempfile

OPT_ML = "/opt/ml"


def main():
    with open(sys.argv[1]) as handle:
        spec = json.load(handle)
    base = tempfile.mkdtemp(prefix="opt-ml-")
    model_dir = os.path.join(base, "model")
    os.makedirs(model_dir)
    with tarfile.open(spec["archive"]) as archive:  # SageMaker unpacks the artifact into /opt/ml/model
        archive.extractall(model_dir, filter="data")
    os.environ["SAGEMAKER_BASE_DIR"] = base  # read by sagemaker-containers at import
    os.environ["PIP_NO_INDEX"] = "1"  # network isolation: the container's pip reaches no index
    os.environ["PIP_CONFIG_FILE"] = os.devnull  # nor this machine's pip configuration (find-links, mirrors)
    for name, value in spec["environment"].items():
        os.environ[name] = value.replace(OPT_ML, base, 1) if value.startswith(OPT_ML) else value
    requests = [(base64.b64decode(r["body"]), r["headers"]) for r in spec["requests"]]
    serve = {"sklearn": containers, "xgboost": containers, "pytorch": torchserve}[spec["framework"]]
    with contextlib.redirect_stdout(sys.stderr):  # the toolkits' and pip's chatter
        install, answers = serve(model_dir, requests)
    with open(sys.argv[2], "w") as handle:
        json.dump({"install": install, "answers": answers}, handle)


def containers(model_dir, requests):
    """The scikit-learn and XGBoost containers: sagemaker-containers' module import, Transformer and Flask Worker."""
    from sagemaker_containers.beta.framework import env, errors, modules, transformer, worker

    serving_env = env.ServingEnv()
    try:
        with _installing():
            user_module = modules.import_module(serving_env.module_dir, serving_env.module_name)
        install = "ok"
    except errors.InstallModuleError as exc:
        return "failed: " + str(exc).strip().splitlines()[-1], []
    functions = {
        name: getattr(user_module, name, None)
        for name in ("model_fn", "input_fn", "predict_fn", "output_fn", "transform_fn")
    }
    if functions["transform_fn"] is not None:
        user_transformer = transformer.Transformer(
            model_fn=functions["model_fn"], transform_fn=functions["transform_fn"]
        )
    else:
        user_transformer = transformer.Transformer(**{k: v for k, v in functions.items() if k != "transform_fn"})
    user_transformer.initialize()
    app = worker.Worker(transform_fn=user_transformer.transform, module_name=serving_env.module_name)
    client = app.test_client()
    answers = []
    for body, headers in requests:
        response = client.post("/invocations", data=body, headers=headers)
        answers.append(
            {
                "status": response.status_code,
                "content_type": response.headers.get("Content-Type"),
                "body": base64.b64encode(response.get_data()).decode(),
            }
        )
    return install, answers


@contextlib.contextmanager
def _installing():
    """One start-up install at a time into this environment (the tests run in parallel; a container is alone)."""
    with open(os.path.join(sys.prefix, "install.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def torchserve(model_dir, requests):
    """The PyTorch container: the toolkit's HandlerService under a TorchServe Context."""
    import subprocess

    from ts.context import Context, RequestProcessor

    code_dir = os.path.join(model_dir, "code")
    requirements = os.path.join(code_dir, "requirements.txt")
    install = "ok"
    if os.path.exists(requirements):  # the toolkit's start-up: pip install -r code/requirements.txt
        with _installing():
            done = subprocess.run(
                [sys.executable, "-m", "pip", "install", "-r", requirements],
                capture_output=True,
                text=True,
                check=False,
                cwd=code_dir,
            )
        if done.returncode != 0:
            return "failed: " + (done.stderr.strip().splitlines() or ["pip failed"])[-1], []
    sys.path.insert(0, code_dir)  # the PYTHONPATH the toolkit sets before starting TorchServe

    from sagemaker_pytorch_serving_container.handler_service import HandlerService

    service = HandlerService()
    context = Context("model", model_dir, {}, 1, None, "0.12.0")
    service.initialize(context)
    answers = []
    for body, headers in requests:
        context.request_processor = [RequestProcessor(dict(headers))]
        result = service.handle([{"body": bytearray(body)}], context)
        status = context.get_response_status(0)[0]
        payload = result[0] if result else b""
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        answers.append(
            {
                "status": status,
                "content_type": context.get_response_content_type(0),
                "body": base64.b64encode(bytes(payload)).decode(),
            }
        )
    return install, answers


if __name__ == "__main__":
    main()
