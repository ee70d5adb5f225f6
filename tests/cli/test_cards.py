"""`mlinfra card`: the model card from the version's record, its stage history and the authors' card.md, as
Markdown and as HTML that escapes whatever the metadata holds."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from click.testing import Result

from mlinfra.registry import cards
from tests.cli.test_promotion import ok, platform
from tests.cli.test_register_contract import SKLEARN, model_dir

__all__ = ["platform"]
Run = Callable[..., Result]
HOSTILE = '<script>alert("x")</script> & <img src=x onerror=alert(1)>'
AUTHORS = f"""# churn

<!-- instructions for the authors, not for readers -->

## Intended use

Retention offers for customers likely to leave. {HOSTILE}

## Caveats

Trained on 2025 data only.

## Owners

The retention team.
"""


def register_with_card(run: Run, tmp_path: Path, description: str = "first cut") -> None:
    card = tmp_path / "card.md"
    card.write_text(AUTHORS)
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"auc": 0.91}))
    ok(
        run(
            "register",
            str(model_dir(tmp_path)),
            "-m",
            "churn",
            *SKLEARN,
            "--description",
            description,
            "--card",
            str(card),
            "--metrics",
            str(metrics),
            "--git-sha",
            "abc123",
            "--json",
        )
    )


def test_markdown_card_has_every_section_filled_from_record_history_and_authors(
    platform: Path, run: Run, tmp_path: Path
) -> None:
    register_with_card(run, tmp_path)
    ok(run("promote", "churn", "--to", "dev", "--reason", "looks good", "--json"))
    result = run("card", "churn")
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    assert text.startswith("# Model card: churn v1\n\nfirst cut\n")
    headings = re.findall(r"^## (.+)$", text, flags=re.MULTILINE)
    assert headings == [*cards.SECTIONS, "Owners"]
    assert "| framework | sklearn 1.2-1 |" in text
    assert "| git commit | abc123 |" in text
    assert "| auc | 0.91 |" in text
    assert "| stages reached | sandbox, dev |" in text
    assert "| promote | dev |" in text and "looks good" in text
    assert "Retention offers for customers likely to leave." in text
    assert "Trained on 2025 data only." in text.split("## Caveats and recommendations")[1]
    assert "instructions for the authors" not in text
    assert "_Not documented: add a `## Factors` section to card.md._" in text


def test_html_card_escapes_hostile_metadata(platform: Path, run: Run, tmp_path: Path) -> None:
    register_with_card(run, tmp_path, description=HOSTILE)
    ok(run("promote", "churn", "--to", "dev", "--reason", HOSTILE, "--json"))
    out = tmp_path / "card.html"
    result = run("card", "churn", "--version", "1", "--format", "html", "--output", str(out))
    assert result.exit_code == 0, result.stderr
    html = out.read_text()
    assert "<script>" not in html and "<img" not in html
    assert html.count("&lt;script&gt;alert(") == 3, "description, promotion reason and authors' section: as text"
    assert "<h2>Intended use</h2>" in html
    assert html.startswith("<!DOCTYPE html>")


def test_card_json_and_unknown_version(platform: Path, run: Run, tmp_path: Path) -> None:
    register_with_card(run, tmp_path)
    data = ok(run("card", "churn", "--json"))
    assert data["version"] == 1 and data["metrics"] == {"auc": 0.91}
    assert data["sections"]["Intended use"].startswith("Retention offers")
    assert data["stagesReached"] == ["sandbox"], "registered there, promoted nowhere yet"
    result = run("card", "churn", "--version", "7")
    assert result.exit_code == 2
    assert result.stderr == "error: churn v7 is not in sandbox's registry (versions there: v1)\n"


def test_a_version_without_authors_card_still_gets_a_card(platform: Path, run: Run, tmp_path: Path) -> None:
    ok(run("register", str(model_dir(tmp_path)), "-m", "churn", *SKLEARN, "--json"))
    text = run("card", "churn").stdout
    assert text.count("_Not documented: add a `## ") == len(cards.SECTIONS) - 1


def test_split_sections_maps_headings_to_the_papers_sections() -> None:
    sections = cards.split_sections("# t\n\nintro\n\n## Metrics\n\nauc\n\n## caveats\n\nold data\n")
    assert sections == {"Model details": "intro", "Metrics": "auc", "Caveats and recommendations": "old data"}
