"""`mlinfra card`: a version's model card, filled from the registry, as Markdown or HTML."""

from __future__ import annotations

from pathlib import Path

import click

from mlinfra.options import emit_json, json_option


@click.command()
@click.argument("model")
@click.option("--version", "-v", "version", type=click.IntRange(min=1), help="Version; default: the latest registered.")
@click.option("--format", "fmt", type=click.Choice(["md", "html"]), default="md", show_default=True)
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Write the card to this file instead of stdout.")
@json_option
def card(model: str, version: int | None, fmt: str, output: Path | None, as_json: bool) -> None:
    """Print MODEL's model card: details, intended use, factors, metrics, data, ethical considerations, caveats.

    The sections of "Model Cards for Model Reporting" (Mitchell et al.), filled from the version's record
    (framework, image, digest, commit, who registered it, description, metrics, baseline) and, once promoted, its
    history across stages; the authors' sections come from the card.md stored with the version (`register
    --card`). HTML output escapes every value. --json prints the data the card is made of.

    \b
    Examples:
      mlinfra card churn                          the latest version, Markdown
      mlinfra card churn --version 3 --format html -o churn-v3.html
      mlinfra --local card churn --json
    """
    from mlinfra.registry import cards
    from mlinfra.stacks.project import Project

    data = cards.card_data(Project.find(), model, version)
    if as_json:
        emit_json(data)
        return
    text = cards.render(data, fmt)
    if output is None:
        click.echo(text, nl=False)
        return
    output.write_text(text, encoding="utf-8")
    click.echo(f"wrote {output}")
