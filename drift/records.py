"""SageMaker data capture records: one JSON object per line, decoded into the rows of the request they captured.

The documented record shape (what a real endpoint writes, one line each)::

    {"captureData": {"endpointInput": {"observedContentType": "text/csv", "mode": "INPUT",
                                       "data": "34,0.5,basic", "encoding": "CSV"},
                     "endpointOutput": {"observedContentType": "text/csv; charset=utf-8", "mode": "OUTPUT",
                                        "data": "0.73", "encoding": "CSV"}},
     "eventMetadata": {"eventId": "…", "inferenceTime": "2026-11-27T01:02:03Z"}, "eventVersion": "0"}

`encoding` is CSV or JSON (the payload inline, for content types the endpoint lists as such) or BASE64 (anything
else, or when no content types are configured); `inferenceTime` comes with or without fractional seconds. Only the
input is scored. A CSV payload holds one row per line (multi-row requests count every row); a JSON payload is a
row (`[..]` by position, `{name: value}` by name), a list of rows, or an object with `instances`, `inputs` or
`data` holding those.

Nothing malformed crashes a run or vanishes: each problem is counted under one of REASONS, per record for record
problems and per row for row problems, and the record or row is left out of the scores.
"""

from __future__ import annotations

import base64
import binascii
import csv
import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

INVALID_JSON = "invalid_json"  # the line is not a JSON object (e.g. truncated)
NO_INPUT = "no_input"  # no captureData.endpointInput.data
BAD_BASE64 = "bad_base64"  # a BASE64 payload that does not decode
UNSUPPORTED_ENCODING = "unsupported_encoding"  # an encoding other than CSV, JSON, BASE64
BAD_PAYLOAD = "bad_payload"  # a payload that is not UTF-8 text, or JSON that holds no rows
BAD_TIME = "bad_time"  # eventMetadata.inferenceTime missing or not an ISO 8601 time
WRONG_WIDTH = "wrong_width"  # a row whose number of fields differs from the baseline's features
NON_NUMERIC = "non_numeric"  # a non-missing cell of a numeric feature that is not a number
REASONS = (INVALID_JSON, NO_INPUT, BAD_BASE64, UNSUPPORTED_ENCODING, BAD_PAYLOAD, BAD_TIME, WRONG_WIDTH, NON_NUMERIC)

_JSON_ROW_KEYS = ("instances", "inputs", "data")
Row = Sequence[Any]


class Decoder:
    """Turns capture lines into rows of the baseline's width, counting what is malformed.

    `in_window(time)` (optional) keeps a record only when its inferenceTime is inside the window; it is given only
    for partitions at the window's edges, where records of neighbouring hours can appear.
    """

    def __init__(self, features: Sequence[str], malformed: Counter[str]) -> None:
        self.features = list(features)
        self.width = len(self.features)
        self.positions = {name: index for index, name in enumerate(self.features)}
        self.malformed = malformed
        self.widths: Counter[int] = Counter()  # widths of the rows refused for their width, for the error message
        self.outside = 0  # records whose inferenceTime fell outside the window

    def decode(self, data: bytes, in_window: Callable[[datetime], bool] | None = None) -> list[Row]:
        """The rows of every well-formed record in one capture file's bytes."""
        rows: list[Row] = []
        for line in data.splitlines():
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                payload = record["captureData"]["endpointInput"]
            except (ValueError, TypeError, KeyError, UnicodeDecodeError):
                self.malformed[INVALID_JSON if not _is_json_object(line) else NO_INPUT] += 1
                continue
            if in_window is not None:
                try:
                    when = datetime.fromisoformat(record["eventMetadata"]["inferenceTime"])
                except (ValueError, TypeError, KeyError):
                    self.malformed[BAD_TIME] += 1
                    continue
                if not in_window(when):
                    self.outside += 1
                    continue
            self._payload_rows(payload, rows)
        return rows

    def _payload_rows(self, payload: Any, rows: list[Row]) -> None:
        if not isinstance(payload, dict) or not isinstance(payload.get("data"), str):
            self.malformed[NO_INPUT] += 1
            return
        data: str = payload["data"]
        encoding = str(payload.get("encoding", "")).upper()
        content_type = str(payload.get("observedContentType", "")).lower()
        if encoding == "BASE64":
            try:
                data = base64.b64decode(data, validate=True).decode("utf-8-sig")
            except (binascii.Error, ValueError):
                self.malformed[BAD_BASE64 if not _is_base64(payload["data"]) else BAD_PAYLOAD] += 1
                return
            encoding = "JSON" if "json" in content_type or data.lstrip()[:1] in ("[", "{") else "CSV"
        if encoding == "CSV":
            self._csv_rows(data, rows)
        elif encoding == "JSON":
            self._json_rows(data, rows)
        else:
            self.malformed[UNSUPPORTED_ENCODING] += 1

    def _csv_rows(self, data: str, rows: list[Row]) -> None:
        # Quoted cells need the csv module; plain numeric rows (the common case) split faster.
        quoted = '"' in data
        lines: Iterable[list[str]] = (
            csv.reader(data.splitlines()) if quoted else (r.split(",") for r in data.splitlines())
        )
        for cells in lines:
            if len(cells) == self.width:
                rows.append(cells)
            elif cells and cells != [""]:
                self._wrong_width(len(cells))

    def _json_rows(self, data: str, rows: list[Row]) -> None:
        try:
            value = json.loads(data)
        except ValueError:
            self.malformed[BAD_PAYLOAD] += 1
            return
        if isinstance(value, dict) and not any(key in self.positions for key in value):
            value = next((value[key] for key in _JSON_ROW_KEYS if key in value), None)
        if isinstance(value, dict) or (isinstance(value, list) and value and not isinstance(value[0], list | dict)):
            value = [value]
        if not isinstance(value, list):
            self.malformed[BAD_PAYLOAD] += 1
            return
        for row in value:
            if isinstance(row, dict):
                rows.append([row.get(name) for name in self.features])
            elif isinstance(row, list) and len(row) == self.width:
                rows.append(row)
            elif isinstance(row, list):
                self._wrong_width(len(row))
            else:
                self.malformed[BAD_PAYLOAD] += 1

    def _wrong_width(self, width: int) -> None:
        self.malformed[WRONG_WIDTH] += 1
        self.widths[width] += 1


def _is_json_object(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except (ValueError, UnicodeDecodeError):
        return False


def _is_base64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def capture_line(
    data: str,
    *,
    inference_time: datetime,
    event_id: str,
    content_type: str = "text/csv",
    encoding: str = "CSV",
    output: str = "",
    fractional: bool = False,
) -> str:
    """One record in SageMaker's capture shape (for local serving, tests, the quickstart and benchmarks).

    `data` is the request body as text; with encoding BASE64 it is base64-encoded here, as SageMaker does for
    content types it is not told are CSV or JSON.
    """
    if encoding == "BASE64":
        data = base64.b64encode(data.encode()).decode()
    when = (
        inference_time.strftime("%Y-%m-%dT%H:%M:%S")
        + (f".{inference_time.microsecond // 1000:03d}" if fractional else "")
        + "Z"
    )
    record = {
        "captureData": {
            "endpointInput": {"observedContentType": content_type, "mode": "INPUT", "data": data, "encoding": encoding},
            "endpointOutput": {
                "observedContentType": "text/csv; charset=utf-8",
                "mode": "OUTPUT",
                "data": output,
                "encoding": "CSV",
            },
        },
        "eventMetadata": {"eventId": event_id, "inferenceTime": when},
        "eventVersion": "0",
    }
    return json.dumps(record, separators=(",", ":"))
