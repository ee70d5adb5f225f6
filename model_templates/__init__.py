"""Jinja2 templates shipped with mlinfra (import name `mlinfra_templates`): cloud-init, handlers, cards, workflows.

HTML templates (`*.html.j2`) are autoescaped; a value is inserted unescaped only through `|safe`.

Templates live beside this file as `<area>/<name>.j2`; `render("sandbox/cloud-init.yaml.j2", ...)` fills one in.
Undefined variables are errors, so a template never silently renders an empty value.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

TEMPLATE_DIR = Path(__file__).parent


@cache
def _environment() -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        # HTML templates (`*.html.j2`) escape every value; the others render YAML, Python and Markdown.
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
    )


def render(name: str, **context: Any) -> str:
    """Render the template `name` (a path below model_templates/) with `context`."""
    return str(_environment().get_template(name).render(**context))


def names() -> list[str]:
    """Every template shipped, as paths relative to model_templates/."""
    return sorted(str(p.relative_to(TEMPLATE_DIR)) for p in TEMPLATE_DIR.rglob("*.j2"))
