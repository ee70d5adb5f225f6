"""The web view's actions: approve, promote and rollback, each the same library call as its CLI command.

An action is asked for with a form, shown back with the exact command line it is equivalent to, and runs only when
that confirmation is posted with a token bound to exactly those arguments (an HMAC under a secret the server draws at
start): a page from another site can neither read the token nor reuse it for other arguments. The call then goes
through `mlinfra.registry.promote` as `mlinfra approve | promote | rollback` does, with the same gates, the same
audit record and the same errors.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import shlex
from dataclasses import dataclass
from typing import Any

from mlinfra.errors import BadInputError
from mlinfra.stacks.project import Project

KINDS = ("approve", "promote", "rollback")
MAX_REASON = 500


@dataclass(frozen=True)
class Action:
    """One action as the form asked for it: what, on which model, stage and version, and why."""

    kind: str
    model: str
    stage: str
    version: int | None
    reason: str

    @classmethod
    def from_form(cls, kind: str, form: Any) -> Action:
        """Parse a submitted form; BadInputError naming the field that is wrong."""
        if kind not in KINDS:
            raise BadInputError(f"unknown action {kind!r} (one of: {', '.join(KINDS)})")
        model = str(form.get("model") or "").strip()
        stage = str(form.get("stage") or "").strip()
        raw_version = str(form.get("version") or "").strip()
        reason = " ".join(str(form.get("reason") or "").split())  # one line, as a shell argument would be
        if not model or not stage:
            raise BadInputError("the form names no model or stage")
        version: int | None = None
        if raw_version:
            if not raw_version.isdigit() or int(raw_version) < 1:
                raise BadInputError(f"version {raw_version!r} is not a version number (1, 2, ...)")
            version = int(raw_version)
        if kind == "approve" and version is None:
            raise BadInputError("approve needs the version to approve")
        if kind in {"approve", "rollback"} and not reason:
            raise BadInputError(f"{kind} needs a reason: it is recorded in the audit trail")
        if len(reason) > MAX_REASON:
            raise BadInputError(f"the reason is longer than {MAX_REASON} characters; keep it to a sentence or two")
        return cls(kind, model, stage, version, reason)

    def fields(self) -> dict[str, str]:
        """The form fields that ask for this action again (the confirmation's hidden inputs)."""
        return {
            "model": self.model,
            "stage": self.stage,
            "version": "" if self.version is None else str(self.version),
            "reason": self.reason,
        }

    def argv(self, *, local: bool) -> list[str]:
        """The equivalent command line, word by word."""
        head = ["mlinfra", *(["--local"] if local else [])]
        if self.kind == "approve":
            args = [self.kind, self.model, "--version", str(self.version), "--stack", self.stage]
        elif self.kind == "promote":
            args = [self.kind, self.model, "--to", self.stage]
            args += ["--version", str(self.version)] if self.version is not None else []
        else:
            args = [self.kind, self.model, "--stack", self.stage]
            args += ["--to", str(self.version)] if self.version is not None else []
        args += ["--reason", self.reason] if self.reason else []
        return head + args

    def command(self, *, local: bool) -> str:
        """The equivalent command line, quoted for a POSIX shell."""
        return shlex.join(self.argv(local=local))

    def run(self, project: Project) -> dict[str, Any]:
        """Do it, through the library call the CLI command makes; its errors are the command's."""
        from mlinfra.registry import promote

        if self.kind == "approve":
            assert self.version is not None  # noqa: S101 - from_form requires it
            return promote.approve(project, self.model, self.version, self.stage, self.reason)
        if self.kind == "promote":
            return promote.promote(
                project,
                self.model,
                self.stage,
                version=self.version,
                source=None,
                reason=self.reason or None,
                force=False,
            )
        return promote.rollback(project, self.model, self.stage, to=self.version, reason=self.reason)


def _message(purpose: str, payload: Any) -> bytes:
    return json.dumps([purpose, payload], sort_keys=True, separators=(",", ":")).encode()


def sign(secret: bytes, purpose: str, payload: Any = None) -> str:
    """A token for one purpose (an action with its exact arguments, or "refresh")."""
    return hmac.new(secret, _message(purpose, payload), hashlib.sha256).hexdigest()


def verify(secret: bytes, token: str, purpose: str, payload: Any = None) -> bool:
    """Whether `token` was signed for exactly this purpose and payload (constant-time)."""
    return hmac.compare_digest(sign(secret, purpose, payload), token or "")


def action_token(secret: bytes, action: Action) -> str:
    """The confirmation token of an action: valid only for its kind and exact fields."""
    return sign(secret, action.kind, action.fields())


def outcome(action: Action, result: dict[str, Any]) -> dict[str, Any]:
    """What the result page says: one line, and the pull request link when the stage is delivered by one."""
    model, stage = action.model, result.get("stage", action.stage)
    if action.kind == "approve":
        return {
            "line": f"{model} v{result['version']} approved for {stage} (package in {result['approvedIn']}) by "
            f"{result['actor']}",
            "link": None,
        }
    if result.get("delivery") == "pullRequest":
        pr = result.get("pullRequest") or {}
        if not pr:
            return {"line": f"{model}: the default branch already pins v{result['version']} for {stage}", "link": None}
        link = pr.get("url") or pr.get("compareUrl")
        where = f"branch {pr.get('branch')}"
        again = " (already proposed)" if result.get("alreadyDone") else ""
        return {"line": f"{model}: v{result['version']} proposed for {stage} on {where}{again}", "link": link}
    previous = f"v{result['previous']}" if result.get("previous") else "nothing"
    done = " (already done; caught up)" if result.get("alreadyDone") else ""
    return {"line": f"{model}: {stage} now runs v{result['version']} (was {previous}){done}", "link": None}
