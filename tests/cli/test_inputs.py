"""Register's input readers: metrics JSON, a data sample's baseline, the git commit."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mlinfra.errors import BadInputError
from mlinfra.models import inputs
from mlinfra.models.inputs import git_sha, read_baseline, read_metrics

# ---------------------------------------------------------------------------------------------------------------
# Metrics


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_metrics_are_floats_in_file_order(tmp_path: Path) -> None:
    path = write(tmp_path / "metrics.json", '{"auc": 0.91, "rows": 12000, "loss": -1e-3}')
    metrics = read_metrics(path)
    assert metrics == {"auc": 0.91, "rows": 12000.0, "loss": -0.001}
    assert list(metrics) == ["auc", "rows", "loss"]
    assert all(type(v) is float for v in metrics.values())


def test_metrics_not_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "metrics.json", '{\n  "auc": 0.91\n  "f1": 0.5\n}\n')
    with pytest.raises(BadInputError) as caught:
        read_metrics("metrics.json")
    assert str(caught.value) == "metrics.json: not valid JSON (line 3: Expecting ',' delimiter)"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[0.9]", 'm.json: must be a JSON object of metric name to number, e.g. {"auc": 0.91}, not an array'),
        ('{"auc": "0.9"}', 'm.json: auc: must be a number, not a string ("0.9")'),
        ('{"ok": true}', "m.json: ok: must be a number, not a boolean (true)"),
        ('{"auc": null}', "m.json: auc: must be a number, not null"),
        (
            '{"val": {"auc": 0.9}}',
            "m.json: val: must be a number, not an object; nested metrics are not supported, flatten them "
            '(e.g. "val.auc": 0.91)',
        ),
        ('{"auc": NaN}', "m.json: NaN is not a number JSON allows; metric values must be finite numbers"),
        ('{"auc": 0.9, "auc": 0.8}', "m.json: metric 'auc' appears twice; keep one"),
    ],
)
def test_metrics_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, message: str) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "m.json", text)
    with pytest.raises(BadInputError) as caught:
        read_metrics("m.json")
    assert str(caught.value) == message


def test_metrics_file_missing(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match=r"nope\.json: file not found$"):
        read_metrics(tmp_path / "nope.json")


# ---------------------------------------------------------------------------------------------------------------
# Baseline

SAMPLE = """age,plan,score
34,basic,0.5
,premium,1.5
51,basic,
28,,2.5
NA,basic,3.5
"""


def test_baseline_of_a_small_csv(tmp_path: Path) -> None:
    summary = read_baseline(write(tmp_path / "sample.csv", SAMPLE))

    assert summary["rows"] == 5
    assert summary["format"] == "csv"
    assert summary["truncated"] is False
    assert "note" not in summary
    assert list(summary["columns"]) == ["age", "plan", "score"]
    json.dumps(summary, allow_nan=False)  # JSON-able as strict JSON

    age = summary["columns"]["age"]
    assert age["type"] == "numeric"
    assert (age["count"], age["missing"], age["missing_rate"]) == (3, 2, 0.4)
    assert age["mean"] == pytest.approx((34 + 51 + 28) / 3)
    assert age["std"] == pytest.approx(11.930353, rel=1e-6)  # sample standard deviation
    assert (age["min"], age["max"]) == (28.0, 51.0)
    assert age["quantiles"]["0.5"] == 34.0
    assert list(age["quantiles"]) == ["0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9"]
    assert len(age["bin_edges"]) == 11
    assert age["bin_edges"][0] == 28.0
    assert age["bin_edges"][-1] == 51.0
    assert age["bin_edges"] == sorted(age["bin_edges"])

    plan = summary["columns"]["plan"]
    assert plan["type"] == "categorical"
    assert (plan["count"], plan["missing"], plan["missing_rate"]) == (4, 1, 0.2)
    assert plan["distinct"] == 2
    assert plan["top"] == [
        {"value": "basic", "count": 3, "frequency": 0.75},
        {"value": "premium", "count": 1, "frequency": 0.25},
    ]
    assert plan["other_frequency"] == 0.0

    score = summary["columns"]["score"]
    assert (score["count"], score["missing"], score["mean"]) == (4, 1, 2.0)


def test_baseline_keeps_the_top_20_categories(tmp_path: Path) -> None:
    rows = [f"c{i:02d}" for i in range(25) for _ in range(i + 1)]
    summary = read_baseline(write(tmp_path / "cats.csv", "city\n" + "\n".join(rows) + "\n"))
    city = summary["columns"]["city"]
    assert city["distinct"] == 25
    assert [entry["value"] for entry in city["top"]] == [f"c{i:02d}" for i in range(24, 4, -1)]
    assert city["other_frequency"] == pytest.approx(sum(range(1, 6)) / len(rows))


def test_baseline_caps_rows_with_a_note(tmp_path: Path) -> None:
    path = write(tmp_path / "big.csv", "x\n" + "".join(f"{i}\n" for i in range(10)))
    summary = read_baseline(path, max_rows=4)
    assert summary["rows"] == 4
    assert summary["truncated"] is True
    assert summary["note"] == "summarizes the first 4 rows only; the sample has more"
    assert summary["columns"]["x"]["max"] == 3.0
    assert read_baseline(path, max_rows=10)["truncated"] is False


def test_a_column_found_categorical_late_counts_every_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inputs, "CSV_BATCH_ROWS", 2)  # the non-number arrives in the third batch
    path = write(tmp_path / "late.csv", "code,x\n1,1\n2,2\n1,3\n, 4\nA7 ,5\n1,6\n")
    summary = read_baseline(path)
    code = summary["columns"]["code"]
    assert (code["type"], code["count"], code["missing"], code["distinct"]) == ("categorical", 5, 1, 3)
    assert code["top"][0] == {"value": "1", "count": 3, "frequency": 0.6}
    assert {entry["value"] for entry in code["top"]} == {"1", "2", "A7"}
    assert summary["columns"]["x"]["mean"] == 3.5
    capped = read_baseline(path, max_rows=3)
    assert (capped["rows"], capped["truncated"], capped["columns"]["x"]["max"]) == (3, True, 3.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "d.csv: empty file; a baseline needs a header row and data rows"),
        ("\n\n", "d.csv: empty file; a baseline needs a header row and data rows"),
        ("a,b\n", "d.csv: a header but no data rows; give a sample of the model's input data"),
        ("a,b\n1,2\n3\n", "d.csv: line 3: 1 fields, the header has 2; fix the row (quote values that contain commas)"),
        ("a,a\n1,2\n", "d.csv: column 'a' appears twice in the header; rename one"),
    ],
)
def test_baseline_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, message: str) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "d.csv", text)
    with pytest.raises(BadInputError) as caught:
        read_baseline("d.csv")
    assert str(caught.value) == message


def test_parquet_without_pyarrow_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # `import pyarrow` now raises ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    path = tmp_path / "sample.parquet"
    path.write_bytes(b"PAR1")
    with pytest.raises(BadInputError) as caught:
        read_baseline(path)
    assert str(caught.value) == (
        f"{path}: reading Parquet needs pyarrow: `pip install 'mlinfra[parquet]'`, or give a CSV sample instead"
    )


def test_baseline_of_parquet_matches_the_csv(tmp_path: Path) -> None:
    import pyarrow as pa  # installed by the `parquet` extra, which `dev` includes
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "age": pa.array([34, None, 51, 28, None], pa.int64()),
            "plan": pa.array(["basic", "premium", "basic", None, "basic"]),
            "score": pa.array([0.5, 1.5, None, 2.5, 3.5]),
        }
    )
    path = tmp_path / "sample.parquet"
    pq.write_table(table, path)

    from_parquet = read_baseline(path)
    from_csv = read_baseline(write(tmp_path / "sample.csv", SAMPLE))

    assert from_parquet["format"] == "parquet"
    assert from_parquet["columns"] == from_csv["columns"]
    capped = read_baseline(path, max_rows=2)
    assert (capped["rows"], capped["truncated"], capped["columns"]["age"]["count"]) == (2, True, 1)


def test_not_parquet_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "fake.parquet", "a,b\n1,2\n")
    with pytest.raises(BadInputError, match=r"fake\.parquet: not a readable Parquet file"):
        read_baseline(path)


def test_non_finite_numbers_count_as_missing(tmp_path: Path) -> None:
    summary = read_baseline(write(tmp_path / "inf.csv", "x\n1\ninf\n3\n"))
    x = summary["columns"]["x"]
    assert (x["type"], x["count"], x["missing"], x["mean"]) == ("numeric", 2, 1, 2.0)
    assert not any(math.isinf(v) for v in x["bin_edges"])


# ---------------------------------------------------------------------------------------------------------------
# git


def git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    (root / "train.py").write_text("print('hi')\n")
    git(root, "add", "train.py")
    git(root, "commit", "-q", "-m", "first")
    return root


def test_git_sha_of_a_clean_checkout(repo: Path) -> None:
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{40}", head)
    assert git_sha(repo) == head
    assert git_sha(repo / "train.py") == head  # a file: its directory's repository


def test_git_sha_marks_changes_dirty(repo: Path) -> None:
    (repo / "train.py").write_text("print('changed')\n")
    sha = git_sha(repo)
    assert sha is not None
    assert sha.endswith("-dirty")
    assert len(sha) == 40 + len("-dirty")


def test_git_sha_default_is_the_working_directory(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo)
    assert git_sha() == git_sha(repo)


def test_git_sha_outside_a_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # whatever encloses the temp dir does not count
    outside = tmp_path / "plain"
    outside.mkdir()
    assert git_sha(outside) is None
    assert git_sha(tmp_path / "missing") is None


def test_git_sha_without_git(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    assert git_sha(repo) is None
