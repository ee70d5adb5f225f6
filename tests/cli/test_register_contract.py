"""register enforces the model directory contract before any upload, skips what never belongs in a model, and
records the handler's layout, description and card; --dry-run lists what it would pack and writes nothing."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from mlinfra.errors import BadInputError
from mlinfra.models import directory as modeldir
from mlinfra.stacks.edit import read_pin
from mlinfra.stacks.project import Project
from mlinfra_infra import layout
from tests.cli.test_promotion import FRAMEWORK_IMAGE, IMAGE, bucket, ok, platform, read_json, s3

__all__ = ["platform"]
Run = Callable[..., Result]
SKLEARN = ("--framework", "sklearn", "--framework-version", "1.2-1")
HANDLER = "def model_fn(model_dir):\n    return model_dir\n"


def model_dir(root: Path, handler: str | None = HANDLER, where: str = "code/inference.py") -> Path:
    directory = root / "model"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.joblib").write_bytes(b"weights")
    if handler is not None:
        (directory / where).parent.mkdir(parents=True, exist_ok=True)
        (directory / where).write_text(handler)
    return directory


def bucket_keys() -> list[str]:
    listing = s3().list_objects_v2(Bucket=bucket("sandbox"))
    return [o["Key"] for o in listing.get("Contents", [])]


def nothing_written() -> None:
    assert bucket_keys() == []
    assert not s3().list_multipart_uploads(Bucket=bucket("sandbox")).get("Uploads")


@pytest.mark.parametrize(
    ("handler", "where", "message"),
    [
        (
            None,
            "code/inference.py",
            "{d}: no handler at code/inference.py, which the scikit-learn container imports; "
            "`mlinfra init-model churn --framework sklearn {d}` writes one",
        ),
        (
            HANDLER,
            "inference.py",
            "{d}: the handler must be code/inference.py, not inference.py at the root (the scikit-learn container "
            "imports it from /opt/ml/model/code); move it there",
        ),
        (
            "def predict_fn(data, model):\n    return data\n",
            "code/inference.py",
            "{d}/code/inference.py: defines no model_fn(model_dir), which the scikit-learn container calls and has "
            "no default for; add it, or `mlinfra init-model churn --framework sklearn {d}` writes one",
        ),
        (
            "def model_fn(model_dir, context):\n    return 1\n",
            "code/inference.py",
            "{d}/code/inference.py:1: model_fn takes 2 positional argument(s); the scikit-learn container passes 1: "
            "(model_dir)",
        ),
        (
            "def model_fn(d):\n    return d\ndef transform_fn(m, b, c, a):\n    return b\ndef input_fn(b, c):\n"
            "    return b\n",
            "code/inference.py",
            "{d}/code/inference.py: defines transform_fn and input_fn; the container refuses both at start-up: "
            "keep transform_fn alone or drop it",
        ),
        (
            "def model_fn(model_dir:\n",
            "code/inference.py",
            "{d}/code/inference.py:1: not valid Python ('(' was never closed); fix it, or `mlinfra init-model churn "
            "--framework sklearn {d}` writes one",
        ),
    ],
    ids=["missing", "at-root", "no-model-fn", "arity", "transform-and-input", "syntax"],
)
def test_register_refuses_a_handler_the_container_cannot_use_before_any_upload(
    platform: Path, run: Run, tmp_path: Path, handler: str | None, where: str, message: str
) -> None:
    directory = model_dir(tmp_path, handler, where)
    result = run("register", str(directory), "-m", "churn", *SKLEARN)
    assert result.exit_code == 2
    assert result.stderr == f"error: {message.format(d=directory)}\n"
    nothing_written()


def test_the_toolkit_containers_may_take_a_context_argument(tmp_path: Path) -> None:
    directory = model_dir(tmp_path, "def model_fn(model_dir, context):\n    return 1\n")
    assert modeldir.check_directory(directory, "pytorch", "churn").framework == "pytorch"
    # The XGBoost container serves one model through sagemaker-containers, which calls model_fn(model_dir) alone:
    # a handler wanting a context would get a TypeError on every start.
    with pytest.raises(
        BadInputError, match=r"model_fn takes 2 positional argument\(s\); the XGBoost container passes 1"
    ):
        modeldir.check_directory(directory, "xgboost", "churn")
    # imported or assigned names count as defined (the check never runs the handler)
    (directory / "code" / "inference.py").write_text("from mylib.serving import model_fn\n")
    assert modeldir.check_directory(directory, "sklearn", "churn").program == "inference.py"


def test_a_handler_excluded_by_mlinfraignore_is_missing(platform: Path, run: Run, tmp_path: Path) -> None:
    directory = model_dir(tmp_path)
    (directory / ".mlinfraignore").write_text("code/\n")
    result = run("register", str(directory), "-m", "churn", *SKLEARN)
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {directory}/code/inference.py is excluded by .mlinfraignore; the scikit-learn container needs it "
        "packed\n"
    )
    nothing_written()


def test_register_on_a_path_that_does_not_exist_says_so(platform: Path, run: Run, tmp_path: Path) -> None:
    result = run("register", str(tmp_path / "nope"), "-m", "churn", *SKLEARN)
    assert result.exit_code == 2
    assert result.stderr == f"error: {tmp_path / 'nope'} does not exist; pass the model directory or its model.tar.gz\n"
    nothing_written()


def test_an_archive_is_checked_too(platform: Path, run: Run, tmp_path: Path) -> None:
    directory = model_dir(tmp_path, "def predict_fn(d, m):\n    return d\n")
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(directory, arcname=".")
    result = run("register", str(archive), "-m", "churn", *SKLEARN)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {archive}:code/inference.py: defines no model_fn(model_dir)")
    nothing_written()


def polluted(tmp_path: Path) -> Path:
    directory = model_dir(tmp_path)
    for junk in ("__pycache__/inference.cpython-311.pyc", "code/__pycache__/x.pyc", ".ipynb_checkpoints/nb.ipynb",
                 ".DS_Store", "code/.DS_Store", ".git/HEAD", "data/train.csv", "notes.ipynb"):  # fmt: skip
        (directory / junk).parent.mkdir(parents=True, exist_ok=True)
        (directory / junk).write_text("junk")
    (directory / "keep.csv").write_text("1,2\n")
    (directory / ".mlinfraignore").write_text("# notebooks and data stay out\n*.ipynb\ndata/\n*.csv\n!keep.csv\n")
    return directory


def test_dry_run_lists_what_would_be_packed_and_writes_nothing(platform: Path, run: Run, tmp_path: Path) -> None:
    directory = polluted(tmp_path)
    result = run("register", str(directory), "-m", "churn", *SKLEARN, "--dry-run")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[-1] for line in lines] == ["code/inference.py", "keep.csv", "model.joblib"]
    size, digest, path = lines[0].split()
    assert (int(size), path) == (len(HANDLER), "code/inference.py")
    assert digest.startswith("sha256:") and len(digest) == 71
    assert result.stderr.startswith("dry run: 3 files, model.tar.gz ") and result.stderr.endswith("nothing written\n")
    nothing_written()
    plan = json.loads(run("register", str(directory), "-m", "churn", *SKLEARN, "--dry-run", "--json").stdout)
    assert plan["handler"] == {"framework": "sklearn", "program": "inference.py", "directory": "code"}
    assert plan["image"] == FRAMEWORK_IMAGE and plan["frameworkVersion"] == "1.2-1"
    assert "image " + FRAMEWORK_IMAGE in result.stderr
    # the digest --dry-run announces is the one register then stores
    out = ok(run("register", str(directory), "-m", "churn", "--image", IMAGE, "--json"))
    assert out["digest"] == plan["digest"]


def test_register_packs_without_the_junk_and_records_layout_description_and_card(
    platform: Path, run: Run, tmp_path: Path
) -> None:
    directory = polluted(tmp_path)
    card = tmp_path / "card.md"
    card.write_text("# churn\n\n## Intended use\n\nRetention campaigns.\n")
    out = ok(
        run(
            "register",
            str(directory),
            "-m",
            "churn",
            *SKLEARN,
            "--description",
            "first cut",
            "--card",
            str(card),
            "--json",
        )
    )
    body = s3().get_object(Bucket=bucket("sandbox"), Key=layout.artifact_key("churn", out["digest"]))["Body"]
    archive = tmp_path / "stored.tar.gz"
    archive.write_bytes(body.read())
    with tarfile.open(archive) as tar:
        files = sorted(m.name for m in tar.getmembers() if m.isreg())
    assert files == ["code/inference.py", "keep.csv", "model.joblib"]
    record = read_json("sandbox", layout.version_key("churn", 1))
    assert record["handler"] == {"framework": "sklearn", "program": "inference.py", "directory": "code"}
    assert record["description"] == "first cut"
    assert record["card"] == f"{layout.version_prefix('churn', 1)}card.md"
    stored = s3().get_object(Bucket=bucket("sandbox"), Key=record["card"])["Body"].read().decode()
    assert stored == card.read_text()


def test_the_promoted_pin_carries_the_handler_layout(platform: Path, run: Run, tmp_path: Path) -> None:
    ok(run("register", str(model_dir(tmp_path)), "-m", "churn", *SKLEARN, "--json"))
    ok(run("promote", "churn", "--to", "dev", "--reason", "test", "--json"))
    pinned: dict[str, Any] | None = read_pin(Project.find(), "dev", "churn")
    assert pinned is not None
    assert pinned["handler"] == {"framework": "sklearn", "program": "inference.py", "directory": "code"}
    # In local mode the pin lands in the scratch copy of the stacks (local mode never edits stacks/).
    text = Project.find().stage_file("dev").read_text()
    assert (
        "        handler:\n          directory: code\n          framework: sklearn\n          program: inference.py\n"
        in text
    )


def test_a_custom_image_without_framework_records_no_handler(platform: Path, run: Run, tmp_path: Path) -> None:
    out = ok(run("register", str(model_dir(tmp_path, None)), "-m", "churn", "--image", IMAGE, "--json"))
    assert read_json("sandbox", layout.version_key("churn", out["version"]))["handler"] is None


def test_dry_run_of_an_archive_lists_its_members_and_its_own_digest(platform: Path, run: Run, tmp_path: Path) -> None:
    import hashlib

    directory = model_dir(tmp_path)
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(directory, arcname=".")
    plan = json.loads(run("register", str(archive), "-m", "churn", *SKLEARN, "--dry-run", "--json").stdout)
    assert sorted(f["path"] for f in plan["files"]) == ["code/inference.py", "model.joblib"]
    assert plan["digest"] == f"sha256:{hashlib.sha256(archive.read_bytes()).hexdigest()}"
    assert plan["size"] == archive.stat().st_size
    nothing_written()


def test_skipper_follows_gitignore_semantics(tmp_path: Path) -> None:
    (tmp_path / ".mlinfraignore").write_text("build/\n**/*.tmp\n!important.tmp\n")
    skip = modeldir.skipper(tmp_path)
    assert skip(".git", False), "a worktree's .git file"
    assert skip(".git", True) and skip("sub/__pycache__", True) and skip("a/.DS_Store", False)
    assert skip(".mlinfraignore", False)
    assert skip("build", True) and not skip("build", False), "a directory-only pattern"
    assert skip("x/y/z.tmp", False) and not skip("important.tmp", False)
    assert not skip("code/inference.py", False) and not skip("code", True)


def test_an_image_built_on_a_framework_container_keeps_its_contract(platform: Path, run: Run, tmp_path: Path) -> None:
    broken = model_dir(tmp_path / "broken", "def predict_fn(d, m):\n    return d\n")
    result = run("register", str(broken), "-m", "churn", "--framework", "pytorch", "--image", IMAGE)
    assert result.exit_code == 2 and "defines no model_fn(model_dir)" in result.stderr
    nothing_written()
    out = ok(
        run("register", str(model_dir(tmp_path)), "-m", "churn", "--framework", "pytorch", "--image", IMAGE, "--json")
    )
    record = read_json("sandbox", layout.version_key("churn", out["version"]))
    assert (record["image"], record["handler"]["framework"]) == (IMAGE, "pytorch")


def test_an_archive_with_a_top_level_folder_is_told_where_members_go(tmp_path: Path) -> None:
    from mlinfra.errors import BadInputError

    directory = model_dir(tmp_path)
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(directory, arcname="model")
    with pytest.raises(
        BadInputError, match=r"holds no code/inference.py at its root, .*tar czf model.tar.gz -C DIR \."
    ):
        modeldir.check_archive(archive, "sklearn", "churn")


def test_description_and_card_for_bytes_already_registered_are_not_dropped_silently(
    platform: Path, run: Run, tmp_path: Path
) -> None:
    directory = model_dir(tmp_path)
    ok(run("register", str(directory), "-m", "churn", *SKLEARN, "--json"))
    result = run("register", str(directory), "-m", "churn", *SKLEARN, "--description", "again", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["existing"] is True
    assert result.stderr == (
        "note: --description ignored: these bytes are already v1, and registering them again makes no new version; "
        "to change them: `mlinfra --local attach churn --version 1 --description again`\n"
    )
    # ... and that command changes it in place, audited, without a new version.
    attached = run("attach", "churn", "--version", "1", "--description", "again", "--json")
    assert json.loads(attached.stdout)["changed"] == ["description"]
    versions = json.loads(run("versions", "churn", "--json").stdout)
    assert [v["version"] for v in versions] == [1]


def sklearn_model(root: Path, requirements: str | None = None) -> Path:
    """A scikit-learn model pickled by the installed scikit-learn (1.9 here), with the generated handler."""
    import joblib
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from mlinfra.models import scaffold

    directory = root / "model"
    scaffold.init_model("churn", "sklearn", directory, force=False)
    features = np.random.default_rng(3).normal(size=(40, 3))
    joblib.dump(LogisticRegression().fit(features, features[:, 0] > 0), directory / "model.joblib")
    if requirements is not None:
        (directory / "code" / "requirements.txt").write_text(requirements)
    return directory


def test_an_image_of_another_library_version_is_refused_and_the_fitting_one_picked(
    platform: Path, run: Run, tmp_path: Path
) -> None:
    import sklearn

    written = sklearn.__version__
    assert written.startswith("1.9."), "the dev extras install scikit-learn 1.9 (the image 1.9-0 fits it)"
    directory = sklearn_model(tmp_path)
    for extra in ((), ("--dry-run",)):
        result = run("register", str(directory), "-m", "churn", "--framework", "sklearn", "--framework-version",
                     "1.2-1", *extra)  # fmt: skip
        assert result.exit_code == 2, result.output
        assert result.stderr == (
            f"error: model.joblib was written by scikit-learn {written}, but --framework-version 1.2-1 is "
            "scikit-learn 1.2: the container could not load it; use --framework-version 1.9-0 (or leave it out: "
            "register picks it)\n"
        )
    nothing_written()
    plan = json.loads(run("register", str(directory), "-m", "churn", "--framework", "sklearn", "--dry-run",
                          "--json").stdout)  # fmt: skip
    assert (plan["frameworkVersion"], plan["libraryVersion"], plan["libraryFile"]) == ("1.9-0", written, "model.joblib")
    out = ok(run("register", str(directory), "-m", "churn", "--framework", "sklearn", "--json"))
    assert out["frameworkVersion"] == "1.9-0" and out["image"] == plan["image"]
    assert out["image"].endswith("/sagemaker-scikit-learn:1.9-0-cpu-py3")


@pytest.mark.parametrize(
    ("requirements", "message"),
    [
        ("lightgbm==4.6.0\n", "needs lightgbm, which the sklearn 1.9-0 image does not have"),
        ("scikit-learn==1.9.1\n", "pins scikit-learn, which the sklearn 1.9-0 image has at its own version"),
        ("git+https://example.com/x.git\n", "is a URL or a path"),
    ],
)
def test_a_requirement_the_endpoint_cannot_install_offline_is_refused_before_upload(
    platform: Path, run: Run, tmp_path: Path, requirements: str, message: str
) -> None:
    directory = sklearn_model(tmp_path, requirements)
    result = run("register", str(directory), "-m", "churn", "--framework", "sklearn")
    assert result.exit_code == 2
    assert message in result.stderr and "network isolation" in result.stderr
    assert result.stderr.count("\n") == 1
    nothing_written()


def test_vendored_wheels_and_image_packages_pass_the_offline_install_check(tmp_path: Path) -> None:
    from mlinfra.models import startup

    startup.check("sklearn", "1.9-0", "numpy\njoblib  # in the image\n", [], "requirements.txt")
    vendored = "--no-index\n--find-links wheels\nlightgbm==4.6.0\n"
    startup.check("sklearn", "1.9-0", vendored, ["code/wheels/lightgbm-4.6.0-py3-none-any.whl"], "r.txt")
    with pytest.raises(BadInputError, match="pip is not sent there"):
        startup.check("sklearn", "1.9-0", "lightgbm\n", ["code/wheels/lightgbm-4.6.0-py3-none-any.whl"], "r.txt")
