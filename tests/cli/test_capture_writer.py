"""The capture writer: SageMaker's record shape and key layout, size and time bounds, hour partitions, retries."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime
from pathlib import Path

from mlinfra.serving.capture import CaptureWriter, LocalSink, capture_record, encoding_of, file_key


def test_encoding_follows_the_endpoints_capture_content_types() -> None:
    assert encoding_of("text/csv") == "CSV"
    assert encoding_of("text/csv; charset=utf-8") == "CSV"
    assert encoding_of("Application/JSON") == "JSON"
    assert encoding_of("application/x-npy") == "BASE64"


def test_record_shape_and_base64_payloads() -> None:
    when = datetime(2026, 11, 27, 1, 2, 3, 456000, tzinfo=UTC)
    record = capture_record(b"\x93NUMPY", "application/x-npy", b"[1]", "application/json", when=when, event_id="e1")
    assert record == {
        "captureData": {
            "endpointInput": {
                "observedContentType": "application/x-npy",
                "mode": "INPUT",
                "data": base64.b64encode(b"\x93NUMPY").decode(),
                "encoding": "BASE64",
            },
            "endpointOutput": {
                "observedContentType": "application/json",
                "mode": "OUTPUT",
                "data": "[1]",
                "encoding": "JSON",
            },
        },
        "eventMetadata": {"eventId": "e1", "inferenceTime": "2026-11-27T01:02:03Z"},
        "eventVersion": "0",
    }


def test_file_key_layout() -> None:
    key = file_key("capture/churn", "mlinfra-staging-churn", "primary", datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=UTC))
    prefix = "capture/churn/mlinfra-staging-churn/primary/2026/01/02/03/04-05-006-"
    assert key.startswith(prefix) and key.endswith(".jsonl")
    assert len(key) == len(prefix) + 36 + len(".jsonl")


def writer(root: Path, **options: float) -> CaptureWriter:
    return CaptureWriter(LocalSink(root), prefix="", endpoint="ep", variant="primary", **options)  # type: ignore[arg-type]


def add(w: CaptureWriter, when: datetime, n: int = 1) -> None:
    for _ in range(n):
        w.add(capture_record(b"1,2", "text/csv", b"[0]", "application/json", when=when), when)


def test_one_file_per_hour_partition(tmp_path: Path) -> None:
    w = writer(tmp_path)
    add(w, datetime(2026, 11, 27, 9, 59, 59, tzinfo=UTC), 2)
    add(w, datetime(2026, 11, 27, 10, 0, 1, tzinfo=UTC), 3)
    assert w.flush() == 2
    files = sorted(tmp_path.rglob("*.jsonl"))
    assert [f.parent.relative_to(tmp_path).as_posix() for f in files] == [
        "ep/primary/2026/11/27/09",
        "ep/primary/2026/11/27/10",
    ]
    assert [len(f.read_text().splitlines()) for f in files] == [2, 3]
    assert w.flush() == 0
    assert not list(tmp_path.rglob(".*.part"))


def test_size_bound_flushes_on_the_background_thread(tmp_path: Path) -> None:
    w = writer(tmp_path, max_bytes=2000, max_seconds=3600)
    w.start()
    try:
        add(w, datetime.now(UTC), 10)  # ~300 bytes each
        deadline = time.monotonic() + 10
        while not list(tmp_path.rglob("*.jsonl")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert list(tmp_path.rglob("*.jsonl")), "the size bound did not flush"
    finally:
        w.close()
    assert w.records == 10


def test_time_bound_flushes_and_close_writes_the_rest(tmp_path: Path) -> None:
    w = writer(tmp_path, max_seconds=0.2)
    w.start()
    add(w, datetime.now(UTC), 1)
    deadline = time.monotonic() + 10
    while not list(tmp_path.rglob("*.jsonl")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(list(tmp_path.rglob("*.jsonl"))) == 1
    add(w, datetime.now(UTC), 1)
    w.close()
    lines = [line for f in tmp_path.rglob("*.jsonl") for line in f.read_text().splitlines()]
    assert len(lines) == 2
    assert all(json.loads(line)["eventVersion"] == "0" for line in lines)


class FlakySink:
    def __init__(self, root: Path) -> None:
        self.inner = LocalSink(root)
        self.failures = 1

    def put(self, key: str, data: bytes) -> None:
        if self.failures:
            self.failures -= 1
            raise OSError("disk full")
        self.inner.put(key, data)

    def describe(self) -> str:
        return "flaky"


def test_a_failed_write_keeps_the_records_for_the_next_flush(tmp_path: Path) -> None:
    warnings: list[str] = []
    w = CaptureWriter(FlakySink(tmp_path), prefix="p", endpoint="ep", variant="v", warn=warnings.append)
    add(w, datetime.now(UTC), 2)
    assert w.flush() == 0
    assert warnings and "disk full" in warnings[0] and warnings[0].endswith("will retry")
    assert w.flush() == 1
    assert w.records == 2
    (written,) = tmp_path.rglob("*.jsonl")
    assert written.relative_to(tmp_path).parts[:3] == ("p", "ep", "v")
