"""SageMaker data capture written by `mlinfra serve`: the same JSONL records and key layout as a real endpoint's.

A real-time endpoint with DataCaptureConfig writes, per captured invocation, one JSON line::

    {"captureData": {"endpointInput": {"observedContentType": "text/csv", "mode": "INPUT",
                                       "data": "34,0.5,2", "encoding": "CSV"},
                     "endpointOutput": {"observedContentType": "text/csv; charset=utf-8", "mode": "OUTPUT",
                                        "data": "0.73\\n", "encoding": "CSV"}},
     "eventMetadata": {"eventId": "<uuid>", "inferenceTime": "2026-11-27T01:02:03Z"}, "eventVersion": "0"}

(`inferenceId` joins eventMetadata when the request carried X-Amzn-SageMaker-Inference-Id), into files named
`<DestinationS3Uri>/<endpoint>/<variant>/yyyy/mm/dd/hh/mm-ss-mmm-<uuid>.jsonl` by the UTC hour of the inference.
Payloads whose content type is listed as CSV or JSON (the endpoint component lists `text/csv` and
`application/json`) are inline with that encoding, anything else BASE64. `mlinfra serve --capture-stage S` writes to
the prefix the ModelEndpoint component gives SageMaker (`s3://<registry>/capture/<model>`), `--capture DIR` to a
local folder laid out the same way, so the drift reader takes either.

Records are buffered and written as one new file per hour partition when the buffer reaches `max_bytes`, every
`max_seconds`, and when the server stops; the writing happens on a background thread, never on a request's path.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

# The content types the ModelEndpoint component declares in capture_content_type_header (infra/components/endpoint.py).
CSV_CONTENT_TYPES = ("text/csv",)
JSON_CONTENT_TYPES = ("application/json",)
EVENT_VERSION = "0"
MAX_BYTES = 4 * 1024 * 1024
MAX_SECONDS = 30.0


def encoding_of(content_type: str) -> str:
    """CSV, JSON or BASE64: how SageMaker stores a payload of this content type (its media type, parameters aside)."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media in CSV_CONTENT_TYPES:
        return "CSV"
    if media in JSON_CONTENT_TYPES:
        return "JSON"
    return "BASE64"


def _payload(body: bytes, content_type: str, mode: str) -> dict[str, str]:
    encoding = encoding_of(content_type)
    if encoding != "BASE64":
        try:
            data = body.decode("utf-8")
        except UnicodeDecodeError:
            encoding = "BASE64"
    if encoding == "BASE64":
        data = base64.b64encode(body).decode("ascii")
    return {"observedContentType": content_type, "mode": mode, "data": data, "encoding": encoding}


def inference_time(when: datetime) -> str:
    """`2026-11-27T01:02:03Z`: the UTC second of an inference, as SageMaker writes it."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def capture_record(
    request_body: bytes,
    request_type: str,
    response_body: bytes,
    response_type: str,
    *,
    when: datetime,
    inference_id: str | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """One captured invocation in SageMaker's record shape."""
    metadata: dict[str, str] = {"eventId": event_id or str(uuid.uuid4())}
    if inference_id:
        metadata["inferenceId"] = inference_id
    metadata["inferenceTime"] = inference_time(when)
    return {
        "captureData": {
            "endpointInput": _payload(request_body, request_type, "INPUT"),
            "endpointOutput": _payload(response_body, response_type, "OUTPUT"),
        },
        "eventMetadata": metadata,
        "eventVersion": EVENT_VERSION,
    }


def file_key(prefix: str, endpoint: str, variant: str, first: datetime) -> str:
    """`<prefix>/<endpoint>/<variant>/yyyy/mm/dd/hh/mm-ss-mmm-<uuid>.jsonl` for a file whose first record is `first`."""
    first = first.astimezone(UTC)
    name = f"{first:%M-%S}-{first.microsecond // 1000:03d}-{uuid.uuid4()}.jsonl"
    path = f"{endpoint}/{variant}/{first:%Y/%m/%d/%H}/{name}"
    return f"{prefix.strip('/')}/{path}" if prefix.strip("/") else path


class Sink(Protocol):
    """Where capture files go."""

    def put(self, key: str, data: bytes) -> None:
        """Store one whole file under `key` (relative to the sink's root)."""

    def describe(self) -> str:
        """The destination, for messages."""


@dataclass
class LocalSink:
    """Capture files in a local folder (written to a temporary name, then renamed: readers never see half a file)."""

    root: Path

    def put(self, key: str, data: bytes) -> None:
        """Write one file atomically."""
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(dir=target.parent, prefix=".", suffix=".part")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            Path(temp).replace(target)
        except BaseException:
            with contextlib.suppress(OSError):
                Path(temp).unlink()
            raise

    def describe(self) -> str:
        """The folder."""
        return str(self.root)


@dataclass
class S3Sink:
    """Capture files in a bucket (the stage registry), one PutObject each, checksummed like every registry write."""

    s3: Any
    bucket: str

    def put(self, key: str, data: bytes) -> None:
        """Upload one file."""
        self.s3.put_object(
            Bucket=self.bucket, Key=key, Body=data, ContentType="application/jsonl", ChecksumAlgorithm="SHA256"
        )

    def describe(self) -> str:
        """The bucket."""
        return f"s3://{self.bucket}"


class CaptureWriter:
    """Buffers captured records and writes them as SageMaker does, on a background thread."""

    def __init__(
        self,
        sink: Sink,
        *,
        prefix: str,
        endpoint: str,
        variant: str,
        max_bytes: int = MAX_BYTES,
        max_seconds: float = MAX_SECONDS,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.sink = sink
        self.prefix = prefix
        self.endpoint = endpoint
        self.variant = variant
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds
        self.warn = warn or (lambda message: print(message, file=sys.stderr))
        self.records = 0
        self.files = 0
        self._pending: list[tuple[datetime, bytes]] = []
        self._size = 0
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def destination(self) -> str:
        """Where the files go: `<sink>/<prefix>/<endpoint>/<variant>/`."""
        path = "/".join(part for part in (self.prefix.strip("/"), self.endpoint, self.variant) if part)
        return f"{self.sink.describe().rstrip('/')}/{path}/"

    def start(self) -> None:
        """Start the background writer (flushes every max_seconds, or sooner when max_bytes are buffered)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="mlinfra-capture", daemon=True)
            self._thread.start()

    def add(self, record: dict[str, Any], when: datetime) -> None:
        """Buffer one record (cheap: the writing happens on the background thread)."""
        line = json.dumps(record, separators=(",", ":")).encode("utf-8") + b"\n"
        with self._lock:
            self._pending.append((when.astimezone(UTC), line))
            self._size += len(line)
            full = self._size >= self.max_bytes
        if full:
            self._wake.set()

    def flush(self) -> int:
        """Write what is buffered, one file per hour partition; returns the number of files written."""
        with self._write_lock:
            with self._lock:
                pending, self._pending, self._size = self._pending, [], 0
            if not pending:
                return 0
            partitions: dict[str, list[tuple[datetime, bytes]]] = {}
            for when, line in pending:
                partitions.setdefault(when.strftime("%Y%m%d%H"), []).append((when, line))
            written = 0
            for entries in partitions.values():
                key = file_key(self.prefix, self.endpoint, self.variant, entries[0][0])
                try:
                    self.sink.put(key, b"".join(line for _, line in entries))
                except Exception as exc:  # noqa: BLE001 - a failed write must not stop serving: keep and retry
                    with self._lock:
                        self._pending[:0] = entries
                        self._size += sum(len(line) for _, line in entries)
                    self.warn(f"capture: writing {key} failed ({type(exc).__name__}: {exc}); will retry")
                    continue
                written += 1
                self.records += len(entries)
            self.files += written
            return written

    def close(self) -> None:
        """Stop the background writer and write everything still buffered."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.flush()
        with self._lock:
            lost = len(self._pending)
        if lost:
            self.warn(f"capture: {lost} record(s) could not be written to {self.destination}")

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.max_seconds)
            self._wake.clear()
            if self._stop.is_set():
                break
            self.flush()
