"""Model cards ("Model Cards for Model Reporting", Mitchell et al., 2019), filled from the registry.

A version's card has the paper's sections: model details, intended use, factors, metrics, evaluation data, training
data, quantitative analyses, ethical considerations, caveats and recommendations. What the registry knows fills them
in (framework, image, digest, who registered it and when, the git commit, the description, the metrics, the
baseline, and once promoted, its history across stages); what only the authors know comes from the card.md stored
with the version (`register --card`), whose `## ` sections land in the matching sections. Rendered as Markdown, or
as HTML through an autoescaping template, the authors' Markdown converted by markdown-it with raw HTML disabled, so
a `<script>` in any field or in card.md arrives as text.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from mlinfra.aws import error_code
from mlinfra.errors import BadInputError
from mlinfra_infra import layout

if TYPE_CHECKING:
    from mlinfra.registry.store import StageRegistry
    from mlinfra.stacks.project import Project

CARD_NAME = "card.md"
FORMATS = ("md", "html")
# The paper's sections, in its order; the authors' headings are matched to these by their lowercase words.
SECTIONS = (
    "Model details",
    "Intended use",
    "Factors",
    "Metrics",
    "Evaluation data",
    "Training data",
    "Quantitative analyses",
    "Ethical considerations",
    "Caveats and recommendations",
)
_ALIASES = {"caveats": "Caveats and recommendations", "recommendations": "Caveats and recommendations"}


def card_key(model: str, version: int) -> str:
    """Where a version's card.md is stored: models/<model>/versions/<n>/card.md."""
    return f"{layout.version_prefix(model, version)}{CARD_NAME}"


def store_card(registry: StageRegistry, model: str, version: int, text: str | None) -> None:
    """Store a version's card.md (create-only: the files of a version never change); nothing for no card."""
    if text is None:
        return
    try:
        registry.s3.put_object(
            Bucket=registry.bucket,
            Key=card_key(model, version),
            Body=text.encode("utf-8"),
            ContentType="text/markdown; charset=utf-8",
            ChecksumAlgorithm="SHA256",
            IfNoneMatch="*",
        )
    except Exception as exc:
        if error_code(exc) not in {"PreconditionFailed", "ConditionalRequestConflict", "412"}:
            raise


def stored_card(registry: StageRegistry, model: str, version: int) -> tuple[str | None, str | None]:
    """A version's stored card.md and its ETag, or (None, None)."""
    try:
        response = registry.s3.get_object(Bucket=registry.bucket, Key=card_key(model, version))
    except Exception as exc:
        if error_code(exc) in {"NoSuchKey", "404"}:
            return None, None
        raise
    return str(response["Body"].read().decode("utf-8", "replace")), str(response["ETag"])


def replace_card(registry: StageRegistry, model: str, version: int, text: str, etag: str | None) -> None:
    """Write a version's card.md over the one with `etag` (or create it when None); ConflictError if it moved.

    Cards are the one file of a version that may change after registering (`mlinfra attach --card`, audited): they
    are prose about the version, not what stages pin.
    """
    from mlinfra.registry.store import ConflictError

    condition = {"IfMatch": etag} if etag is not None else {"IfNoneMatch": "*"}
    try:
        registry.s3.put_object(
            Bucket=registry.bucket,
            Key=card_key(model, version),
            Body=text.encode("utf-8"),
            ContentType="text/markdown; charset=utf-8",
            ChecksumAlgorithm="SHA256",
            **condition,
        )
    except Exception as exc:
        if error_code(exc) in {"PreconditionFailed", "ConditionalRequestConflict", "412"}:
            raise ConflictError(f"{card_key(model, version)} changed concurrently") from None
        raise


def load_card(registry: StageRegistry, model: str, version: int) -> str | None:
    """A version's stored card.md, or None."""
    try:
        body = registry.s3.get_object(Bucket=registry.bucket, Key=card_key(model, version))["Body"].read()
    except Exception as exc:
        if error_code(exc) in {"NoSuchKey", "404"}:
            return None
        raise
    return str(body.decode("utf-8", "replace"))


def split_sections(text: str) -> dict[str, str]:
    """The authors' `## ` sections by the paper's section names; others under their own heading; HTML comments out."""
    text = re.sub(r"<!--.*?-->", "", text, flags=re.DOTALL)
    sections: dict[str, str] = {}
    current = "Model details"
    lines: list[str] = []

    def close() -> None:
        body = "\n".join(lines).strip()
        if body:
            sections[current] = f"{sections[current]}\n\n{body}" if current in sections else body

    for line in text.splitlines():
        if line.startswith("# ") and not lines and not sections:
            continue  # the title: the card has its own
        if line.startswith("## "):
            close()
            lines = []
            current = _section_of(line[3:].strip())
        else:
            lines.append(line)
    close()
    return sections


def _section_of(heading: str) -> str:
    words = heading.lower().strip(" #:")
    for name in SECTIONS:
        if words == name.lower():
            return name
    return _ALIASES.get(words, heading)


def card_data(project: Project, model: str, version: int | None) -> dict[str, Any]:
    """Everything a card shows for `model` version `version` (default: the latest registered), as a JSON object."""
    from mlinfra.aws import aws_errors
    from mlinfra.registry import protocol as promotion
    from mlinfra.registry import status as stagestatus

    ctx, stage = promotion.entry_stage(project)
    entry = stage.name
    promotion.require_model(stage, model)
    registry = ctx.registry(entry)
    with aws_errors(f"reading {model}'s card"):
        if version is None:
            known = registry.versions(model)
            if not known:
                raise BadInputError(f"{model} has no registered version yet; `mlinfra register` one first")
            version = known[-1]
        record = registry.require_version(model, version)
        authors = load_card(registry, model, version)
        events = [r for r in stagestatus.history(project, model, None) if r.get("version") == version]
    reached = {entry} | {e["stage"] for e in events if e.get("action") in {"promote", "rollback"}}
    runs_in = [name for name in project.stages() if name in reached]  # in promotion order
    return {
        "model": model,
        "version": version,
        "description": record.get("description"),
        "framework": record.get("framework"),
        "frameworkVersion": record.get("frameworkVersion"),
        "image": record.get("image"),
        "digest": record.get("digest"),
        "size": record.get("size"),
        "gitSha": record.get("gitSha"),
        "registeredBy": record.get("registeredBy"),
        "registeredAt": record.get("registeredAt"),
        "metrics": record.get("metrics") or {},
        "baseline": record.get("baseline"),
        "handler": record.get("handler"),
        "stagesReached": runs_in,
        "history": [
            {k: e.get(k) for k in ("time", "action", "stage", "actor", "reason", "forced", "previous")}
            for e in sorted(events, key=lambda e: str(e.get("time")))
        ],
        "sections": split_sections(authors) if authors else {},
    }


def render(data: dict[str, Any], fmt: str) -> str:
    """The card as Markdown (`md`) or HTML (`html`, autoescaped)."""
    import mlinfra_templates

    if fmt not in FORMATS:
        raise BadInputError(f"unknown card format {fmt!r}; use md or html")
    sections = data["sections"]
    context = {
        "card": data,
        "order": [s for s in SECTIONS if s != "Model details"],
        "extra": [name for name in sections if name not in SECTIONS],
        "sections": sections,
    }
    if fmt == "md":
        return mlinfra_templates.render("cards/card.md.j2", **context)
    from markdown_it import MarkdownIt

    markdown = MarkdownIt("commonmark", {"html": False})
    html_sections = {name: markdown.render(text) for name, text in sections.items()}
    return mlinfra_templates.render("cards/card.html.j2", **{**context, "html_sections": html_sections})
