"""The model's answers in SageMaker data capture: `captureData.endpointOutput`, decoded into one value per row.

An output payload is what the endpoint answered, as the generated handlers answer (and the containers' default
encoders): JSON, a list with one entry per row (`[0, 1, 1]`), or that list wrapped as `{"predictions": [...]}`; an
entry is a prediction (a number or a label) or a row of class probabilities (`[[0.1, 0.9], ...]`, asked for with
`Accept: application/json; output=probabilities`). CSV holds one line per row: one value (a prediction) or one
value per class. BASE64 payloads are decoded first, JSON or CSV by their content type. An entry is returned as a
scalar (a prediction) or a list (probabilities); a CSV line of one value is a scalar.

`parse_output` returns None for a payload it cannot read (counted by the scorer as a malformed output, never an
error) and [] for an empty one (an endpoint whose capture holds no outputs writes `"data": ""`).
"""

from __future__ import annotations

import base64
import binascii
import csv
import json
import re
from typing import Any

import pydantic_core

_WRAPPERS = ("predictions", "outputs", "probabilities")
_TEXT = rb'"[\x20\x21\x23-\x5b\x5d-\x7e]*+"'
_STRING = rb'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*+"'
# The output of a canonical capture line (see mlinfra_drift.records): content type, data (a JSON string), encoding.
# An input row on the fast path holds no quote, so this cannot match inside one.
CANONICAL_OUTPUT = re.compile(
    rb'"endpointOutput":\{"observedContentType":('
    + _TEXT
    + rb'),"mode":"OUTPUT","data":('
    + _STRING
    + rb'),"encoding":"(CSV|JSON|BASE64)"\}'
)


def parse_output(payload: Any) -> list[Any] | None:
    """The entries of one captured output (see the module doc); [] when empty, None when unreadable."""
    if not isinstance(payload, dict):
        return None
    data = payload.get("data")
    if not isinstance(data, str):
        return None
    return parse_output_data(data, str(payload.get("encoding", "")), str(payload.get("observedContentType", "")))


def parse_output_data(data: str, encoding: str, content_type: str) -> list[Any] | None:
    """The entries of an output payload's data given its encoding and content type."""
    if not data.strip():
        return []
    encoding = encoding.upper()
    if encoding == "BASE64":
        try:
            data = base64.b64decode(data, validate=True).decode("utf-8-sig")
        except (binascii.Error, ValueError):
            return None
        encoding = "JSON" if "json" in content_type.lower() or data.lstrip()[:1] in ("[", "{") else "CSV"
    if encoding == "JSON":
        return _json_entries(data)
    if encoding == "CSV":
        return _csv_entries(data)
    return None


def _json_entries(data: str | bytes) -> list[Any] | None:
    try:  # pydantic-core's parser (Rust): several times faster than the json module on these short payloads
        value = pydantic_core.from_json(data)
    except ValueError:  # not JSON, or nested deeper than any answer (a hostile payload)
        return None
    return _entries(value)


_SCALARS = (int, float, str)


def _entries(value: Any) -> list[Any] | None:
    """The entries of a decoded JSON answer (see the module doc), None when it is no answer of a handler."""
    if isinstance(value, dict):
        value = next((value[key] for key in _WRAPPERS if key in value), None)
    if type(value) in _SCALARS:
        return [value]  # one prediction, unwrapped
    if not isinstance(value, list):
        return None
    if all(type(entry) in _SCALARS for entry in value):  # the common answer: one prediction per row
        return value
    entries: list[Any] = []
    for entry in value:
        if isinstance(entry, list):
            if not all(type(item) in (int, float) for item in entry):
                return None
            entries.append(entry[0] if len(entry) == 1 else entry)
        elif type(entry) in _SCALARS:
            entries.append(entry)
        else:
            return None
    return entries


def _csv_entries(data: str) -> list[Any] | None:
    try:
        rows = [row for row in csv.reader(data.splitlines()) if row]
    except csv.Error:
        return None
    return [row[0] if len(row) == 1 else row for row in rows]


def canonical_outputs(data: bytes) -> list[list[Any] | None]:
    """The outputs of a file whose every line is a canonical capture record, in order (records without: absent)."""
    found: list[list[Any] | None] = []
    for content_type, string, encoding in CANONICAL_OUTPUT.findall(data):
        raw = string[1:-1]
        if b"\\" in raw:  # escapes: the JSON string's own decoding
            found.append(parse_output_data(json.loads(string), encoding.decode(), content_type[1:-1].decode()))
        elif encoding == b"JSON" and raw.strip():
            found.append(_json_entries(raw))
        elif encoding == b"CSV" and raw and b"," not in raw:  # one value (no quote: the string has no escape)
            found.append([raw.decode("ascii")])
        else:
            found.append(parse_output_data(raw.decode("ascii"), encoding.decode(), content_type[1:-1].decode()))
    return found
