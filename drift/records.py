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
problems and per row for row problems, and the record or row is left out of the scores. JSON nested too deep to
parse (a line of 10,000 `[`) is malformed like any other invalid JSON, on every path.
"""

from __future__ import annotations

import base64
import binascii
import csv
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pydantic_core

from .outputs import canonical_outputs, parse_output

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

# The fast path: a line exactly as SageMaker writes a CSV record, compact and in its documented key order, every
# string printable ASCII. The pattern is a grammar of that subset of JSON (string escapes included), so a line it
# matches is a valid record and group 1 is its input: one plain row, verbatim (no escape, no quote), without the
# escaped line end a body may carry (the careful path splits that off too).
# A file where any non-blank line does not match goes through the JSON parser instead, which counts what is wrong.
_TEXT = rb'"[\x20\x21\x23-\x5b\x5d-\x7e]*+"'  # a string without escapes (possessive: no backtracking into it)
_STRING = rb'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*+"'  # any ASCII JSON string
_CANONICAL = re.compile(
    rb'(?m)^\{"captureData":\{"endpointInput":\{"observedContentType":'
    + _TEXT
    # The input: one plain row (group 1), and the line end a client's body often carries, escaped, left out.
    + rb',"mode":"INPUT","data":"([\x20\x21\x23-\x5b\x5d-\x7e]*+)(?:\\r)?(?:\\n)?","encoding":"CSV"\}'
    + rb'(?:,"endpointOutput":\{"observedContentType":'
    + _TEXT
    + rb',"mode":"OUTPUT","data":'
    + _STRING
    + rb',"encoding":"(?:CSV|JSON|BASE64)"\})?\},'
    # Any string pairs: the fast path reads no time (only files inside the window take it). Possessive, so a
    # hostile line of many pairs costs linear time.
    + rb'"eventMetadata":\{(?:'
    + _TEXT
    + rb":"
    + _TEXT
    + rb"(?:,"
    + _TEXT
    + rb":"
    + _TEXT
    + rb')*+)?\},"eventVersion":'
    + _TEXT
    + rb"\}\r?$"
)


@dataclass
class Batch:
    """One file's rows: plain CSV rows as text (comma-separated, of the right width) and rows already split.

    `block` holds the rows of a file whose every line is a canonical CSV record (the fast path): `block_rows` plain
    rows, newline-separated ASCII, widths not yet checked (`Decoder.unpack` moves them into `text_rows`, checking).
    """

    text_rows: list[str] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    block: bytes = b""
    block_rows: int = 0
    outputs: list[Any] = field(default_factory=list)  # output entries (with `Decoder(outputs=True)` only)

    def __len__(self) -> int:
        return len(self.text_rows) + len(self.rows) + self.block_rows


class Decoder:
    """Turns capture lines into rows of the baseline's width, counting what is malformed.

    `in_window(time)` (optional) keeps a record only when its inferenceTime is inside the window; it is given only
    for partitions at the window's edges, where records of neighbouring hours can appear.
    """

    def __init__(self, features: Sequence[str], malformed: Counter[str], *, outputs: bool = False) -> None:
        self.outputs = outputs  # also decode each record's endpointOutput into Batch.outputs
        # Records with an output ("with"), without one ("without") and with one that does not decode ("unreadable").
        self.output_records: Counter[str] = Counter()
        self.features = list(features)
        self.width = len(self.features)
        self.positions = {name: index for index, name in enumerate(self.features)}
        self.malformed = malformed
        self.widths: Counter[int] = Counter()  # widths of the rows refused for their width, for the error message
        self.outside = 0  # records whose inferenceTime fell outside the window

    def decode(self, data: bytes, in_window: Callable[[datetime], bool] | None = None) -> Batch:
        """The rows of every well-formed record in one capture file's bytes."""
        batch = Batch()
        if in_window is None and self._canonical(data, batch):
            return batch
        text_rows = batch.text_rows
        commas = self.width - 1
        for record in self._records(data):
            try:
                payload = record["captureData"]["endpointInput"]
                if in_window is None and payload["encoding"] == "CSV":
                    # The common case, inline: one plain CSV row of the right width.
                    row = payload["data"]
                    if row.count(",") == commas and '"' not in row and "\n" not in row and "\r" not in row:
                        text_rows.append(row)
                        if self.outputs:
                            self._output(record, batch)
                        continue
            except (TypeError, KeyError, AttributeError):
                if not isinstance(record, dict):
                    self.malformed[INVALID_JSON] += 1
                    continue
                if not isinstance(record.get("captureData"), dict) or "endpointInput" not in record["captureData"]:
                    self.malformed[NO_INPUT] += 1
                    continue
                payload = record["captureData"]["endpointInput"]
            if in_window is not None:
                try:
                    when = datetime.fromisoformat(record["eventMetadata"]["inferenceTime"])
                except (ValueError, TypeError, KeyError):
                    self.malformed[BAD_TIME] += 1
                    continue
                if not in_window(when):
                    self.outside += 1
                    continue
            self._payload_rows(payload, batch)
            if self.outputs:
                self._output(record, batch)
        return batch

    def _canonical(self, data: bytes, batch: Batch) -> bool:
        """The fast path: when every line is a canonical CSV record, its rows as a block (and its outputs)."""
        plain = _CANONICAL.findall(data)
        if not plain or len(plain) != _lines(data):
            return False
        batch.block, batch.block_rows = b"\n".join(plain), len(plain)  # no JSON parsing at all
        if self.outputs:
            found = canonical_outputs(data)
            self.output_records["without"] += len(plain) - len(found)
            for entries in found:
                self._count_output(entries, batch)
        return True

    def _output(self, record: dict[str, Any], batch: Batch) -> None:
        payload = record["captureData"].get("endpointOutput")
        self._count_output([] if payload is None else parse_output(payload), batch)

    def _count_output(self, entries: list[Any] | None, batch: Batch) -> None:
        if entries is None:
            self.output_records["unreadable"] += 1
        elif not entries:
            self.output_records["without"] += 1
        else:
            self.output_records["with"] += 1
            batch.outputs.extend(entries)

    @staticmethod
    def _records(data: bytes) -> list[Any]:
        """Each non-blank line parsed (None when it is not JSON): one parse of the whole file when it is clean."""
        body = data.strip()
        if not body:
            return []
        try:  # one record per line and no blank lines: the file is a JSON array once its newlines are commas
            # pydantic-core's JSON parser (Rust) reads it about three times faster than the json module.
            return list(pydantic_core.from_json(b"[" + body.replace(b"\n", b",") + b"]", cache_strings="keys"))
        except (ValueError, UnicodeDecodeError):
            pass  # a malformed line somewhere: parse line by line, to count it and keep the others
        lines = [line for line in data.splitlines() if line.strip()]
        records: list[Any] = []
        for line in lines:
            try:
                records.append(json.loads(line))
            except (ValueError, UnicodeDecodeError, RecursionError):  # nested too deep for any record: malformed
                records.append(None)
        return records

    def unpack(self, batch: Batch) -> None:
        """Move a batch's block into its text rows, counting rows of the wrong width."""
        if batch.block_rows:
            block, batch.block, batch.block_rows = batch.block, b"", 0
            # One row per record, each free of line breaks: split on "\n" alone (splitlines would drop a last
            # empty row, which a one-feature model scores as a missing value).
            self._plain_rows(block.decode("ascii").split("\n"), batch)

    def _payload_rows(self, payload: Any, batch: Batch) -> None:
        if not isinstance(payload, dict) or not isinstance(payload.get("data"), str):
            self.malformed[NO_INPUT] += 1
            return
        data: str = payload["data"]
        encoding = str(payload.get("encoding", "")).upper()
        if encoding == "BASE64":
            try:
                data = base64.b64decode(data, validate=True).decode("utf-8-sig")
            except (binascii.Error, ValueError):
                self.malformed[BAD_BASE64 if not _is_base64(payload["data"]) else BAD_PAYLOAD] += 1
                return
            content_type = str(payload.get("observedContentType", "")).lower()
            encoding = "JSON" if "json" in content_type or data.lstrip()[:1] in ("[", "{") else "CSV"
        if encoding == "CSV":
            self._csv_rows(data, batch)
        elif encoding == "JSON":
            self._json_rows(data, batch.rows)
        else:
            self.malformed[UNSUPPORTED_ENCODING] += 1

    def _csv_rows(self, data: str, batch: Batch) -> None:
        if '"' in data:  # quoted cells need the csv module
            for cells in csv.reader(data.splitlines()):
                if len(cells) == self.width:
                    batch.rows.append(cells)
                elif cells and cells != [""]:
                    self._wrong_width(len(cells))
            return
        # Plain rows (the common case) stay text: the scorer parses a whole file's rows in one go.
        self._plain_rows(data.splitlines() if "\n" in data or "\r" in data else (data,), batch)

    def _plain_rows(self, rows: Iterable[str], batch: Batch) -> None:
        for row in rows:
            fields = row.count(",") + 1
            if fields == self.width:
                batch.text_rows.append(row)
            elif row.strip():
                self._wrong_width(fields)

    def _json_rows(self, data: str, rows: list[Row]) -> None:
        try:
            value = json.loads(data)
        except (ValueError, RecursionError):  # not JSON, or nested deeper than any row (a hostile payload)
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


def _lines(data: bytes) -> int:
    """The number of lines in a file's bytes (a last line without a newline counts)."""
    return data.count(b"\n") + (0 if not data or data.endswith(b"\n") else 1)


def _is_json_object(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except (ValueError, UnicodeDecodeError, RecursionError):
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
    output_type: str = "text/csv; charset=utf-8",
    output_encoding: str = "CSV",
    fractional: bool = False,
) -> str:
    """One record in SageMaker's capture shape (for local serving, tests, the quickstart and benchmarks).

    `data` is the request body as text and `output` the answer (`output_type`, `output_encoding`); with encoding
    BASE64 each is base64-encoded here, as SageMaker does for content types it is not told are CSV or JSON.
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
                "observedContentType": output_type,
                "mode": "OUTPUT",
                "data": base64.b64encode(output.encode()).decode() if output_encoding == "BASE64" else output,
                "encoding": output_encoding,
            },
        },
        "eventMetadata": {"eventId": event_id, "inferenceTime": when},
        "eventVersion": "0",
    }
    return json.dumps(record, separators=(",", ":"))
