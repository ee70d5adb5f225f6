"""The drift job's Lambda package: what it holds, that it is the same bytes every build, that its handler imports
in a clean interpreter with nothing but the package and boto3.

The package deployed is for python3.13 on x86_64; this machine's interpreter is CPython 3.11, which cannot load
cp313 extension modules. The import test therefore builds the same package with the same builder for this
interpreter (the same locked versions, their cp311 wheels) and imports that; the Lambda build is checked for its
contents and for cp313 x86_64 extension modules only.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path, PurePosixPath

import pytest

from mlinfra_infra import jobpackage

# Distributions that make up boto3 on the Lambda runtime (it ships them); copied from this environment.
BOTO3_PARTS = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six.py", "urllib3")


@pytest.fixture(scope="module")
def lambda_package() -> jobpackage.JobPackage:
    return jobpackage.build()


def names_of(package: jobpackage.JobPackage) -> list[str]:
    with zipfile.ZipFile(package.path) as archive:
        return archive.namelist()


def test_package_holds_the_drift_engine_its_template_and_its_locked_wheels(
    lambda_package: jobpackage.JobPackage,
) -> None:
    names = names_of(lambda_package)
    assert names == sorted(names), "entries in a fixed order"
    for name, _ in jobpackage.project_files():
        assert name in names, name
    assert "mlinfra_drift/job.py" in names
    assert "mlinfra_drift/jobspec.py" in names
    assert "mlinfra_templates/reports/drift.html.j2" in names
    # The handler named in the function's config is defined where Lambda will look.
    module, _, function = jobpackage.HANDLER.rpartition(".")
    with zipfile.ZipFile(lambda_package.path) as archive:
        source = archive.read(module.replace(".", "/") + ".py").decode()
    assert f"\ndef {function}(" in source

    top = {PurePosixPath(n).parts[0] for n in names}
    packages = {t for t in top if not t.endswith((".dist-info", ".py"))}
    assert packages == {
        "mlinfra_drift",
        "mlinfra_templates",
        "numpy",
        "numpy.libs",
        "scipy",
        "scipy.libs",
        "pydantic",
        "pydantic_core",
        "jinja2",
        "markupsafe",
        "typing_inspection",
        "annotated_types",
    }
    # Not the CLI, not the Pulumi program, not boto3 (the runtime has it), no test suites.
    for absent in ("mlinfra/", "mlinfra_infra/", "boto3/", "botocore/", "pulumi/"):
        assert not any(n.startswith(absent) for n in names), absent
    assert not [n for n in names if n.startswith(("numpy/", "scipy/")) and "/tests/" in n]
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    templates = {n for n in names if n.startswith("mlinfra_templates/")}
    assert templates == {n for n, _ in jobpackage.project_files() if n.startswith("mlinfra_templates/")}


def test_extension_modules_are_for_the_lambda_runtime(lambda_package: jobpackage.JobPackage) -> None:
    assert lambda_package.target.runtime == "python3.13"
    extensions = [n for n in names_of(lambda_package) if ".cpython-" in n and n.endswith(".so")]
    assert len(extensions) > 50
    assert all(".cpython-313-x86_64-linux-gnu.so" in n for n in extensions), [
        n for n in extensions if "313-x86_64" not in n
    ][:5]


def test_package_fits_lambdas_limits(lambda_package: jobpackage.JobPackage) -> None:
    assert lambda_package.unpacked_size < jobpackage.UNPACKED_MAX_BYTES
    with zipfile.ZipFile(lambda_package.path) as archive:
        assert sum(i.file_size for i in archive.infolist()) == lambda_package.unpacked_size
    assert lambda_package.size == lambda_package.path.stat().st_size
    assert hashlib.sha256(lambda_package.path.read_bytes()).hexdigest() == lambda_package.sha256


def test_every_entry_has_a_fixed_time_and_mode(lambda_package: jobpackage.JobPackage) -> None:
    with zipfile.ZipFile(lambda_package.path) as archive:
        for info in archive.infolist():
            assert info.date_time == (1980, 1, 1, 0, 0, 0), info.filename
            mode = (info.external_attr >> 16) & 0o777
            expected = 0o755 if info.filename.endswith(".so") or ".so." in info.filename else (0o644, 0o755)
            assert mode in (expected if isinstance(expected, tuple) else (expected,)), info.filename


def test_the_same_inputs_give_the_same_bytes(lambda_package: jobpackage.JobPackage, tmp_path: Path) -> None:
    entries = jobpackage.assemble(jobpackage.LAMBDA_TARGET, jobpackage.cache_dir())
    jobpackage.write_zip(dict(reversed(list(entries.items()))), tmp_path / "again.zip")
    assert hashlib.sha256((tmp_path / "again.zip").read_bytes()).hexdigest() == lambda_package.sha256
    assert jobpackage.cache_key(jobpackage.LAMBDA_TARGET) == lambda_package.path.stem


def test_a_changed_source_changes_the_package_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    before = jobpackage.cache_key(jobpackage.LAMBDA_TARGET)
    changed = tmp_path / "requirements.txt"
    changed.write_text(jobpackage.REQUIREMENTS.read_text() + "\n# changed\n")
    monkeypatch.setattr(jobpackage, "REQUIREMENTS", changed)
    assert jobpackage.cache_key(jobpackage.LAMBDA_TARGET) != before


def test_handler_imports_in_a_clean_interpreter_with_only_the_package_and_boto3(tmp_path: Path) -> None:
    package = jobpackage.build(jobpackage.host_target())
    unpacked = tmp_path / "package"
    with zipfile.ZipFile(package.path) as archive:
        archive.extractall(unpacked)
    boto = tmp_path / "boto3"
    boto.mkdir()
    site = Path(__import__("boto3").__file__).parents[1]
    for part in BOTO3_PARTS:
        (boto / part).symlink_to(site / part)
    check = f"""
import importlib.resources, sys
sys.path[:0] = [{str(unpacked)!r}, {str(boto)!r}]
import mlinfra_drift.job as job
assert callable(job.handler)
import numpy, scipy, pydantic
for module in (numpy, scipy, pydantic, job):
    assert module.__file__.startswith({str(unpacked)!r}), module.__file__
import boto3
assert boto3.__file__.startswith({str(boto)!r})
for absent in ("mlinfra", "mlinfra_infra", "pulumi", "click"):
    try:
        __import__(absent)
    except ImportError:
        pass
    else:
        raise AssertionError(absent + " is importable")
from mlinfra_drift import stats
p = stats.ks_pvalue(0.05, 2000, 2000)
assert 0 < p < 1, p
text = importlib.resources.files("mlinfra_templates.reports").joinpath("drift.html.j2").read_text()
assert "<svg" in text or "svg" in text
print("ok", sorted(m for m in sys.modules if m.split(".")[0] in ("numpy", "scipy"))[:1])
"""
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", check], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("ok")
