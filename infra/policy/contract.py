"""The access contract: every AWS call mlinfra's code makes in an account, by who makes it.

`access-contract.json` (beside this module) lists:

- `principals`: who acts in an account (the drift job, the endpoint's execution role, the scheduler, the sandbox
  VM, the analyst, the CI preview, deploy and promotion roles), each with the callers it runs: CLI commands
  (`mlinfra promote`), the drift job's Lambda handler (`drift-job`), or an AWS service acting with the role
  (`sagemaker-endpoint`, `scheduler`, `cloud-init`).
- `calls`: per caller, the IAM action, the resource ARN as a template (`arn:aws:s3:::{bucket}/stages/{model}.json`)
  and the request context the call carries (`s3:if-none-match`, `s3:prefix`, `cloudwatch:namespace`, ...). Calls
  with `"source": "recorded"` are written by the emulator test suites (botocore event hooks, tests/access_recorder.py;
  `make access-contract`); a test fails when the code makes a call the file lacks. Calls made by AWS services for a
  role (`"source": "declared"`) are written by hand from the service's documentation.

`mlinfra_infra.policy.accesscheck` evaluates the contract against a rendered stack's identity, bucket and key
policies. This module has no Pulumi or CLI import: the CrossGuard pack and the tests load it too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

CONTRACT_FILE = Path(__file__).with_name("access-contract.json")
Source = Literal["recorded", "declared"]

# Sample values a template's placeholders take when a call is evaluated; `*` in a template (any key under a prefix)
# becomes one concrete key there.
SAMPLES = {"variant": "primary", "n": "1", "sha256": "0" * 64, "etag": '"0"', "time": "2026-01-01T00:00:00Z"}
WILDCARD_SAMPLE = "x"


@dataclass(frozen=True, order=True)
class Call:
    """One kind of call: who makes it, the IAM action, the resource template and the context it carries.

    `missing_key`: the code reads a key that may not exist and handles the miss (S3 answers 404 only to a caller
    allowed s3:ListBucket there, 403 AccessDenied otherwise).
    """

    caller: str
    action: str
    resource: str
    context: tuple[tuple[str, str], ...] = ()
    missing_key: bool = False
    when: str = ""
    source: Source = "recorded"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"caller": self.caller, "action": self.action, "resource": self.resource}
        if self.context:
            out["context"] = dict(self.context)
        if self.missing_key:
            out["missingKey"] = True
        if self.when:
            out["when"] = self.when
        out["source"] = self.source
        return out

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Call:
        context = doc.get("context") or {}
        return cls(
            caller=str(doc["caller"]),
            action=str(doc["action"]),
            resource=str(doc["resource"]),
            context=tuple(sorted((str(k), str(v)) for k, v in context.items())),
            missing_key=bool(doc.get("missingKey", False)),
            when=str(doc.get("when", "")),
            source="declared" if doc.get("source") == "declared" else "recorded",
        )

    @property
    def identity(self) -> tuple[str, str, str, tuple[tuple[str, str], ...], bool, str]:
        """What makes two calls the same call (the source does not)."""
        return (self.caller, self.action, self.resource, self.context, self.missing_key, self.when)


@dataclass(frozen=True)
class Principal:
    """Who acts in an account, how a stack names its role, and which callers run with it."""

    name: str
    description: str
    callers: tuple[str, ...]


@dataclass
class Contract:
    principals: dict[str, Principal]
    calls: list[Call]
    ignored_callers: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)

    def calls_of(self, principal: str) -> list[Call]:
        """The calls a principal makes: those of every caller it runs."""
        callers = set(self.principals[principal].callers)
        return [c for c in self.calls if c.caller in callers]

    def known_callers(self) -> set[str]:
        return {caller for p in self.principals.values() for caller in p.callers}

    def missing(self, observed: Iterable[Call]) -> list[Call]:
        """Observed calls the contract lacks (by caller, action, resource, context and missing-key handling)."""
        known = {c.identity for c in self.calls}
        return sorted({c for c in observed if c.identity not in known and c.caller not in self.ignored_callers})

    def with_recorded(self, observed: Iterable[Call]) -> Contract:
        """The contract with its recorded calls replaced by `observed` (declared calls kept)."""
        declared = [c for c in self.calls if c.source == "declared"]
        recorded = {c.identity: c for c in observed if c.caller not in self.ignored_callers}
        calls = sorted({*declared, *recorded.values()})
        return Contract(self.principals, calls, self.ignored_callers, self.notes)

    def to_json(self) -> dict[str, Any]:
        return {
            "notes": self.notes,
            "principals": {
                p.name: {"description": p.description, "callers": list(p.callers)} for p in self.principals.values()
            },
            "ignoredCallers": list(self.ignored_callers),
            "calls": [c.to_json() for c in self.calls],
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Contract:
        principals = {
            name: Principal(name, str(spec.get("description", "")), tuple(spec.get("callers", ())))
            for name, spec in (doc.get("principals") or {}).items()
        }
        calls = sorted(Call.from_json(c) for c in doc.get("calls") or [])
        return cls(principals, calls, tuple(doc.get("ignoredCallers") or ()), list(doc.get("notes") or []))


@cache
def load(path: Path = CONTRACT_FILE) -> Contract:
    """The contract shipped with the package (or another file); raises OSError/ValueError when unreadable."""
    return Contract.from_json(json.loads(path.read_text()))


def save(contract: Contract, path: Path = CONTRACT_FILE) -> None:
    text = json.dumps(contract.to_json(), indent=1, sort_keys=False) + "\n"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    load.cache_clear()


# ---------------------------------------------------------------------------------------------------------------
# Templates: concrete keys and ARNs of a test run -> the shape every stage shares, and back.

_LAYOUT = re.compile(r"^(models|capture|monitoring|audit)/([^/]+)(/|$)")
_STAGE_POINTER = re.compile(r"^stages/([^/]+)\.json$")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_DIGITS = re.compile(r"\d+")
# Beyond these prefixes the rest of a key is data-dependent (capture files, report names, audit record names):
# the template keeps the prefix and a `*`.
# SageMaker's capture files: capture/<model>/<endpoint>/<variant>/yyyy/mm/dd/hh/<file>.jsonl.
_CAPTURE = re.compile(r"^capture/\{model\}/[^/]+/[^/]+/")
_OPEN_PREFIXES = (
    re.compile(r"^(capture/\{model\}/).+"),
    re.compile(r"^(monitoring/\{model\}/reports/).+"),
    re.compile(r"^(audit/\{model\}/).+"),
    re.compile(r"^(uploads/).+"),
    re.compile(r"^(code/).+"),
)


def key_template(key: str, models: Iterable[str] = ()) -> str:
    """`models/churn/sha256/<hex>/model.tar.gz` -> `models/{model}/sha256/{sha256}/model.tar.gz`, and so on."""
    named = set(models)
    out = key
    match = _LAYOUT.match(out)
    if match and (not named or match.group(2) in named):
        out = f"{match.group(1)}/{{model}}{match.group(3)}{out[match.end() :]}"
    pointer = _STAGE_POINTER.match(out)
    if pointer and (not named or pointer.group(1) in named):
        out = "stages/{model}.json"
    if _CAPTURE.match(out):
        return "capture/{model}/{endpoint}/{variant}/*"
    for pattern in _OPEN_PREFIXES:
        opened = pattern.match(out)
        if opened:
            return f"{opened.group(1)}*"
    out = _HEX64.sub("{sha256}", out)
    out = _UUID.sub("*", out)
    # Digit runs are data (versions, dates, counters), except in the literal segment `sha256`.
    return "/".join(part if part in {"sha256", "{sha256}"} else _DIGITS.sub("{n}", part) for part in out.split("/"))


def instantiate(template: str, values: Mapping[str, str]) -> str:
    """A template with its placeholders filled (stage values first, then samples) and `*` as a sample key."""

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in values:
            return values[name]
        return SAMPLES.get(name, match.group(0))

    filled = re.sub(r"\{([a-z0-9_]+)\}", fill, template)
    return filled if filled == "*" else filled.replace("*", WILDCARD_SAMPLE)


def unresolved(text: str) -> list[str]:
    """Placeholders still in an instantiated template (the stack has no such resource)."""
    return re.findall(r"\{([a-z0-9_]+)\}", text)
