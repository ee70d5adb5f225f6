"""The library version a model was saved with (read, never loaded), the image that fits it, and the offline install.

Real files from the libraries themselves: a scikit-learn estimator pickled by joblib and by pickle at every
protocol, an XGBoost booster saved as JSON, a model directory and the model.tar.gz `register` packs of it, and a wheel
built here with a dependency.
"""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from mlinfra.errors import BadInputError
from mlinfra.models import directory as modeldir
from mlinfra.models import images, libraries, packaging, startup

SKLEARN_IMAGES = images.supported_versions("sklearn")


def estimator() -> object:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features = np.random.default_rng(0).normal(size=(30, 3))
    return make_pipeline(StandardScaler(), LogisticRegression()).fit(features, features[:, 0] > 0)


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_the_scikit_learn_version_is_read_from_a_pickle_without_unpickling(protocol: int) -> None:
    import sklearn

    data = pickle.dumps(estimator(), protocol=protocol)
    found = libraries.recorded_version("sklearn", [("model.pkl", lambda: io.BytesIO(data))])
    assert found == libraries.Recorded("model.pkl", sklearn.__version__)


def test_the_xgboost_version_is_read_from_a_json_model(tmp_path: Path) -> None:
    import xgboost as xgb

    features = np.random.default_rng(0).normal(size=(30, 3))
    booster = xgb.train({"objective": "binary:logistic"}, xgb.DMatrix(features, label=features[:, 0] > 0), 2)
    booster.save_model(str(tmp_path / "xgboost-model.json"))
    (tmp_path / "metrics.json").write_text('{"auc": 0.9}')
    files = [(p.name, lambda p=p: p.open("rb")) for p in sorted(tmp_path.iterdir())]
    found = libraries.recorded_version("xgboost", files)
    assert found is not None and found.version == xgb.__version__.split("+")[0]


def test_files_of_different_minor_versions_are_refused() -> None:
    one = b"\x8c\x10_sklearn_version\x94\x8c\x051.9.1\x94"
    two = b"\x8c\x10_sklearn_version\x94\x8c\x051.4.2\x94"
    with pytest.raises(BadInputError, match=r"different scikit-learn versions \(a.joblib \(1.9.1\), b.pkl \(1.4.2\)\)"):
        libraries.recorded_version(
            "sklearn", [("a.joblib", lambda: io.BytesIO(one)), ("b.pkl", lambda: io.BytesIO(two))]
        )


def test_choose_version_picks_checks_and_names_the_nearest() -> None:
    recorded = libraries.Recorded("model.joblib", "1.9.1")
    assert libraries.choose_version("sklearn", recorded, None, SKLEARN_IMAGES, "1.9-0") == "1.9-0"
    assert libraries.choose_version("sklearn", recorded, "1.9-0", SKLEARN_IMAGES, "1.9-0") == "1.9-0"
    assert libraries.choose_version("sklearn", None, "1.2-1", SKLEARN_IMAGES, "1.9-0") == "1.2-1", "nothing recorded"
    assert libraries.choose_version("sklearn", None, None, SKLEARN_IMAGES, "1.9-0") == "1.9-0"
    with pytest.raises(BadInputError) as caught:
        libraries.choose_version("sklearn", libraries.Recorded("m.joblib", "1.5.2"), None, SKLEARN_IMAGES, "1.9-0")
    assert str(caught.value) == (
        "m.joblib was written by scikit-learn 1.5.2, and SageMaker has no scikit-learn 1.5 image; retrain and save it "
        "with the library of an image that exists, nearest: 1.4-2-py312 (scikit-learn 1.4) or 1.9-0 (scikit-learn 1.9)"
    )


def test_register_reads_the_version_in_the_archive_it_packs(tmp_path: Path) -> None:
    import joblib
    import sklearn

    directory = tmp_path / "model"
    (directory / "code").mkdir(parents=True)
    (directory / "code" / "inference.py").write_text("def model_fn(d):\n    return d\n")
    joblib.dump(estimator(), directory / "model.joblib")
    archive = tmp_path / "model.tar.gz"
    with archive.open("wb") as out:
        packaging.pack(directory, out.write, skip=modeldir.skipper(directory))
    for path, is_archive in ((directory, False), (archive, True)):
        choice = libraries.choose_image(path, "sklearn", None, None, "eu-west-1", archive=is_archive)
        assert (choice.framework_version, choice.library) == (
            "1.9-0",
            libraries.Recorded("model.joblib", sklearn.__version__),
        )
        assert choice.image.endswith("/sagemaker-scikit-learn:1.9-0-cpu-py3")


def wheel(directory: Path, name: str, requires: list[str]) -> Path:
    """A minimal wheel whose METADATA lists `requires` (one conditional on an extra, which does not count)."""
    path = directory / f"{name}-1.0-py3-none-any.whl"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires
    )
    metadata += 'Requires-Dist: pytest ; extra == "test"\n'
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{name}-1.0.dist-info/METADATA", metadata)
        archive.writestr(
            f"{name}-1.0.dist-info/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        archive.writestr(f"{name}-1.0.dist-info/RECORD", "")
        archive.writestr(f"{name}.py", "")
    return path


def test_vendored_wheels_need_their_dependencies_in_the_image_or_beside_them(tmp_path: Path) -> None:
    directory = tmp_path / "model"
    code = directory / "code"
    (code / "wheels").mkdir(parents=True)
    (code / "inference.py").write_text("def model_fn(d):\n    return d\n")
    (code / "requirements.txt").write_text("--no-index\n--find-links wheels\nfancy\n")
    wheel(code / "wheels", "fancy", ["numpy>=1.20", "tinydep"])
    with pytest.raises(BadInputError, match=r"the vendored fancy-1.0-py3-none-any.whl requires tinydep"):
        libraries.choose_image(directory, "sklearn", "1.9-0", None, "eu-west-1", archive=False)
    wheel(code / "wheels", "tinydep", [])
    choice = libraries.choose_image(directory, "sklearn", "1.9-0", None, "eu-west-1", archive=False)
    assert choice.framework_version == "1.9-0"


def test_requirement_lines_pip_would_need_a_network_for_are_refused() -> None:
    with pytest.raises(BadInputError, match=r"r.txt:1: '--extra-index-url https://x': mlinfra accepts only"):
        startup.parse("--extra-index-url https://x\n", "r.txt")
    requirements, options = startup.parse("# comment\nNumPy  # the image's\n--no-index\n-f wheels/\n", "r.txt")
    assert [(r.name, r.pinned) for r in requirements] == [("numpy", False)]
    assert options == {"no-index", "find-links"}


def test_the_image_tables_name_the_packages_the_generated_handlers_import() -> None:
    from mlinfra.models import frameworks

    for framework in frameworks.all_frameworks():
        assert {startup.canonical(p) for p in framework.requirements} <= startup.IMAGE_PACKAGES[framework.name]


def test_a_json_document_that_is_not_a_booster_is_ignored() -> None:
    data = json.dumps({"version": [9, 9, 9]}).encode()
    assert libraries.recorded_version("xgboost", [("schema.json", lambda: io.BytesIO(data))]) is None


def test_vendor_downloads_what_the_image_lacks_with_its_dependencies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pip download from a local folder of wheels (no index), as it would from PyPI for the image's platform.
    index = tmp_path / "index"
    index.mkdir()
    wheel(index, "fancy", ["numpy>=1.20", "tinydep"])  # numpy is in the image: not vendored
    wheel(index, "tinydep", [])
    for name, value in {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(index), "PIP_CONFIG_FILE": "/dev/null"}.items():
        monkeypatch.setenv(name, value)
    directory = tmp_path / "model"
    (directory / "code").mkdir(parents=True)
    (directory / "code" / "inference.py").write_text("def model_fn(d):\n    return d\n")
    (directory / "code" / "requirements.txt").write_text("fancy==1.0\n")
    with pytest.raises(BadInputError, match="register with --vendor"):
        libraries.choose_image(directory, "sklearn", "1.9-0", None, "eu-west-1", archive=False)
    choice = libraries.choose_image(directory, "sklearn", "1.9-0", None, "eu-west-1", archive=False, vendor=True)
    assert choice.framework_version == "1.9-0"
    assert sorted(p.name for p in (directory / "code" / "wheels").iterdir()) == [
        "fancy-1.0-py3-none-any.whl",
        "tinydep-1.0-py3-none-any.whl",
    ]
    assert (directory / "code" / "requirements.txt").read_text() == "--no-index\n--find-links wheels\nfancy==1.0\n"
    (directory / "code" / "requirements.txt").write_text("missing-package\n")
    with pytest.raises(BadInputError, match=r"cannot vendor 'missing-package' for the sklearn 1.9-0 image"):
        libraries.choose_image(directory, "sklearn", "1.9-0", None, "eu-west-1", archive=False, vendor=True)
