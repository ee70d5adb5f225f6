"""Capture reading: SageMaker's record shape in every encoding, both time formats, malformed lines, the window."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from mlinfra_drift import records
from mlinfra_drift.capture import LocalCapture, S3Capture, hours
from mlinfra_drift.records import Decoder
from mlinfra_drift.scoring import score
from tests.drift.helpers import END, START, baseline_of, record

FEATURES = ["age", "plan", "score"]


def decode(lines: list[str]) -> tuple[list[Any], Counter[str]]:
    malformed: Counter[str] = Counter()
    batch = Decoder(FEATURES, malformed).decode("\n".join(lines).encode())
    rows = [row.split(",") for row in batch.text_rows] + [list(row) for row in batch.rows]
    return sorted(rows, key=lambda row: int(row[0])), malformed


def test_every_encoding_and_payload_shape() -> None:
    rows, malformed = decode(
        [
            record("34,basic,0.5"),
            record("35,pro,1.5\n36,basic,2.5\n"),  # a multi-row CSV request, trailing newline as clients send it
            record('"37","team, large",3.5'),  # quoted cells
            record("38,basic,4.5", encoding="BASE64", content_type="text/csv"),
            record('[39, "pro", 5.5]', encoding="JSON", content_type="application/json"),
            record('{"instances": [[40, "basic", 6.5], [41, "pro", 7.5]]}', encoding="JSON"),
            record('{"age": 42, "score": 8.5, "plan": "pro"}', encoding="JSON"),
            record('[{"age": 43, "plan": "basic"}]', encoding="BASE64", content_type="application/json"),
            record('{"inputs": [[44, "pro", 9.5]]}', encoding="BASE64", content_type="application/octet-stream"),
        ]
    )
    assert malformed == Counter()
    assert [row[0] for row in rows] == ["34", "35", "36", "37", "38", 39, 40, 41, 42, 43, 44]
    assert rows[3] == ["37", "team, large", "3.5"]
    assert rows[1] == ["35", "pro", "1.5"]
    assert rows[5] == [39, "pro", 5.5]
    assert rows[8] == [42, "pro", 8.5]  # by name, in the baseline's order
    assert rows[9] == [43, "basic", None]  # a missing key is a missing value


def test_malformed_lines_are_counted_per_reason() -> None:
    good = record("34,basic,0.5")
    rows, malformed = decode(
        [
            good,
            good[: len(good) // 2],  # truncated JSON
            "not json at all",
            json.dumps({"eventMetadata": {}}),  # no captureData
            record("1,2", encoding="CSV"),  # two fields, the baseline has three
            record("1,2,3,4\n5,basic,6"),  # one wrong row, one good row in the same request
            record("34,basic,0.5", encoding="XML"),
            record("{not json", encoding="JSON"),
            record('"just a string"', encoding="JSON"),
            "",  # blank lines are not records
        ]
    )
    assert len(rows) == 2
    assert malformed == Counter(
        {
            records.INVALID_JSON: 2,
            records.NO_INPUT: 1,
            records.WRONG_WIDTH: 2,
            records.UNSUPPORTED_ENCODING: 1,
            records.BAD_PAYLOAD: 2,
        }
    )


def test_bad_base64_is_its_own_reason() -> None:
    line = json.loads(record("x"))
    line["captureData"]["endpointInput"].update(encoding="BASE64", data="%%%%")
    _, malformed = decode([json.dumps(line)])
    assert malformed == Counter({records.BAD_BASE64: 1})


def test_non_numeric_cells_are_counted_and_their_rows_left_out() -> None:
    baseline = baseline_of({"age": [30, 40, 50], "plan": ["a", "b", "a"], "score": [0.1, 0.2, 0.3]})
    lines = [record("34,a,0.5"), record("abc,a,0.5"), record("35,b,"), record("36,a,1e400")]
    report = score([_file(lines)], baseline, start=START, end=END)
    assert report.rows == 3
    assert report.malformed == {records.NON_NUMERIC: 1}
    score_feature = next(f for f in report.features if f.name == "score")
    assert score_feature.missing_rate == pytest.approx(2 / 3)  # empty and infinite cells are missing, not malformed


def _file(lines: list[str], edge: bool = False) -> Any:
    from mlinfra_drift.capture import CaptureFile

    return CaptureFile("f.jsonl", "\n".join(lines).encode(), edge)


def write_capture(root: Path, when: datetime, lines: list[str], name: str = "00-00-000-a.jsonl") -> Path:
    """Lines in SageMaker's layout below `root` (the capture prefix): <endpoint>/<variant>/yyyy/mm/dd/hh/<file>."""
    folder = root / "mlinfra-staging-churn" / "primary" / when.strftime("%Y/%m/%d/%H")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_window_edges_filter_by_inference_time_in_both_formats(tmp_path: Path) -> None:
    start, end = START + timedelta(minutes=30), END  # 10:30 to 12:00
    write_capture(
        tmp_path,
        START,
        [
            record("1,a,1", time="2026-11-26T10:29:59Z"),  # before the window, same partition
            record("2,a,2", time="2026-11-26T10:30:00Z"),
            record("3,a,3", time="2026-11-26T10:45:01.123Z"),  # fractional seconds
            record("4,a,4", time="yesterday"),
        ],
    )
    write_capture(tmp_path, START + timedelta(hours=1), [record("5,a,5", time="2026-11-26T11:10:00.5Z")])
    write_capture(tmp_path, END, [record("6,a,6", time="2026-11-26T12:00:00Z")])  # not listed: outside
    write_capture(tmp_path, START - timedelta(hours=1), [record("7,a,7", time="2026-11-26T09:10:00Z")])
    baseline = baseline_of({"age": [1, 2, 3], "plan": ["a", "b", "a"], "score": [1, 2, 3]})
    for root in (tmp_path, tmp_path / "mlinfra-staging-churn", tmp_path / "mlinfra-staging-churn" / "primary"):
        capture = LocalCapture(root, start, end)
        report = score(capture, baseline)
        assert report.rows == 3, root
        assert capture.files == 2
        assert report.malformed == {records.BAD_TIME: 1}
        assert report.outside_window == 1


def test_a_single_exported_file(tmp_path: Path) -> None:
    path = tmp_path / "export.jsonl"
    path.write_text(record("1,a,1", time="2026-11-26T10:00:00Z") + "\n" + record("2,a,2", time="2026-11-27T00:00Z"))
    baseline = baseline_of({"age": [1, 2, 3], "plan": ["a", "b", "a"], "score": [1, 2, 3]})
    assert score(LocalCapture(path, START, END), baseline).rows == 1


def test_hours_of_a_window() -> None:
    assert hours(START + timedelta(minutes=5), START + timedelta(hours=2, minutes=1)) == [
        START,
        START + timedelta(hours=1),
        START + timedelta(hours=2),
    ]
    with pytest.raises(ValueError, match="before it starts"):
        LocalCapture(Path(), END, START)


@pytest.mark.emulator
def test_s3_capture_lists_only_the_window_and_checkpoints(aws_env: str) -> None:
    s3 = boto3.client("s3", region_name="eu-west-1")
    s3.create_bucket(Bucket="registry", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    prefix = "capture/churn/mlinfra-staging-churn/primary"
    day_before = START - timedelta(days=1)
    for when in (day_before, START, START + timedelta(hours=1), END):
        for name in ("00-01-000-a.jsonl", "30-00-000-b.jsonl"):
            body = record("1,a,1", time=when.strftime("%Y-%m-%dT%H:") + name[:2] + ":00Z")
            s3.put_object(Bucket="registry", Key=f"{prefix}/{when:%Y/%m/%d/%H}/{name}", Body=body.encode())
    listed: list[str] = []
    s3.meta.events.register(
        "provide-client-params.s3.ListObjectsV2", lambda params, **_: listed.append(params["Prefix"])
    )
    baseline = baseline_of({"age": [1, 2, 3], "plan": ["a", "b", "a"], "score": [1, 2, 3]})

    capture = S3Capture(s3, "registry", "capture/churn", START, END)
    report = score(capture, baseline)
    assert report.rows == 4
    assert capture.files == 4
    assert listed == [
        "capture/churn/",
        "capture/churn/mlinfra-staging-churn/",
        f"{prefix}/2026/11/26/10/",
        f"{prefix}/2026/11/26/11/",
    ]
    assert capture.last_key == f"{prefix}/2026/11/26/11/30-00-000-b.jsonl"

    # The next run starts after the checkpoint: nothing is scored twice.
    again = S3Capture(s3, "registry", "capture/churn", START, END, after_key=capture.last_key)
    assert score(again, baseline).rows == 0
    halfway = S3Capture(
        s3, "registry", "capture/churn", START, END, after_key=f"{prefix}/2026/11/26/10/30-00-000-b.jsonl"
    )
    assert score(halfway, baseline).rows == 2

    # One variant named outright lists nothing to find it; upload times select objects too.
    listed.clear()
    one = S3Capture(s3, "registry", "capture/churn", START, END, endpoint="mlinfra-staging-churn", variant="primary")
    assert score(one, baseline).rows == 4
    assert listed == [f"{prefix}/2026/11/26/10/", f"{prefix}/2026/11/26/11/"]
    future = datetime.now(UTC) + timedelta(hours=1)
    later = S3Capture(s3, "registry", "capture/churn", START, END, modified_after=future)
    assert score(later, baseline).rows == 0
    earlier = S3Capture(s3, "registry", "capture/churn", START, END, modified_before=future)
    assert score(earlier, baseline).rows == 4


def test_worker_processes_count_exactly_what_one_process_counts(tmp_path: Path) -> None:
    import numpy as np

    rng = np.random.default_rng(5)
    for hour in range(3):
        when = START + timedelta(hours=hour)
        cells = [f"{rng.normal():.3f},{'ab'[i % 2]},{rng.lognormal():.3f}" for i in range(300)]
        rows = [record(c, time=f"{when:%Y-%m-%dT%H}:0{i % 10}:00Z") for i, c in enumerate(cells)]
        write_capture(tmp_path, when, [*rows, "{truncated", record("1,2")], name=f"{hour}-a.jsonl")
        write_capture(tmp_path, when, rows[:50], name=f"{hour}-b.jsonl")
    baseline = baseline_of({"age": rng.normal(size=500).tolist(), "plan": ["a", "b"] * 250, "score": [1, 2] * 250})
    start = START + timedelta(minutes=5)  # an edge partition: records filtered by time in the workers too
    one = score(LocalCapture(tmp_path, start, END + timedelta(hours=1)), baseline)
    two = score(LocalCapture(tmp_path, start, END + timedelta(hours=1)), baseline, workers=2)
    assert one.rows == two.rows > 0
    assert one.outside_window == two.outside_window > 0
    assert one.malformed == two.malformed == {records.INVALID_JSON: 3, records.WRONG_WIDTH: 3}
    assert one.to_json_dict() == two.to_json_dict()
    assert [f.bins for f in one.features] == [f.bins for f in two.features]


def _deep(depth: int = 10_000) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("careful", [False, True], ids=["fast-path", "window-edge"])
def test_deeply_nested_json_is_malformed_not_a_crash(careful: bool) -> None:
    """A 20 KB line of nested brackets (or a payload nested that deep) is counted, on either path; others score."""
    lines = [
        record("34,basic,0.5"),
        "[" * 10_000,  # not even closed
        _deep(),
        record(_deep(), encoding="JSON", content_type="application/json"),
        record(_deep(), encoding="BASE64", content_type="application/json"),
        record('{"instances": ' + _deep() + "}", encoding="JSON"),
        record("35,pro,1.5"),
    ]
    malformed: Counter[str] = Counter()
    in_window = (lambda _when: True) if careful else None
    batch = Decoder(FEATURES, malformed).decode("\n".join(lines).encode(), in_window)
    assert sorted(batch.text_rows) == ["34,basic,0.5", "35,pro,1.5"]
    assert malformed == Counter({records.INVALID_JSON: 2, records.BAD_PAYLOAD: 3})
    baseline = baseline_of({"age": [30, 40, 50], "plan": ["basic", "pro", "basic"], "score": [0.1, 0.2, 0.3]})
    report = score([_file(lines, edge=careful)], baseline, start=START, end=END)
    assert report.rows == 2 and sum(report.malformed.values()) == 5
